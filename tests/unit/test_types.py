"""The type checker, in the unit tier: mypy over the project folder, as `pulumi up` and
`pulumi preview` run it before the program (Pulumi.yaml: runtime.options.typechecker)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_the_project_type_checks() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "."], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_pulumi_runs_the_same_type_checker_from_the_programs_own_requirements() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))
    assert project["runtime"]["options"]["typechecker"] == "mypy"
    # Pulumi installs requirements.txt into the program's virtualenv and runs mypy from there.
    pins = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert re.search(r"^mypy==[0-9.]+$", pins, re.MULTILINE), "requirements.txt must pin mypy"
