#!/bin/bash
# Build step: creates the realm LAB.TEST (stashed master key) and one principal per
# account of accounts.txt held by the kdc, renewable for 7 days like the lab asks.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=lib.sh
. "$here/lib.sh"

realm=LAB.TEST
kdb5_util create -s -r "$realm" -P "$(peer_password master)" >/dev/null
kadmin.local -r "$realm" -q "modprinc -maxrenewlife 7d krbtgt/$realm@$realm" >/dev/null
while read -r kind name password _; do
    [ "$kind" = user ] || continue
    kadmin.local -r "$realm" -q "addprinc -pw $password -maxrenewlife 7d $name@$realm" >/dev/null
done < <(peer_accounts kdc)

# kadmin.local reports errors but exits 0: check that every principal exists.
principals="$(kadmin.local -r "$realm" -q listprincs)"
while read -r kind name _; do
    [ "$kind" = user ] || continue
    if ! grep -qx "$name@$realm" <<<"$principals"; then
        printf 'seed: principal %s@%s was not created\n' "$name" "$realm" >&2
        exit 1
    fi
done < <(peer_accounts kdc)
printf 'seed: realm %s with principals:\n%s\n' "$realm" "$principals" >&2
