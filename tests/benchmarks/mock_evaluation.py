"""Prints how long evaluating the dev stack under Pulumi's mocks takes (asserts nothing).

./venv/bin/python tests/benchmarks/mock_evaluation.py [runs]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.pulumi_mocks import run_program  # noqa: E402
from tests.unit.test_program import stack_config  # noqa: E402


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    with tempfile.TemporaryDirectory() as folder:
        key = Path(folder) / "id_ed25519"
        key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nbench\n-----END OPENSSH PRIVATE KEY-----\n")
        config = stack_config("dev")
        config["host"] = config["host"] | {"sshPrivateKeyFile": str(key)}
        timings = []
        resources = 0
        for _ in range(runs):
            started = time.perf_counter()
            run = run_program(config, stack="dev")
            timings.append(time.perf_counter() - started)
            resources = len(run.registrations)
    print(f"dev stack under mocks: {resources} resources, {runs} runs")
    print(f"  first  {timings[0] * 1000:8.1f} ms (imports warm after it)")
    print(f"  median {statistics.median(timings) * 1000:8.1f} ms")
    print(f"  max    {max(timings) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
