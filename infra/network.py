"""Docker networks: one joining the hub and its proxy, one for users' servers.

The hub and the proxy join both; users' servers join only theirs, from which they reach
the hub API and are reached by the proxy. With Swarm the users' network is an
attachable overlay so services on every node can join it.

With network isolation (infra/isolation.py) both bridges get the stack's interface names, which
the iptables rules name and which stay the same when the engine recreates a bridge, and the hub
and the proxy get fixed addresses on the users' network, outside the range users' servers get.

Before the engine makes them, a host command checks that the stack's subnets overlap none of the
engine's other networks (two stacks on one host need subnets of their own): the engine's own
refusal names neither the setting nor the network in the way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pulumi
import pulumi_docker as docker
from pulumi_command import remote

from infra.host import Host
from infra.isolation import BRIDGE_NAME_OPTION, host_names
from infra.naming import Naming
from infra.rendering import render
from infra.settings import Settings
from infra.settings.host import UsersNetworkLayout

TYPE = "juvini:index:Networks"
#: The roles of the stack's networks (``Naming.physical``/``Naming.labels`` give their names and labels).
HUB_NET = "hub-net"
USERS_NET = "users-net"
#: What the subnet check reads of each of the engine's networks: its id, its name and its subnets.
LISTING_FORMAT = "{{.Id}} {{.Name}}{{range .IPAM.Config}} {{.Subnet}}{{end}}"
#: Where a free subnet to suggest is looked for (RFC 1918).
PRIVATE_BLOCKS = tuple(ipaddress.IPv4Network(block) for block in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


class Networks(pulumi.ComponentResource):
    """The lab's Docker networks."""

    hub_network: docker.Network
    users_network: docker.Network

    def __init__(
        self,
        name: str,
        settings: Settings,
        naming: Naming,
        host: Host,
        opts: pulumi.ResourceOptions | None = None,
        after: Sequence[pulumi.Resource] = (),
    ) -> None:
        """``host``: the Docker host, where the subnets are checked over SSH before the networks are made.
        ``after``: what the users' network needs first (under Swarm, the swarm: it is an overlay)."""
        super().__init__(TYPE, name, None, opts)
        script = subnet_check_script(settings, naming)
        # Runs at `up` only (a remote command does nothing at preview), and again when the subnets change.
        self.subnet_check = (
            remote.Command(
                f"{name}-subnet-check",
                connection=host.connection,
                create=host.privileged(script),
                opts=pulumi.ResourceOptions(parent=self),
            )
            if script
            else None
        )
        checked = [self.subnet_check] if self.subnet_check else []
        child = pulumi.ResourceOptions(parent=self, depends_on=checked)
        isolated = settings.network_isolation
        names = host_names(naming)
        layout = settings.network.users_layout() if isolated else None
        self.hub_network = docker.Network(
            f"{name}-hub",
            name=naming.physical(HUB_NET),
            driver="bridge",
            ipam_configs=_ipam(settings.network.hub_subnet),
            options={BRIDGE_NAME_OPTION: names.hub_bridge} if isolated else None,
            labels=_labels(naming, HUB_NET),
            opts=child,
        )
        swarm = settings.swarm.enabled
        self.users_network = docker.Network(
            f"{name}-users",
            name=naming.physical(USERS_NET),
            driver="overlay" if swarm else "bridge",
            attachable=True if swarm else None,
            ipam_configs=_users_ipam(layout) if layout else _ipam(settings.network.users_subnet),
            options={BRIDGE_NAME_OPTION: names.users_bridge} if isolated else None,
            labels=_labels(naming, USERS_NET),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*checked, *after]),
        )
        #: The lab's own containers' fixed addresses on the users' network, by role (with isolation).
        self.users_addresses: dict[str, str] = {"hub": str(layout.hub), "proxy": str(layout.proxy)} if layout else {}
        self.hub_network_name = self.hub_network.name
        self.users_network_name = self.users_network.name
        self.register_outputs({"hubNetwork": self.hub_network.name, "usersNetwork": self.users_network.name})


def subnet_check_script(settings: Settings, naming: Naming) -> str | None:
    """The host script refusing a subnet of the stack that overlaps another network of the engine (None
    when the stack has no IPv4 subnet to check). IPv6 subnets (a ULA ``network.hubSubnet``, or
    ``network.usersSubnet`` without the network isolation) are left out: the check's arithmetic is IPv4."""
    subnets = {
        key: subnet for key, subnet in settings.network.subnets().items() if isinstance(subnet, ipaddress.IPv4Network)
    }
    if not subnets:
        return None
    # One line per subnet: its key, the subnet, and where to look for a free one to suggest.
    wanted = "".join(
        " ".join([key, str(subnet), *map(str, _search_windows(subnet))]) + "\n" for key, subnet in subnets.items()
    )
    own_networks = [
        {
            "name": naming.physical(role),
            "filters": [f"label={key}={value}" for key, value in naming.labels(role).items()],
        }
        for role in (HUB_NET, USERS_NET)
    ]
    return render(
        "host-subnet-check.sh.j2",
        stack=naming.prefix,
        format=LISTING_FORMAT,
        wanted=wanted,
        free=", ".join(f"{key} {subnet}" for key, subnet in subnets.items()),
        own_networks=own_networks,
    )


def _search_windows(subnet: ipaddress.IPv4Network) -> list[ipaddress.IPv4Network]:
    """Where a free subnet of the size of ``subnet`` is looked for when it is taken: first the /16
    holding it (the default users' subnet's lies outside the pools the engine hands out), then the
    private block holding it; none for a subnet in no private block (no suggestion)."""
    block = next((block for block in PRIVATE_BLOCKS if subnet.subnet_of(block)), None)
    if block is None:
        return []
    windows = [subnet.supernet(new_prefix=16)] if subnet.prefixlen > 16 else []
    return [window for window in (*windows, block) if window != subnet]


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
