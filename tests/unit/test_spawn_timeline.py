"""The spawn benchmark's figures (tests/support/spawn_timeline.py) and its stack settings, on samples."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.spawn_timeline import (
    PHASES,
    STOP_PHASES,
    CpuSample,
    HubEvents,
    ServerEvents,
    StopEvents,
    container_cpu_seconds,
    cpu_between,
    docker_time,
    hub_events,
    median_phases,
    memory_in_use,
    percentile,
    server_events,
    spawn_phases,
    stop_events,
    stop_phases,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
T0 = docker_time("2026-11-23T15:39:52.000000000Z")

#: Lines of a lab hub's log (Docker's timestamps made into seconds after T0), for users a1 and a11.
HUB_LOG = [
    (-5.0, "[I 2026-11-23 15:39:47.000 JupyterHub provider:661] Creating oauth client jupyterhub-user-a1"),
    (0.10, "[I 2026-11-23 15:39:52.100 JupyterHub provider:661] Updating oauth client jupyterhub-user-a1"),
    (0.12, "[I 2026-11-23 15:39:52.120 JupyterHub provider:661] Creating oauth client jupyterhub-user-a11"),
    (0.20, "[I ... dockerspawner:1040] Container 'juvini-bench-user-a1' is gone"),
    (0.30, "[I ... dockerspawner:1318] Created container juvini-bench-user-a1 (id: 5ae382e) from image x:bench"),
    (0.31, "[I ... dockerspawner:1342] Starting container juvini-bench-user-a1 (id: 5ae382e)"),
    (0.35, "[I ... dockerspawner:1318] Created container juvini-bench-user-a11 (id: 6be382e) from image x:bench"),
    (1.80, "[I ... spawner:298] a1's server answers at http://172.25.0.4:8888/user/a1/api after 1.03 s"),
    (1.81, "[I ... base:1143] User a1 took 1.387 seconds to start"),
    (1.82, "[I ... proxy:331] Adding user a1 to proxy /user/a1/ => http://172.25.0.4:8888"),
    (1.90, "[I ... base:1143] User a1 took 9.999 seconds to start"),
]


def test_percentile_is_nearest_rank_on_sorted_values() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.0)) == (3.0, 5.0, 1.0)
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def test_docker_time_reads_nanoseconds_and_zones() -> None:
    assert docker_time("2026-11-23T15:39:52.123456789Z") == pytest.approx(T0 + 0.123456)
    assert docker_time("2026-11-23T16:39:52+01:00") == T0
    with pytest.raises(ValueError, match="not a Docker time"):
        docker_time("yesterday")


def test_hub_events_take_each_users_first_event_since_the_round_began() -> None:
    lines = [(T0 + offset, text) for offset, text in HUB_LOG]
    events = hub_events(lines, ["a1", "a11"], since=T0)
    assert events["a1"] == HubEvents(
        begins=T0 + 0.10, created=T0 + 0.30, starting=T0 + 0.31, answers=T0 + 1.80, up=T0 + 1.81, proxy=T0 + 1.82
    )
    # a11's container is not taken for a1's (names end in -<username>), and what is missing stays None.
    assert events["a11"] == HubEvents(begins=T0 + 0.12, created=T0 + 0.35)


def test_server_events_from_start_time_and_log() -> None:
    lines = [(T0 + 0.9, "[I ServerApp] first"), (T0 + 1.6, "[I ServerApp] Jupyter Server 2.17.0 is running at:")]
    events = server_events("2026-11-23T15:39:52.500000000Z", lines)
    assert events == ServerEvents(started=T0 + 0.5, first_log=T0 + 0.9, listening=T0 + 1.6)
    assert server_events("0001-01-01T00:00:00Z", []) == ServerEvents(None, None, None)


def test_spawn_phases_cut_request_to_ready_in_order() -> None:
    hub = HubEvents(begins=T0 + 0.1, created=T0 + 0.3, up=T0 + 1.8)
    server = ServerEvents(started=T0 + 0.5, first_log=T0 + 0.9, listening=T0 + 1.6)
    phases = spawn_phases(T0, T0 + 2.0, hub, server)
    assert list(phases) == [name for name, _ in PHASES]
    assert phases == pytest.approx(
        {"api": 0.1, "create": 0.2, "start": 0.2, "process": 0.4, "listen": 0.7, "probe": 0.2, "route": 0.2}
    )
    assert sum(value or 0.0 for value in phases.values()) == pytest.approx(2.0)
    unknown = spawn_phases(T0, T0 + 2.0, HubEvents(begins=T0 + 0.1), server)
    assert unknown["create"] is None and unknown["start"] is None and unknown["process"] == pytest.approx(0.4)


def test_median_phases_skip_unknown_values() -> None:
    rows: list[dict[str, float | None]] = [
        {"api": 1.0, "create": None},
        {"api": 3.0, "create": 2.0},
        {"api": 2.0, "create": None},
    ]
    medians = median_phases(rows)
    assert (medians["api"], medians["create"], medians["route"]) == (2.0, 2.0, None)


def test_stop_events_from_the_hubs_log_and_dockers_events() -> None:
    ids = {"a1": "5ae382ed754a" + "0" * 52, "a11": "6be382ed754a" + "0" * 52}
    containers = {user: (f"juvini-bench-user-{user}", cid) for user, cid in ids.items()}
    hub_log = [
        (T0 + 0.05, "[I ... dockerspawner:1431] Stopping container juvini-bench-user-a1 (id: 5ae382e)"),
        (T0 + 0.40, f"[I ... dockerspawner:1070] Removing container {ids['a1']}"),
    ]
    nano = int(T0 * 1e9)
    events = [
        {"Action": "kill", "id": ids["a1"], "timeNano": nano + 100_000_000},
        {"Action": "kill", "id": ids["a1"], "timeNano": nano + 9_000_000_000},  # a second signal: not the first
        {"Action": "die", "id": ids["a1"], "timeNano": nano + 300_000_000},
        {"Action": "destroy", "id": ids["a1"], "timeNano": nano + 500_000_000},
        {"Action": "start", "id": ids["a11"], "timeNano": nano + 100_000_000},
        {"Action": "die", "id": "someone-else", "timeNano": nano + 100_000_000},
    ]
    found = stop_events(hub_log, events, containers, since=T0)
    assert found["a1"] == pytest.approx(
        StopEvents(stopping=T0 + 0.05, kill=T0 + 0.1, die=T0 + 0.3, removing=T0 + 0.4, destroy=T0 + 0.5)
    )
    assert found["a11"] == StopEvents()
    phases = stop_phases(T0, found["a1"])
    assert list(phases) == [name for name, _ in STOP_PHASES]
    assert phases == pytest.approx({"hub": 0.05, "signal": 0.05, "exit": 0.2, "remove": 0.2})
    assert stop_phases(T0, found["a11"]) == dict.fromkeys(phases)


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ({"total_inactive_file": 30}, 70),  # cgroup v1
        ({"inactive_file": 40}, 60),  # cgroup v2
        ({}, 100),
        ({"inactive_file": 500}, 100),  # never below nothing
    ],
)
def test_memory_in_use_leaves_the_inactive_page_cache_out(detail: dict[str, int], expected: int) -> None:
    assert memory_in_use({"memory_stats": {"usage": 100, "stats": detail}}) == expected


def test_container_cpu_seconds_reads_cgroup_v1_and_v2(tmp_path: Path) -> None:
    v1 = tmp_path / "sys/fs/cgroup/cpuacct/docker/abc/cpuacct.usage"
    v1.parent.mkdir(parents=True)
    v1.write_text("2500000000\n")
    v2 = tmp_path / "sys/fs/cgroup/system.slice/docker-def.scope/cpu.stat"
    v2.parent.mkdir(parents=True)
    v2.write_text("usage_usec 1500000\nuser_usec 1000000\n")
    assert container_cpu_seconds("abc", str(tmp_path)) == 2.5
    assert container_cpu_seconds("def", str(tmp_path)) == 1.5
    assert container_cpu_seconds("none", str(tmp_path)) is None


def test_cpu_between_two_samples() -> None:
    before = CpuSample(10.0, busy_jiffies=100, total_jiffies=1000, engine_seconds=5, client_seconds=1, containers={})
    after = CpuSample(
        20.0, busy_jiffies=1100, total_jiffies=3000, engine_seconds=7, client_seconds=2, containers={"hub": 3.0}
    )
    use = cpu_between(before, after)
    assert (use.wall_seconds, use.busy_fraction, use.engine_seconds, use.client_seconds) == (10.0, 0.5, 2, 1)
    assert use.containers == {}  # only what both samples measured


def test_cpu_sample_reads_this_machine() -> None:
    sample = CpuSample.take(0.0, {})
    assert 0 < sample.busy_jiffies <= sample.total_jiffies and sample.client_seconds > 0


def _benchmark_module() -> Any:
    spec = importlib.util.spec_from_file_location("lab_spawn", ROOT / "tests" / "benchmarks" / "lab_spawn.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("lab_spawn", module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_runs_the_dev_stack_changing_only_what_this_machine_needs(tmp_path: Path) -> None:
    lab_spawn = _benchmark_module()
    dev = {
        key.removeprefix("juvini:"): value
        for key, value in yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"].items()
    }
    config, changes = lab_spawn.dev_stack_config(tmp_path, 18443, server_lifetime=600)
    assert config["paths"]["usersDir"] == str(tmp_path / "users")
    assert (config["hub"]["httpsPort"], config["images"]["tag"]) == (18443, "bench")
    for section in ("spawner", "spark", "auth", "host"):
        assert config.get(section) == dev.get(section), section
    assert {key: value for key, value in config["hub"].items() if key != "httpsPort"} == {
        key: value for key, value in dev["hub"].items() if key != "httpsPort"
    }
    assert not any("idleTimeout" in change for change in changes)


def test_the_benchmark_turns_the_culler_off_only_when_it_could_cull(tmp_path: Path) -> None:
    lab_spawn = _benchmark_module()
    config, changes = lab_spawn.dev_stack_config(tmp_path, 18443, server_lifetime=7200)
    assert config["spawner"]["idleTimeout"] == 0
    assert any("idleTimeout: 0" in change for change in changes)
