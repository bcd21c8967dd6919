"""The engine's live-restore turned on and off by the host setup, on this machine's real engine."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest

from infra.host import DAEMON_JSON, LIVE_RESTORE_MARKERS, Host
from infra.naming import Naming
from infra.settings import load_settings
from tests.support.engine import live_restore
from tests.support.local_stack import local_host
from tests.support.provider_double import apply

pytestmark = pytest.mark.integration

CONFIG = {"host": local_host()}


def declare() -> None:
    settings = load_settings()
    Host("lr-host", settings).engine_live_restore(Naming(pulumi.get_project(), pulumi.get_stack()))


@pytest.fixture
def engine_as_found() -> Iterator[dict[str, Any]]:
    """The engine's configuration before the test, put back after it (and the engine reloaded)."""
    path = Path(DAEMON_JSON)
    before = path.read_bytes() if path.exists() else None
    yield {"live_restore": live_restore(), "config": before}
    if before is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(before)
    subprocess.run(["pkill", "-HUP", "-x", "dockerd"], check=False)


def test_turned_on_by_a_reload_and_off_again_on_destroy(engine_as_found: dict[str, Any]) -> None:
    if engine_as_found["live_restore"] and not Path(LIVE_RESTORE_MARKERS).is_dir():
        pytest.skip("this engine has live-restore on already, set by its operator: nothing to turn on")
    dockerd_before = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout.strip()
    deployment = apply(declare, CONFIG, "it-live-restore")
    try:
        assert live_restore(), "the host setup did not turn live-restore on"
        assert json.loads(Path(DAEMON_JSON).read_text())["live-restore"] is True
        dockerd_after = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout.strip()
        assert dockerd_after == dockerd_before, "the engine was restarted, not reloaded"
    finally:
        assert not deployment.destroy()
    others = [p.name for p in Path(LIVE_RESTORE_MARKERS).glob("*")] if Path(LIVE_RESTORE_MARKERS).is_dir() else []
    assert live_restore() is bool(others), f"after destroy (other stacks relying on it: {others})"
