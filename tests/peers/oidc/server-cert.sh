#!/bin/bash
# Makes the provider's server certificate, signed by the test CA, for localhost and every
# address the container has now: the lab's hub and the tests reach it by IP address.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tls=/etc/oidc-peer
out=/run/oidc-peer
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
peer_server_cert "$tls" "OpenID test peer" "$work"
install -m 0644 "$work/server.crt" "$out/server.crt"
install -m 0600 "$work/server.key" "$out/server.key"
