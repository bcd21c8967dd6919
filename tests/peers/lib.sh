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

# peer_server_cert CA_DIR CN WORK: writes WORK/server.crt and WORK/server.key, a server
# certificate for CN signed by CA_DIR/ca.crt (key CA_DIR/ca.key), naming localhost and every
# address the container has now (clients reach the peers by IP address), besides any
# EXTRA_NAMES ("DNS:ldap.lab.test,..."). Prints the names on stderr.
peer_server_cert() {
    local ca_dir="$1" cn="$2" work="$3" names="${EXTRA_NAMES:+$EXTRA_NAMES,}DNS:localhost,IP:127.0.0.1" address
    for address in $(hostname -I); do
        names="$names,IP:$address"
    done
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$work/server.key" -out "$work/server.csr" \
        -subj "/O=Juvini test peers/CN=$cn" 2>/dev/null
    printf '%s\n' \
        "subjectAltName=$names" \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" \
        "subjectKeyIdentifier=hash" \
        "authorityKeyIdentifier=keyid" >"$work/extensions"
    openssl x509 -req -in "$work/server.csr" -CA "$ca_dir/ca.crt" -CAkey "$ca_dir/ca.key" \
        -days 825 -extfile "$work/extensions" -out "$work/server.crt" 2>/dev/null
    printf 'server-cert: %s\n' "$names" >&2
}
