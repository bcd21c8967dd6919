"""Docker networks: one joining the hub and its proxy, one for users' servers.

The hub and the proxy join both; users' servers join only theirs, from which they reach
the hub API and are reached by the proxy. With Swarm the users' network is an
attachable overlay so services on every node can join it.

With network isolation (infra/isolation.py) both bridges get the stack's interface names, which
the iptables rules name and which stay the same when the engine recreates a bridge, and the hub
and the proxy get fixed addresses on the users' network, outside the range users' servers get.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_docker as docker

from infra.isolation import BRIDGE_NAME_OPTION, host_names
from infra.naming import Naming
from infra.settings import Settings
from infra.settings.host import UsersNetworkLayout

TYPE = "juvini:index:Networks"


class Networks(pulumi.ComponentResource):
    """The lab's Docker networks."""

    hub_network: docker.Network
    users_network: docker.Network

    def __init__(
        self,
        name: str,
        settings: Settings,
        naming: Naming,
        opts: pulumi.ResourceOptions | None = None,
        after: Sequence[pulumi.Resource] = (),
    ) -> None:
        """``after``: what the users' network needs first (under Swarm, the swarm: it is an overlay)."""
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        isolated = settings.network_isolation
        names = host_names(naming)
        layout = settings.network.users_layout() if isolated else None
        self.hub_network = docker.Network(
            f"{name}-hub",
            name=naming.physical("hub-net"),
            driver="bridge",
            ipam_configs=_ipam(settings.network.hub_subnet),
            options={BRIDGE_NAME_OPTION: names.hub_bridge} if isolated else None,
            labels=_labels(naming, "hub-net"),
            opts=child,
        )
        swarm = settings.swarm.enabled
        self.users_network = docker.Network(
            f"{name}-users",
            name=naming.physical("users-net"),
            driver="overlay" if swarm else "bridge",
            attachable=True if swarm else None,
            ipam_configs=_users_ipam(layout) if layout else _ipam(settings.network.users_subnet),
            options={BRIDGE_NAME_OPTION: names.users_bridge} if isolated else None,
            labels=_labels(naming, "users-net"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(after)),
        )
        #: The lab's own containers' fixed addresses on the users' network, by role (with isolation).
        self.users_addresses: dict[str, str] = {"hub": str(layout.hub), "proxy": str(layout.proxy)} if layout else {}
        self.hub_network_name = self.hub_network.name
        self.users_network_name = self.users_network.name
        self.register_outputs({"hubNetwork": self.hub_network.name, "usersNetwork": self.users_network.name})


def _ipam(subnet: str | None) -> list[docker.NetworkIpamConfigArgs] | None:
    return [docker.NetworkIpamConfigArgs(subnet=subnet)] if subnet else None


def _users_ipam(layout: UsersNetworkLayout) -> list[docker.NetworkIpamConfigArgs]:
    """The subnet, its gateway, and the range users' servers get addresses from."""
    return [
        docker.NetworkIpamConfigArgs(
            subnet=str(layout.subnet), gateway=str(layout.gateway), ip_range=str(layout.dynamic)
        )
    ]


def _labels(naming: Naming, role: str) -> list[docker.NetworkLabelArgs]:
    return [docker.NetworkLabelArgs(label=key, value=value) for key, value in naming.labels(role).items()]
