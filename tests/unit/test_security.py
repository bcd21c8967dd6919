"""``security.userContainers``: the settings, and what the Docker SDK makes of them."""

from __future__ import annotations

import re
from typing import Any

import docker.types
import pytest

from infra.settings import ConfigError, parse_settings
from infra.settings.security import CAPABILITIES, UserContainerSecurity

pytestmark = pytest.mark.unit

#: The engine API version of Debian's docker.io 20.10, the oldest engine the lab supports.
API_VERSION = "1.41"


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw)
    return caught.value.problems


def host_config(security: UserContainerSecurity) -> dict[str, Any]:
    """What DockerSpawner's create_host_config call sends to the engine for these options."""
    return docker.types.HostConfig(version=API_VERSION, **security.docker_host_config())


def test_defaults_lock_users_containers_down() -> None:
    sent = host_config(parse_settings({}).security.user_containers)
    assert sent["CapDrop"] == ["ALL"] and sent.get("CapAdd") in (None, [])
    assert sent["SecurityOpt"] == ["no-new-privileges:true"]
    assert sent["PidsLimit"] == 2048
    assert [(u["Name"], u["Soft"], u["Hard"]) for u in sent["Ulimits"]] == [("core", 0, 0)]


def test_open_files_when_set() -> None:
    security = parse_settings({"security": {"userContainers": {"openFiles": 16384}}}).security.user_containers
    assert ("nofile", 16384, 16384) in [(u["Name"], u["Soft"], u["Hard"]) for u in host_config(security)["Ulimits"]]


def test_a_lab_can_give_back_what_it_needs() -> None:
    raw = {
        "security": {
            "userContainers": {
                "capAdd": ["sys_ptrace", "CAP_NET_RAW"],
                "noNewPrivileges": False,
                "pidsLimit": 0,
                "openFiles": 0,
                "coreDumps": True,
            }
        }
    }
    sent = host_config(parse_settings(raw).security.user_containers)
    assert sent["CapAdd"] == ["SYS_PTRACE", "NET_RAW"] and sent["CapDrop"] == ["ALL"]
    assert "PidsLimit" not in sent and not sent.get("SecurityOpt") and not sent.get("Ulimits")


def test_keeping_dockers_default_capabilities() -> None:
    sent = host_config(parse_settings({"security": {"userContainers": {"capDrop": []}}}).security.user_containers)
    assert not sent.get("CapDrop")


@pytest.mark.parametrize(
    ("raw", "key", "shown", "allowed"),
    [
        ({"capDrop": ["ALL", "NET_NUKE"]}, "capDrop[1]", "'NET_NUKE'", "is not a Linux capability; one of ALL, "),
        ({"capAdd": ["ALL"]}, "capAdd", '["ALL"]', "must name the capabilities the lab needs, not ALL"),
        ({"capAdd": ["NET_RAW", "net_raw"]}, "capAdd", '["NET_RAW", "NET_RAW"]', "lists NET_RAW twice"),
        ({"capDrop": ["NET_RAW"], "capAdd": ["NET_RAW"]}, "capAdd", '["NET_RAW"]', "NET_RAW is also in capDrop"),
        ({"pidsLimit": -1}, "pidsLimit", "-1", "greater than or equal to 0"),
        ({"openFiles": 64}, "openFiles", "64", "0 (Docker's) or at least 1024"),
        ({"openFiles": 2_000_000}, "openFiles", "2000000", "less than or equal to 1048576"),
        ({"noNewPrivileges": "maybe"}, "noNewPrivileges", "'maybe'", "valid boolean"),
        ({"privileged": True}, "privileged", "", "unknown key"),
    ],
    ids=["unknown-cap", "add-all", "twice", "add-and-drop", "pids", "few-files", "many-files", "bool", "unknown-key"],
)
def test_bad_values_name_the_key(raw: dict[str, Any], key: str, shown: str, allowed: str) -> None:
    found = problems({"security": {"userContainers": raw}})
    full_key = f"juvini:security.userContainers.{key}"
    assert any(line.startswith(full_key) and shown in line and allowed in line for line in found), found


@pytest.mark.parametrize("key", ["noNewPrivileges", "pidsLimit", "openFiles", "coreDumps"])
def test_swarm_refuses_what_its_services_do_not_carry(key: str) -> None:
    value = {"noNewPrivileges": True, "pidsLimit": 100, "openFiles": 4096, "coreDumps": False}[key]
    found = problems({"swarm": {"enabled": True}, "security": {"userContainers": {key: value}}})
    assert [line for line in found if re.match(rf"juvini:security\.userContainers\.{key}: .*swarm\.enabled", line)]


def test_swarm_takes_the_capabilities() -> None:
    settings = parse_settings(
        {
            "swarm": {"enabled": True},
            "images": {"registry": "registry.example.org/lab", "push": True},
            "security": {"userContainers": {"capAdd": ["NET_RAW"]}},
        }
    )
    assert settings.security.user_containers.cap_add == ["NET_RAW"]


def test_capability_list_is_what_docker_accepts() -> None:
    """Docker's own list (moby's capabilities package) has these; a typo here would refuse a real one."""
    assert {"SYS_ADMIN", "NET_ADMIN", "CHOWN", "SETUID", "BPF", "PERFMON", "CHECKPOINT_RESTORE"} <= CAPABILITIES
    assert len(CAPABILITIES) == 41
    assert all(re.fullmatch(r"[A-Z_]+", name) for name in CAPABILITIES)
    assert docker.types.Ulimit(name="nofile", soft=1, hard=1)["Name"] == "nofile"
