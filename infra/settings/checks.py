"""Checks across sections: settings that are each valid but contradict each other.

Each check returns problems at the key to change, with full keys (``cifs.shares[2].perUser``).
They run once every section is valid, before any resource is registered.
"""

from __future__ import annotations

import ipaddress
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from infra import flavours
from infra.settings.auth import AuthType
from infra.settings.base import Problem, explicit, memory_bytes, nesting, split_host_port
from infra.settings.host import DATA_MOUNT, GROUPS_MOUNT, OPEN_EGRESS, routable_ip
from infra.settings.tls import TlsMode

if TYPE_CHECKING:
    from infra.settings.model import Settings


def contradictions(settings: Settings) -> list[Problem]:
    """Every contradiction between sections of ``settings``."""
    return [
        *_host_ports(settings),
        *_memory(settings),
        *_login_password(settings),
        *_swarm(settings),
        *_certificate_names(settings),
        *_docker_socket(settings),
        *_spark_reachable(settings),
        *_outside_lab_networks(settings),
        *_network_isolation(settings),
        *_profiles(settings),
        *_folders(settings),
    ]


def _host_ports(settings: Settings) -> list[Problem]:
    """The proxy's ports, SSH and (on one host) Spark's ranges share the Docker host's ports."""
    problems = []
    ssh_port = settings.host.ssh_port
    for key, port in settings.hub.ports().items():
        if port == ssh_port:
            problems.append(
                Problem(key, port, f"must differ from host.sshPort {ssh_port}: both are ports of the same Docker host")
            )
    if settings.swarm.enabled:
        return problems  # Swarm services publish no Spark ports
    for key, port in (settings.hub.ports() | {"host.sshPort": ssh_port}).items():
        for range_key, port_range in settings.spark.port_ranges().items():
            if port in port_range:
                problems.append(
                    Problem(
                        key, port, f"must lie outside {range_key} {port_range}: those host ports go to Spark drivers"
                    )
                )
    return problems


def _memory(settings: Settings) -> list[Problem]:
    driver, limit = settings.spark.driver_memory, settings.spawner.mem_limit
    if memory_bytes(driver) >= memory_bytes(limit):
        return [
            Problem(
                "spark.driverMemory", driver, f"must be below spawner.memLimit {limit}: the driver runs in the server"
            )
        ]
    return []


def _login_password(settings: Settings) -> list[Problem]:
    """Kerberos and per-user shares need the login password, which only LDAP login keeps."""
    kind = settings.auth.type
    if kind is AuthType.LDAP:
        return []
    why = f"needs the user's login password, which only auth.type ldap keeps; auth.type is {kind.value!r}"
    problems = [Problem("kerberos.enabled", True, why)] if settings.kerberos.enabled else []
    problems += [
        Problem(f"cifs.shares[{index}].perUser", True, why)
        for index, share in enumerate(settings.cifs.shares)
        if share.per_user
    ]
    return problems


def _swarm(settings: Settings) -> list[Problem]:
    """What only the single-host spawner implements would be dropped under Swarm; what only Swarm uses
    would be ignored on one host."""
    if not settings.swarm.enabled:
        if settings.images.pull_username is None:
            return []
        why = "only with swarm.enabled: on one Docker host the images are built where users' servers run"
        return [Problem("images.pullUsername", settings.images.pull_username, why)]
    problems = [
        Problem(
            f"cifs.shares[{index}].perUser",
            True,
            "not with swarm.enabled: only the single-host spawner mounts per-user shares; use a team share",
        )
        for index, share in enumerate(settings.cifs.shares)
        if share.per_user
    ]
    spark = explicit(settings.spark)
    problems += [
        Problem(
            f"spark.{key}",
            spark[key],
            "not with swarm.enabled: only the single-host spawner hands out Spark ports (use a cluster-side driver)",
        )
        for key in ("driverPorts", "blockManagerPorts", "driverHost")
        if key in spark
    ]
    problems += [
        problem._replace(key=f"security.userContainers.{problem.key}")
        for problem in settings.security.user_containers.swarm_only_problems()
    ]
    if settings.security.live_restore:
        problems.append(
            Problem("security.liveRestore", True, "not with swarm.enabled: Docker does not support live-restore there")
        )
    if settings.security.network_isolation:
        problems.append(
            Problem(
                "security.networkIsolation",
                True,
                "not with swarm.enabled: users' servers talk over an overlay network, whose traffic the Docker "
                "host's iptables rules do not see (README: Network isolation); set it to false",
            )
        )
    return problems + _swarm_nodes(settings) + _swarm_images(settings)


def _swarm_nodes(settings: Settings) -> list[Problem]:
    """Workers are other machines than the manager, and can reach it when the stack joins them."""
    swarm, host = settings.swarm, settings.host
    problems = []
    manager_advertised = swarm.manager.effective_advertise_address(host.address)
    for index, worker in enumerate(swarm.workers):
        key = f"swarm.workers[{index}]"
        if (worker.address.lower(), worker.ssh_port) == (host.address.lower(), host.ssh_port):
            problems.append(
                Problem(
                    f"{key}.address",
                    worker.address,
                    f"must differ from host.address {host.address!r} (with the same sshPort): the Docker host "
                    "is the swarm manager; list only the other nodes as workers",
                )
            )
        advertised = worker.effective_advertise_address()
        if advertised is not None and advertised == manager_advertised and routable_ip(advertised):
            problems.append(
                Problem(
                    f"{key}.advertiseAddress",
                    advertised,
                    f"must differ from the manager's advertised address {manager_advertised!r}: "
                    "two nodes cannot advertise one address",
                )
            )
    if swarm.workers and not swarm.existing and manager_advertised is None:
        problems.append(
            Problem(
                "swarm.manager.advertiseAddress",
                None,
                f"required with swarm.workers when host.address {host.address!r} is not an IP address other "
                "nodes can reach: the workers join the manager at this address",
            )
        )
    return problems


def _swarm_images(settings: Settings) -> list[Problem]:
    """Every node runs users' servers from the stack's images: they pull them from its registry."""
    images = settings.images
    why = "every swarm node pulls the lab's images from images.registry"
    if images.registry is None:
        return [Problem("images.registry", None, f"required with swarm.enabled: {why}")]
    if not images.push:
        return [Problem("images.push", False, f"must be true with swarm.enabled: {why}, so the stack pushes them")]
    return []


def _certificate_names(settings: Settings) -> list[Problem]:
    """A certificate made by the stack must hold the name users type, or browsers refuse it."""
    tls, name = settings.tls, settings.hub.public_hostname
    if tls.mode is not TlsMode.SELF_SIGNED or tls.covers(name):
        return []
    try:
        ipaddress.ip_address(name)
        key, names = "tls.ipAddresses", tls.ip_addresses
    except ValueError:
        key, names = "tls.dnsNames", tls.dns_names
    return [
        Problem(
            key,
            names,
            f"must include hub.publicHostname {name!r} with tls.mode selfSigned "
            "(a wildcard *.example.org covers one label): browsers refuse a certificate without it",
        )
    ]


def _docker_socket(settings: Settings) -> list[Problem]:
    socket = PurePosixPath(settings.docker_socket)
    problems = []
    for key, folder in settings.paths.folders().items():
        relation = nesting(socket, folder)
        if relation:
            problems.append(
                Problem(
                    "dockerSocket",
                    settings.docker_socket,
                    f"{relation} {key} {folder}: the lab creates, owns and may remove its folders",
                )
            )
    return problems


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def _spark_reachable(settings: Settings) -> list[Problem]:
    """Spark ports are published on hub.bindAddress: a loopback one hides them from a cluster."""
    bind, driver_host = settings.hub.bind_address, settings.spark.driver_host
    if settings.swarm.enabled or driver_host is None or not _is_loopback(bind) or _is_loopback(driver_host):
        return []
    return [
        Problem(
            "spark.driverHost",
            driver_host,
            f"unreachable: Spark ports are published on hub.bindAddress {bind} only; "
            "set hub.bindAddress to 0.0.0.0 or to this address",
        )
    ]


def _addresses(settings: Settings) -> dict[str, tuple[str, str]]:
    """The Docker host's and the lab's peers' addresses: key -> (value, host part)."""
    found = {"host.address": settings.host.address, "hub.bindAddress": settings.hub.bind_address}
    if settings.spark.driver_host:
        found["spark.driverHost"] = settings.spark.driver_host
    if settings.auth.type is AuthType.LDAP and settings.auth.ldap.server_address:
        found["auth.ldap.serverAddress"] = settings.auth.ldap.server_address
    if settings.kerberos.enabled:
        found |= {f"kerberos.kdcs[{index}]": kdc for index, kdc in enumerate(settings.kerberos.kdcs)}
        if settings.kerberos.admin_server:
            found["kerberos.adminServer"] = settings.kerberos.admin_server
    for index, worker in enumerate(settings.swarm.workers):
        found[f"swarm.workers[{index}].address"] = worker.address
        if worker.advertise_address:
            found[f"swarm.workers[{index}].advertiseAddress"] = worker.advertise_address
    if settings.swarm.manager.advertise_address:
        found["swarm.manager.advertiseAddress"] = settings.swarm.manager.advertise_address
    addresses = {key: (value, value) for key, value in found.items()}
    issuer = settings.auth.oidc.issuer
    if settings.auth.type is AuthType.OIDC and issuer:
        addresses["auth.oidc.issuer"] = (issuer, urlsplit(issuer).hostname or "")
    for index, share in enumerate(settings.cifs.shares):
        if share.address:
            addresses[f"cifs.shares[{index}].address"] = (share.address, share.address)
        else:
            addresses[f"cifs.shares[{index}].unc"] = (share.unc, share.unc_server)
    return addresses


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    for candidate in (address, split_host_port(address)[0]):
        try:
            return ipaddress.ip_address(candidate)
        except ValueError:
            continue
    return None  # a DNS name: where it points is not known here


def _outside_lab_networks(settings: Settings) -> list[Problem]:
    """An address inside the lab's Docker networks would be routed into them, not to its machine."""
    subnets = settings.network.subnets()
    problems = []
    for key, (value, host) in _addresses(settings).items():
        ip = _ip(host)
        if ip is None or ip.is_unspecified:
            continue
        problems += [
            Problem(
                key,
                value,
                f"lies inside {subnet_key} {subnet}: the Docker host would route it into the lab's network; "
                f"pick another {subnet_key}",
            )
            for subnet_key, subnet in subnets.items()
            if ip in subnet
        ]
    return problems


def _network_isolation(settings: Settings) -> list[Problem]:
    """The isolation rules are IPv4 iptables rules; only they restrict where users' servers connect."""
    network = settings.network
    if settings.network_isolation:
        if ipaddress.ip_network(network.users_subnet).version != 4:
            return [
                Problem(
                    "network.usersSubnet",
                    network.users_subnet,
                    "must be an IPv4 network with security.networkIsolation: its rules are IPv4 iptables rules",
                )
            ]
        return []
    if not network.open_egress:
        return [
            Problem(
                "network.egress",
                network.egress,
                f"only with security.networkIsolation (off here): without its rules users' servers reach "
                f"anywhere; keep [{OPEN_EGRESS}] or turn the isolation on",
            )
        ]
    return []


def _profiles(settings: Settings) -> list[Problem]:
    """Profiles name images the stack builds, leave Spark's driver room, ask GPUs of one host only."""
    problems = []
    allowed = settings.spawner.allowed_images
    slugs: dict[str, int] = {}
    for index, profile in enumerate(settings.profiles):
        key = f"profiles[{index}]"
        if profile.slug in slugs:
            problems.append(
                Problem(f"{key}.slug", profile.slug, f"must differ from profiles[{slugs[profile.slug]}].slug")
            )
        slugs.setdefault(profile.slug, index)
        if profile.image not in allowed:
            problems.append(
                Problem(
                    f"{key}.image",
                    profile.image,
                    f"must be one of spawner.allowedImages {list(allowed)}: the images the stack builds",
                )
            )
        driver, limit = settings.spark.driver_memory, profile.mem_limit or settings.spawner.mem_limit
        if flavours.BY_NAME[profile.image].spark and memory_bytes(driver) >= memory_bytes(limit):
            problems.append(
                Problem(
                    f"{key}.memLimit",
                    limit,
                    f"must be above spark.driverMemory {driver}: the driver runs in the server of this Spark image",
                )
            )
        if profile.gpu.requested and settings.swarm.enabled:
            problems.append(
                Problem(
                    f"{key}.gpu",
                    profile.gpu.model_dump(by_alias=True),
                    "not with swarm.enabled: Swarm services take no Docker device requests; "
                    "only the single-host spawner hands out GPUs",
                )
            )
    return problems


def _folders(settings: Settings) -> list[Problem]:
    """Group folders need their root; users' shares must not hide the folders' mount points."""
    paths, groups = settings.paths, settings.folders.groups
    problems = []
    if groups and paths.groups_dir is None:
        problems.append(
            Problem("paths.groupsDir", None, f"required with folders.groups {groups}: the group folders' root")
        )
    if paths.groups_dir is not None and not groups:
        problems.append(
            Problem("paths.groupsDir", paths.groups_dir, "only with folders.groups: no group has a folder without them")
        )
    mounts = {}
    if groups:
        mounts[GROUPS_MOUNT] = "the group folders' mount point"
    if paths.data_dir is not None:
        mounts[DATA_MOUNT] = "the data folder's mount point"
    for index, share in enumerate(settings.cifs.shares):
        value = share.mount_path if share.mount_path is not None else share.name
        for mount, what in mounts.items():
            relation = nesting(PurePosixPath(share.folder), PurePosixPath(mount))
            if relation:
                problems.append(
                    Problem(
                        f"cifs.shares[{index}].{share.folder_key}",
                        value,
                        f"{relation} {what} ~/{mount}; pick another folder",
                    )
                )
    return problems
