#!/bin/bash
# Starts a swarm test-bed node: makes the container fit for a nested Docker engine, starts
# sshd, then runs dockerd in the foreground (under tini).
#
# Environment (set by tests/support/swarm_bed.py):
#   BED_NODE_IP               this node's address on the bed network: dockerd listens on
#                             tcp://$BED_NODE_IP:2375 besides its unix socket
#   BED_AUTHORIZED_KEYS       public SSH keys accepted for root and bedadmin (one a line)
#   BED_INSECURE_REGISTRIES   registries (host:port) the engine may use over plain HTTP,
#                             separated by spaces
#   BED_REGISTRY_CA_DIR       optional: a folder of <host:port>/ca.crt files, copied into
#                             /etc/docker/certs.d so the engine trusts those registries' CA
set -euo pipefail

log() { printf 'swarm-node: %s\n' "$*" >&2; }

: "${BED_NODE_IP:?must be the address of this node on the bed network}"

# Docker mounts the cgroup filesystems read-only in a container that is not --privileged;
# the nested engine creates cgroups for its containers, so remount them read-write
# (--cgroupns=private keeps them this container's own). Each cgroup v1 controller is a bind
# mount, whose read-only flag only a bind remount changes ("mount point is busy" otherwise).
while read -r mount_point type; do
    if [ "$type" = tmpfs ]; then
        mount -o remount,rw "$mount_point"
    else
        mount -o remount,bind,rw "$mount_point"
    fi
done < <(awk '($3 == "tmpfs" && $2 == "/sys/fs/cgroup") || $3 ~ /^cgroup2?$/ {print $2, $3}' /proc/self/mounts)
# cgroup v2 (as moby's hack/dind): a cgroup with processes cannot enable controllers for
# its children, so move this container's processes into a leaf first.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mkdir -p /sys/fs/cgroup/init
    xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs || :
    sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers >/sys/fs/cgroup/cgroup.subtree_control
fi
# Bind mounts made inside the node (volumes of nested containers) propagate as on a host.
mount --make-rshared /

# sshd with this node's own host keys and the tests' key.
ssh-keygen -A >/dev/null
for home in /root /home/bedadmin; do
    install -d -m 0700 "$home/.ssh"
    printf '%s\n' "${BED_AUTHORIZED_KEYS:-}" >"$home/.ssh/authorized_keys"
    chmod 0600 "$home/.ssh/authorized_keys"
done
chown -R bedadmin:bedadmin /home/bedadmin/.ssh
install -d -m 0755 /run/sshd
/usr/sbin/sshd -E /var/log/sshd.log

# The engine's configuration: the bed's registry. The program may add keys later (it keeps
# the others), e.g. live-restore; `hosts` stays on the command line below.
install -d -m 0755 /etc/docker
python3 - "${BED_INSECURE_REGISTRIES:-}" >/etc/docker/daemon.json <<'PY'
import json, sys
print(json.dumps({"insecure-registries": sys.argv[1].split(), "storage-driver": "overlay2"}, indent=4))
PY
if [ -n "${BED_REGISTRY_CA_DIR:-}" ] && [ -d "$BED_REGISTRY_CA_DIR" ]; then
    install -d -m 0755 /etc/docker/certs.d
    cp -r "$BED_REGISTRY_CA_DIR"/. /etc/docker/certs.d/
fi

log "dockerd on unix:///var/run/docker.sock and tcp://$BED_NODE_IP:2375"
# --tls=false says plain TCP is meant (test bed, private network): without it dockerd stalls
# its start by 15 s to warn about an unauthenticated TCP socket.
exec /usr/sbin/dockerd -H unix:///var/run/docker.sock -H "tcp://$BED_NODE_IP:2375" --tls=false
