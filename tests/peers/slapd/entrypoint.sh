#!/bin/bash
# Starts the test directory in the foreground as PID 1, with a certificate for this start's
# addresses. SLAPD_DEBUG_LEVEL (default: stats, one line per operation) goes to docker logs.
set -euo pipefail

bash "$(dirname "${BASH_SOURCE[0]}")/server-cert.sh"
install -d -o openldap -g openldap /run/slapd
exec /usr/sbin/slapd -d "${SLAPD_DEBUG_LEVEL:-stats}" -h "ldap:/// ldapi:///" \
    -u openldap -g openldap -F /etc/ldap/slapd.d
