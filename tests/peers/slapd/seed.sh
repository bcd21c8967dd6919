#!/bin/bash
# Build step: seeds the test directory from accounts.txt. Makes a test CA (TEST ONLY: its
# key stays in the image) and a server certificate, turns on StartTLS and refuses simple
# binds without TLS, then adds ou=people, ou=services, ou=groups and the accounts through
# a temporary slapd listening on ldapi:/// only.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=lib.sh
. "$here/lib.sh"

suffix="dc=lab,dc=test"
tls=/etc/ldap/tls

install -d -m 0755 "$tls"
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" -days 3650 \
    -subj "/O=Juvini test peers/CN=Juvini test peers CA (TEST ONLY)" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
chmod 0600 "$tls/ca.key"
bash "$here/server-cert.sh"

install -d -o openldap -g openldap /run/slapd
slapd -h ldapi:/// -u openldap -g openldap -F /etc/ldap/slapd.d
deadline=$((SECONDS + 30))
until ldapwhoami -Q -Y EXTERNAL -H ldapi:/// >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        printf 'seed: the temporary slapd did not answer on ldapi:/// within 30 s\n' >&2
        exit 1
    fi
    sleep 0.2
done

admin_password="$(peer_password admin)"
admin_hash="$(slappasswd -h '{SSHA}' -s "$admin_password")"
ldapmodify -Q -Y EXTERNAL -H ldapi:/// <<LDIF
dn: cn=config
changetype: modify
replace: olcTLSCACertificateFile
olcTLSCACertificateFile: $tls/ca.crt
-
replace: olcTLSCertificateFile
olcTLSCertificateFile: $tls/server.crt
-
replace: olcTLSCertificateKeyFile
olcTLSCertificateKeyFile: $tls/server.key
-
replace: olcSecurity
olcSecurity: simple_bind=1

dn: olcDatabase={1}mdb,cn=config
changetype: modify
replace: olcRootPW
olcRootPW: $admin_hash
LDIF

declare -A members=()
entries="$(mktemp)"
trap 'rm -f "$entries"' EXIT
printf '%s\n' \
    "dn: ou=people,$suffix" "objectClass: organizationalUnit" "ou: people" "" \
    "dn: ou=services,$suffix" "objectClass: organizationalUnit" "ou: services" "" \
    "dn: ou=groups,$suffix" "objectClass: organizationalUnit" "ou: groups" "" >"$entries"
while read -r kind name password uid groups; do
    hash="$(slappasswd -h '{SSHA}' -s "$password")"
    case "$kind" in
        user)
            dn="uid=$name,ou=people,$suffix"
            printf '%s\n' \
                "dn: $dn" "objectClass: inetOrgPerson" "objectClass: posixAccount" \
                "uid: $name" "cn: ${name^}" "sn: ${name^}" "mail: $name@lab.test" \
                "uidNumber: $uid" "gidNumber: 2100" "homeDirectory: /home/$name" \
                "loginShell: /bin/bash" "userPassword: $hash" "" >>"$entries"
            if [ "$groups" != "-" ]; then
                for group in ${groups//,/ }; do
                    members[$group]+="member: $dn"$'\n'
                done
            fi
            ;;
        service)
            printf '%s\n' \
                "dn: cn=$name,ou=services,$suffix" "objectClass: organizationalRole" \
                "objectClass: simpleSecurityObject" "cn: $name" \
                "description: service account of the lab hub's user search (TEST ONLY)" \
                "userPassword: $hash" "" >>"$entries"
            ;;
    esac
done < <(peer_accounts slapd)
for group in "${!members[@]}"; do
    printf 'dn: cn=%s,ou=groups,%s\nobjectClass: groupOfNames\ncn: %s\n%s\n' \
        "$group" "$suffix" "$group" "${members[$group]}" >>"$entries"
done
ldapadd -x -H ldapi:/// -D "cn=admin,$suffix" -y <(printf '%s' "$admin_password") -f "$entries" >/dev/null

kill "$(cat /run/slapd/slapd.pid)"
deadline=$((SECONDS + 30))
while [ -e /run/slapd/slapd.pid ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        printf 'seed: the temporary slapd did not stop within 30 s\n' >&2
        exit 1
    fi
    sleep 0.2
done
printf 'seed: directory %s seeded\n' "$suffix" >&2
