"""The Anaconda Distribution's top-level set and what the data-science image makes of it.

The list is ``tests/data/anaconda-toplevel.txt`` (PyPI names, one a line, ``#`` comments);
``images/notebook-datascience/requirements.in`` names each one it does not install on a
``# not-installed: NAME: why`` line (images/README.md, "The Anaconda set", says more).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.images import IMAGES_DIR, REPO_ROOT, canonical_name

ANACONDA_LIST = REPO_ROOT / "tests" / "data" / "anaconda-toplevel.txt"
DATASCIENCE_REQUIREMENTS_IN = IMAGES_DIR / "notebook-datascience" / "requirements.in"

_NOT_INSTALLED = re.compile(r"^#\s*not-installed:\s*([A-Za-z0-9._-]+):\s*(\S.*)$", re.MULTILINE)


def anaconda_names(path: Path = ANACONDA_LIST) -> list[str]:
    """The list's names, canonical (PEP 503), in its order."""
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(canonical_name(name))
    return names


def not_installed(path: Path = DATASCIENCE_REQUIREMENTS_IN) -> dict[str, str]:
    """``{canonical name: why}`` of the list's names the data-science image does not install."""
    return {canonical_name(name): why.strip() for name, why in _NOT_INSTALLED.findall(path.read_text("utf-8"))}


def expected_in_datascience() -> set[str]:
    """The list's names the data-science image must install."""
    return set(anaconda_names()) - set(not_installed())
