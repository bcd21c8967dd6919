#!/usr/bin/env bash
# Sets up a fresh machine for the whole test suite (run as root, idempotent):
#  - ./venv with the program's and the tests' Python dependencies;
#  - shellcheck for the host-script tests; Debian's Chromium (and a font) for the spawn page's browser test;
#  - the dev host bootstrap: Docker engine, local base image, sshd (infra/bootstrap/dev-host.sh).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

log() { printf 'tests/setup: %s\n' "$*" >&2; }

apt_install() {
    local missing=()
    for package in "$@"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
}

apt_install shellcheck python3-venv openssh-client krb5-user chromium fonts-dejavu-core
if [ ! -x venv/bin/python ]; then
    log "creating venv"
    python3 -m venv venv
fi
venv/bin/python -m pip install -q -r requirements-dev.txt

infra/bootstrap/dev-host.sh
log "ready"
