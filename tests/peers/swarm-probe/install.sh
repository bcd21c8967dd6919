#!/bin/bash
# Build step: BusyBox (its httpd serves a page) and curl (fetches it, with clear errors).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apt_install busybox curl
