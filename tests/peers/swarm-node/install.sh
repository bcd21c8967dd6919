#!/bin/bash
# Build step: a Docker engine, sshd, sudo and what the lab's host commands use (useradd from
# passwd, python3 or jq for daemon.json, pkill from procps), non-interactively.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

no_daemons_during_build
apt_install docker.io openssh-server tini sudo iproute2 iptables procps python3 ca-certificates curl
rm -f /usr/sbin/policy-rc.d

# Host keys are made at each start (entrypoint.sh): every node has its own.
rm -f /etc/ssh/ssh_host_*
# Keys only, as on a production host; root may log in with a key, as on the dev host.
cat >/etc/ssh/sshd_config.d/juvini-bed.conf <<'SSHD'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
SSHD

# A non-root operator with password-less sudo, like a production host's admin account: the
# program's privileged host commands run through `sudo -n` for such a user.
useradd --create-home --shell /bin/bash --groups sudo bedadmin
printf 'bedadmin ALL=(ALL) NOPASSWD:ALL\n' >/etc/sudoers.d/bedadmin
chmod 0440 /etc/sudoers.d/bedadmin
