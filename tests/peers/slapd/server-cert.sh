#!/bin/bash
# (Re)makes the directory's server certificate, signed by the test CA, for ldap.lab.test,
# localhost and every address the container has now: clients may connect by name or by IP.
# Run at build (so the TLS settings can be applied) and at every start (addresses change).
set -euo pipefail

tls=/etc/ldap/tls
names="DNS:ldap.lab.test,DNS:localhost,IP:127.0.0.1"
for address in $(hostname -I); do
    names="$names,IP:$address"
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$work/server.key" -out "$work/server.csr" \
    -subj "/O=Juvini test peers/CN=ldap.lab.test" 2>/dev/null
printf '%s\n' \
    "subjectAltName=$names" \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" \
    "subjectKeyIdentifier=hash" \
    "authorityKeyIdentifier=keyid" >"$work/extensions"
openssl x509 -req -in "$work/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
    -days 825 -extfile "$work/extensions" -out "$work/server.crt" 2>/dev/null
install -m 0644 "$work/server.crt" "$tls/server.crt"
install -m 0640 -g openldap "$work/server.key" "$tls/server.key"
printf 'server-cert: %s\n' "$names" >&2
