#!/bin/bash
# Build step: installs OpenLDAP for the test directory, non-interactively. No accounts here,
# so that changing them does not reinstall packages.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

no_daemons_during_build
# The package creates the database for lab.test; its admin password is random and
# thrown away here: seed.sh sets the one from accounts.txt.
throwaway="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
debconf-set-selections <<SELECTIONS
slapd slapd/no_configuration boolean false
slapd slapd/domain string lab.test
slapd shared/organization string Juvini test lab
slapd slapd/password1 password $throwaway
slapd slapd/password2 password $throwaway
slapd slapd/purge_database boolean true
slapd slapd/move_old_database boolean true
SELECTIONS
apt_install slapd ldap-utils openssl
