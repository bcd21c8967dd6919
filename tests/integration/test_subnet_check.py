"""The subnet check against this machine's engine: run directly as the host runs it, and as `pulumi up`
runs it (the Host and Networks components through the provider double, over SSH) for two stacks
asking for the same subnets on one host. Run under the Docker lock.

Every network here is named ``juvini-subnetcheck-*``; they lie in 172.16.244.0/22, apart from
the other tests' subnets.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pulumi
import pulumi_docker
import pytest

from infra.host import Host, privileged
from infra.naming import Naming
from infra.network import Networks, subnet_check_script
from infra.settings import load_settings, parse_settings
from tests.support.local_stack import SSH_KEY, lab_paths, local_host
from tests.support.provider_double import Deployment, _ssh, apply

pytestmark = pytest.mark.integration

PREFIX = "juvini-subnetcheck-"
#: A network of the engine that is none of the stacks' here.
OTHER = f"{PREFIX}other"
OTHER_SUBNET = "172.16.244.0/24"
#: The first stack's subnets, which a second stack on the host asks for too.
FIRST = "subnetcheck-a"
SECOND = "subnetcheck-b"
USERS_SUBNET = "172.16.245.0/24"
HUB_SUBNET = "172.16.246.0/24"
FREE_SUBNET = "172.16.247.0/24"


def engine_subnets(client: docker.DockerClient) -> dict[str, list[str]]:
    """Each of the engine's networks with its subnets."""
    return {
        network.name: [config["Subnet"] for config in (network.attrs["IPAM"]["Config"] or [])]
        for network in client.networks.list(greedy=True)
    }


def remove_test_networks(client: docker.DockerClient) -> None:
    for network in client.networks.list(names=[PREFIX]):
        if network.name.startswith(PREFIX):
            network.remove()


def check(network: dict[str, Any], naming: Naming) -> subprocess.CompletedProcess[str]:
    """The stack's subnet check, run here as root as the host runs it (a local engine)."""
    settings = parse_settings({"network": network})
    script = subnet_check_script(settings, naming)
    assert script is not None
    return subprocess.run(
        ["sh", "-c", privileged(settings, script)], capture_output=True, text=True, check=False, timeout=120
    )


def declare() -> None:
    settings = load_settings()
    naming = Naming(pulumi.get_project(), pulumi.get_stack())
    host = Host("subnets-host", settings)
    provider = pulumi_docker.Provider("subnets-docker", host=settings.docker_host)
    Networks("subnets-networks", settings, naming, host, opts=pulumi.ResourceOptions(providers={"docker": provider}))


def stack_config(root: Path) -> dict[str, Any]:
    return {
        "host": local_host(),
        "paths": lab_paths(root),
        "network": {"usersSubnet": USERS_SUBNET, "hubSubnet": HUB_SUBNET},
    }


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=120)
    remove_test_networks(client)  # left by an interrupted run
    client.networks.create(
        OTHER, driver="bridge", ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=OTHER_SUBNET)])
    )
    try:
        yield client
    finally:
        remove_test_networks(client)


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    if not SSH_KEY.is_file():
        pytest.fail(f"{SSH_KEY} is missing: run tests/setup.sh")
    folder = Path(tempfile.mkdtemp(prefix="juvini-subnetcheck-", dir="/var/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def first_stack(client: docker.DockerClient, root: Path) -> Iterator[Deployment]:
    deployment = apply(declare, stack_config(root / FIRST), FIRST)
    try:
        yield deployment
    finally:
        assert not deployment.destroy()


# --- the script, run directly --------------------------------------------------------------------


def test_an_overlapping_network_is_named_with_the_key_and_a_free_subnet(client: docker.DockerClient) -> None:
    result = check({"usersSubnet": "172.16.244.0/22"}, Naming("juvini", "subnetcheck-direct"))
    assert result.returncode == 1, result.stdout
    assert (
        f"juvini: network.usersSubnet 172.16.244.0/22 overlaps the Docker network {OTHER} ({OTHER_SUBNET}) "
        "on this Docker host"
    ) in result.stderr
    suggested = re.search(r"pick another network\.usersSubnet, e\.g\. (\S+) \(free on this host now\)", result.stderr)
    assert suggested, result.stderr
    subnet = ipaddress.ip_network(suggested[1])
    assert subnet.prefixlen == 22
    taken = {name: subnets for name, subnets in engine_subnets(client).items() if subnets}
    for name, subnets in taken.items():
        for other in subnets:
            assert not subnet.overlaps(ipaddress.ip_network(other)), f"{subnet} overlaps {name} {other}"


def test_an_overlapping_hub_subnet_is_named_too(client: docker.DockerClient) -> None:
    result = check({"hubSubnet": "172.16.244.128/25", "usersSubnet": FREE_SUBNET}, Naming("juvini", "subnetcheck-h"))
    assert result.returncode == 1
    assert (
        f"juvini: network.hubSubnet 172.16.244.128/25 overlaps the Docker network {OTHER} ({OTHER_SUBNET})"
    ) in result.stderr
    assert "network.usersSubnet" not in result.stderr.replace("pick another network.hubSubnet", "")


def test_a_subnet_next_to_the_network_passes(client: docker.DockerClient) -> None:
    result = check({"usersSubnet": FREE_SUBNET}, Naming("juvini", "subnetcheck-direct"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"subnets free on this Docker host: network.usersSubnet {FREE_SUBNET}\n"


def test_the_stacks_own_network_of_that_subnet_passes_and_another_stacks_does_not(client: docker.DockerClient) -> None:
    owner = Naming("juvini", "subnetcheck-own")
    client.networks.create(
        owner.physical("users-net"),
        driver="bridge",
        labels=owner.labels("users-net"),
        ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=FREE_SUBNET)]),
    )
    try:
        mine = check({"usersSubnet": FREE_SUBNET}, owner)
        assert mine.returncode == 0, mine.stderr
        theirs = check({"usersSubnet": FREE_SUBNET}, Naming("juvini", "subnetcheck-direct"))
        assert theirs.returncode == 1
        assert f"overlaps the Docker network {owner.physical('users-net')} ({FREE_SUBNET})" in theirs.stderr
    finally:
        client.networks.get(owner.physical("users-net")).remove()


# --- as `pulumi up` runs it: two stacks with the same subnets on one host ------------------------


def test_up_again_passes_the_check_of_the_stacks_own_networks(first_stack: Deployment) -> None:
    (command,) = [item for item in first_stack.double.applied if item.name.endswith("-subnet-check")]
    again = _ssh(first_stack.double, command.inputs["connection"], command.inputs["create"], None)
    assert again.returncode == 0, again.stderr
    assert f"network.hubSubnet {HUB_SUBNET}, network.usersSubnet {USERS_SUBNET}" in again.stdout


def test_a_second_stack_with_the_same_subnets_stops_at_the_check(
    first_stack: Deployment, client: docker.DockerClient, root: Path
) -> None:
    first = Naming("juvini", FIRST)
    with pytest.raises(RuntimeError) as failed:
        apply(declare, stack_config(root / SECOND), SECOND)
    message = str(failed.value)
    # The check's refusal, not the engine's: the networks wait for the check.
    assert "subnets-networks-subnet-check failed" in message, message
    for key, subnet, role in (("hubSubnet", HUB_SUBNET, "hub-net"), ("usersSubnet", USERS_SUBNET, "users-net")):
        assert (
            f"network.{key} {subnet} overlaps the Docker network {first.physical(role)} ({subnet}) on this Docker host"
        ) in message
    suggested = re.findall(r"pick another network\.\w+, e\.g\. (\S+) ", message)
    assert len(suggested) == 2 and len(set(suggested)) == 2, message  # one for each key, not the same
    second = Naming("juvini", SECOND)
    assert not {second.physical("hub-net"), second.physical("users-net")} & set(engine_subnets(client))
