"""This machine's Docker engine restarted as an upgrade or a crash would: dockerd stopped with
SIGTERM and started again by images/tools/ensure-docker-engine.sh."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.lab_client import wait_for

ENSURE_ENGINE = Path(__file__).resolve().parents[2] / "images" / "tools" / "ensure-docker-engine.sh"
DOCKERD_PID_FILE = Path("/var/run/docker.pid")


def live_restore() -> bool:
    """Whether this machine's engine has live-restore on (as ``docker info`` says)."""
    answer = subprocess.run(
        ["/usr/bin/docker", "info", "--format", "{{.LiveRestoreEnabled}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return answer.stdout.strip() == "true"


def engine_restart_unsafe() -> str | None:
    """Why restarting dockerd would stop containers here (other helpers' too), or None when it is safe:
    containerd must run on its own (as Debian's containerd.service does, and as ensure-docker-engine.sh
    starts it) and live-restore must be on."""
    pid = DOCKERD_PID_FILE.read_text().strip()
    children = subprocess.run(["pgrep", "-P", pid, "-x", "containerd"], capture_output=True, text=True, check=False)
    if children.stdout.strip():
        return "this machine's dockerd runs its own containerd: restarting dockerd stops every container"
    if not live_restore():
        return "the engine's live-restore is off: restarting dockerd stops every container"
    return None


def restart_engine() -> None:
    """Stop dockerd (SIGTERM) and start it again; returns once it answers."""
    pid = DOCKERD_PID_FILE.read_text().strip()
    subprocess.run(["kill", "-TERM", pid], check=True)
    wait_for("dockerd to exit", lambda: not Path(f"/proc/{pid}").exists(), timeout=120, interval=0.5)
    # close_fds (the default): the new dockerd must not inherit this process's descriptors (the Docker lock).
    started = subprocess.run([str(ENSURE_ENGINE)], capture_output=True, text=True, timeout=300, check=False)
    assert started.returncode == 0, started.stdout + started.stderr
