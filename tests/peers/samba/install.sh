#!/bin/bash
# Build step: installs the Samba server and smbclient (for the readiness check and for
# throwaway client containers), non-interactively.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

no_daemons_during_build
apt_install samba smbclient
