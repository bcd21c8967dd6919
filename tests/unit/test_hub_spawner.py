"""The hub's additions (images/hub/juvini_hub): users' folders, Spark ports, Kerberos, shares.

The spawner and the authenticator are configured here as the rendered jupyterhub_config.py
configures them; tests/unit/test_hub_config.py checks that the rendered file sets what
they need.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from dockerspawner import DockerSpawner
from ldapauthenticator import LDAPAuthenticator
from pydantic import SecretStr
from tornado import web
from traitlets import TraitError
from traitlets.config import Config

from infra.settings import CifsShare, parse_settings
from infra.shares import cifs_options, user_share_config
from juvini_hub import kerberos as kerberos_module
from juvini_hub import spawner as spawner_module
from juvini_hub.auth import JuviniLDAPAuthenticator
from juvini_hub.contract import MissingConfig
from juvini_hub.kerberos import KerberosTickets, KinitResult
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
    """Each test's event loop gets its own allocation lock; no reservation leaks between tests."""
    monkeypatch.setattr(spawner_module, "_ALLOCATION_LOCK", asyncio.Lock())
    spawner_module._RESERVED.clear()
    yield
    spawner_module._RESERVED.clear()


async def _yield(times: int = 1) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


@pytest.fixture
def docker_state(monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
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


def spawner_config(users_dir: Path, drivers: str, blocks: str) -> Config:
    """The options the rendered config sets for a JuviniDockerSpawner."""
    config = Config()
    config.JuviniSpawnerMixin.user_folder = f"{users_dir}/{{username}}"
    config.JuviniSpawnerMixin.lab_uid = 2100
    config.JuviniSpawnerMixin.lab_gid = 2100
    config.JuviniDockerSpawner.spark_driver_ports = drivers
    config.JuviniDockerSpawner.spark_block_manager_ports = blocks
    config.JuviniDockerSpawner.spark_driver_host = "10.1.2.3"
    config.JuviniDockerSpawner.spark_publish_ip = "0.0.0.0"
    config.JuviniDockerSpawner.cifs_user_shares = []
    config.JuviniDockerSpawner.user_share_labels = SHARE_LABELS
    config.JuviniDockerSpawner.extra_create_kwargs = {"user": "2100:2100", "labels": {"org.juvini.stack": "t"}}
    config.JuviniDockerSpawner.environment = {"SPARK_DRIVER_MEMORY": "1g"}
    return config


def make_user(name: str) -> types.SimpleNamespace:
    return types.SimpleNamespace(name=name, escaped_name=name, url=f"/user/{name}/", id=1, settings={})


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


def test_a_start_beyond_the_ranges_is_refused_with_the_reason(docker_state: FakeDocker, tmp_path: Path) -> None:
    for name in ("alice", "bob"):
        asyncio.run(make_spawner(name, tmp_path).start())
    with pytest.raises(web.HTTPError) as refused:
        asyncio.run(make_spawner("carol", tmp_path).start())
    assert refused.value.status_code == 503
    assert "All Spark ports are in use" in str(refused.value.log_message)
    assert not spawner_module._RESERVED


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
        "c.JuviniSpawnerMixin.lab_gid",
        "c.JuviniSpawnerMixin.lab_uid",
        "c.JuviniSpawnerMixin.user_folder",
        "c.JuviniDockerSpawner.cifs_user_shares",
        "c.JuviniDockerSpawner.spark_block_manager_ports",
        "c.JuviniDockerSpawner.spark_driver_host",
        "c.JuviniDockerSpawner.spark_driver_ports",
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


def test_stopping_removes_the_users_share_volumes(docker_state: FakeDocker, tmp_path: Path, monkeypatch) -> None:
    async def fake_stop(self: JuviniDockerSpawner, now: bool = False) -> None:
        return None

    monkeypatch.setattr(DockerSpawner, "stop", fake_stop)
    spawner = make_spawner("alice", tmp_path)
    spawner.cifs_user_shares = SHARES
    asyncio.run(spawner.stop())
    assert ("remove_volume", ("jupyter-alice-cifs-home",), {}) in docker_state.calls
