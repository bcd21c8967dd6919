"""The PySpark kernel's launcher and the warning it shows when the hub gave the server no Spark
port pair (images/notebook-pyspark), run here against a stub interpreter and a stub IPython;
tests/integration/test_images.py runs them in the built image."""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

FOLDER = Path(__file__).resolve().parents[2] / "images" / "notebook-pyspark"
LAUNCHER = FOLDER / "juvini-pyspark-kernel"
STARTUP = FOLDER / "juvini-spark-warning.py"
STARTUP_IN_IMAGE = "/usr/local/share/juvini/juvini-spark-warning.py"
WARNING = "All 11 Spark port pairs of this lab are in use, so this server runs Spark in local mode only."


def launch(tmp_path: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    """The launcher as the kernelspec runs it, with a python that prints what it was given."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    stub = venv / "bin" / "python"
    stub.write_text('#!/bin/sh\nprintf "arg:%s\\n" "$@"\nprintf "submit:%s\\n" "$PYSPARK_SUBMIT_ARGS"\n')
    stub.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "JUVINI_VENV": str(venv)} | environment
    return subprocess.run(
        ["sh", str(LAUNCHER), "-f", "/tmp/kernel.json"], env=env, capture_output=True, text=True, check=False
    )


def test_without_a_warning_the_kernel_starts_as_before(tmp_path: Path) -> None:
    result = launch(tmp_path, SPARK_DRIVER_PORT="12000", SPARK_BLOCKMANAGER_PORT="11100")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines()[:3] == ["arg:-m", "arg:ipykernel_launcher", "arg:-f"]
    assert "--conf spark.driver.port=12000" in result.stdout


def test_the_warning_goes_to_the_kernels_stderr_and_to_the_notebook(tmp_path: Path) -> None:
    result = launch(tmp_path, JUVINI_SPARK_WARNING=WARNING)
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"juvini-pyspark-kernel: {WARNING}\n"
    args = [line.removeprefix("arg:") for line in result.stdout.splitlines() if line.startswith("arg:")]
    assert args == [
        "-m",
        "ipykernel_launcher",
        f"--IPKernelApp.exec_files={STARTUP_IN_IMAGE}",
        "-f",
        "/tmp/kernel.json",
    ]
    # No pair: local Spark on loopback, no driver port.
    assert "spark.driver.port" not in result.stdout


def test_the_image_installs_the_startup_file_where_the_launcher_looks() -> None:
    assert f"juvini-spark-warning.py {STARTUP_IN_IMAGE}" in (FOLDER / "Dockerfile").read_text()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_launcher_passes_shellcheck() -> None:
    result = subprocess.run(["shellcheck", "-s", "sh", str(LAUNCHER)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


class FakeEvents:
    """IPython's EventManager: callbacks by event, triggered from a copy of the list."""

    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callable[..., None]]] = {"pre_run_cell": []}

    def register(self, event: str, function: Callable[..., None]) -> None:
        self.callbacks[event].append(function)

    def unregister(self, event: str, function: Callable[..., None]) -> None:
        self.callbacks[event].remove(function)

    def trigger(self, event: str, *args: Any) -> None:
        for function in self.callbacks[event][:]:
            function(*args)


def run_startup(monkeypatch: pytest.MonkeyPatch, warning: str | None) -> tuple[FakeEvents, dict[str, Any]]:
    """The startup file as IPython's exec_files runs it: in the user's namespace."""
    shell = types.SimpleNamespace(events=FakeEvents())
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    if warning is None:
        monkeypatch.delenv("JUVINI_SPARK_WARNING", raising=False)
    else:
        monkeypatch.setenv("JUVINI_SPARK_WARNING", warning)
    user_namespace = runpy.run_path(str(STARTUP), run_name="__main__")
    return shell.events, user_namespace


def test_the_warning_shows_above_the_first_cell_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    events, user_namespace = run_startup(monkeypatch, WARNING)
    assert not [name for name in user_namespace if not name.startswith("__")], "names left to the user"
    assert capsys.readouterr().err == "", "nothing at kernel start: it would show nowhere"
    events.trigger("pre_run_cell", object())
    assert capsys.readouterr().err == f"Juvini: {WARNING}\n"
    events.trigger("pre_run_cell", object())
    assert capsys.readouterr().err == ""


def test_without_the_variable_the_startup_file_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    events, _ = run_startup(monkeypatch, None)
    assert events.callbacks["pre_run_cell"] == []
