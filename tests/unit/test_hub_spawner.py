"""The hub's spawner additions (images/hub/juvini_hub): users' folders and Spark ports."""

from __future__ import annotations

import asyncio
import types
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from dockerspawner import DockerSpawner
from tornado import web
from traitlets.config import Config

from juvini_hub import spawner as spawner_module
from juvini_hub.spark_ports import (
    BLOCK_MANAGER_PORT_LABEL,
    DRIVER_PORT_LABEL,
    PortRange,
    PortsExhausted,
    SparkPorts,
    allocate,
)
from juvini_hub.spawner import JuviniDockerSpawner

pytestmark = pytest.mark.unit

DRIVERS = PortRange(12000, 12002)
BLOCKS = PortRange(11100, 11102)


def running(*pairs: tuple[int, int]) -> list[dict[str, str]]:
    return [{DRIVER_PORT_LABEL: str(d), BLOCK_MANAGER_PORT_LABEL: str(b), "org.juvini.stack": "t"} for d, b in pairs]


def test_the_first_server_gets_the_lowest_ports() -> None:
    assert allocate(DRIVERS, BLOCKS, []) == SparkPorts(12000, 11100)


def test_ports_of_running_servers_are_skipped() -> None:
    assert allocate(DRIVERS, BLOCKS, running((12000, 11100), (12002, 11101))) == SparkPorts(12001, 11102)


def test_reserved_pairs_of_starting_servers_are_skipped() -> None:
    assert allocate(DRIVERS, BLOCKS, running((12000, 11100)), reserved=[SparkPorts(12001, 11101)]) == SparkPorts(
        12002, 11102
    )


def test_a_stopped_server_releases_its_ports() -> None:
    taken = running((12000, 11100), (12001, 11101))
    assert allocate(DRIVERS, BLOCKS, taken[1:]) == SparkPorts(12000, 11100)


def test_containers_without_port_labels_take_nothing() -> None:
    assert allocate(DRIVERS, BLOCKS, [{"org.juvini.stack": "t"}]) == SparkPorts(12000, 11100)


def test_exhaustion_is_a_clear_message_naming_the_ranges() -> None:
    with pytest.raises(PortsExhausted, match=r"driver ports 12000-12002, block manager ports 11100-11102: 3 servers"):
        allocate(DRIVERS, BLOCKS, running((12000, 11100), (12001, 11101), (12002, 11102)))


def test_the_smaller_range_bounds_capacity() -> None:
    with pytest.raises(PortsExhausted):
        allocate(DRIVERS, PortRange(11100, 11100), running((12000, 11100)))


# --- the spawner ---------------------------------------------------------------------------


class FakeDocker:
    """Stands in for the Docker API: the running containers of the stack, by labels."""

    def __init__(self) -> None:
        self.containers: list[dict[str, Any]] = []


@pytest.fixture
def docker_state(monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    state = FakeDocker()
    started: list[Any] = []

    async def fake_docker(self: JuviniDockerSpawner, method: str, *args: Any, **kwargs: Any) -> Any:
        assert method == "containers"
        wanted = set(kwargs["filters"]["label"])
        return [
            c for c in state.containers if wanted <= {f"{k}={v}" for k, v in c["Labels"].items()} | set(c["Labels"])
        ]

    async def fake_start(self: JuviniDockerSpawner) -> tuple[str, int]:
        # What DockerSpawner would create: a container carrying the labels it was given.
        labels = self.extra_create_kwargs.get("labels", {})
        state.containers.append({"Id": f"id-{self.user.name}", "Labels": labels})
        started.append(self)
        return ("127.0.0.1", 8888)

    monkeypatch.setattr(JuviniDockerSpawner, "docker", fake_docker)
    monkeypatch.setattr(DockerSpawner, "start", fake_start)
    monkeypatch.setattr(spawner_module.os, "chown", lambda *args: None)
    return state


def make_spawner(
    name: str, users_dir: Path, drivers: str = "12000-12001", blocks: str = "11100-11101"
) -> JuviniDockerSpawner:
    config = Config()
    config.JuviniDockerSpawner.users_dir = str(users_dir)
    config.JuviniDockerSpawner.spark_driver_ports = drivers
    config.JuviniDockerSpawner.spark_block_manager_ports = blocks
    config.JuviniDockerSpawner.spark_driver_host = "10.1.2.3"
    config.JuviniDockerSpawner.stack_labels = {"org.juvini.stack": "t"}
    config.JuviniDockerSpawner.extra_create_kwargs = {"user": "2100:2100", "labels": {"org.juvini.stack": "t"}}
    config.JuviniDockerSpawner.environment = {"SPARK_DRIVER_MEMORY": "1g"}
    user = types.SimpleNamespace(name=name, escaped_name=name, url=f"/user/{name}/", id=1, settings={})
    return JuviniDockerSpawner(config=config, user=user)


def test_start_publishes_the_pair_and_tells_the_kernel(docker_state: FakeDocker, tmp_path: Path) -> None:
    spawner = make_spawner("alice", tmp_path)
    asyncio.run(spawner.start())
    assert spawner.extra_create_kwargs["ports"] == {"12000/tcp": None, "11100/tcp": None}
    assert spawner.extra_create_kwargs["labels"][DRIVER_PORT_LABEL] == "12000"
    assert spawner.extra_create_kwargs["user"] == "2100:2100"
    assert spawner.extra_host_config["port_bindings"] == {12000: ("0.0.0.0", 12000), 11100: ("0.0.0.0", 11100)}
    assert spawner.environment == {
        "SPARK_DRIVER_MEMORY": "1g",
        "SPARK_DRIVER_PORT": "12000",
        "SPARK_BLOCKMANAGER_PORT": "11100",
        "SPARK_DRIVER_HOST": "10.1.2.3",
    }


def test_concurrent_starts_get_distinct_pairs(docker_state: FakeDocker, tmp_path: Path) -> None:
    spawners = [make_spawner(name, tmp_path) for name in ("alice", "bob")]

    async def both() -> None:
        await asyncio.gather(*(s.start() for s in spawners))

    asyncio.run(both())
    pairs = {(s.spark_ports.driver, s.spark_ports.block_manager) for s in spawners if s.spark_ports}
    assert pairs == {(12000, 11100), (12001, 11101)}


def test_a_start_beyond_the_ranges_is_refused_with_the_reason(docker_state: FakeDocker, tmp_path: Path) -> None:
    for name in ("alice", "bob"):
        asyncio.run(make_spawner(name, tmp_path).start())
    with pytest.raises(web.HTTPError) as refused:
        asyncio.run(make_spawner("carol", tmp_path).start())
    assert refused.value.status_code == 503
    assert "All Spark ports are in use" in refused.value.log_message


def test_config_dicts_are_not_mutated_between_spawners(docker_state: FakeDocker, tmp_path: Path) -> None:
    first = make_spawner("alice", tmp_path)
    asyncio.run(first.start())
    second = make_spawner("bob", tmp_path)
    assert "ports" not in second.extra_create_kwargs
    assert "SPARK_DRIVER_PORT" not in second.environment


def test_the_users_folder_is_created_once_owned_by_the_lab_user(
    docker_state: FakeDocker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owners: list[tuple[str, int, int]] = []
    monkeypatch.setattr(spawner_module.os, "chown", lambda path, uid, gid: owners.append((str(path), uid, gid)))
    spawner = make_spawner("alice", tmp_path)
    asyncio.run(spawner.start())
    folder = tmp_path / "alice"
    assert folder.is_dir()
    assert oct(folder.stat().st_mode & 0o777) == "0o750"
    assert owners == [(str(folder), 2100, 2100)]
    spawner.ensure_user_folder()
    assert len(owners) == 1


def test_ports_taken_by_another_stack_on_the_host_are_skipped(docker_state: FakeDocker, tmp_path: Path) -> None:
    other = {"org.juvini.stack": "other", DRIVER_PORT_LABEL: "12000", BLOCK_MANAGER_PORT_LABEL: "11100"}
    docker_state.containers.append({"Id": "other-stack", "Labels": other})
    spawner = make_spawner("alice", tmp_path)
    asyncio.run(spawner.start())
    assert spawner.spark_ports == SparkPorts(12001, 11101)


def test_spark_ports_off_when_no_range_is_configured(docker_state: FakeDocker, tmp_path: Path) -> None:
    spawner = make_spawner("alice", tmp_path, drivers="", blocks="")
    asyncio.run(spawner.start())
    assert spawner.spark_ports is None
    assert "port_bindings" not in spawner.extra_host_config


# --- per-user Windows shares ---------------------------------------------------------------


class ShareDocker:
    """Records the volume calls the spawner makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []


@pytest.fixture
def share_docker(monkeypatch: pytest.MonkeyPatch, docker_state: FakeDocker) -> ShareDocker:
    recorder = ShareDocker()

    async def fake_docker(self: JuviniDockerSpawner, method: str, *args: Any, **kwargs: Any) -> Any:
        recorder.calls.append((method, args, kwargs))
        if method == "containers":
            return []
        if method == "remove_volume":
            raise docker.errors.NotFound("no such volume")
        return {}

    monkeypatch.setattr(JuviniDockerSpawner, "docker", fake_docker)
    return recorder


SHARES = [
    {
        "name": "home",
        "device": "//10.9.8.7/homes",
        "address": "10.9.8.7",
        "domain": "CORP",
        "version": "3.0",
        "mount": "/home/labuser/home",
        "read_only": False,
    },
]


def with_auth_state(spawner: JuviniDockerSpawner, state: dict[str, Any] | None) -> JuviniDockerSpawner:
    async def get_auth_state() -> dict[str, Any] | None:
        return state

    spawner.user.get_auth_state = get_auth_state
    return spawner


def test_a_users_share_is_mounted_with_their_own_password(share_docker: ShareDocker, tmp_path: Path) -> None:
    spawner = with_auth_state(make_spawner("alice", tmp_path, drivers="", blocks=""), {"password": "alice-pw"})
    spawner.cifs_user_shares = SHARES
    asyncio.run(spawner.start())
    (create,) = [kwargs for method, _, kwargs in share_docker.calls if method == "create_volume"]
    assert create["name"] == "jupyter-alice-cifs-home"
    assert create["driver_opts"]["device"] == "//10.9.8.7/homes"
    assert "username=alice" in create["driver_opts"]["o"] and "password=alice-pw" in create["driver_opts"]["o"]
    assert "domain=CORP" in create["driver_opts"]["o"]
    assert spawner.volumes["jupyter-alice-cifs-home"] == {"bind": "/home/labuser/home", "mode": "rw"}


def test_without_a_password_the_server_starts_and_says_why(share_docker: ShareDocker, tmp_path: Path) -> None:
    spawner = with_auth_state(make_spawner("alice", tmp_path, drivers="", blocks=""), {})
    spawner.cifs_user_shares = SHARES
    asyncio.run(spawner.start())
    assert not [call for call in share_docker.calls if call[0] == "create_volume"]
    assert "home" in spawner.environment["JUVINI_CIFS_WARNING"]


def test_stopping_removes_the_users_share_volumes(share_docker: ShareDocker, tmp_path: Path, monkeypatch) -> None:
    async def fake_stop(self: JuviniDockerSpawner, now: bool = False) -> None:
        return None

    monkeypatch.setattr(DockerSpawner, "stop", fake_stop)
    spawner = make_spawner("alice", tmp_path, drivers="", blocks="")
    spawner.cifs_user_shares = SHARES
    asyncio.run(spawner.stop())
    assert ("remove_volume", ("jupyter-alice-cifs-home",), {}) in share_docker.calls
