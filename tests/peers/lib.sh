# shellcheck shell=bash
# Sourced by the peers' build scripts: the TEST-ONLY accounts of accounts.txt and build helpers.

ACCOUNTS_FILE="${ACCOUNTS_FILE:-$(dirname "${BASH_SOURCE[0]}")/accounts.txt}"

# peer_accounts PEER: prints "kind name password uid groups" for each account PEER holds.
peer_accounts() {
    local peer="$1" kind name password uid groups peers
    while read -r kind name password uid groups peers; do
        case "$kind" in
            '' | '#'*) continue ;;
        esac
        case ",$peers," in
            *",$peer,"*) printf '%s %s %s %s %s\n' "$kind" "$name" "$password" "$uid" "$groups" ;;
        esac
    done <"$ACCOUNTS_FILE"
}

# peer_password KIND: the password of the (single) account of that kind, e.g. admin or master.
peer_password() {
    local wanted="$1" kind name password rest
    while read -r kind name password rest; do
        if [ "$kind" = "$wanted" ]; then
            printf '%s\n' "$password"
            return 0
        fi
    done <"$ACCOUNTS_FILE"
    printf 'accounts.sh: no %s account in %s\n' "$wanted" "$ACCOUNTS_FILE" >&2
    return 1
}

# no_daemons_during_build: package scripts must not start services (a build has no init).
no_daemons_during_build() {
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
}

# apt_install PACKAGE...: non-interactive install without leaving package lists behind.
apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
    rm -rf /var/lib/apt/lists/*
}
