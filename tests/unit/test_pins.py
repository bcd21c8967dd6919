"""The tests load the hub's config with the same JupyterHub packages the hub image runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.anaconda import anaconda_names, expected_in_datascience, not_installed
from tests.support.images import pinned_versions

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


#: Each stacked notebook image and the image it is built FROM (None: the foundation).
NOTEBOOK_STACK = (
    ("notebook-base", None),
    ("notebook-datascience", "notebook-base"),
    ("notebook-pyspark", "notebook-datascience"),
)
_LEAVE_OUT = re.compile(r"^#\s*leave-out:\s*([A-Za-z0-9._-]+)", re.MULTILINE)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def left_out(path: Path) -> set[str]:
    """The packages a requirements file's ``# leave-out: NAME`` lines name (freeze-requirements.sh)."""
    return {_canonical(name) for name in _LEAVE_OUT.findall(path.read_text(encoding="utf-8"))}


def test_notebook_base_leaves_out_the_iri_checker() -> None:
    """rfc3987-syntax costs every server start its grammar compilation (images/README.md, "Server start")."""
    assert {"rfc3987-syntax", "lark"} <= left_out(ROOT / "images" / "notebook-base" / "requirements.in")


@pytest.mark.parametrize(("folder", "parent"), NOTEBOOK_STACK, ids=[folder for folder, _ in NOTEBOOK_STACK])
def test_left_out_packages_stay_out_of_the_stacked_freezes(folder: str, parent: str | None) -> None:
    image = ROOT / "images" / folder
    expected = left_out(image / "requirements.in")
    if parent is not None:
        expected |= left_out(ROOT / "images" / parent / "requirements.txt")
    frozen = image / "requirements.txt"
    assert left_out(frozen) == expected, f"{frozen} records {left_out(frozen)}, should record {expected}"
    pinned = {_canonical(name) for name in pins(frozen)} & expected
    assert not pinned, f"{frozen} pins {sorted(pinned)}, which it leaves out"


# --- the Anaconda Distribution's top-level set (notebook-datascience) ---------------------


def test_the_anaconda_list_is_read_whole() -> None:
    names = anaconda_names()
    assert len(names) == len(set(names)) >= 50, names
    assert {"numpy", "scikit-learn", "spyder", "lckr-jupyterlab-variableinspector"} <= set(names)


def test_datascience_freeze_holds_the_anaconda_set() -> None:
    """Every name of the list is pinned in the image's frozen set, but those it says it leaves out."""
    frozen = pinned_versions(ROOT / "images" / "notebook-datascience" / "requirements.txt")
    missing = sorted(expected_in_datascience() - set(frozen))
    assert not missing, f"on the Anaconda list, not in notebook-datascience/requirements.txt: {missing}"


def test_anaconda_exceptions_are_on_the_list_not_installed_and_explained() -> None:
    exceptions = not_installed()
    stray = sorted(set(exceptions) - set(anaconda_names()))
    assert not stray, f"# not-installed names that are not on the Anaconda list: {stray}"
    frozen = pinned_versions(ROOT / "images" / "notebook-datascience" / "requirements.txt")
    installed = sorted(set(exceptions) & set(frozen))
    assert not installed, f"said to be left out, yet frozen: {installed}"
    readme = (ROOT / "images" / "README.md").read_text(encoding="utf-8")
    unexplained = sorted(name for name in exceptions if f"`{name}`" not in readme)
    assert not unexplained, f"images/README.md does not name the Anaconda exceptions {unexplained}"
