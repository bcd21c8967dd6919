"""Tearing the lab down: the last e2e module (pytest runs modules in name order)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import STACK, Lab

pytestmark = pytest.mark.e2e


def test_teardown_removes_containers_and_networks_and_keeps_user_data(lab: Lab) -> None:
    errors = lab.destroy()
    assert not errors, errors
    label = f"org.juvini.stack={STACK}"
    assert lab.docker.containers.list(all=True, filters={"label": label}) == []
    assert lab.docker.networks.list(filters={"label": label}) == []
    assert (lab.path("usersDir") / "alice" / "persist.txt").read_text() == "mine"
    assert (lab.path("sharedDir") / "from-alice.txt").is_file()
    assert not lab.path("tlsDir").exists(), "TLS material belongs to the stack and goes with it"
    assert lab.path("hubStateDir").is_dir()
    assert lab.path("usersDir").is_dir()
