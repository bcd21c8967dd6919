#!/usr/bin/env bash
# Build a local Debian bookworm base image with debootstrap and `docker import`.
#
# Why: no container registry is reachable from the lab's build hosts, so the
# images cannot start FROM debian:bookworm-slim; this makes an equivalent
# minimal image from Debian's package mirror, which is reachable.
#
# Usage: make-base-image.sh [TAG]        (default TAG: juvini-base:bookworm)
#
# Cached by tag: when TAG already exists locally nothing is done. Remove the
# image (docker rmi TAG) to rebuild it, e.g. to pick up security updates.
#
# Environment (optional):
#   DOCKER          docker client (default /usr/bin/docker)
#   DEBIAN_MIRROR   mirror for debootstrap and the image's apt sources
#                   (default: the Debian archive this host's apt uses; plain
#                   http because the image has no CA certificates yet)
#   DEBIAN_SECURITY_MIRROR  (default: the host's debian-security source)
set -euo pipefail

TAG="${1:-juvini-base:bookworm}"
DOCKER="${DOCKER:-/usr/bin/docker}"
SUITE=bookworm

# The archive URIs this host's apt is configured with (deb822 .sources and
# one-line sources.list), one per line: the images use the same mirror.
host_apt_uris() {
    {
        sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null
        sed -n 's/^deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]*\).*/\2/p' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
    } | tr ' ' '\n' | grep -E '^https?://' || true
}
# The first matching URI; awk reads to the end (head would close the pipe early: SIGPIPE, and
# with pipefail an exit of 141 now and then) and finds none without failing.
first_uri() {
    awk -v pattern="$1" '$0 ~ pattern && !found { print; found = 1 }'
}
if [ -z "${DEBIAN_MIRROR:-}" ]; then
    DEBIAN_MIRROR="$(host_apt_uris | first_uri '/debian/?$')"
fi
if [ -z "${DEBIAN_SECURITY_MIRROR:-}" ]; then
    DEBIAN_SECURITY_MIRROR="$(host_apt_uris | first_uri '/debian-security/?$')"
fi

log() {
    printf 'make-base-image: %s\n' "$*" >&2
}

die() {
    log "ERROR: $*"
    exit 1
}

if "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
    log "image $TAG already exists; nothing to do"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
[ -n "$DEBIAN_MIRROR" ] || die "no Debian archive in this host's apt sources: set DEBIAN_MIRROR"
[ -n "$DEBIAN_SECURITY_MIRROR" ] || die "no debian-security source in this host's apt sources: set DEBIAN_SECURITY_MIRROR"

if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
fi

ROOTFS="$(mktemp -d /var/tmp/juvini-rootfs.XXXXXX)"
cleanup() {
    rm -rf --one-file-system "$ROOTFS"
}
trap cleanup EXIT

log "debootstrap --variant=minbase $SUITE into $ROOTFS (takes a minute)"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$DEBIAN_MIRROR" >&2

# apt sources for containers: the release plus its updates and security
# suites, so `apt-get install` in Dockerfiles gets current packages.
cat >"$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR $SUITE main
deb $DEBIAN_MIRROR $SUITE-updates main
deb $DEBIAN_SECURITY_MIRROR $SUITE-security main
SOURCES

# Same small-image habits as Debian's official docker images: no recommends,
# no docs/manpages/locales beyond what packages need, no cached .debs.
cat >"$ROOTFS/etc/apt/apt.conf.d/90juvini-container" <<'APTCONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APTCONF
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/90juvini-nodoc" <<'DPKGCFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
DPKGCFG

# Keep the image small: nothing downloaded or cached by debootstrap.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/log/*.log \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*
# Each container gets its own hostname and resolv.conf from docker.
: >"$ROOTFS/etc/hostname"
: >"$ROOTFS/etc/resolv.conf"

log "importing $ROOTFS as $TAG"
tar --numeric-owner -C "$ROOTFS" -c . \
    | "$DOCKER" import \
        --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "LABEL org.opencontainers.image.title=juvini-base org.opencontainers.image.description=\"Debian $SUITE minbase made by make-base-image.sh\"" \
        - "$TAG" >/dev/null

log "checking that apt works inside $TAG"
if ! "$DOCKER" run --rm "$TAG" apt-get -q update >/dev/null; then
    # Do not leave a broken image behind: the tag cache would keep it forever.
    "$DOCKER" rmi "$TAG" >/dev/null 2>&1 || true
    die "apt-get update failed inside $TAG; image removed"
fi
log "done: $TAG"
