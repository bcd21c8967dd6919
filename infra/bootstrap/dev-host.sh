#!/usr/bin/env bash
# One-time, as root: make this machine the dev stack's Docker host.
#
#  - a Docker engine (Debian's docker.io) that answers;
#  - the local base image the dev stack builds from (no registry needed);
#  - sshd, and an SSH key authorized for root@localhost, because host setup runs
#    as remote commands over SSH exactly as it does against a production host.
#
# Idempotent. After it, `pulumi up` on the dev stack needs no further root step.
# Environment: JUVINI_DEV_SSH_KEY (default ~/.ssh/juvini_dev_ed25519),
# JUVINI_BASE_IMAGE (default juvini-base:bookworm).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
key="${JUVINI_DEV_SSH_KEY:-$HOME/.ssh/juvini_dev_ed25519}"
base_image="${JUVINI_BASE_IMAGE:-juvini-base:bookworm}"

log() { printf 'dev-host: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { log "run as root (one-time bootstrap)"; exit 1; }

"$root/images/tools/ensure-docker-engine.sh"
"$root/images/tools/make-base-image.sh" "$base_image"

if ! command -v sshd >/dev/null 2>&1 && [ ! -x /usr/sbin/sshd ]; then
    log "installing openssh-server"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server openssh-client
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/22) 2>/dev/null; then
    log "starting sshd"
    mkdir -p /run/sshd
    ssh-keygen -A >/dev/null
    /usr/sbin/sshd
    for _ in $(seq 1 50); do
        (exec 3<>/dev/tcp/127.0.0.1/22) 2>/dev/null && break
        sleep 0.2
    done
    (exec 3<>/dev/tcp/127.0.0.1/22) 2>/dev/null || { log "sshd does not answer on port 22"; exit 1; }
fi

mkdir -p "$(dirname "$key")"
chmod 700 "$(dirname "$key")"
[ -f "$key" ] || ssh-keygen -q -t ed25519 -N '' -C juvini-dev -f "$key"
install -d -m 700 /root/.ssh
touch /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
grep -qxF "$(cat "$key.pub")" /root/.ssh/authorized_keys || cat "$key.pub" >>/root/.ssh/authorized_keys
log "ready: Docker engine, base image $base_image, sshd with key $key"
