#!/bin/bash
# Build step: Debian's docker-registry (it makes the docker-registry user and
# /var/lib/docker-registry) and tini, non-interactively.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

no_daemons_during_build
apt_install docker-registry tini ca-certificates
rm -f /usr/sbin/policy-rc.d
install -d -o docker-registry -g docker-registry /var/lib/docker-registry
