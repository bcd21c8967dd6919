#!/bin/bash
# Build step: installs the MIT KDC, kadmin.local and the client tools (for the readiness
# check), non-interactively. The realm is made by seed.sh.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

no_daemons_during_build
debconf-set-selections <<'SELECTIONS'
krb5-config krb5-config/default_realm string LAB.TEST
krb5-config krb5-config/add_servers boolean false
krb5-config krb5-config/read_conf boolean true
SELECTIONS
apt_install krb5-kdc krb5-admin-server krb5-user
