#!/bin/bash
# (Re)makes the directory's server certificate, signed by the test CA, for ldap.lab.test,
# localhost and every address the container has now: clients may connect by name or by IP.
# Run at build (so the TLS settings can be applied) and at every start (addresses change).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tls=/etc/ldap/tls
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
EXTRA_NAMES="DNS:ldap.lab.test" peer_server_cert "$tls" ldap.lab.test "$work"
install -m 0644 "$work/server.crt" "$tls/server.crt"
install -m 0640 -g openldap "$work/server.key" "$tls/server.key"
