#!/bin/bash
# Makes the provider's server certificate, signed by the test CA, for localhost and every
# address the container has now: the lab's hub and the tests reach it by IP address.
set -euo pipefail

tls=/etc/oidc-peer
out=/run/oidc-peer
names="DNS:localhost,IP:127.0.0.1"
for address in $(hostname -I); do
    names="$names,IP:$address"
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$work/server.key" -out "$work/server.csr" \
    -subj "/O=Juvini test peers/CN=OpenID test peer" 2>/dev/null
printf '%s\n' \
    "subjectAltName=$names" \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" \
    "subjectKeyIdentifier=hash" \
    "authorityKeyIdentifier=keyid" >"$work/extensions"
openssl x509 -req -in "$work/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
    -days 825 -extfile "$work/extensions" -out "$work/server.crt" 2>/dev/null
install -m 0644 "$work/server.crt" "$out/server.crt"
install -m 0600 "$work/server.key" "$out/server.key"
printf 'server-cert: %s\n' "$names" >&2
