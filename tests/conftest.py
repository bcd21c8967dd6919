"""Shared test setup: the hub image's own Python package is importable in every tier."""

from __future__ import annotations

import sys
from pathlib import Path

# images/hub/juvini_hub is installed into the hub image; tests import it from the source tree.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "images" / "hub"))
