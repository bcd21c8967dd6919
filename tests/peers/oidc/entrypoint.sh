#!/bin/bash
# Starts the test OpenID provider in the foreground with a certificate for this start's
# addresses. The issuer, the lab's client and its callback come from the environment
# (server.mjs says which); its log goes to docker logs.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"

bash "$here/server-cert.sh"
exec node "$here/server.mjs"
