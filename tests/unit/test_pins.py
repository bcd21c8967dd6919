"""The tests load the hub's config with the same JupyterHub packages the hub image runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SHARED = (
    "jupyterhub",
    "dockerspawner",
    "jupyterhub-ldapauthenticator",
    "jupyterhub-nativeauthenticator",
    "oauthenticator",
    "jupyterhub-idle-culler",
    "docker",
)


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line)
        if match:
            found[match[1].lower()] = match[2]
    return found


def test_dev_requirements_pin_the_hub_images_versions() -> None:
    image = pins(ROOT / "images" / "hub" / "requirements.txt")
    dev = pins(ROOT / "requirements-dev.txt")
    mismatched = {name: (dev.get(name), image.get(name)) for name in SHARED if dev.get(name) != image.get(name)}
    assert not mismatched, f"requirements-dev.txt vs images/hub/requirements.txt: {mismatched}"


def test_singleuser_jupyterhub_matches_the_hub() -> None:
    hub = pins(ROOT / "images" / "hub" / "requirements.txt")["jupyterhub"]
    notebook = pins(ROOT / "images" / "notebook-base" / "requirements.txt")["jupyterhub"]
    assert hub == notebook
