"""What the lab's own containers (proxy, hub) have in common: health checks, labels, secret environment."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_docker as docker

from infra.naming import Naming
from infra.network import Networks


def healthcheck(url: str, insecure_tls: bool = False) -> docker.ContainerHealthcheckArgs:
    """A healthcheck that fetches ``url`` with the image's Python (no curl needed)."""
    context = "ssl._create_unverified_context()" if insecure_tls else "None"
    probe = f"import ssl,urllib.request; urllib.request.urlopen({url!r}, timeout=4, context={context})"
    return docker.ContainerHealthcheckArgs(
        tests=["CMD", "python3", "-c", probe],
        interval="10s",
        timeout="5s",
        retries=3,
        start_period="60s",
    )


def labels(naming: Naming, role: str) -> list[docker.ContainerLabelArgs]:
    return [docker.ContainerLabelArgs(label=key, value=value) for key, value in naming.labels(role).items()]


def secret_env(environment: Mapping[str, pulumi.Input[str]]) -> list[pulumi.Output[str]]:
    """A container's ``NAME=value`` entries, each marked secret whatever its source."""
    return [pulumi.Output.secret(pulumi.Output.concat(name, "=", value)) for name, value in environment.items()]


def lab_networks(networks: Networks, role: str) -> list[docker.ContainerNetworksAdvancedArgs]:
    """Both of the lab's networks: the hub's and its proxy's, and the one users' servers are on, where
    the container playing ``role`` has its fixed address when the network isolation names it."""
    return [
        docker.ContainerNetworksAdvancedArgs(name=networks.hub_network.name),
        docker.ContainerNetworksAdvancedArgs(
            name=networks.users_network.name, ipv4_address=networks.users_addresses.get(role)
        ),
    ]
