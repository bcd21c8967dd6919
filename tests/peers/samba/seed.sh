#!/bin/bash
# Build step: Unix and Samba accounts for the users of accounts.txt held by samba (group
# "lab", gid 2100), a file in each home, and the team share with its welcome file.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=lib.sh
. "$here/lib.sh"

groupadd -g 2100 lab
while read -r kind name password uid _; do
    [ "$kind" = user ] || continue
    useradd -m -u "$uid" -g lab -s /usr/sbin/nologin "$name"
    printf '%s\n%s\n' "$password" "$password" | smbpasswd -a -s "$name" >/dev/null
    printf 'Notes of %s (juvini test peer).\n' "$name" >"/home/$name/notes-$name.txt"
    chown "$name:lab" "/home/$name/notes-$name.txt"
done < <(peer_accounts samba)

install -d -o root -g lab -m 2775 /srv/team
printf 'Welcome to the team share (juvini test peer).\n' >/srv/team/welcome.txt
chmod 0664 /srv/team/welcome.txt
chgrp lab /srv/team/welcome.txt

testparm -s >/dev/null
printf 'seed: samba users:\n%s\n' "$(pdbedit -L)" >&2
