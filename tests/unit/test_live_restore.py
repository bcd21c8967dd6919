"""The engine live-restore host scripts, run for real against a stub engine (docker info, SIGHUP)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.rendering import render

pytestmark = pytest.mark.unit

#: `docker info --format ...` answers from the stub engine's state files.
STUB_DOCKER = """#!/bin/sh
state="$STUB_STATE"
echo "docker $*" >> "$state/calls"
case "$*" in
    *LiveRestoreEnabled*) cat "$state/live-restore" ;;
    *Swarm.LocalNodeState*) cat "$state/swarm" ;;
    *) echo "docker $* is not stubbed" >&2; exit 127 ;;
esac
"""
#: `pkill -HUP -x dockerd`: the stub engine reloads its configuration file as dockerd does: only
#: the keys the file sets change anything (a missing key, or file, leaves live-restore as it is).
STUB_PKILL = f"""#!/bin/sh
state="$STUB_STATE"
echo "pkill $*" >> "$state/calls"
[ "$*" = "-HUP -x dockerd" ] || {{ echo "pkill $* is not stubbed" >&2; exit 127; }}
{sys.executable} -c '
import json, os, sys
path = sys.argv[1]
settings = json.load(open(path)) if os.path.exists(path) else {{}}
if "live-restore" in settings:
    open(sys.argv[2], "w").write("true" if settings["live-restore"] else "false")
' "$STUB_CONFIG" "$state/live-restore"
"""

#: `pgrep -x -o dockerd`, asked when the engine's pid file is missing: no dockerd process to look at.
STUB_PGREP = """#!/bin/sh
exit 1
"""


class Engine:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.bin = root / "bin"
        self.config = root / "etc/docker/daemon.json"
        self.markers = root / "etc/docker/juvini-live-restore"
        for folder in (self.state, self.bin):
            folder.mkdir(parents=True)
        for name, body in (("docker", STUB_DOCKER), ("pkill", STUB_PKILL), ("pgrep", STUB_PGREP)):
            (self.bin / name).write_text(body)
            (self.bin / name).chmod(0o755)
        self.set(live_restore=False, swarm="inactive")

    def set(self, *, live_restore: bool | None = None, swarm: str | None = None) -> None:
        if live_restore is not None:
            (self.state / "live-restore").write_text("true" if live_restore else "false")
        if swarm is not None:
            (self.state / "swarm").write_text(swarm)

    @contextlib.contextmanager
    def started_with(self, *flags: str) -> Iterator[None]:
        """A process standing in for dockerd, started with ``flags`` on its command line (its pid in
        the engine's pid file)."""
        dockerd = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *flags])
        (self.state / "dockerd-pid").write_text(str(dockerd.pid))
        try:
            yield
        finally:
            dockerd.kill()
            dockerd.wait()
            (self.state / "dockerd-pid").unlink()

    @property
    def live_restore(self) -> bool:
        return (self.state / "live-restore").read_text() == "true"

    @property
    def reloads(self) -> int:
        calls = self.state / "calls"
        return calls.read_text().count("pkill -HUP") if calls.exists() else 0

    def run(self, stack: str, action: str) -> subprocess.CompletedProcess[str]:
        template = "host-live-restore.sh.j2" if action == "create" else "host-live-restore-delete.sh.j2"
        script = render(
            template,
            daemon_json=str(self.config),
            marker_dir=str(self.markers),
            engine_pidfile=str(self.state / "dockerd-pid"),
            stack=stack,
        )
        env = os.environ | {
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "STUB_STATE": str(self.state),
            "STUB_CONFIG": str(self.config),
        }
        return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, check=False)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(tmp_path)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_turns_it_on_with_a_reload_and_back_off_on_destroy(engine: Engine) -> None:
    assert "turned on" in ok(engine.run("juvini-dev", "create"))
    assert engine.live_restore and engine.reloads == 1
    assert json.loads(engine.config.read_text()) == {"live-restore": True}
    assert "already on" in ok(engine.run("juvini-dev", "create"))
    assert engine.reloads == 1, "a second run must not reload the engine"
    assert "turned off" in ok(engine.run("juvini-dev", "delete"))
    assert not engine.live_restore and not engine.config.exists() and not engine.markers.exists()


def test_keeps_the_operators_other_settings(engine: Engine) -> None:
    engine.config.parent.mkdir(parents=True)
    engine.config.write_text(json.dumps({"log-driver": "journald", "default-ulimits": {}}))
    ok(engine.run("juvini-dev", "create"))
    assert json.loads(engine.config.read_text()) == {
        "log-driver": "journald",
        "default-ulimits": {},
        "live-restore": True,
    }
    ok(engine.run("juvini-dev", "delete"))
    assert json.loads(engine.config.read_text()) == {"log-driver": "journald", "default-ulimits": {}}


def test_two_stacks_one_engine(engine: Engine) -> None:
    ok(engine.run("juvini-dev", "create"))
    ok(engine.run("juvini-prod", "create"))
    assert "kept on" in ok(engine.run("juvini-dev", "delete")) and engine.live_restore
    assert "turned off" in ok(engine.run("juvini-prod", "delete")) and not engine.live_restore


def test_an_engine_that_had_it_on_keeps_it(engine: Engine) -> None:
    engine.config.parent.mkdir(parents=True)
    engine.config.write_text(json.dumps({"live-restore": True}))
    engine.set(live_restore=True)
    assert "already on" in ok(engine.run("juvini-dev", "create"))
    ok(engine.run("juvini-dev", "delete"))
    assert engine.live_restore and json.loads(engine.config.read_text()) == {"live-restore": True}
    assert engine.reloads == 0


def test_a_swarm_node_is_refused_with_the_key_to_change(engine: Engine) -> None:
    engine.set(swarm="active")
    result = engine.run("juvini-dev", "create")
    assert result.returncode != 0 and "security.liveRestore: false" in result.stderr
    assert not engine.config.exists() and engine.reloads == 0


def test_delete_without_create_succeeds(engine: Engine) -> None:
    ok(engine.run("juvini-dev", "delete"))
    assert engine.reloads == 0


def test_on_only_until_the_next_restart_is_made_lasting(engine: Engine) -> None:
    """The running engine says on, but its file does not (a reload that found no key leaves the
    engine as it was): the next restart would turn it off, so the key is written."""
    engine.set(live_restore=True)
    assert "turned on" in ok(engine.run("juvini-dev", "create"))
    assert json.loads(engine.config.read_text()) == {"live-restore": True}
    assert (engine.markers / ".turned-on-by-juvini").exists()


def test_on_through_the_engines_command_line_is_left_alone(engine: Engine) -> None:
    engine.set(live_restore=True)
    with engine.started_with("--live-restore"):
        assert "already on" in ok(engine.run("juvini-dev", "create"))
    assert not engine.config.exists() and engine.reloads == 0


def test_off_through_the_engines_command_line_is_refused_saying_where(engine: Engine) -> None:
    """Docker refuses to start when a key is both a flag and in daemon.json: never write it then."""
    with engine.started_with("--live-restore=false"):
        result = engine.run("juvini-dev", "create")
    assert result.returncode != 0, result.stdout
    assert "command line says --live-restore=false" in result.stderr and "security.liveRestore: false" in result.stderr
    assert not engine.config.exists() and engine.reloads == 0
