#!/usr/bin/env bash
# Resolve an image's requirements.in into its frozen requirements.txt.
#
# The resolution runs inside a throwaway container made from the same Debian
# base as the images, so the pins fit the images' Python (Debian bookworm's
# python3, 3.11) and platform, not the host's.
#
# Usage: freeze-requirements.sh IMAGE_DIR [PARENT_REQUIREMENTS_TXT]
#   IMAGE_DIR                 e.g. images/hub; needs IMAGE_DIR/requirements.in
#   PARENT_REQUIREMENTS_TXT   for stacked images (notebook-datascience on
#                             notebook-base, ...): the parent's frozen file.
#                             It is installed first and kept as a constraint,
#                             so the child's freeze never moves a parent pin;
#                             the result is the image venv's whole package set.
#
# Leaving a package out: a line "# leave-out: NAME" in requirements.in (or in
# the parent's requirements.txt) has NAME uninstalled after the resolution,
# before `pip check` and the freeze, for a package that only an optional extra
# of a dependency pulls in and that the image must not have (see
# images/README.md, "Pins"). The frozen file records each as "# leave-out:
# NAME", so the images built on it leave it out too. Should anything in the set
# really need NAME, `pip check` fails the freeze.
#
# Environment (optional):
#   BASE_IMAGE       image to resolve in (default juvini-base:bookworm, made
#                    by make-base-image.sh)
#   EXTRA_CA_CERTS   PEM of extra CAs for a TLS-inspecting proxy (default: the
#                    host's /usr/local/share/ca-certificates/*.crt, if any)
#   PIP_ONLY_BINARY  passed to pip, e.g. ":all:" to resolve wheels only
#   DOCKER           docker client (default /usr/bin/docker)
#
# Then rebuild the images; the Dockerfiles install requirements.txt with
# --no-deps and run `pip check`, so an inconsistent freeze fails the build.
set -euo pipefail

DOCKER="${DOCKER:-/usr/bin/docker}"
BASE_IMAGE="${BASE_IMAGE:-juvini-base:bookworm}"

die() {
    printf 'freeze-requirements: ERROR: %s\n' "$*" >&2
    exit 1
}

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    die "usage: $0 IMAGE_DIR [PARENT_REQUIREMENTS_TXT]"
fi
image_dir="$(cd "$1" && pwd)" || die "no such directory: $1"
[ -f "$image_dir/requirements.in" ] || die "$image_dir/requirements.in is missing"
parent_req=/dev/null
if [ $# -eq 2 ]; then
    parent_req="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
    [ -f "$parent_req" ] || die "no such file: $2"
fi

if [ -z "${EXTRA_CA_CERTS+set}" ]; then
    EXTRA_CA_CERTS=""
    for crt in /usr/local/share/ca-certificates/*.crt; do
        [ -f "$crt" ] && EXTRA_CA_CERTS="$EXTRA_CA_CERTS$(cat "$crt")"$'\n'
    done
fi

# "# leave-out: NAME" lines of requirements.in and of the parent's frozen file.
leave_out="$(
    { grep -hE '^#[[:space:]]*leave-out:' "$image_dir/requirements.in" "$parent_req" || true; } |
        sed -E 's/^#[[:space:]]*leave-out:[[:space:]]*([A-Za-z0-9._-]+).*$/\1/' | LC_ALL=C sort -fu | tr '\n' ' '
)"
leave_out="${leave_out% }"

tmp_out="$(mktemp)"
trap 'rm -f "$tmp_out"' EXIT

# The script run in the container; its stdout is the frozen list.
# shellcheck disable=SC2016  # expanded by the container's shell, not here
resolver='
set -eu
export DEBIAN_FRONTEND=noninteractive
{
    apt-get update -q
    apt-get install -y -q --no-install-recommends ca-certificates python3 python3-venv
    if [ -n "$EXTRA_CA_CERTS" ]; then
        printf "%s\n" "$EXTRA_CA_CERTS" >/usr/local/share/ca-certificates/juvini-extra-ca.crt
        update-ca-certificates
    fi
    python3 --version
    python3 -m venv --system-site-packages /tmp/venv
    export PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1
    /tmp/venv/bin/python -m pip install -q --no-cache-dir -r /in/parent.txt
    /tmp/venv/bin/python -m pip install -q --no-cache-dir -c /in/parent.txt -r /in/requirements.in
    if [ -n "$LEAVE_OUT" ]; then
        # shellcheck disable=SC2086  # a list of names
        /tmp/venv/bin/python -m pip uninstall -y $LEAVE_OUT
    fi
    /tmp/venv/bin/python -m pip check
} >&2
/tmp/venv/bin/python -m pip freeze --all --local
'

printf 'freeze-requirements: resolving %s in %s (takes a while)\n' "$image_dir/requirements.in" "$BASE_IMAGE" >&2
env_args=(-e EXTRA_CA_CERTS="$EXTRA_CA_CERTS" -e LEAVE_OUT="$leave_out")
# Only when set: an empty PIP_ONLY_BINARY is not the same as none to pip.
[ -z "${PIP_ONLY_BINARY:-}" ] || env_args+=(-e PIP_ONLY_BINARY="$PIP_ONLY_BINARY")
"$DOCKER" run --rm "${env_args[@]}" \
    -v "$image_dir/requirements.in:/in/requirements.in:ro" \
    -v "$parent_req:/in/parent.txt:ro" \
    "$BASE_IMAGE" sh -c "$resolver" >"$tmp_out"

{
    printf '# Frozen by images/tools/freeze-requirements.sh from requirements.in%s.\n' \
        "$( [ "$parent_req" = /dev/null ] || printf ' + %s' "$(basename "$(dirname "$parent_req")")/requirements.txt")"
    printf '# Do not edit by hand: edit requirements.in and run the script again.\n'
    printf '# Resolved for Debian bookworm python3 (linux/%s).\n' "$(uname -m)"
    for name in $leave_out; do
        printf '# leave-out: %s\n' "$name"
    done
    # pip, setuptools and wheel are pinned here too (pip freeze --all).
    LC_ALL=C sort -f "$tmp_out"
} >"$image_dir/requirements.txt"
printf 'freeze-requirements: wrote %s (%s packages)\n' "$image_dir/requirements.txt" "$(wc -l <"$tmp_out")" >&2
