"""The hub's additions (images/hub/juvini_hub): users' folders, Spark ports, Kerberos, shares.

The spawner and the authenticator are configured here as the rendered jupyterhub_config.py
configures them; tests/unit/test_hub_config.py checks that the rendered file sets what
they need.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import socket
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.auth
import docker.errors
import docker.types
import pytest
import requests
from dockerspawner import DockerSpawner
from jupyterhub import orm
from jupyterhub.utils import format_exception, iterate_until, url_path_join, wait_for_http_server
from ldapauthenticator import LDAPAuthenticator
from pydantic import SecretStr
from tornado import web
from traitlets import TraitError
from traitlets.config import Config

from infra.settings import CifsShare, parse_settings
from infra.shares import cifs_options, user_share_config
from juvini_hub import kerberos as kerberos_module
from juvini_hub import profiles as profiles_module
from juvini_hub import spawner as spawner_module
from juvini_hub.auth import JuviniLDAPAuthenticator
from juvini_hub.contract import MissingConfig
from juvini_hub.docker_calls import DockerCalls
from juvini_hub.kerberos import KerberosTickets, KinitResult
from juvini_hub.profiles import Gpu, Profile, ProfileRefused, choose, open_profiles
from juvini_hub.reconcile import recorded_containers, remove_unrecorded
from juvini_hub.spark_ports import (
    BLOCK_MANAGER_PORT_LABEL,
    DRIVER_PORT_LABEL,
    PortRange,
    PortsExhausted,
    SparkPorts,
    allocate,
)
from juvini_hub.spawner import JuviniDockerSpawner, JuviniSwarmSpawner

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
    """Stands in for the Docker API: the running containers of the host, by labels.

    As with the real API (called from a thread), a listing answers with the containers
    of the moment it was asked, and the caller resumes later, after other coroutines
    ran; a container appears during ``start`` (after its create request was in flight)
    and ``start`` returns later still.
    """

    def __init__(self) -> None:
        self.containers: list[dict[str, Any]] = []
        self.calls: list[tuple[str, tuple, dict]] = []


@pytest.fixture(autouse=True)
def fresh_allocation_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test's event loop gets its own allocation lock, and its own Docker threads and clients;
    no reservation leaks between tests."""
    monkeypatch.setattr(spawner_module, "_ALLOCATION_LOCK", asyncio.Lock())
    calls = DockerCalls()
    monkeypatch.setattr(spawner_module, "_DOCKER_CALLS", calls)
    spawner_module._RESERVED.clear()
    yield
    calls.shutdown()
    spawner_module._RESERVED.clear()


@pytest.fixture
def always_answering(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Started servers answer at once (no HTTP server behind them); the URLs asked, in order."""
    asked: list[str] = []

    async def answers(client: Any, url: str, timeout: float) -> bool:
        asked.append(url)
        return True

    monkeypatch.setattr(spawner_module, "answers", answers)
    return asked


async def _yield(times: int = 1) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


@pytest.fixture
def docker_state(monkeypatch: pytest.MonkeyPatch, always_answering: list[str]) -> FakeDocker:
    state = FakeDocker()

    async def fake_docker(self: JuviniDockerSpawner, method: str, *args: Any, **kwargs: Any) -> Any:
        state.calls.append((method, args, kwargs))
        if method == "containers":
            wanted = set(kwargs["filters"]["label"])
            answer = [
                c for c in state.containers if wanted <= {f"{k}={v}" for k, v in c["Labels"].items()} | set(c["Labels"])
            ]
            await _yield(2)  # the answer reaches the caller after other coroutines ran
            return answer
        if method == "remove_volume":
            raise docker.errors.NotFound("no such volume")
        return {}

    async def fake_start(self: JuviniDockerSpawner) -> tuple[str, int]:
        # What DockerSpawner would create: a container carrying the labels it was given.
        await _yield()  # create request in flight
        labels = self.extra_create_kwargs.get("labels", {})
        state.containers.append({"Id": f"id-{self.user.name}", "Labels": labels})
        await _yield()  # starting it
        return ("127.0.0.1", 8888)

    monkeypatch.setattr(JuviniDockerSpawner, "docker", fake_docker)
    monkeypatch.setattr(DockerSpawner, "start", fake_start)
    monkeypatch.setattr(spawner_module.os, "chown", lambda *args: None)
    monkeypatch.setattr(kerberos_module.os, "chown", lambda *args: None)
    return state


SHARE_LABELS = {"org.juvini.stack": "t", "org.juvini.role": "user-share"}
SPARK_IMAGE = "juvini-t-notebook-pyspark:1"
BASE_IMAGE = "juvini-t-notebook-base:1"
PICKS = {"Base": BASE_IMAGE, "PySpark": SPARK_IMAGE}


def implicit_profile(slug: str, image: str) -> dict[str, Any]:
    """A profile as the rendered config lists it for a stack without profiles: one image, the global limits."""
    return {
        "slug": slug,
        "display_name": f"{slug.title()} image",
        "description": f"The {slug} image.",
        "image": image,
        "image_name": next(name for name, reference in PICKS.items() if reference == image),
        "cpu_limit": 2.0,
        "mem_limit": 4 * 1024**3,
        "environment": {},
        "gpu": None,
        "groups": [],
        "users": [],
    }


def spawner_config(users_dir: Path, drivers: str, blocks: str) -> Config:
    """The options the rendered config sets for a JuviniDockerSpawner (the Spark image by default)."""
    config = Config()
    config.JuviniSpawnerMixin.user_folder = f"{users_dir}/{{username}}"
    config.JuviniSpawnerMixin.lab_uid = 2100
    config.JuviniSpawnerMixin.lab_gid = 2100
    config.JuviniSpawnerMixin.profiles = [
        implicit_profile("pyspark", SPARK_IMAGE),
        implicit_profile("base", BASE_IMAGE),
    ]
    config.JuviniSpawnerMixin.group_folders = []
    config.DockerSpawner.allowed_images = PICKS
    config.DockerSpawner.image = SPARK_IMAGE
    config.DockerSpawner.pull_policy = "never"
    config.DockerSpawner.remove = True
    config.JuviniDockerSpawner.spark_images = [SPARK_IMAGE]
    config.JuviniDockerSpawner.spark_require_ports = False
    config.JuviniDockerSpawner.spark_driver_ports = drivers
    config.JuviniDockerSpawner.spark_block_manager_ports = blocks
    config.JuviniDockerSpawner.spark_driver_host = "10.1.2.3"
    config.JuviniDockerSpawner.spark_publish_ip = "0.0.0.0"
    config.JuviniDockerSpawner.cifs_user_shares = []
    config.JuviniDockerSpawner.user_share_labels = SHARE_LABELS
    config.JuviniDockerSpawner.extra_create_kwargs = {"user": "2100:2100", "labels": {"org.juvini.stack": "t"}}
    config.JuviniDockerSpawner.environment = {"SPARK_DRIVER_MEMORY": "1g"}
    return config


def make_user(name: str, groups: tuple[str, ...] = ()) -> types.SimpleNamespace:
    """A hub user as the spawner sees it; ``groups``: the names of its hub groups."""
    return types.SimpleNamespace(
        name=name,
        escaped_name=name,
        url=f"/user/{name}/",
        id=1,
        settings={},
        groups=[types.SimpleNamespace(name=group) for group in groups],
    )


def make_spawner(
    name: str,
    users_dir: Path,
    drivers: str = "12000-12001",
    blocks: str = "11100-11101",
    config: Config | None = None,
) -> JuviniDockerSpawner:
    full = spawner_config(users_dir, drivers, blocks)
    full.merge(config or Config())
    return JuviniDockerSpawner(config=full, user=make_user(name))


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


CONCURRENT_USERS = ("alice", "bob", "carol", "dave", "erin", "frank")


def test_concurrent_starts_get_distinct_pairs(docker_state: FakeDocker, tmp_path: Path) -> None:
    """Users start at once, each arriving a moment after the previous one; no pair is handed out twice.

    A listing of running containers is already stale when it reaches the spawner (a
    server that started meanwhile is missing from it): only the reservation table, and
    the lock that keeps a reservation from being dropped between another spawner's
    listing and its choice, prevent a second server from getting the same pair.
    """
    spawners = [make_spawner(name, tmp_path, drivers="12000-12009", blocks="11100-11109") for name in CONCURRENT_USERS]

    async def start(spawner: JuviniDockerSpawner, arrival: int) -> None:
        await _yield(arrival)
        await spawner.start()

    async def all_at_once() -> None:
        await asyncio.gather(*(start(spawner, arrival) for arrival, spawner in enumerate(spawners)))

    asyncio.run(all_at_once())
    pairs = [(s.spark_ports.driver, s.spark_ports.block_manager) for s in spawners if s.spark_ports]
    assert len(pairs) == len(spawners)
    assert len(set(pairs)) == len(pairs), f"a pair was handed out twice: {pairs}"
    published = [c["Labels"][DRIVER_PORT_LABEL] for c in docker_state.containers]
    assert sorted(published) == sorted({str(driver) for driver, _ in pairs})
    assert not spawner_module._RESERVED, "reservations outlived the starts"


def require_ports() -> Config:
    config = Config()
    config.JuviniDockerSpawner.spark_require_ports = True
    return config


def test_with_require_ports_a_start_beyond_the_ranges_is_refused_with_the_reason(
    docker_state: FakeDocker, tmp_path: Path
) -> None:
    for name in ("alice", "bob"):
        asyncio.run(make_spawner(name, tmp_path, config=require_ports()).start())
    with pytest.raises(web.HTTPError) as refused:
        asyncio.run(make_spawner("carol", tmp_path, config=require_ports()).start())
    assert refused.value.status_code == 503
    assert "All Spark ports are in use" in str(refused.value.log_message)
    # What the spawn page and the progress stream show ("Spawn failed: <message>").
    message, _ = format_exception(refused.value)
    assert message.startswith("All Spark ports are in use by running servers (driver ports 12000-12001")
    assert not spawner_module._RESERVED
    assert len(docker_state.containers) == 2


def test_a_failed_start_releases_its_reservation(
    docker_state: FakeDocker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing_start(self: JuviniDockerSpawner) -> tuple[str, int]:
        raise RuntimeError("the image is gone")

    monkeypatch.setattr(DockerSpawner, "start", failing_start)
    with pytest.raises(RuntimeError):
        asyncio.run(make_spawner("alice", tmp_path).start())
    assert not spawner_module._RESERVED


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
    config = Config()
    config.JuviniSpawnerMixin.lab_uid = 3001
    config.JuviniSpawnerMixin.lab_gid = 3002
    spawner = make_spawner("alice", tmp_path, config=config)
    asyncio.run(spawner.start())
    folder = tmp_path / "alice"
    assert folder.is_dir()
    assert oct(folder.stat().st_mode & 0o777) == "0o750"
    assert owners == [(str(folder), 3001, 3002)]
    spawner.ensure_user_folder()
    assert len(owners) == 1


def test_ports_taken_by_another_stack_on_the_host_are_skipped(docker_state: FakeDocker, tmp_path: Path) -> None:
    other = {"org.juvini.stack": "other", DRIVER_PORT_LABEL: "12000", BLOCK_MANAGER_PORT_LABEL: "11100"}
    docker_state.containers.append({"Id": "other-stack", "Labels": other})
    spawner = make_spawner("alice", tmp_path)
    asyncio.run(spawner.start())
    assert spawner.spark_ports == SparkPorts(12001, 11101)


# --- what the rendered config must set ----------------------------------------------------


def test_a_spawner_without_the_lab_facts_fails_naming_the_missing_options() -> None:
    with pytest.raises(MissingConfig) as missing:
        JuviniDockerSpawner(config=Config(), user=make_user("alice"))
    message = str(missing.value)
    for option in (
        "c.JuviniSpawnerMixin.group_folders",
        "c.JuviniSpawnerMixin.lab_gid",
        "c.JuviniSpawnerMixin.lab_uid",
        "c.JuviniSpawnerMixin.profiles",
        "c.JuviniSpawnerMixin.user_folder",
        "c.JuviniDockerSpawner.cifs_user_shares",
        "c.JuviniDockerSpawner.spark_block_manager_ports",
        "c.JuviniDockerSpawner.spark_driver_host",
        "c.JuviniDockerSpawner.spark_driver_ports",
        "c.JuviniDockerSpawner.spark_images",
        "c.JuviniDockerSpawner.spark_require_ports",
        "c.JuviniDockerSpawner.spark_publish_ip",
        "c.JuviniDockerSpawner.user_share_labels",
    ):
        assert option in message


def test_one_missing_option_is_named_alone(tmp_path: Path) -> None:
    config = spawner_config(tmp_path, "12000-12001", "11100-11101")
    del config.JuviniSpawnerMixin["lab_uid"]
    with pytest.raises(MissingConfig, match=r"does not set c\.JuviniSpawnerMixin\.lab_uid;"):
        JuviniDockerSpawner(config=config, user=make_user("alice"))


@pytest.mark.parametrize("bad", ["12000", "12000-", "a-b", ""])
def test_a_port_range_that_is_not_first_last_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(TraitError, match="spark_driver_ports must be first-last"):
        make_spawner("alice", tmp_path, drivers=bad)


def test_enabled_kerberos_without_its_options_fails_naming_them() -> None:
    config = Config()
    config.KerberosTickets.enabled = True
    config.KerberosTickets.realm = "LAB.TEST"
    with pytest.raises(MissingConfig) as missing:
        KerberosTickets(config=config)
    assert "c.KerberosTickets.realm" not in str(missing.value)
    for option in ("ccache_root", "ccache_host_root", "krb5_conf", "krb5_conf_host_path", "uid", "gid", "on_failure"):
        assert f"c.KerberosTickets.{option}" in str(missing.value)


def test_kerberos_is_off_without_configuration() -> None:
    assert KerberosTickets(config=Config()).enabled is False


def test_the_authenticator_checks_the_kerberos_options_when_made() -> None:
    config = Config()
    config.KerberosTickets.enabled = True
    with pytest.raises(MissingConfig, match=r"c\.KerberosTickets\.realm"):
        JuviniLDAPAuthenticator(config=config)


# --- Kerberos at login and at spawn ---------------------------------------------------------


def kerberos_config(tmp_path: Path, on_failure: str = "warn") -> Config:
    """``c.KerberosTickets`` as the rendered config sets it, with the hub's state under ``tmp_path``."""
    config = Config()
    tickets = config.KerberosTickets
    tickets.enabled = True
    tickets.realm = "LAB.TEST"
    tickets.on_failure = on_failure
    tickets.ccache_root = str(tmp_path / "state" / "krb5cc")
    tickets.ccache_host_root = "/srv/juvini/hub/krb5cc"
    tickets.krb5_conf = str(tmp_path / "state" / "krb5.conf")
    tickets.krb5_conf_host_path = "/srv/juvini/hub/krb5.conf"
    tickets.uid = 3001
    tickets.gid = 3002
    return config


@dataclass
class KinitCalls:
    calls: list[dict[str, Any]]
    outcome: KinitResult


@pytest.fixture
def fake_kinit(monkeypatch: pytest.MonkeyPatch) -> KinitCalls:
    """kinit that records its arguments and answers ``outcome`` (a ticket, unless a test says otherwise)."""
    record = KinitCalls([], KinitResult(True, "ticket for alice@LAB.TEST"))

    async def kinit(
        principal: str, password: str, folder: Path, uid: int, gid: int, krb5_config: str, timeout: float
    ) -> KinitResult:
        record.calls.append(
            {"principal": principal, "password": password, "folder": folder, "uid": uid, "gid": gid}
            | {"krb5_config": krb5_config, "timeout": timeout}
        )
        return record.outcome

    monkeypatch.setattr(kerberos_module, "kinit", kinit)
    monkeypatch.setattr(kerberos_module.os, "chown", lambda *args: None)
    return record


def test_kinit_at_spawn_uses_the_one_kerberos_configuration(
    docker_state: FakeDocker, fake_kinit: KinitCalls, tmp_path: Path
) -> None:
    spawner = with_auth_state(
        make_spawner("alice", tmp_path / "users", config=kerberos_config(tmp_path)),
        {"password": "alice-pw", "kerberos": {"ok": True, "message": "at login"}},
    )
    (tmp_path / "users").mkdir()
    asyncio.run(spawner.start())
    assert fake_kinit.calls == [
        {
            "principal": "alice@LAB.TEST",
            "password": "alice-pw",
            "folder": tmp_path / "state" / "krb5cc" / "alice",
            "uid": 3001,
            "gid": 3002,
            "krb5_config": str(tmp_path / "state" / "krb5.conf"),
            "timeout": 30,
        }
    ]
    assert spawner.volumes["/srv/juvini/hub/krb5cc/alice"] == {"bind": "/run/juvini/krb5", "mode": "rw"}
    assert spawner.volumes["/srv/juvini/hub/krb5.conf"] == {"bind": "/etc/krb5.conf", "mode": "ro"}
    assert spawner.environment["KRB5CCNAME"] == "FILE:/run/juvini/krb5/krb5cc"
    assert "JUVINI_KERBEROS_WARNING" not in spawner.environment


def test_a_server_without_a_ticket_starts_and_says_why(
    docker_state: FakeDocker, fake_kinit: KinitCalls, tmp_path: Path
) -> None:
    fake_kinit.outcome = KinitResult(False, "kinit for alice@LAB.TEST failed: Cannot contact any KDC")
    spawner = with_auth_state(
        make_spawner("alice", tmp_path, config=kerberos_config(tmp_path)), {"password": "alice-pw"}
    )
    asyncio.run(spawner.start())
    assert "Cannot contact any KDC" in spawner.environment["JUVINI_KERBEROS_WARNING"]
    assert spawner.environment["KRB5CCNAME"] == "FILE:/run/juvini/krb5/krb5cc"


def test_without_a_password_the_ticket_folder_is_still_made_for_the_mount(
    docker_state: FakeDocker, fake_kinit: KinitCalls, tmp_path: Path
) -> None:
    spawner = with_auth_state(make_spawner("alice", tmp_path, config=kerberos_config(tmp_path)), {})
    asyncio.run(spawner.start())
    assert not fake_kinit.calls
    assert (tmp_path / "state" / "krb5cc" / "alice").is_dir()
    assert "no Kerberos login recorded" in spawner.environment["JUVINI_KERBEROS_WARNING"]


def test_no_kerberos_mounts_when_kerberos_is_off(docker_state: FakeDocker, tmp_path: Path) -> None:
    spawner = make_spawner("alice", tmp_path)
    asyncio.run(spawner.start())
    assert "KRB5CCNAME" not in spawner.environment
    assert not spawner.volumes


def ldap_login(config: Config, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any] | None:
    """A login through JuviniLDAPAuthenticator whose directory accepts alice (the bind is not the point)."""

    async def directory_accepts(self: Any, handler: Any, data: dict[str, Any]) -> dict[str, Any]:
        return {"name": data["username"], "auth_state": {"ldap_groups": []}}

    monkeypatch.setattr(LDAPAuthenticator, "authenticate", directory_accepts)
    return asyncio.run(
        JuviniLDAPAuthenticator(config=config).authenticate(None, {"username": "Alice", "password": "alice-pw"})
    )


@pytest.mark.parametrize(("on_failure", "admitted"), [("warn", True), ("refuse", False)])
def test_a_failed_kinit_at_login_follows_the_policy(
    fake_kinit: KinitCalls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_failure: str, admitted: bool
) -> None:
    fake_kinit.outcome = KinitResult(False, "kinit for alice@LAB.TEST timed out after 30 s")
    result = ldap_login(kerberos_config(tmp_path, on_failure), monkeypatch)
    assert (result is not None) is admitted
    if result is not None:
        assert result["auth_state"]["kerberos"] == {"ok": False, "message": fake_kinit.outcome.message}
        assert result["auth_state"]["password"] == "alice-pw"


def test_kinit_at_login_uses_the_one_kerberos_configuration(
    fake_kinit: KinitCalls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = ldap_login(kerberos_config(tmp_path), monkeypatch)
    assert result is not None and result["auth_state"]["kerberos"]["ok"] is True
    (call,) = fake_kinit.calls
    assert (call["principal"], call["folder"], call["uid"], call["gid"]) == (
        "alice@LAB.TEST",
        tmp_path / "state" / "krb5cc" / "alice",
        3001,
        3002,
    )


def test_without_kerberos_or_user_shares_the_password_is_not_kept(
    fake_kinit: KinitCalls, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = ldap_login(Config(), monkeypatch)
    assert result is not None
    assert "password" not in result["auth_state"]
    assert not fake_kinit.calls


# --- per-user Windows shares ---------------------------------------------------------------


HOME_SHARE = CifsShare.model_validate({"name": "home", "unc": "//10.9.8.7/homes", "domain": "CORP", "perUser": True})
SHARES = [user_share_config(HOME_SHARE, 2100, 2100, "/home/labuser")]


def with_auth_state(spawner: JuviniDockerSpawner, state: dict[str, Any] | None) -> JuviniDockerSpawner:
    async def get_auth_state() -> dict[str, Any] | None:
        return state

    spawner.user.get_auth_state = get_auth_state
    return spawner


def created_volumes(state: FakeDocker) -> list[dict[str, Any]]:
    return [kwargs for method, _, kwargs in state.calls if method == "create_volume"]


def test_a_users_share_is_mounted_with_their_own_password(docker_state: FakeDocker, tmp_path: Path) -> None:
    spawner = with_auth_state(make_spawner("alice", tmp_path), {"password": "alice-pw"})
    spawner.cifs_user_shares = SHARES
    asyncio.run(spawner.start())
    (create,) = created_volumes(docker_state)
    assert create["name"] == "jupyter-alice-cifs-home"
    assert create["driver_opts"]["device"] == "//10.9.8.7/homes"
    options = create["driver_opts"]["o"].split(",")
    assert "username=alice" in options and "password=alice-pw" in options
    assert "domain=CORP" in options
    assert create["labels"] == SHARE_LABELS
    assert spawner.volumes["jupyter-alice-cifs-home"] == {"bind": "/home/labuser/home", "mode": "rw"}


@pytest.mark.parametrize("read_only", [False, True], ids=["read-write", "read-only"])
@pytest.mark.parametrize("password", ["s3cret", "{password} with {braces}", "a,ro,uid=0,b"])
def test_a_per_user_share_mounts_with_the_options_of_a_team_share(
    docker_state: FakeDocker, tmp_path: Path, read_only: bool, password: str
) -> None:
    """The same share, mounted by the hub with alice's login or by the stack with a service
    account called alice, gets the same volume options (one function builds them)."""
    settings = parse_settings(
        {
            "labUser": {"uid": 3001, "gid": 3002},
            "auth": {"type": "ldap", "ldap": {"serverAddress": "ldap.test", "bindDnTemplate": ["uid={username}"]}},
            "cifs": {
                "shares": [
                    {"name": "home", "unc": "//10.9.8.7/homes", "domain": "CORP", "version": "3.1.1"}
                    | {"perUser": True, "readOnly": read_only}
                ]
            },
        }
    )
    (per_user,) = settings.cifs.shares
    team = per_user.model_copy(update={"per_user": False, "username": "alice", "password": SecretStr(password)})
    config = Config()
    config.JuviniDockerSpawner.cifs_user_shares = [user_share_config(per_user, 3001, 3002, "/home/labuser")]
    spawner = with_auth_state(make_spawner("alice", tmp_path, config=config), {"password": password})
    asyncio.run(spawner.start())
    (create,) = created_volumes(docker_state)
    assert create["driver_opts"] == {
        "type": "cifs",
        "device": "//10.9.8.7/homes",
        "o": cifs_options(team, 3001, 3002, "alice", password),
    }
    # A comma in the password cannot add mount options: the kernel reads ",," as one comma.
    assert create["driver_opts"]["o"].count(f"password={password.replace(',', ',,')},vers=") == 1


def test_without_a_password_the_server_starts_and_says_why(docker_state: FakeDocker, tmp_path: Path) -> None:
    spawner = with_auth_state(make_spawner("alice", tmp_path), {})
    spawner.cifs_user_shares = SHARES
    asyncio.run(spawner.start())
    assert not created_volumes(docker_state)
    assert "home" in spawner.environment["JUVINI_CIFS_WARNING"]


def test_a_start_without_the_password_does_not_mount_the_last_starts_share_volume(
    docker_state: FakeDocker, tmp_path: Path
) -> None:
    spawner = with_auth_state(make_spawner("alice", tmp_path), {"password": "alice-pw"})
    spawner.cifs_user_shares = SHARES
    asyncio.run(spawner.start())
    assert "jupyter-alice-cifs-home" in spawner.volumes
    with_auth_state(spawner, {})
    asyncio.run(spawner.start())
    # Docker would make an empty volume of that name (removed at the last stop) and mount it.
    assert "jupyter-alice-cifs-home" not in spawner.volumes
    assert "home" in spawner.environment["JUVINI_CIFS_WARNING"]


def test_stopping_removes_the_users_share_volumes(docker_state: FakeDocker, tmp_path: Path, monkeypatch) -> None:
    async def fake_stop(self: JuviniDockerSpawner, now: bool = False) -> None:
        return None

    monkeypatch.setattr(DockerSpawner, "stop", fake_stop)
    spawner = make_spawner("alice", tmp_path)
    spawner.cifs_user_shares = SHARES
    asyncio.run(spawner.stop())
    assert ("remove_volume", ("jupyter-alice-cifs-home",), {}) in docker_state.calls


# --- who gets a Spark port pair ------------------------------------------------------------


def test_a_server_of_an_image_without_spark_takes_no_pair(docker_state: FakeDocker, tmp_path: Path) -> None:
    config = Config()
    config.DockerSpawner.image = BASE_IMAGE
    spawner = make_spawner("alice", tmp_path, config=config)
    asyncio.run(spawner.start())
    assert spawner.spark_ports is None
    assert "ports" not in spawner.extra_create_kwargs
    assert DRIVER_PORT_LABEL not in spawner.extra_create_kwargs["labels"]
    assert "port_bindings" not in spawner.extra_host_config
    assert not {"SPARK_DRIVER_PORT", "SPARK_BLOCKMANAGER_PORT", "JUVINI_SPARK_WARNING"} & set(spawner.environment)
    assert not [call for call in docker_state.calls if call[0] == "containers"], "no need to look at the ports"


def test_servers_without_spark_start_beyond_the_port_ranges(docker_state: FakeDocker, tmp_path: Path) -> None:
    """The measured failure: the 12th user starting the base image got 503; capacity is no longer bound."""
    config = Config()
    config.DockerSpawner.image = BASE_IMAGE
    for index in range(6):  # three times the two pairs of the ranges
        asyncio.run(make_spawner(f"user{index}", tmp_path, config=config).start())
    assert len(docker_state.containers) == 6


def test_the_users_pick_decides_whether_the_server_takes_a_pair(docker_state: FakeDocker, tmp_path: Path) -> None:
    base = make_spawner("alice", tmp_path)
    base.user_options = {"image": "Base"}
    asyncio.run(base.start())
    pyspark = make_spawner("bob", tmp_path)
    pyspark.user_options = {"image": "PySpark"}
    asyncio.run(pyspark.start())
    assert (base.image, base.spark_ports) == (BASE_IMAGE, None)
    assert (pyspark.image, pyspark.spark_ports) == (SPARK_IMAGE, SparkPorts(12000, 11100))


def test_when_pairs_run_out_a_spark_server_starts_for_local_spark_and_says_why(
    docker_state: FakeDocker, tmp_path: Path
) -> None:
    for name in ("alice", "bob"):
        asyncio.run(make_spawner(name, tmp_path).start())
    carol = make_spawner("carol", tmp_path)
    asyncio.run(carol.start())
    assert len(docker_state.containers) == 3
    assert carol.spark_ports is None
    assert "ports" not in carol.extra_create_kwargs
    assert not {"SPARK_DRIVER_PORT", "SPARK_BLOCKMANAGER_PORT", "SPARK_DRIVER_HOST"} & set(carol.environment)
    warning = carol.environment["JUVINI_SPARK_WARNING"]
    assert warning.startswith("All 2 Spark port pairs of this lab are in use, so this server runs Spark in local mode")
    assert "client mode against an external cluster is unavailable until a pair frees up" in warning
    assert not spawner_module._RESERVED


def test_the_next_start_forgets_the_last_starts_pair_and_warning(docker_state: FakeDocker, tmp_path: Path) -> None:
    """JupyterHub keeps one spawner for a user's every start: nothing of the last one may leak."""
    alice = make_spawner("alice", tmp_path)
    asyncio.run(alice.start())
    assert alice.spark_ports == SparkPorts(12000, 11100)
    docker_state.containers.clear()  # alice stopped; bob and carol take both pairs
    for name in ("bob", "carol"):
        asyncio.run(make_spawner(name, tmp_path).start())
    asyncio.run(alice.start())
    assert alice.spark_ports is None
    assert "ports" not in alice.extra_create_kwargs
    assert alice.extra_create_kwargs["labels"] == {"org.juvini.stack": "t"}
    assert "port_bindings" not in alice.extra_host_config
    assert "SPARK_DRIVER_PORT" not in alice.environment
    assert "JUVINI_SPARK_WARNING" in alice.environment
    # alice and carol stopped: carol's pair is free again
    docker_state.containers[:] = [c for c in docker_state.containers if c["Id"] not in ("id-alice", "id-carol")]
    asyncio.run(alice.start())
    assert alice.spark_ports == SparkPorts(12001, 11101)
    assert alice.extra_create_kwargs["ports"] == {"12001/tcp": None, "11101/tcp": None}
    assert alice.environment["SPARK_DRIVER_PORT"] == "12001"
    assert "JUVINI_SPARK_WARNING" not in alice.environment


# --- a Docker engine behind docker-py's API, called from threads ----------------------------


def api_error(status: int, message: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    error_class = docker.errors.NotFound if status == 404 else docker.errors.APIError
    return error_class(message, response=response)


class FakeEngine:
    """A Docker engine as docker-py's APIClient sees it, for spawners running the real DockerSpawner
    and SwarmSpawner code: each call takes ``delay`` seconds in the calling thread, as a request
    to the engine would, and the engine checks that no client is used by two threads."""

    def __init__(self, delay: float = 0.0, images: tuple[str, ...] = (SPARK_IMAGE, BASE_IMAGE)) -> None:
        self.delay = delay
        self.images = set(images)
        self.lock = threading.Lock()
        self.containers: dict[str, dict[str, Any]] = {}  # by name
        self.services: dict[str, dict[str, Any]] = {}  # by name
        self.calls: list[str] = []
        self.clients: list[FakeClient] = []
        self.running = 0
        self.most_running = 0
        self.gpu_runtime = False
        #: A service's task as successive looks find it: (state, desired state, node id).
        self.task_states: list[tuple[str, str, str | None]] = [("running", "running", "n1")]

    @contextlib.contextmanager
    def call(self, client: FakeClient, method: str) -> Iterator[None]:
        assert client.thread == threading.get_ident(), f"a docker-py client used by two threads ({method})"
        with self.lock:
            self.calls.append(method)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            time.sleep(self.delay)
            with self.lock:
                yield
        finally:
            with self.lock:
                self.running -= 1


class FakeClient:
    """docker.APIClient's methods the spawners call, answered from a FakeEngine."""

    base_url = "http+docker://localhost"

    def __init__(self, engine: FakeEngine, api_version: str | None) -> None:
        self.engine = engine
        self.api_version = api_version or "1.47"
        self.thread = threading.get_ident()
        with engine.lock:
            engine.clients.append(self)

    def create_host_config(self, **options: Any) -> dict[str, Any]:
        return options

    def inspect_image(self, image: str) -> dict[str, Any]:
        with self.engine.call(self, "inspect_image"):
            if image not in self.engine.images:
                raise docker.errors.ImageNotFound(f"No such image: {image}")
            return {"Config": {"Cmd": ["juvini-singleuser"]}}

    def _container(self, name_or_id: str) -> dict[str, Any]:
        for container in self.engine.containers.values():
            if name_or_id in (container["Name"], container["Id"]):
                return container
        raise api_error(404, f"No such container: {name_or_id}")

    def inspect_container(self, name_or_id: str) -> dict[str, Any]:
        with self.engine.call(self, "inspect_container"):
            return self._container(name_or_id)

    def containers(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        with self.engine.call(self, "containers"):
            wanted = set(filters["label"])
            return [
                {"Id": c["Id"], "Labels": c["Labels"]}
                for c in self.engine.containers.values()
                if wanted <= set(c["Labels"]) | {f"{k}={v}" for k, v in c["Labels"].items()}
            ]

    def create_container(self, **options: Any) -> dict[str, Any]:
        with self.engine.call(self, "create_container"):
            name = options["name"]
            network = options["host_config"]["network_mode"]
            self.engine.containers[name] = {
                "Id": f"id-{name}",
                "Name": name,
                "Image": options["image"],
                "Labels": dict(options.get("labels") or {}),
                "Env": dict(options["environment"]),
                "Ports": dict(options.get("ports") or {}),
                "State": {"Running": False},
                "HostConfig": dict(options["host_config"]),
                "Config": {"Env": []},
                "NetworkSettings": {"Networks": {network: {"IPAddress": "127.0.0.1"}}},
            }
            return {"Id": f"id-{name}"}

    def start(self, container_id: str) -> None:
        with self.engine.call(self, "start"):
            container = self._container(container_id)
            if container["HostConfig"].get("device_requests") and not self.engine.gpu_runtime:
                # What Docker 20.10 answers on a host without the NVIDIA runtime (seen on the test machine).
                response = requests.Response()
                response.status_code = 500
                explanation = 'could not select device driver "" with capabilities: [[gpu]]'
                raise docker.errors.APIError("500 Server Error", response=response, explanation=explanation)
            container["State"]["Running"] = True

    def stop(self, container_id: str) -> None:
        with self.engine.call(self, "stop"):
            self._container(container_id)["State"]["Running"] = False

    def remove_container(self, container_id: str, v: bool = False) -> None:
        with self.engine.call(self, "remove_container"):
            del self.engine.containers[self._container(container_id)["Name"]]

    def remove_volume(self, name: str) -> None:
        with self.engine.call(self, "remove_volume"):
            raise api_error(404, f"No such volume: {name}")

    # Swarm: a service whose one task runs at once.
    def create_service(self, task_template: Any, name: str, **options: Any) -> dict[str, Any]:
        with self.engine.call(self, "create_service"):
            self.engine.services[name] = {"ID": f"sid-{name}", "Spec": {"Name": name}, "Image": task_template}
            return {"ID": f"sid-{name}"}

    def inspect_service(self, name_or_id: str) -> dict[str, Any]:
        with self.engine.call(self, "inspect_service"):
            for service in self.engine.services.values():
                if name_or_id in (service["ID"], service["Spec"]["Name"]):
                    return service
            raise api_error(404, f"No such service: {name_or_id}")

    def tasks(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        """The service's one task: the next of ``engine.task_states`` at each look (the last one stays)."""
        with self.engine.call(self, "tasks"):
            if filters["service"] not in self.engine.services:
                return []
            states = self.engine.task_states
            state, desired, node = states.pop(0) if len(states) > 1 else states[0]
            if "desired-state" in filters and desired != filters["desired-state"]:
                return []
            status = {"State": state}
            if state == "rejected":
                status["Err"] = "invalid mount config for type bind: bind source path does not exist"
            return [{"Status": status, "DesiredState": desired} | ({"NodeID": node} if node else {})]

    def inspect_node(self, node_id: str) -> dict[str, Any]:
        with self.engine.call(self, "inspect_node"):
            return {"ID": node_id, "Description": {"Hostname": f"host-of-{node_id}"}}


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, always_answering: list[str]) -> FakeEngine:
    """The spawners' docker-py clients talk to a FakeEngine; the real DockerSpawner code runs."""
    state = FakeEngine()

    def new_docker_client(self: Any, api_version: str | None) -> FakeClient:
        return FakeClient(state, api_version)

    # The hub's API URL, tokens and the like are not the point here.
    monkeypatch.setattr(DockerSpawner, "get_env", lambda self: dict(self.environment))
    monkeypatch.setattr(spawner_module.JuviniSpawnerMixin, "new_docker_client", new_docker_client)
    monkeypatch.setattr(spawner_module.os, "chown", lambda *args: None)
    return state


def engine_spawner(name: str, users_dir: Path, config: Config | None = None) -> JuviniDockerSpawner:
    """A JuviniDockerSpawner configured as the rendered config does (users' network, internal IPs)."""
    full = Config()
    full.DockerSpawner.network_name = "juvini-t-users-net"
    full.DockerSpawner.use_internal_ip = True
    full.merge(config or Config())
    return make_spawner(name, users_dir, drivers="12000-12009", blocks="11100-11109", config=full)


def test_a_start_on_the_engine_creates_the_container_with_the_pair(engine: FakeEngine, tmp_path: Path) -> None:
    spawner = engine_spawner("alice", tmp_path)
    assert asyncio.run(spawner.start()) == ("127.0.0.1", 8888)
    container = engine.containers["jupyter-alice"]
    assert container["State"]["Running"]
    assert container["Labels"][DRIVER_PORT_LABEL] == "12000"
    assert {"12000/tcp", "11100/tcp"} <= set(container["Ports"])
    assert container["Env"]["SPARK_DRIVER_PORT"] == "12000"


def test_concurrent_starts_on_docker_threads_get_distinct_pairs(engine: FakeEngine, tmp_path: Path) -> None:
    """The allocation holds with Docker calls really running at once in threads (listings stale)."""
    engine.delay = 0.02
    spawners = [engine_spawner(name, tmp_path) for name in CONCURRENT_USERS]

    async def all_at_once() -> None:
        await asyncio.gather(*(spawner.start() for spawner in spawners))

    asyncio.run(all_at_once())
    drivers = [container["Labels"][DRIVER_PORT_LABEL] for container in engine.containers.values()]
    assert len(drivers) == len(CONCURRENT_USERS)
    assert len(set(drivers)) == len(drivers), f"a pair was handed out twice: {drivers}"
    assert engine.most_running > 1, "the Docker calls did not overlap"
    assert not spawner_module._RESERVED


STOP_CALL_SECONDS = 0.2


def running_servers(engine: FakeEngine, users_dir: Path, names: list[str], config: Config | None = None) -> list:
    spawners = [engine_spawner(name, users_dir, config=config) for name in names]

    async def start_all() -> None:
        await asyncio.gather(*(spawner.start() for spawner in spawners))

    asyncio.run(start_all())
    return spawners


def timed_stops(engine: FakeEngine, spawners: list[JuviniDockerSpawner]) -> float:
    engine.delay = STOP_CALL_SECONDS

    async def stop_all() -> float:
        began = time.monotonic()
        await asyncio.gather(*(spawner.stop() for spawner in spawners))
        return time.monotonic() - began

    return asyncio.run(stop_all())


def test_stops_of_many_users_run_at_once(engine: FakeEngine, tmp_path: Path) -> None:
    """A stop is two Docker calls (stop, remove); eight users' stops take about one stop, not eight."""
    names = [f"user{index}" for index in range(8)]
    spawners = running_servers(engine, tmp_path, names)
    one_stop = 2 * STOP_CALL_SECONDS
    elapsed = timed_stops(engine, spawners)
    assert not engine.containers
    assert elapsed < 2.5 * one_stop, f"8 stops took {elapsed:.2f} s; one takes {one_stop:.2f} s"
    assert engine.most_running >= len(names)


def test_docker_threads_bound_the_calls_at_once(engine: FakeEngine, tmp_path: Path) -> None:
    config = Config()
    config.JuviniSpawnerMixin.docker_threads = 2
    spawners = running_servers(engine, tmp_path, [f"user{index}" for index in range(4)], config=config)
    engine.most_running = 0
    elapsed = timed_stops(engine, spawners)
    assert engine.most_running == 2
    assert elapsed >= 4 * 2 * STOP_CALL_SECONDS / 2 * 0.9


def test_each_thread_has_its_own_docker_client_and_the_version_is_asked_once(
    engine: FakeEngine, tmp_path: Path
) -> None:
    engine.delay = 0.02
    running_servers(engine, tmp_path, [f"user{index}" for index in range(6)])
    threads = [client.thread for client in engine.clients]
    assert len(threads) == len(set(threads)), "two clients for one thread"
    assert len(engine.clients) > 1
    # Every client after the first is told the version the first one asked the engine for.
    assert {client.api_version for client in engine.clients} == {"1.47"}


def test_a_missing_image_fails_with_a_message_for_the_user(engine: FakeEngine, tmp_path: Path) -> None:
    engine.images.discard(SPARK_IMAGE)
    with pytest.raises(web.HTTPError) as failed:
        asyncio.run(engine_spawner("alice", tmp_path).start())
    message, _ = format_exception(failed.value)
    assert message == (
        f"The image {SPARK_IMAGE} is not on the Docker host, so your server cannot start. "
        "Ask an admin to run pulumi up, which builds the lab's images."
    )
    assert not engine.containers
    assert not spawner_module._RESERVED


# --- start() returns when the server answers ------------------------------------------------


class LateServer:
    """A local HTTP server that starts listening ``delay`` seconds after ``start()``; the paths asked."""

    def __init__(self, delay: float, status: int = 200) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.delay = delay
        self.status = status
        self.paths: list[str] = []
        self.listening_at: float | None = None
        self._server: asyncio.Server | None = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        self.paths.append(request.split()[1].decode())
        body = b'{"version": "2"}'
        writer.write(
            f"HTTP/1.1 {self.status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
        )
        await writer.drain()
        writer.close()

    async def _listen_later(self) -> None:
        await asyncio.sleep(self.delay)
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", self.port)
        self.listening_at = time.monotonic()

    def start(self) -> asyncio.Task:
        return asyncio.ensure_future(self._listen_later())

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
def started_at(monkeypatch: pytest.MonkeyPatch, docker_state: FakeDocker) -> dict[str, Any]:
    """DockerSpawner's start (faked) returns the address in ``started_at["address"]``; answers are real."""
    where: dict[str, Any] = {"address": ("127.0.0.1", 1)}
    monkeypatch.setattr(spawner_module, "answers", ANSWERS)

    async def fake_start(self: JuviniDockerSpawner) -> tuple[str, int]:
        where["returned_at"] = time.monotonic()
        return where["address"]

    async def fake_poll(self: JuviniDockerSpawner) -> str | None:
        return where.get("exited")  # DockerSpawner's poll: None while the container runs

    async def fake_output(self: JuviniDockerSpawner, lines: int) -> str:
        return f"last {lines} lines of {self.object_name}"

    monkeypatch.setattr(DockerSpawner, "start", fake_start)
    monkeypatch.setattr(DockerSpawner, "poll", fake_poll)
    monkeypatch.setattr(JuviniDockerSpawner, "server_output", fake_output)
    return where


ANSWERS = spawner_module.answers


def test_start_returns_as_soon_as_the_server_answers_and_the_hubs_first_check_succeeds(
    started_at: dict[str, Any], tmp_path: Path
) -> None:
    server = LateServer(delay=0.7)
    started_at["address"] = ("127.0.0.1", server.port)
    spawner = make_spawner("alice", tmp_path)

    async def scenario() -> tuple[float, float]:
        listening = server.start()
        try:
            await spawner.start()
            returned = time.monotonic()
            await listening
            assert server.listening_at is not None
            # The hub's own check (jupyterhub.user.User._wait_up) of the URL it builds from start()'s answer.
            url = url_path_join(f"http://127.0.0.1:{server.port}", spawner.user.url, "api")
            began = time.monotonic()
            await wait_for_http_server(url, timeout=5)
            return returned - server.listening_at, time.monotonic() - began
        finally:
            await server.close()

    late, hub_check = asyncio.run(scenario())
    assert 0 <= late < 0.25, f"start() returned {late:.2f} s after the server answered"
    assert hub_check < 0.15, f"the hub's first check did not succeed at once ({hub_check:.2f} s)"
    assert server.paths[0] == "/user/alice/api"


def test_a_server_answering_with_an_error_is_not_up_yet(started_at: dict[str, Any], tmp_path: Path) -> None:
    """As for the hub's check: a 5xx answer is not a server that is up."""
    server = LateServer(delay=0, status=503)
    started_at["address"] = ("127.0.0.1", server.port)
    config = Config()
    config.Spawner.http_timeout = 1
    spawner = make_spawner("alice", tmp_path, config=config)

    async def scenario() -> None:
        await server.start()
        try:
            await spawner.start()
        finally:
            await server.close()

    with pytest.raises(web.HTTPError):
        asyncio.run(scenario())
    assert len(server.paths) > 5, "polled finely"


def test_a_server_that_never_answers_fails_within_http_timeout_saying_so(
    started_at: dict[str, Any], tmp_path: Path
) -> None:
    server = LateServer(delay=60)  # never, within the test
    started_at["address"] = ("127.0.0.1", server.port)
    config = Config()
    config.Spawner.http_timeout = 1
    spawner = make_spawner("alice", tmp_path, config=config)
    began = time.monotonic()
    with pytest.raises(web.HTTPError) as failed:
        asyncio.run(spawner.start())
    elapsed = time.monotonic() - began
    assert 1 <= elapsed < 1.5
    message, _ = format_exception(failed.value)
    assert message == (
        "Your server started but did not answer within 1 seconds, so it is stopped. "
        "Try again; if it happens again, ask an admin: the hub's log holds the server's last lines."
    )
    assert not spawner_module._RESERVED


def test_a_server_that_crashes_while_starting_fails_at_once_and_its_last_lines_reach_the_hubs_log(
    started_at: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = LateServer(delay=60)  # never answers: its process died
    started_at["address"] = ("127.0.0.1", server.port)
    started_at["exited"] = "ExitCode=1, Error='', FinishedAt=now"
    config = Config()
    config.Spawner.http_timeout = 30
    spawner = make_spawner("alice", tmp_path, config=config)
    began = time.monotonic()
    with caplog.at_level("WARNING"), pytest.raises(web.HTTPError) as failed:
        asyncio.run(spawner.start())
    assert time.monotonic() - began < spawner_module.EXITED_CHECK_INTERVAL + 1, "noticed at the first check"
    message, _ = format_exception(failed.value)
    assert message == (
        "Your server stopped while starting. Try again; if it happens again, ask an admin: "
        "the hub's log holds the server's last lines."
    )
    assert "ExitCode=1" in caplog.text
    assert f"last {spawner_module.FAILED_SERVER_LOG_LINES} lines of jupyter-alice" in caplog.text


def test_when_start_timeout_comes_first_the_hubs_own_check_takes_over(
    started_at: dict[str, Any], tmp_path: Path
) -> None:
    """start() never runs into start_timeout while it waits: it hands over, as before the fine wait."""
    server = LateServer(delay=60)
    started_at["address"] = ("127.0.0.1", server.port)
    config = Config()
    config.Spawner.start_timeout = 2
    config.Spawner.http_timeout = 30
    spawner = make_spawner("alice", tmp_path, config=config)
    began = time.monotonic()
    assert asyncio.run(spawner.start()) == ("127.0.0.1", server.port)
    assert 0.8 <= time.monotonic() - began < 1.5


# --- progress on the spawn page -------------------------------------------------------------


async def follow_start(spawner: Any, *, join_late: bool = False) -> tuple[list[dict[str, Any]], BaseException | None]:
    """start() with a reader of its progress as JupyterHub's progress handler reads it; both results."""
    spawner._spawn_pending = True  # the hub sets it before it calls start()
    if join_late:
        await spawner.start()
        spawn: asyncio.Future = asyncio.ensure_future(asyncio.sleep(0))
    else:
        spawn = asyncio.ensure_future(spawner.start())
    events = [event async for event in iterate_until(spawn, spawner._generate_progress())]
    await asyncio.wait([spawn])
    spawner._spawn_pending = False
    return events, spawn.exception()


def messages(events: list[dict[str, Any]]) -> list[str]:
    return [event["message"] for event in events]


def test_progress_shows_each_step_as_the_start_goes(engine: FakeEngine, tmp_path: Path) -> None:
    engine.delay = 0.01
    spawner = engine_spawner("alice", tmp_path)
    events, failure = asyncio.run(follow_start(spawner))
    assert failure is None
    assert messages(events) == [
        "Server requested",
        "Your persistent home folder is ready",
        "No Kerberos ticket: this lab does not use Kerberos",
        "No Windows shares to mount with your own login in this lab",
        "Spark ports: driver 12000, block manager 11100 (client mode against an external cluster)",
        f"Container created from {SPARK_IMAGE}",
        "Server starting: waiting for JupyterLab to answer",
        messages(events)[-1],
    ]
    assert re.fullmatch(r"Server answering after \d+\.\d s", events[-1]["message"])
    progress = [event["progress"] for event in events]
    assert progress == sorted(progress) and progress[-1] < 100  # JupyterHub sends the ready event


def test_progress_names_what_a_server_goes_without(engine: FakeEngine, fake_kinit: KinitCalls, tmp_path: Path) -> None:
    fake_kinit.outcome = KinitResult(False, "kinit for alice@LAB.TEST failed: Cannot contact any KDC")
    config = kerberos_config(tmp_path)
    config.JuviniDockerSpawner.spark_driver_ports = "12000-12000"
    config.JuviniDockerSpawner.spark_block_manager_ports = "11100-11100"
    config.JuviniDockerSpawner.cifs_user_shares = SHARES
    engine.containers["other"] = {"Id": "other", "Name": "other", "Labels": running((12000, 11100))[0]}
    spawner = with_auth_state(make_spawner("alice", tmp_path / "users", config=config), {})
    spawner.network_name, spawner.use_internal_ip = "juvini-t-users-net", True
    (tmp_path / "users").mkdir()
    events, failure = asyncio.run(follow_start(spawner))
    assert failure is None
    warnings = [message for message in messages(events) if message.startswith("Warning: ")]
    assert warnings == [
        "Warning: no Kerberos ticket, services that need one will refuse you: no Kerberos login recorded for this user",
        "Warning: your Windows shares are not mounted: no password in the auth state (log out and in again) "
        "for shares home",
        "Warning: All 1 Spark port pairs of this lab are in use, so this server runs Spark in local mode only: "
        "client mode against an external cluster is unavailable until a pair frees up and you restart your server.",
    ]
    assert messages(events)[-2:-1] == ["Server starting: waiting for JupyterLab to answer"]


def test_progress_of_a_server_without_spark(engine: FakeEngine, tmp_path: Path) -> None:
    spawner = engine_spawner("alice", tmp_path)
    spawner.user_options = {"image": "Base"}
    events, _ = asyncio.run(follow_start(spawner))
    assert "No Spark ports: this image has no Spark" in messages(events)
    assert f"Container created from {BASE_IMAGE}" in messages(events)


def test_a_reader_joining_after_the_start_gets_every_step(engine: FakeEngine, tmp_path: Path) -> None:
    """The spawn page may connect while the hub adds the proxy route, after start() returned."""
    spawner = engine_spawner("alice", tmp_path)
    events, _ = asyncio.run(follow_start(spawner, join_late=True))
    assert len(events) == 8
    assert events[-1]["message"].startswith("Server answering after")


def test_a_reader_joining_before_the_start_gets_its_steps_not_the_last_starts(
    engine: FakeEngine, tmp_path: Path
) -> None:
    spawner = engine_spawner("alice", tmp_path)
    asyncio.run(follow_start(spawner))
    asyncio.run(spawner.stop())

    async def page_first() -> list[dict[str, Any]]:
        spawner._spawn_pending = True
        reader = asyncio.ensure_future(collect(spawner._generate_progress()))
        await asyncio.sleep(0.05)  # the page connects; the hub is still running its pre-spawn hooks
        assert not reader.done()
        await spawner.start()
        return await reader

    events = asyncio.run(page_first())
    assert len(events) == 8


async def collect(events: Any) -> list[dict[str, Any]]:
    return [event async for event in events]


def test_a_refused_start_ends_the_progress_with_the_reason(engine: FakeEngine, tmp_path: Path) -> None:
    config = require_ports()
    config.JuviniDockerSpawner.spark_driver_ports = "12000-12000"
    config.JuviniDockerSpawner.spark_block_manager_ports = "11100-11100"
    engine.containers["other"] = {"Id": "other", "Name": "other", "Labels": running((12000, 11100))[0]}
    spawner = engine_spawner("alice", tmp_path, config=config)
    events, failure = asyncio.run(follow_start(spawner))
    assert messages(events)[-1] == "No Windows shares to mount with your own login in this lab"
    assert failure is not None
    # JupyterHub's failure event: "Spawn failed: <this>".
    assert format_exception(failure)[0].startswith("All Spark ports are in use by running servers")


def swarm_spawner(users_dir: Path) -> JuviniSwarmSpawner:
    config = Config()
    config.JuviniSpawnerMixin.user_folder = f"{users_dir}/{{username}}"
    config.JuviniSpawnerMixin.lab_uid = 2100
    config.JuviniSpawnerMixin.lab_gid = 2100
    config.JuviniSpawnerMixin.profiles = [implicit_profile("base", BASE_IMAGE)]
    config.JuviniSpawnerMixin.group_folders = []
    config.SwarmSpawner.network_name = "juvini-t-users-net"
    config.SwarmSpawner.use_internal_ip = True
    config.DockerSpawner.image = BASE_IMAGE
    return JuviniSwarmSpawner(config=config, user=make_user("alice"))


def test_a_swarm_spawner_sends_the_pull_login_with_the_services_of_that_registry(tmp_path: Path) -> None:
    spawner = swarm_spawner(tmp_path)
    spawner.pull_login = {"registry": "registry.example.org:5000", "username": "puller", "password": "pull-secret"}
    client = spawner.new_docker_client("1.41")
    # What docker-py's create_service puts in X-Registry-Auth for the service's image.
    registry, _ = docker.auth.resolve_repository_name("registry.example.org:5000/lab/juvini-t-notebook-base:1")
    login = json.loads(base64.urlsafe_b64decode(docker.auth.get_config_header(client, registry)))
    assert login == {"username": "puller", "password": "pull-secret", "serveraddress": "registry.example.org:5000"}
    other, _ = docker.auth.resolve_repository_name("elsewhere.example.org/team/image:1")
    assert docker.auth.get_config_header(client, other) is None, "no login for another registry"
    anonymous = swarm_spawner(tmp_path).new_docker_client("1.41")
    assert docker.auth.get_config_header(anonymous, registry) is None


def test_a_pull_login_without_its_password_is_refused(tmp_path: Path) -> None:
    spawner = swarm_spawner(tmp_path)
    with pytest.raises(TraitError, match="registry, username and password"):
        spawner.pull_login = {"registry": "registry.example.org:5000", "username": "puller"}


def test_progress_of_a_swarm_service(engine: FakeEngine, tmp_path: Path) -> None:
    engine.task_states = [
        ("pending", "running", None),
        ("assigned", "running", "n2"),
        ("preparing", "running", "n2"),
        ("preparing", "running", "n2"),
        ("running", "running", "n2"),
    ]
    spawner = swarm_spawner(tmp_path)
    spawner.task_poll_interval = 0.05
    events, failure = asyncio.run(follow_start(spawner))
    assert failure is None
    assert messages(events)[:-1] == [
        "Server requested",
        "Your persistent home folder is ready",
        "No Kerberos ticket: this lab does not use Kerberos",
        f"Service created from {BASE_IMAGE}",
        "Scheduled on node host-of-n2",
        f"Node host-of-n2 is fetching the image {BASE_IMAGE} (the first start of an image on a node downloads "
        "it from the registry: this can take a few minutes)",
        "Server starting on node host-of-n2: waiting for JupyterLab to answer",
    ]
    assert events[-1]["message"].startswith("Server answering after")
    assert "jupyter-alice" in engine.services


def test_a_swarm_service_runs_the_image_pinned_to_its_pushed_digest(engine: FakeEngine, tmp_path: Path) -> None:
    engine.task_states = [("running", "running", "n2")]
    spawner = swarm_spawner(tmp_path)
    spawner.task_poll_interval = 0.05
    pinned = f"{BASE_IMAGE}@sha256:{'ab' * 32}"
    spawner.pinned_images = {BASE_IMAGE: pinned, "other:1": f"other:1@sha256:{'cd' * 32}"}
    configured = dict(spawner.extra_container_spec)
    events, failure = asyncio.run(follow_start(spawner))
    assert failure is None, failure
    assert engine.services["jupyter-alice"]["Image"]["ContainerSpec"]["Image"] == pinned
    assert spawner.extra_container_spec == configured, "the pin is the start's own, not left in the config"
    assert spawner.image == BASE_IMAGE, "the hub still records the image the user chose"
    assert f"Service created from {BASE_IMAGE}" in messages(events), "the user reads the image's name"


def test_a_swarm_service_of_an_image_not_pinned_runs_it_by_name(engine: FakeEngine, tmp_path: Path) -> None:
    engine.task_states = [("running", "running", "n2")]
    spawner = swarm_spawner(tmp_path)
    spawner.task_poll_interval = 0.05
    spawner.pinned_images = {"other:1": f"other:1@sha256:{'cd' * 32}"}
    _, failure = asyncio.run(follow_start(spawner))
    assert failure is None, failure
    assert engine.services["jupyter-alice"]["Image"]["ContainerSpec"]["Image"] == BASE_IMAGE


def test_a_pin_of_another_image_or_without_a_digest_is_refused(tmp_path: Path) -> None:
    spawner = swarm_spawner(tmp_path)
    for wrong in ({BASE_IMAGE: f"other:1@sha256:{'ab' * 32}"}, {BASE_IMAGE: BASE_IMAGE}):
        with pytest.raises(TraitError, match=r"must be .*@sha256:<digest>"):
            spawner.pinned_images = wrong


def test_a_swarm_task_the_node_rejects_fails_the_start_at_once_with_why(engine: FakeEngine, tmp_path: Path) -> None:
    engine.task_states = [("pending", "running", None), ("rejected", "shutdown", "n3")]
    spawner = swarm_spawner(tmp_path)
    spawner.task_poll_interval = 0.05
    began = time.monotonic()
    _events, failure = asyncio.run(follow_start(spawner))
    assert failure is not None
    assert time.monotonic() - began < 5, "a rejected task must not wait for start_timeout"
    assert format_exception(failure)[0].startswith(
        "Your server could not start on node host-of-n3: invalid mount config for type bind"
    )


@pytest.mark.parametrize(
    ("state", "desired", "stopped"),
    [
        ("running", "running", False),
        ("preparing", "running", False),
        # The node died: its last report says running, the swarm has shut the task down.
        ("running", "shutdown", True),
        ("failed", "shutdown", True),
        ("orphaned", "running", True),
    ],
)
def test_a_swarm_server_is_stopped_once_the_swarm_ended_its_task(
    engine: FakeEngine, tmp_path: Path, state: str, desired: str, stopped: bool
) -> None:
    spawner = swarm_spawner(tmp_path)
    asyncio.run(spawner.start())
    engine.task_states = [(state, desired, "n1")]
    status = asyncio.run(spawner.poll())
    assert (status is not None) is stopped, status


def test_a_username_starting_with_a_dot_gets_no_folder(engine: FakeEngine, tmp_path: Path) -> None:
    spawner = swarm_spawner(tmp_path)
    spawner.user = make_user(".juvini-kerberos")
    with pytest.raises(web.HTTPError, match="starts with a dot"):
        spawner.ensure_user_folder()
    assert not (tmp_path / ".juvini-kerberos").exists()


# --- profiles: who may pick which, and what a pick gives the server -------------------------

LARGE = implicit_profile("base", BASE_IMAGE) | {
    "slug": "base-large",
    "display_name": "Base, <large>",
    "description": "More of everything & more.",
    "cpu_limit": 4.0,
    "mem_limit": 8 * 1024**3,
    "environment": {"LAB_PROFILE": "large", "SPARK_DRIVER_MEMORY": "2g"},
    "groups": ["modellers"],
}
GPU = implicit_profile("base", BASE_IMAGE) | {
    "slug": "gpu",
    "display_name": "Base with a GPU",
    "gpu": {"count": 1, "device_ids": []},
    "users": ["gina"],
}
PROFILES = [implicit_profile("pyspark", SPARK_IMAGE), implicit_profile("base", BASE_IMAGE), LARGE, GPU]
GROUP_FOLDERS = [
    {"group": "modellers", "path": "/srv/groups/modellers", "bind": "/home/labuser/shared-groups/modellers"},
    {"group": "analysts", "path": "/srv/groups/analysts", "bind": "/home/labuser/shared-groups/analysts"},
]


def profiled(name: str, users_dir: Path, groups: tuple[str, ...] = ()) -> JuviniDockerSpawner:
    """A spawner of the rendered config with the profiles above, for a member of ``groups``."""
    config = spawner_config(users_dir, "12000-12001", "11100-11101")
    config.JuviniSpawnerMixin.profiles = PROFILES
    config.JuviniSpawnerMixin.group_folders = GROUP_FOLDERS
    config.JuviniDockerSpawner.volumes = {f"{users_dir}/{{username}}": "/home/labuser"}
    config.DockerSpawner.network_name = "juvini-t-users-net"
    config.DockerSpawner.use_internal_ip = True
    return JuviniDockerSpawner(config=config, user=make_user(name, groups))


def table() -> list[Profile]:
    return [Profile.from_config(item) for item in PROFILES]


def refusal(options: dict[str, Any], name: str = "alice", groups: tuple[str, ...] = ()) -> ProfileRefused:
    with pytest.raises(ProfileRefused) as refused:
        choose(table(), name, groups, options, PICKS)
    return refused.value


def test_profiles_without_groups_or_users_are_open_to_everyone_and_the_first_is_the_default() -> None:
    assert [p.slug for p in open_profiles(table(), "alice", [])] == ["pyspark", "base"]
    assert choose(table(), "alice", [], {}, PICKS).slug == "pyspark"


def test_group_members_and_named_users_may_pick_their_profiles() -> None:
    assert [p.slug for p in open_profiles(table(), "alice", ["modellers"])] == ["pyspark", "base", "base-large"]
    assert [p.slug for p in open_profiles(table(), "gina", ["analysts"])] == ["pyspark", "base", "gpu"]
    assert choose(table(), "alice", ["modellers"], {"profile": "base-large"}, PICKS).slug == "base-large"


def test_a_profile_the_user_may_not_pick_is_refused_with_403_and_what_they_may_pick() -> None:
    refused = refusal({"profile": "base-large"}, groups=("analysts",))
    assert refused.status == 403
    assert refused.message == (
        "You may not use the profile 'base-large' (Base, <large>): it is for members of modellers. "
        "Profiles you may use: pyspark, base."
    )
    assert "it is for gina." in refusal({"profile": "gpu"}).message


@pytest.mark.parametrize("slug", ["no-such", "", 3])
def test_an_unknown_profile_is_refused_with_400_and_the_allowed_slugs(slug: Any) -> None:
    refused = refusal({"profile": slug}, groups=("modellers",))
    assert refused.status == 400
    assert refused.message == f"There is no profile {slug!r}. Profiles you may use: pyspark, base, base-large."


def test_an_image_pick_as_before_profiles_gets_the_first_allowed_profile_of_that_image() -> None:
    assert choose(table(), "alice", ["modellers"], {"image": "Base"}, PICKS).slug == "base"
    assert choose(table(), "alice", [], {"image": "PySpark"}, PICKS).slug == "pyspark"
    unknown = refusal({"image": "Tensorflow"})
    assert (unknown.status, unknown.message) == (
        400,
        "There is no image 'Tensorflow'. Images of this lab: Base, PySpark.",
    )


def test_an_image_no_allowed_profile_runs_is_refused_with_403() -> None:
    only_large = [Profile.from_config(LARGE)]
    with pytest.raises(ProfileRefused) as refused:
        choose(only_large, "alice", [], {"image": "Base"}, PICKS)
    assert refused.value.status == 403
    assert (
        refused.value.message == "None of the profiles you may use runs the image 'Base'. Profiles you may use: none."
    )


def test_a_profile_and_another_image_together_are_refused() -> None:
    refused = refusal({"profile": "base", "image": "PySpark"})
    assert refused.status == 400
    assert "The image 'PySpark' is not the profile 'base''s (Base)" in refused.message
    assert choose(table(), "alice", [], {"profile": "base", "image": "Base"}, PICKS).slug == "base"


def test_a_user_with_no_profile_open_to_them_is_told_so() -> None:
    with pytest.raises(ProfileRefused) as refused:
        choose([Profile.from_config(LARGE)], "alice", [], {}, PICKS)
    assert refused.value.status == 403
    assert refused.value.message.startswith("No profile of this lab is open to you")


def test_the_form_describes_each_profile_the_user_may_pick_and_escapes_them() -> None:
    form = profiles_module.options_form(open_profiles(table(), "alice", ["modellers"]), chosen="base")
    assert re.findall(r'name="profile" id="profile-([a-z-]+)"', form) == ["pyspark", "base", "base-large"]
    assert "Base, &lt;large&gt;" in form and "More of everything &amp; more." in form
    assert "4 CPUs, 8 GiB memory; image: Base" in form
    assert re.findall(r'value="([a-z-]+)"[^>]* checked', form) == ["base"]
    assert "<large>" not in form


def test_the_form_preselects_the_first_profile_and_is_empty_with_one_choice() -> None:
    form = profiles_module.options_form(open_profiles(table(), "alice", []), chosen="base-large")
    assert re.findall(r'value="([a-z-]+)"[^>]* checked', form) == ["pyspark"]
    assert profiles_module.options_form([Profile.from_config(LARGE)]) == ""


def test_the_forms_answer_becomes_the_profile_option() -> None:
    assert profiles_module.options_from_form({"profile": ["base"], "_xsrf": ["x"]}) == {"profile": "base"}
    assert profiles_module.options_from_form({"image": ["Base"]}) == {"image": "Base"}


def test_a_gpu_is_a_docker_device_request_by_count_or_ids() -> None:
    assert Gpu(2, ()).device_request() == {"driver": "", "count": 2, "capabilities": [["gpu"]]}
    assert Gpu(0, ("0", "GPU-8f6c")).device_request() == {
        "driver": "",
        "device_ids": ["0", "GPU-8f6c"],
        "capabilities": [["gpu"]],
    }
    docker.types.DeviceRequest(**Gpu(1, ()).device_request())  # what docker-py makes of it


def test_the_spawner_offers_the_users_profiles_in_its_form(tmp_path: Path) -> None:
    spawner = profiled("alice", tmp_path, groups=("modellers",))
    form = asyncio.run(spawner.get_options_form())
    assert re.findall(r'name="profile" id="profile-([a-z-]+)"', form) == ["pyspark", "base", "base-large"]
    assert spawner.run_options_from_form({"profile": ["base-large"]}) == {"profile": "base-large"}
    assert spawner.apply_user_options is spawner_module._apply_profile


def test_a_pick_gives_the_server_its_image_limits_environment_and_the_users_group_folders(tmp_path: Path) -> None:
    spawner = profiled("alice", tmp_path, groups=("modellers", "other"))
    asyncio.run(spawner._run_apply_user_options({"profile": "base-large"}))
    assert (spawner.image, spawner.cpu_limit, spawner.mem_limit) == (BASE_IMAGE, 4.0, 8 * 1024**3)
    # The profile's variables go over the config's.
    assert spawner.environment == {"SPARK_DRIVER_MEMORY": "2g", "LAB_PROFILE": "large"}
    assert spawner.volumes == {
        f"{tmp_path}/{{username}}": "/home/labuser",
        "/srv/groups/modellers": {"bind": "/home/labuser/shared-groups/modellers", "mode": "rw"},
    }
    assert "device_requests" not in spawner.extra_host_config


def test_the_next_pick_starts_from_the_config_not_from_the_last_pick(tmp_path: Path) -> None:
    spawner = profiled("gina", tmp_path, groups=("modellers",))
    asyncio.run(spawner._run_apply_user_options({"profile": "base-large"}))
    asyncio.run(spawner._run_apply_user_options({"profile": "gpu"}))
    assert spawner.environment == {"SPARK_DRIVER_MEMORY": "1g"}
    assert spawner.extra_host_config["device_requests"] == [{"driver": "", "count": 1, "capabilities": [["gpu"]]}]
    asyncio.run(spawner._run_apply_user_options({}))
    assert (spawner.image, spawner.profile and spawner.profile.slug) == (SPARK_IMAGE, "pyspark")
    assert "device_requests" not in spawner.extra_host_config
    assert "/srv/groups/modellers" in spawner.volumes and "/srv/groups/analysts" not in spawner.volumes


def test_a_forbidden_pick_is_refused_before_the_start_with_403_and_the_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spawner = profiled("alice", tmp_path)
    with caplog.at_level("WARNING"), pytest.raises(web.HTTPError) as refused:
        asyncio.run(spawner._run_apply_user_options({"profile": "base-large"}))
    assert refused.value.status_code == 403
    message, _ = format_exception(refused.value)
    assert message.startswith("You may not use the profile 'base-large'")
    assert "refusing alice's start: You may not use the profile 'base-large'" in caplog.text
    assert spawner.profile is None


def test_a_started_profile_is_the_first_step_and_its_limits_reach_the_container(
    engine: FakeEngine, tmp_path: Path
) -> None:
    spawner = profiled("alice", tmp_path, groups=("modellers",))
    spawner.apply_profile({"profile": "base-large"})
    events, failure = asyncio.run(follow_start(spawner))
    assert failure is None
    assert messages(events)[1] == "Profile: Base, <large> (4 CPUs, 8 GiB memory)"
    container = engine.containers["jupyter-alice"]
    assert container["Image"] == BASE_IMAGE
    assert (container["HostConfig"]["mem_limit"], container["HostConfig"]["cpu_quota"]) == (8 * 1024**3, 400_000)
    assert container["Env"]["LAB_PROFILE"] == "large"


def test_a_gpu_profile_on_a_host_without_a_gpu_runtime_fails_at_once_saying_why(
    engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spawner = profiled("gina", tmp_path)
    spawner.apply_profile({"profile": "gpu"})
    with caplog.at_level("ERROR"):
        events, failure = asyncio.run(follow_start(spawner))
    assert failure is not None
    message, _ = format_exception(failure)
    assert message == (
        "The profile Base with a GPU asks for 1 GPU, but the Docker host cannot hand out GPUs "
        '(Docker: could not select device driver "" with capabilities: [[gpu]]). Pick another profile, '
        "or ask an admin to install the host's GPU runtime (e.g. the NVIDIA Container Toolkit)."
    )
    assert getattr(failure, "status_code", None) == 503
    assert "server of profile gpu asks for 1 GPU; Docker refused it: could not select device driver" in caplog.text
    assert messages(events)[1] == "Profile: Base with a GPU (2 CPUs, 4 GiB memory, 1 GPU)"
    engine.gpu_runtime = True
    asyncio.run(spawner.stop())
    spawner.apply_profile({"profile": "gpu"})
    assert asyncio.run(spawner.start()) == ("127.0.0.1", 8888)


# --- a hub killed while servers start: its next start sweeps the containers it never recorded ----

USER_LABELS = {"org.juvini.project": "juvini", "org.juvini.stack": "t", "org.juvini.role": "user"}


@pytest.fixture(autouse=True)
def no_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's hub process sweeps afresh; the tests above start from a hub whose sweep found nothing."""
    monkeypatch.setattr(spawner_module, "_SWEEP", None)

    async def nothing_to_sweep(self: JuviniDockerSpawner) -> None:
        return None

    monkeypatch.setattr(JuviniDockerSpawner, "sweep_unrecorded", nothing_to_sweep)


class EngineClient(FakeClient):
    """FakeClient listing containers as the engine does: running ones, or all with ``all=True``."""

    def containers(self, filters: dict[str, Any], all: bool = False) -> list[dict[str, Any]]:
        with self.engine.call(self, "containers"):
            wanted = set(filters["label"])
            return [
                {
                    "Id": c["Id"],
                    "Names": [f"/{c['Name']}"],
                    "State": "running" if c["State"]["Running"] else "created",
                    "Labels": c["Labels"],
                }
                for c in self.engine.containers.values()
                if (all or c["State"]["Running"])
                and wanted <= set(c["Labels"]) | {f"{k}={v}" for k, v in c["Labels"].items()}
            ]

    def remove_container(self, container_id: str, v: bool = False, force: bool = False) -> None:
        with self.engine.call(self, "remove_container"):
            container = self._container(container_id)
            if container["State"]["Running"] and not force:
                raise api_error(409, "You cannot remove a running container")
            del self.engine.containers[container["Name"]]


@dataclass
class CrashedHub:
    """A hub database (JupyterHub's own tables, in memory) and the engine as a killed hub left them."""

    engine: FakeEngine
    db: Any
    users_dir: Path

    def saved_server(self, name: str, state: dict[str, Any] | None) -> None:
        """A user whose server the database holds, with the spawner state it saved ({} until a start returns)."""
        user = orm.User(name=name)
        self.db.add(user)
        self.db.add(orm.Spawner(user=user, name="", state=state, server=orm.Server()))
        self.db.commit()

    def container(
        self, name: str, *, running: bool, labels: dict[str, str], pair: tuple[int, int] | None = None
    ) -> str:
        spark = SparkPorts(*pair).labels() if pair else {}
        self.engine.containers[name] = {
            "Id": f"id-{name}",
            "Name": name,
            "Labels": labels | spark,
            "State": {"Running": running},
            "Config": {"Env": []},
            "HostConfig": {},
        }
        return f"id-{name}"

    def spawner(self, name: str) -> JuviniDockerSpawner:
        """The user's spawner as the restarted hub makes it: the rendered config, the saved state loaded."""
        config = Config()
        config.DockerSpawner.name_template = "juvini-t-user-{username}"
        config.JuviniDockerSpawner.extra_create_kwargs = {"user": "2100:2100", "labels": USER_LABELS}
        spawner = engine_spawner(name, self.users_dir, config=config)
        spawner.user = types.SimpleNamespace(**vars(make_user(name)), db=self.db)
        saved = self.db.query(orm.Spawner).join(orm.User).filter(orm.User.name == name).one_or_none()
        spawner.load_state((saved.state if saved else None) or {})
        return spawner


@pytest.fixture
def crashed_hub(engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CrashedHub]:
    monkeypatch.setattr(
        spawner_module.JuviniSpawnerMixin, "new_docker_client", lambda self, version: EngineClient(engine, version)
    )
    monkeypatch.setattr(JuviniDockerSpawner, "sweep_unrecorded", SWEEP)
    db = orm.new_session_factory("sqlite:///:memory:")()
    yield CrashedHub(engine, db, tmp_path)
    db.close()


SWEEP = JuviniDockerSpawner.sweep_unrecorded


def crash_scene(hub: CrashedHub) -> None:
    """Alice's server was up (its start returned and saved its container); Bob's was started and Carol's
    created when the hub died (neither start returned); Dave's server is another stack's on the host."""
    alice = hub.container("juvini-t-user-alice", running=True, labels=USER_LABELS, pair=(12000, 11100))
    hub.saved_server("alice", {"object_id": alice, "object_name": "juvini-t-user-alice"})
    hub.container("juvini-t-user-bob", running=True, labels=USER_LABELS, pair=(12001, 11101))
    hub.saved_server("bob", {})
    hub.container("juvini-t-user-carol", running=False, labels=USER_LABELS)
    hub.saved_server("carol", None)
    other_stack = USER_LABELS | {"org.juvini.stack": "other"}
    hub.container("juvini-other-user-dave", running=True, labels=other_stack, pair=(12002, 11102))
    hub.container("juvini-t-hub", running=True, labels=USER_LABELS | {"org.juvini.role": "hub"})


def test_the_restarted_hubs_check_finds_unfinished_starts_gone_and_saved_servers_running(
    crashed_hub: CrashedHub, caplog: pytest.LogCaptureFixture
) -> None:
    crash_scene(crashed_hub)
    spawners = [crashed_hub.spawner(name) for name in ("alice", "bob", "carol")]

    async def check_all() -> list[Any]:
        # What JupyterHub's init_spawners does: poll every server the database holds, at once.
        return await asyncio.gather(*(spawner.poll() for spawner in spawners))

    with caplog.at_level("INFO"):
        statuses = asyncio.run(check_all())
    # Alice's server runs on (the hub keeps it and its route); Bob's and Carol's are gone, so the hub
    # clears them at once (not after http_timeout) and they may start again.
    assert statuses == [None, 0, 0]
    assert set(crashed_hub.engine.containers) == {"juvini-t-user-alice", "juvini-other-user-dave", "juvini-t-hub"}
    assert "removing juvini-t-user-bob (id-juvini-t-, running, Spark ports 12001/11101)" in caplog.text
    assert "removing juvini-t-user-carol (id-juvini-t-, created)" in caplog.text
    assert "2 removed" in caplog.text
    assert crashed_hub.engine.calls.count("containers") == 1, "the sweep runs once per hub process"


def test_a_pair_an_unfinished_start_held_is_handed_out_again(crashed_hub: CrashedHub) -> None:
    crash_scene(crashed_hub)
    erin = crashed_hub.spawner("erin")
    asyncio.run(erin.start())
    # 12000 is Alice's and 12002 Dave's (another stack, same host ports); Bob's 12001 is free again.
    assert erin.spark_ports == SparkPorts(12001, 11101)
    assert crashed_hub.engine.containers["juvini-t-user-erin"]["State"]["Running"]
    assert "juvini-t-user-bob" not in crashed_hub.engine.containers


def test_a_user_whose_start_was_cut_starts_again_in_a_new_container(crashed_hub: CrashedHub) -> None:
    crash_scene(crashed_hub)
    carol = crashed_hub.spawner("carol")
    assert asyncio.run(carol.poll()) == 0
    assert asyncio.run(carol.start()) == ("127.0.0.1", 8888)
    container = crashed_hub.engine.containers["juvini-t-user-carol"]
    assert container["State"]["Running"] and carol.object_id == container["Id"]
    assert container["Labels"][DRIVER_PORT_LABEL] == "12001"


def test_the_sweep_does_not_remove_the_containers_of_starts_under_way(crashed_hub: CrashedHub) -> None:
    """Starts that begin with the hub wait for its sweep before making their containers."""
    spawners = [crashed_hub.spawner(name) for name in ("frank", "grace", "heidi")]

    async def start_all() -> None:
        await asyncio.gather(*(spawner.start() for spawner in spawners))

    asyncio.run(start_all())
    assert {f"juvini-t-user-{name}" for name in ("frank", "grace", "heidi")} == set(crashed_hub.engine.containers)
    assert "remove_container" not in crashed_hub.engine.calls


def test_without_labels_naming_the_stacks_containers_nothing_is_removed(
    crashed_hub: CrashedHub, caplog: pytest.LogCaptureFixture
) -> None:
    crash_scene(crashed_hub)
    before = set(crashed_hub.engine.containers)

    async def docker_call(method: str, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"no Docker call expected, got {method}")

    removed = asyncio.run(remove_unrecorded(docker_call, {}, set(), logging.getLogger("test")))
    assert removed == []
    assert set(crashed_hub.engine.containers) == before
    assert "no labels name them" in caplog.text


def test_a_failed_sweep_leaves_the_hub_checking_and_starting(
    crashed_hub: CrashedHub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    crash_scene(crashed_hub)

    def broken_database(self: JuviniDockerSpawner) -> list[dict[str, Any]]:
        raise RuntimeError("database locked")

    monkeypatch.setattr(JuviniDockerSpawner, "saved_states", broken_database)
    alice = crashed_hub.spawner("alice")
    assert asyncio.run(alice.poll()) is None
    assert "could not remove users' containers of unfinished starts" in caplog.text
    assert "juvini-t-user-bob" in crashed_hub.engine.containers


def test_saved_states_name_the_containers_of_finished_starts_only() -> None:
    assert recorded_containers([{"object_id": "a", "object_name": "n"}, {}, None, {"object_id": ""}]) == {"a"}
