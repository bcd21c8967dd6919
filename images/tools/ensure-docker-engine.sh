#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine, installing and starting
# Debian's docker.io when it does not.
#
# Idempotent: when `docker info` already works this script does nothing, so it
# is safe to run before every image build or integration test run.
#
# Environment (all optional):
#   DOCKER                  docker client to use (default /usr/bin/docker: the
#                           Debian client, whose BuildKit builds work here)
#   DOCKERD_LOG             where a dockerd started by us logs
#                           (default /var/log/juvini-dockerd.log)
#   CONTAINERD_LOG          where a containerd started by us logs
#                           (default /var/log/juvini-containerd.log)
#   DOCKER_WAIT_SECONDS     how long to wait for the daemon (default 60)
set -euo pipefail

DOCKER="${DOCKER:-/usr/bin/docker}"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/juvini-dockerd.log}"
DOCKER_WAIT_SECONDS="${DOCKER_WAIT_SECONDS:-60}"

log() {
    printf 'ensure-docker-engine: %s\n' "$*" >&2
}

die() {
    log "ERROR: $*"
    exit 1
}

DOCKERD_PIDFILE=/var/run/docker.pid

# True when the pid file names a live process: a daemon that is still starting
# (or hung) must not get a second dockerd beside it.
dockerd_running() {
    [ -f "$DOCKERD_PIDFILE" ] && kill -0 "$(cat "$DOCKERD_PIDFILE")" 2>/dev/null
}

engine_answers() {
    [ -x "$DOCKER" ] && "$DOCKER" info >/dev/null 2>&1
}

as_root() {
    # Installing packages and starting dockerd need root; use sudo only when
    # we are not root already (containers and CI usually run as root).
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

install_docker_io() {
    command -v apt-get >/dev/null 2>&1 \
        || die "no $DOCKER and no apt-get: install a Docker engine by hand"
    log "installing Debian docker.io"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends docker.io
}

CONTAINERD_SOCKET=/run/containerd/containerd.sock
CONTAINERD_LOG="${CONTAINERD_LOG:-/var/log/juvini-containerd.log}"

containerd_answers() {
    [ -S "$CONTAINERD_SOCKET" ] && as_root ctr --address "$CONTAINERD_SOCKET" version >/dev/null 2>&1
}

# containerd runs on its own, as Debian's containerd.service does, and dockerd talks to it: then
# restarting dockerd (an upgrade, a crash) leaves containerd and the containers' shims alone, which
# is what live-restore needs. A dockerd left to start its own containerd takes it down when it stops.
start_containerd() {
    local containerd deadline
    containerd="$(command -v containerd || true)"
    [ -n "$containerd" ] || containerd=/usr/bin/containerd
    [ -x "$containerd" ] || die "containerd not found (Debian's docker.io depends on the containerd package)"
    log "starting $containerd in the background (log: $CONTAINERD_LOG)"
    # shellcheck disable=SC2016
    as_root sh -c 'setsid nohup "$1" >>"$2" 2>&1 </dev/null &' sh "$containerd" "$CONTAINERD_LOG"
    deadline=$(( $(date +%s) + DOCKER_WAIT_SECONDS ))
    until containerd_answers; do
        [ "$(date +%s)" -lt "$deadline" ] || die "containerd did not answer on $CONTAINERD_SOCKET within ${DOCKER_WAIT_SECONDS}s"
        sleep 0.5
    done
}

start_dockerd() {
    local dockerd
    dockerd="$(command -v dockerd || true)"
    [ -n "$dockerd" ] || dockerd=/usr/sbin/dockerd
    [ -x "$dockerd" ] || die "dockerd not found after installing docker.io"
    containerd_answers || start_containerd
    # A stale pid file from a daemon that died makes a new dockerd refuse to
    # start; dockerd_running() said its process is gone, so it can go.
    as_root rm -f "$DOCKERD_PIDFILE"
    log "starting $dockerd in the background (log: $DOCKERD_LOG)"
    # setsid + nohup: the daemon must outlive this script and its session.
    # The single quotes are deliberate: $1/$2/$3 expand in the inner sh.
    # shellcheck disable=SC2016
    STARTED_PID="$(as_root sh -c 'setsid nohup "$1" --containerd="$3" >>"$2" 2>&1 </dev/null & echo $!' \
        sh "$dockerd" "$DOCKERD_LOG" "$CONTAINERD_SOCKET")"
}

# Pid of the dockerd this script started, if any: when it dies there is no
# point waiting out the deadline.
STARTED_PID=""

show_log_tail() {
    log "last lines of $DOCKERD_LOG:"
    tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
}

# The daemon may still be starting (e.g. started by systemd a moment ago), so
# the wait loop below covers both "we started it" and "someone else did".
wait_for_engine() {
    local deadline
    deadline=$(( $(date +%s) + DOCKER_WAIT_SECONDS ))
    while ! engine_answers; do
        # /proc, not kill -0: a non-root caller may not signal root's dockerd.
        if [ -n "$STARTED_PID" ] && [ ! -d "/proc/$STARTED_PID" ]; then
            show_log_tail
            die "dockerd (pid $STARTED_PID) exited before answering"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            show_log_tail
            die "docker engine did not answer '$DOCKER info' within ${DOCKER_WAIT_SECONDS}s"
        fi
        sleep 1
    done
}

main() {
    if engine_answers; then
        log "docker engine already answers; nothing to do"
        return 0
    fi
    if [ ! -x "$DOCKER" ]; then
        install_docker_io
        [ -x "$DOCKER" ] || die "$DOCKER still missing after installing docker.io"
        # The package's postinst may have started the daemon (systemd hosts).
        if engine_answers; then
            log "docker engine answers after install"
            return 0
        fi
    fi
    if ! dockerd_running; then
        start_dockerd
    else
        log "a dockerd process exists but does not answer yet; waiting for it"
    fi
    wait_for_engine
    log "docker engine answers"
}

main "$@"
