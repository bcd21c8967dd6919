"""The hub cannot take over the Docker host: tried from inside the hub container, through the hub's
own Docker access (its DOCKER_HOST, the filter's socket), against the lab the program declared.

Each forbidden call is made as the hub would make a legitimate one (the lab's image, labels,
user, network and name prefix) but for the one thing it tries, so each refusal is that rule's.
Meanwhile users' servers keep starting through the same filter.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from infra import outputs
from infra.naming import Naming
from infra.settings import parse_settings
from infra.socket_filter import HUB_DOCKER_HOST
from tests.e2e.conftest import STACK, Lab
from tests.support.lab_client import wait_for

pytestmark = pytest.mark.e2e

DOCKER_CLI = "/usr/bin/docker"

#: Runs in the hub's Python: each attempt with docker-py made from the hub's environment, as
#: DockerSpawner makes its client; prints {name: [status, message]} (0: the call went through).
ATTEMPTS_IN_THE_HUB = r"""
import json, sys
import docker
spec = json.load(sys.stdin)
client = docker.from_env(version="auto")
api = client.api
def create(changes, host_changes, name):
    host_config = dict(spec["host_config"], **host_changes)
    return api.create_container(
        **dict(spec["create"], name=name, host_config=api.create_host_config(**host_config), **changes)
    )
calls = {
    "bind /": lambda: create({}, {"binds": {"/": {"bind": "/host", "mode": "rw"}}}, spec["name"] + "-root"),
    "cap SYS_ADMIN": lambda: create({}, {"cap_add": ["SYS_ADMIN"]}, spec["name"] + "-caps"),
    "pid host": lambda: create({}, {"pid_mode": "host"}, spec["name"] + "-pid"),
    "network host": lambda: create({}, {"network_mode": "host"}, spec["name"] + "-net"),
    "privileged": lambda: create({}, {"privileged": True}, spec["name"] + "-privileged"),
    "foreign image": lambda: create({"image": spec["foreign_image"]}, {}, spec["name"] + "-image"),
    "exec into the proxy": lambda: api.exec_create(spec["proxy"], ["id"]),
    "stop the proxy": lambda: api.stop(spec["proxy"]),
    "remove the filter": lambda: api.remove_container(spec["filter"], force=True),
    "inspect the hub": lambda: api.inspect_container(spec["hub"]),
    "allowed: version": lambda: api.version()["ApiVersion"],
}
results = {}
for name, call in calls.items():
    try:
        call()
        results[name] = [0, ""]
    except docker.errors.APIError as error:
        results[name] = [error.status_code, str(error.explanation)]
print(json.dumps({"results": results}))
"""


def in_hub(lab: Lab, *command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    hub = lab.outputs[outputs.HUB_CONTAINER]
    return subprocess.run(
        [DOCKER_CLI, "exec", "-i", hub, *command], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def attempts(lab: Lab) -> dict[str, Any]:
    """The forbidden calls, each made once from inside the hub."""
    settings = parse_settings(lab.config)
    naming = Naming("juvini", STACK)
    spec = {
        "name": f"{naming.physical('user')}-intruder",
        "create": {
            "image": lab.outputs[outputs.IMAGES]["base"],
            "command": ["sleep", "600"],
            "user": f"{settings.lab_user.uid}:{settings.lab_user.gid}",
            "labels": naming.labels("user"),
        },
        "host_config": {
            "network_mode": lab.outputs[outputs.NETWORKS]["users"],
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
        },
        "foreign_image": lab.outputs[outputs.IMAGES]["hub"],
        "proxy": lab.outputs[outputs.PROXY_CONTAINER],
        "hub": lab.outputs[outputs.HUB_CONTAINER],
        "filter": naming.physical("socket-filter"),
    }
    result = in_hub(lab, "python", "-c", ATTEMPTS_IN_THE_HUB, stdin=json.dumps(spec))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    leftovers = lab.docker.containers.list(all=True, filters={"name": spec["name"]})
    for container in leftovers:
        container.remove(force=True)
    assert not leftovers, f"a forbidden create went through: {[c.name for c in leftovers]}"
    return answer


def test_the_hub_has_no_docker_socket_and_uses_the_filters(lab: Lab, attempts: dict[str, Any]) -> None:
    found = in_hub(lab, "sh", "-c", 'test -e /var/run/docker.sock && echo present; echo "$DOCKER_HOST"')
    assert found.stdout.split() == [HUB_DOCKER_HOST], found.stdout
    assert attempts["results"]["allowed: version"] == [0, ""], attempts


@pytest.mark.parametrize(
    ("attempt", "rule"),
    [
        ("bind /", "binds /, which is not one of the lab's folders"),
        ("cap SYS_ADMIN", "CapAdd adds SYS_ADMIN"),
        ("pid host", "HostConfig.PidMode is not allowed"),
        ("network host", "HostConfig.NetworkMode host is not one of the lab's networks"),
        ("privileged", "HostConfig.Privileged is not allowed"),
        ("foreign image", "is not one of the lab's images"),
        ("exec into the proxy", "/exec is not a call the lab's spawner makes"),
        ("stop the proxy", "is not one of the lab's"),
        ("remove the filter", "is not one of the lab's"),
        ("inspect the hub", "is not one of the lab's"),
    ],
)
def test_a_forbidden_call_from_the_hub_is_refused_naming_its_rule(
    attempts: dict[str, Any], attempt: str, rule: str
) -> None:
    status, message = attempts["results"][attempt]
    assert status == 403, f"{attempt}: {status} {message}"
    assert message.startswith("juvini docker filter: ") and rule in message, f"{attempt}: {message}"


def test_refusals_are_in_the_filters_log_and_the_lab_containers_are_untouched(
    lab: Lab, attempts: dict[str, Any]
) -> None:
    log = lab.docker.containers.get(f"juvini-{STACK}-socket-filter").logs().decode(errors="replace")
    refused = [line for line in log.splitlines() if " 403 " in line and "refused: " in line]
    assert len(refused) >= 10, log[-3000:]
    assert any("refused: HostConfig.CapAdd adds SYS_ADMIN" in line for line in refused), refused
    for name in (lab.outputs[outputs.PROXY_CONTAINER], lab.outputs[outputs.HUB_CONTAINER]):
        assert lab.docker.containers.get(name).status == "running", name


def test_users_servers_start_and_stop_through_the_filter(lab: Lab, attempts: dict[str, Any]) -> None:
    user = lab.user("filtered")
    user.sign_up()
    user.log_in()
    user.start_server()
    container = lab.docker.containers.get(f"juvini-{STACK}-user-filtered")
    assert container.status == "running"
    assert user.server_api("GET", "api/status").status_code == 200
    user.stop_server()
    wait_for(
        "the stopped server's container to go",
        lambda: not lab.docker.containers.list(all=True, filters={"name": f"juvini-{STACK}-user-filtered"}),
        timeout=60,
    )
    log = lab.docker.containers.get(f"juvini-{STACK}-socket-filter").logs().decode(errors="replace")
    created = [line for line in log.splitlines() if f"containers/create?name=juvini-{STACK}-user-filtered " in line]
    assert created and " 201 " in created[-1], created
    assert created[-1].endswith("allowed: create one of the lab's users' containers"), created
