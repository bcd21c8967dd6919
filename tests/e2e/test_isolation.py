"""Network isolation (security.networkIsolation, on by default), tried from inside a running user's
server of the lab the program declared: among the lab's parts only the hub API answers; other
users' servers, the proxy's API and the Docker host's own services do not; a machine outside the
lab still does. A control from the hub container shows that each refused service does listen."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from infra.hub_config import HUB_API_PORT, PROXY_API_PORT
from infra.isolation import host_names
from infra.naming import Naming
from tests.e2e.conftest import STACK, Lab, servers_running, signed_in
from tests.support.lab_client import LabUser
from tests.support.outside import Outside, outside_machine

pytestmark = pytest.mark.e2e

NAMING = Naming("juvini", STACK)
SERVER_PORT = 8888  # where users' servers listen (DockerSpawner's default)
SSH_PORT = 22  # this machine's sshd (tests/setup.sh), on every address of the host
#: Apart from the integration tier's outside machine (198.51.100.0/29).
OUTSIDE_SUBNET = "198.51.100.8/29"

#: Run in a kernel (or in the hub container with python3 -c): how connecting to each (host, port) ends.
PROBE = """
import errno, json, socket, sys
def probe(host, port):
    try:
        with socket.create_connection((host, port), timeout=5):
            return "connected"
    except socket.timeout:
        return "timeout"
    except OSError as error:
        named = {errno.EHOSTUNREACH: "rejected", errno.ECONNREFUSED: "refused"}
        return named.get(error.errno, errno.errorcode.get(error.errno, str(error)))
print(json.dumps({f"{host}:{port}": probe(host, port) for host, port in TARGETS}))
"""
#: Run in a kernel: the hub API's answer, at the address the server was given for it.
HUB_API = """
import json, os, urllib.request
with urllib.request.urlopen(os.environ["JUPYTERHUB_API_URL"], timeout=10) as answer:
    print(json.dumps({"url": os.environ["JUPYTERHUB_API_URL"], "status": answer.status, "body": json.load(answer)}))
"""


def probe_code(targets: list[tuple[str, int]]) -> str:
    return f"TARGETS = {targets!r}\n{PROBE}"


def last_json(output: str) -> Any:
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def outside() -> Iterator[Outside]:
    with outside_machine("jv-e2e-out", OUTSIDE_SUBNET) as machine:
        yield machine


@pytest.fixture(scope="module")
def accounts(lab: Lab) -> tuple[LabUser, ...]:
    return signed_in(lab, "isolde", "ingo")


@pytest.fixture
def two_users(accounts: tuple[LabUser, ...]) -> Iterator[tuple[LabUser, ...]]:
    with servers_running(accounts) as users:
        yield users


def users_network_address(lab: Lab, user: LabUser) -> str:
    container = lab.docker.containers.get(f"juvini-{STACK}-user-{user.name}")
    address: str = container.attrs["NetworkSettings"]["Networks"][NAMING.physical("users-net")]["IPAddress"]
    return address


def targets(lab: Lab, other: LabUser, outside: Outside) -> dict[str, tuple[str, int]]:
    gateway = lab.docker.networks.get(NAMING.physical("users-net")).attrs["IPAM"]["Config"][0]["Gateway"]
    return {
        "another user's server": (users_network_address(lab, other), SERVER_PORT),
        "the proxy's API": (NAMING.physical("proxy"), PROXY_API_PORT),
        "the hub's API port": (NAMING.physical("hub"), HUB_API_PORT),
        "the host's sshd at the gateway": (gateway, SSH_PORT),
        "the lab's HTTPS port, published by the host": (gateway, lab.config["hub"]["httpsPort"]),
        "a machine outside the lab": (outside.addresses[0], outside.port),
    }


def test_from_a_users_server_only_the_hub_api_and_the_outside_answer(
    lab: Lab, two_users: tuple[LabUser, LabUser], outside: Outside
) -> None:
    isolde, ingo = two_users
    named = targets(lab, ingo, outside)
    seen = last_json(isolde.run_code(probe_code(list(named.values()))))
    assert {what: seen[f"{host}:{port}"] for what, (host, port) in named.items()} == {
        "another user's server": "rejected",
        "the proxy's API": "rejected",
        "the hub's API port": "connected",
        "the host's sshd at the gateway": "rejected",
        "the lab's HTTPS port, published by the host": "rejected",
        "a machine outside the lab": "connected",
    }


def test_the_hub_api_answers_a_users_server(lab: Lab, two_users: tuple[LabUser, LabUser]) -> None:
    isolde, _ = two_users
    answer = last_json(isolde.run_code(HUB_API))
    assert answer["url"].startswith(f"http://{NAMING.physical('hub')}:{HUB_API_PORT}/"), answer
    assert answer["status"] == 200 and answer["body"]["version"], answer


def test_outbound_http_to_a_machine_outside_the_lab_works(two_users: tuple[LabUser, LabUser], outside: Outside) -> None:
    isolde, _ = two_users
    code = f"import urllib.request\nprint(urllib.request.urlopen({outside.url()!r}, timeout=10).read().decode())"
    assert isolde.run_code(code).strip() == f"outside {outside.addresses[0]}"


def test_each_refused_service_does_listen_seen_from_the_hub(
    lab: Lab, two_users: tuple[LabUser, LabUser], outside: Outside
) -> None:
    """The control: the same connections from the hub container (which the rules let through)."""
    _, ingo = two_users
    named = targets(lab, ingo, outside)
    hub = lab.docker.containers.get(NAMING.physical("hub"))
    result = hub.exec_run(["python3", "-c", probe_code(list(named.values()))])
    seen = last_json(result.output.decode())
    assert set(seen.values()) == {"connected"}, seen


def test_the_stacks_rules_are_in_place_on_the_host(lab: Lab) -> None:
    names = host_names(NAMING)
    rules = {
        chain: subprocess.run(["iptables", "-w", "-S", chain], capture_output=True, text=True, check=True).stdout
        for chain in ("DOCKER-USER", "INPUT", names.forward_chain, names.input_chain)
    }
    assert f"-i {names.users_bridge}" in rules["DOCKER-USER"] and f"-j {names.forward_chain}" in rules["DOCKER-USER"]
    assert f"-i {names.users_bridge}" in rules["INPUT"] and f"-j {names.input_chain}" in rules["INPUT"]
    assert f"--dport {HUB_API_PORT} -j RETURN" in rules[names.forward_chain]
    bridge = lab.docker.networks.get(NAMING.physical("users-net")).attrs["Options"]
    assert bridge["com.docker.network.bridge.name"] == names.users_bridge
