#!/bin/bash
# Build step: Debian's Node.js, oidc-provider exactly as package-lock.json pins it, and a
# test CA (TEST ONLY: its key stays in the image, readable by the peer's user, which makes
# the server certificate for its addresses at each start). Debian's npm is only needed for
# the install and is purged in the same step.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=lib.sh
. "$here/lib.sh"

no_daemons_during_build
apt_install nodejs npm openssl ca-certificates

cd "$here"
if [ -n "${EXTRA_CA_CERTS:-}" ]; then
    extra_ca="$(mktemp)"
    printf '%s\n' "$EXTRA_CA_CERTS" >"$extra_ca"
    NODE_EXTRA_CA_CERTS="$extra_ca" npm ci --omit=dev --no-audit --no-fund
    rm -f "$extra_ca"
else
    npm ci --omit=dev --no-audit --no-fund
fi
DEBIAN_FRONTEND=noninteractive apt-get purge -y -q --auto-remove npm
rm -rf /root/.npm /root/.cache /var/lib/apt/lists/*
node -e 'import("oidc-provider").then(() => console.log("oidc-provider loads"))'

useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin oidc-peer
tls=/etc/oidc-peer
install -d -m 0755 "$tls"
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" -days 3650 \
    -subj "/O=Juvini test peers/CN=Juvini OpenID test peer CA (TEST ONLY)" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
chown oidc-peer "$tls/ca.key"
chmod 0400 "$tls/ca.key"
install -d -o oidc-peer -m 0700 /run/oidc-peer
