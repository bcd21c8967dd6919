"""Sections about the Docker host: SSH access, the lab user, folders, networks, Swarm."""

from __future__ import annotations

import ipaddress
import re
from pathlib import PurePosixPath
from typing import Annotated, NamedTuple

from pydantic import AfterValidator, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic.alias_generators import to_camel

from infra.settings.base import (
    POSIX_USER,
    AbsolutePath,
    HostnameOrIp,
    Port,
    Problem,
    Section,
    explicit,
    nesting,
    refuse,
)


def _ssh_host_key(value: str) -> str:
    if not re.fullmatch(r"(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+", value):
        raise ValueError("must be an SSH public key line 'TYPE BASE64' such as 'ssh-ed25519 AAAA...'")
    return value


SshHostKey = Annotated[str, AfterValidator(_ssh_host_key)]
#: A POSIX user or group name (the SSH users of the nodes, the lab user and its groups).
PosixName = Annotated[str, Field(pattern=POSIX_USER.pattern)]


def _each_once(items: list[str]) -> list[str]:
    twice = sorted({item for item in items if items.count(item) > 1})
    if twice:
        raise ValueError(f"lists {twice} more than once")
    return items


def _needless_sudo(use_sudo: bool, ssh_user: str, user_key: str) -> list[Problem]:
    """useSudo for root: the key that names the SSH user as the message shows it (``host.sshUser``)."""
    if use_sudo and ssh_user == "root":
        return [Problem("useSudo", True, f"only for a non-root {user_key}; root needs no sudo")]
    return []


class HostSettings(Section):
    """How host commands reach the Docker host over SSH."""

    address: HostnameOrIp = Field(default="127.0.0.1", description="SSH address of the Docker host the lab runs on.")
    ssh_port: Port = Field(default=22, description="SSH port of the Docker host.")
    ssh_user: PosixName = Field(
        default="root",
        description="SSH user for host commands. A non-root user needs passwordless sudo (set useSudo).",
    )
    ssh_private_key: SecretStr | None = Field(
        default=None,
        description="SSH private key (PEM/OpenSSH) for the SSH user. Secret. Without it the SSH agent is used.",
    )
    ssh_private_key_file: str | None = Field(
        default=None,
        min_length=1,
        description="Path of an SSH private key file on the machine running Pulumi, instead of sshPrivateKey; "
        "its content is handled as a secret.",
    )
    ssh_password: SecretStr | None = Field(default=None, description="SSH password, when no key is used. Secret.")
    host_key: SshHostKey | None = Field(
        default=None, description="Expected SSH host public key (e.g. 'ssh-ed25519 AAAA...'); unchecked when unset."
    )
    use_sudo: bool = Field(
        default=False, description="Run privileged host steps through 'sudo -n' (for a non-root SSH user)."
    )

    #: The content of ``ssh_private_key_file``, read by the loading step (validators read no files).
    _key_file_content: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _consistent(self) -> HostSettings:
        problems = _needless_sudo(self.use_sudo, self.ssh_user, "host.sshUser")
        if self.ssh_private_key is not None and self.ssh_private_key_file is not None:
            problems.append(
                Problem(
                    "sshPrivateKeyFile", self.ssh_private_key_file, "set sshPrivateKey or sshPrivateKeyFile, not both"
                )
            )
        refuse(problems)
        return self

    def attach_key_file_content(self, content: SecretStr) -> None:
        """Called by the loading step with the content of ``ssh_private_key_file``."""
        self._key_file_content = content

    def private_key(self) -> SecretStr | None:
        """The SSH private key, from the secret setting or the key file."""
        if self.ssh_private_key_file is None:
            return self.ssh_private_key
        if self._key_file_content is None:
            raise RuntimeError(
                "host.sshPrivateKeyFile has not been read: build settings with parse_settings or load_settings"
            )
        return self._key_file_content


class LabUserSettings(Section):
    """The host account whose uid/gid containers run as, so persisted files belong to the host too."""

    name: PosixName = Field(default="labuser", description="Host user and group name.")
    uid: int = Field(default=2100, ge=1000, le=60000, description="User id on the host and inside notebook containers.")
    gid: int = Field(
        default=2100, ge=1000, le=60000, description="Group id on the host and inside notebook containers."
    )
    docker_group: PosixName = Field(
        default="docker",
        description="Host group granting Docker access; the lab user joins it.",
    )

    @model_validator(mode="after")
    def _name_is_not_the_docker_group(self) -> LabUserSettings:
        if self.name == self.docker_group:
            refuse([Problem("name", self.name, f"must differ from labUser.dockerGroup {self.docker_group!r}")])
        return self


class PathSettings(Section):
    """Lab folders on the Docker host."""

    shared_dir: AbsolutePath = Field(
        default="/shared/jupyterhub",
        description="Shared exchange folder (setgid, group-writable), mounted in every server.",
    )
    tls_dir: AbsolutePath = Field(default="/etc/jupyterhub/ssl", description="TLS folder (0700); keys inside are 0600.")
    users_dir: AbsolutePath = Field(
        default="/srv/juvini/users", description="Root of per-user persistent folders (one sub-folder per user)."
    )
    hub_state_dir: AbsolutePath = Field(
        default="/srv/juvini/hub", description="Hub state: user database and runtime files."
    )
    groups_dir: AbsolutePath | None = Field(
        default=None,
        description="Root of the group folders (one sub-folder per group of folders.groups, setgid, "
        "group-writable), each mounted at ~/shared-groups/<group> in its members' servers only. "
        "Required with folders.groups.",
    )
    data_dir: AbsolutePath | None = Field(
        default=None,
        description="Read-only data folder mounted at ~/data in every server; made root-owned 0755 when "
        "missing, left as it is when it exists. None when unset.",
    )

    def folders(self) -> dict[str, PurePosixPath]:
        """Every lab folder the stack sets, by its key (``paths.usersDir``)."""
        return {
            f"paths.{to_camel(name)}": PurePosixPath(value)
            for name in type(self).model_fields
            if (value := getattr(self, name)) is not None
        }

    @model_validator(mode="after")
    def _distinct_and_not_nested(self) -> PathSettings:
        folders = self.folders()
        keys = list(folders)
        problems = []
        for index, first in enumerate(keys):
            for second in keys[index + 1 :]:
                # Report at the key the stack set (the second when both or neither are).
                key, other = (first, second) if self._set(first) and not self._set(second) else (second, first)
                relation = nesting(folders[key], folders[other])
                if relation:
                    problems.append(
                        Problem(
                            key.removeprefix("paths."),
                            str(folders[key]),
                            f"{relation} {other} {folders[other]}; the lab's folders must be separate, "
                            "neither inside another",
                        )
                    )
        refuse(problems)
        return self

    def _set(self, key: str) -> bool:
        return any(to_camel(name) == key.removeprefix("paths.") for name in self.model_fields_set)


#: Where the group folders and the read-only data folder appear in users' servers, under their home.
GROUPS_MOUNT = "shared-groups"
DATA_MOUNT = "data"
#: Hub group names that may have a folder: they name a folder on the host and in servers.
GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _group_name(value: str) -> str:
    if not GROUP_NAME.fullmatch(value):
        raise ValueError(
            "must be a group name that can name a folder: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, at most 64 characters"
        )
    return value


GroupName = Annotated[str, AfterValidator(_group_name)]


class FolderSettings(Section):
    """Folders beside each user's own and the lab-wide shared one."""

    groups: Annotated[list[GroupName], AfterValidator(_each_once)] = Field(
        default=[],
        description="Hub groups (LDAP groups with auth.ldap.groupSearchBase, or groups an admin manages) that "
        "get a shared folder <paths.groupsDir>/<group>, mounted at ~/shared-groups/<group> in members' servers.",
    )


#: The users' network when the stack sets none: private, and outside the pools the engine hands
#: out by itself (172.17.0.0/16-172.31.0.0/16, 192.168.0.0/16), so no network it makes takes it.
DEFAULT_USERS_SUBNET = "172.16.16.0/22"
#: ``network.egress`` when users' servers may open connections anywhere outside the lab.
OPEN_EGRESS = "0.0.0.0/0"


class UsersNetworkLayout(NamedTuple):
    """Addresses on the users' network: the lower half of its subnet holds the gateway and the
    fixed addresses of the hub and the proxy (the isolation rules name them), the upper half is
    the range the engine hands users' servers, so no server ever takes a fixed address."""

    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    hub: ipaddress.IPv4Address
    proxy: ipaddress.IPv4Address
    dynamic: ipaddress.IPv4Network


def _cidr(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as error:
        raise ValueError(f"must be a CIDR network such as 172.30.0.0/24 ({error})") from None


def _egress_cidr(value: str) -> str:
    network = _cidr(value)
    if network.version != 4:
        raise ValueError("must be an IPv4 CIDR such as 10.20.0.0/16: the users' network is IPv4")
    return value


EgressCidr = Annotated[str, AfterValidator(_egress_cidr)]


class NetworkSettings(Section):
    """Docker networks: one for hub and proxy, one for users' servers."""

    hub_subnet: str | None = Field(
        default=None, description="CIDR of the hub/proxy network; Docker picks one when unset."
    )
    users_subnet: str = Field(
        default=DEFAULT_USERS_SUBNET,
        description="CIDR of the users' network (/28 or larger). With security.networkIsolation its lower half "
        "holds the gateway (first address), the hub (second) and the proxy (third), its upper half users' "
        "servers. Each stack on one Docker host needs its own.",
    )
    egress: Annotated[list[EgressCidr], AfterValidator(_each_once)] = Field(
        default=[OPEN_EGRESS],
        description="Where users' servers may open connections outside the lab (IPv4 CIDRs; include DNS "
        "servers): 0.0.0.0/0 is anywhere, [] nowhere. The lab's own networks and the Docker host are never "
        "reachable (the hub API is). Needs security.networkIsolation.",
    )

    @field_validator("hub_subnet", "users_subnet")
    @classmethod
    def _private_cidr(cls, value: str | None) -> str | None:
        if value is None:
            return value
        network = _cidr(value)
        if not network.is_private:
            raise ValueError("must be a private range (10/8, 172.16/12, 192.168/16 or IPv6 ULA)")
        if network.version == 4 and network.prefixlen > 28:
            raise ValueError(
                "must have a prefix of /28 or shorter: its lower half holds the gateway, the hub and the proxy, "
                "its upper half users' servers"
            )
        return value

    @property
    def open_egress(self) -> bool:
        """Whether users' servers may open connections anywhere outside the lab."""
        return OPEN_EGRESS in self.egress

    def subnets(self) -> dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The lab's subnets that are known before the engine makes them, by key (``network.usersSubnet``)."""
        named = {"network.hubSubnet": self.hub_subnet, "network.usersSubnet": self.users_subnet}
        return {key: ipaddress.ip_network(value) for key, value in named.items() if value}

    def users_layout(self) -> UsersNetworkLayout:
        """Where the gateway, the hub, the proxy and users' servers sit on the users' network (IPv4)."""
        subnet = ipaddress.ip_network(self.users_subnet)
        if not isinstance(subnet, ipaddress.IPv4Network):
            raise ValueError(f"network.usersSubnet {self.users_subnet} is not IPv4: no fixed addresses are laid out")
        _, upper = subnet.subnets(prefixlen_diff=1)
        return UsersNetworkLayout(subnet, subnet[1], subnet[2], subnet[3], upper)

    @model_validator(mode="after")
    def _no_overlap(self) -> NetworkSettings:
        subnets = self.subnets()
        problems = []
        hub, users = subnets.get("network.hubSubnet"), subnets["network.usersSubnet"]
        if hub is not None and hub.overlaps(users):
            # Reported at the key the stack set (usersSubnet has a default).
            if "users_subnet" in self.model_fields_set:
                problems.append(Problem("usersSubnet", self.users_subnet, f"must not overlap network.hubSubnet {hub}"))
            else:
                problems.append(
                    Problem("hubSubnet", self.hub_subnet, f"must not overlap network.usersSubnet {users} (its default)")
                )
        for index, cidr in enumerate(self.egress):
            network = ipaddress.ip_network(cidr)
            problems += [
                Problem(
                    f"egress[{index}]",
                    cidr,
                    f"lies inside {key} {subnet}: the lab's own networks are never reachable from users' servers "
                    "(the hub API is); list networks outside the lab",
                )
                for key, subnet in subnets.items()
                if network.version == subnet.version and network.subnet_of(subnet)  # type: ignore[arg-type]
            ]
        refuse(problems)
        return self


#: Node names of the stack: they name its resources and appear in messages (a DNS label).
NODE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
#: Keys of node labels the operator sets; ``juvini.*`` ones are the program's own.
NODE_LABEL_KEY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$")
#: The label the program puts on every node of the stack, with the stack's name as its value.
STACK_NODE_LABEL = "juvini.stack"
_RESERVED_LABEL_PREFIX = "juvini."
#: A network interface name as Linux allows it (at most 15 characters, no '/', no blank).
_INTERFACE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")


def _advertise_address(value: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        if not _INTERFACE.fullmatch(value):
            raise ValueError(
                "must be an IP address or a network interface name (such as 10.0.0.11 or eth0), without a port: "
                "Docker advertises it to the other nodes of the swarm"
            ) from None
        return value
    if address.is_loopback or address.is_unspecified or address.is_multicast:
        raise ValueError("must be an address the other nodes can reach, not a loopback, unspecified or multicast one")
    return value


def _node_labels(labels: dict[str, str]) -> dict[str, str]:
    bad_keys = sorted(key for key in labels if not NODE_LABEL_KEY.fullmatch(key))
    if bad_keys:
        raise ValueError(
            f"has label keys {bad_keys}: a key is letters, digits, '.', '_' or '-', starting and ending with "
            "a letter or digit, at most 128 characters"
        )
    reserved = sorted(key for key in labels if key.startswith(_RESERVED_LABEL_PREFIX))
    if reserved:
        raise ValueError(f"has label keys {reserved}: keys starting with 'juvini.' are the program's own")
    bad_values = sorted(key for key, value in labels.items() if not re.fullmatch(r"[ -~]{0,256}", value))
    if bad_values:
        raise ValueError(f"has values of {bad_values} that are not one line of printable ASCII (at most 256)")
    return labels


def _node_name(value: str) -> str:
    if not NODE_NAME.fullmatch(value):
        raise ValueError("must be a DNS label: lower-case letters, digits and '-', at most 32 characters")
    return value


AdvertiseAddress = Annotated[str, AfterValidator(_advertise_address)]
NodeName = Annotated[str, AfterValidator(_node_name)]
NodeLabels = Annotated[dict[str, str], AfterValidator(_node_labels)]


def routable_ip(value: str) -> bool:
    """Whether ``value`` is an IP address other nodes can be told to reach."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return not (address.is_loopback or address.is_unspecified or address.is_multicast)


class SwarmManagerSettings(Section):
    """The swarm manager: the Docker host of ``host`` (reached over SSH as it says)."""

    advertise_address: AdvertiseAddress | None = Field(
        default=None,
        description="Address (IP or interface name) the manager advertises to workers when the stack makes it "
        "a swarm manager; unset: host.address when that is an IP address other nodes can reach.",
    )
    labels: NodeLabels = Field(
        default={}, description="Node labels the program puts on the manager (beside juvini.stack=<stack>)."
    )

    def effective_advertise_address(self, host_address: str) -> str | None:
        """What ``docker swarm init --advertise-addr`` gets: the setting, or a routable host.address."""
        if self.advertise_address is not None:
            return self.advertise_address
        return host_address if routable_ip(host_address) else None


class SwarmWorkerSettings(Section):
    """A worker node of the swarm, reached over SSH like the Docker host."""

    name: NodeName = Field(
        description="Name of the worker in the stack (a DNS label: lower-case letters, digits, '-'); names its "
        "resources and appears in messages. Not the Docker node's name.",
    )
    address: HostnameOrIp = Field(description="SSH address of the worker.")
    ssh_port: Port = Field(default=22, description="SSH port of the worker.")
    ssh_user: PosixName = Field(
        default="root",
        description="SSH user for the worker's host commands; a non-root user needs useSudo.",
    )
    ssh_private_key: SecretStr | None = Field(
        default=None,
        description="SSH private key for the worker's SSH user. Secret. Unset: the host's (host.sshPrivateKey, "
        "host.sshPrivateKeyFile, host.sshPassword or the SSH agent).",
    )
    host_key: SshHostKey | None = Field(
        default=None, description="Expected SSH host public key of the worker; unchecked when unset."
    )
    use_sudo: bool = Field(default=False, description="Run the worker's privileged steps through 'sudo -n'.")
    advertise_address: AdvertiseAddress | None = Field(
        default=None,
        description="Address (IP or interface name) the worker advertises to the swarm; unset: its address "
        "when that is an IP other nodes can reach, else Docker picks one.",
    )
    labels: NodeLabels = Field(
        default={}, description="Node labels the program puts on the worker (beside juvini.stack=<stack>)."
    )

    @model_validator(mode="after")
    def _sudo_for_non_root(self) -> SwarmWorkerSettings:
        refuse(_needless_sudo(self.use_sudo, self.ssh_user, "sshUser"))
        return self

    def effective_advertise_address(self) -> str | None:
        """What the worker's join advertises: the setting, or a routable address; None lets Docker pick."""
        if self.advertise_address is not None:
            return self.advertise_address
        return self.address if routable_ip(self.address) else None


class SwarmSettings(Section):
    """Docker Swarm scale-out: users' servers as swarm services across nodes (SwarmSpawner)."""

    enabled: bool = Field(
        default=False, description="Spawn users' servers as Swarm services (the Docker host must be a manager)."
    )
    placement_constraints: list[str] = Field(
        default=[], description="Swarm placement constraints for users' services, e.g. node.role==worker."
    )
    existing: bool = Field(
        default=False,
        description="The swarm exists and its operator runs it: the program only checks that the Docker host is "
        "a manager and each listed worker a Ready node, and labels them; it never initialises, joins or leaves. "
        "Unset: the program makes the Docker host a manager when it is not one, joins the workers, and on "
        "destroy removes only the nodes it joined.",
    )
    manager: SwarmManagerSettings = Field(
        default_factory=SwarmManagerSettings, description="The swarm manager (the Docker host of host.*)."
    )
    workers: list[SwarmWorkerSettings] = Field(
        default=[],
        description="The worker nodes of the lab, each reached over SSH and prepared like the Docker host. "
        "Users' folders must be the same shared filesystem on every node (checked at up).",
    )

    @field_validator("placement_constraints")
    @classmethod
    def _constraints(cls, constraints: list[str]) -> list[str]:
        bad = [c for c in constraints if not re.fullmatch(r"[A-Za-z0-9_.\-]+ *(==|!=) *[A-Za-z0-9_.\-]+", c)]
        if bad:
            raise ValueError(f"{bad} are not placement constraints like node.role==worker")
        return constraints

    @model_validator(mode="after")
    def _consistent(self) -> SwarmSettings:
        problems = []
        if not self.enabled:
            why = "only with swarm.enabled true: {}, and swarm.enabled is false"
            if self.placement_constraints:
                problems.append(
                    Problem("placementConstraints", self.placement_constraints, why.format("they place Swarm services"))
                )
            if self.workers:
                names = [worker.name for worker in self.workers]
                problems.append(Problem("workers", names, why.format("they are nodes of the swarm")))
            if self.existing:
                problems.append(Problem("existing", True, why.format("it describes the swarm")))
            problems += [
                Problem(f"manager.{key}", value, why.format("it describes the swarm manager"))
                for key, value in explicit(self.manager).items()
            ]
        problems += self._distinct_workers()
        refuse(problems)
        return self

    def _distinct_workers(self) -> list[Problem]:
        """Two workers with one name, one SSH endpoint or one advertised IP are one node listed twice."""
        problems = []
        first_of: dict[tuple[str, object], int] = {}
        for index, worker in enumerate(self.workers):
            advertised = worker.effective_advertise_address()
            checked: list[tuple[str, object, object, str]] = [
                ("name", worker.name, worker.name, "swarm.workers[{}].name: it names the worker's resources"),
                (
                    "address",
                    (worker.address.lower(), worker.ssh_port),
                    worker.address,
                    "swarm.workers[{}].address with the same sshPort: they reach the same machine",
                ),
            ]
            if advertised is not None and routable_ip(advertised):
                checked.append(
                    (
                        "advertiseAddress",
                        advertised,
                        advertised,
                        "the address swarm.workers[{}] advertises: two nodes cannot advertise one address",
                    )
                )
            for key, identity, shown, other in checked:
                first = first_of.setdefault((key, identity), index)
                if first != index:
                    allowed = f"must differ from {other.format(first)}"
                    problems.append(Problem(f"workers[{index}].{key}", shown, allowed))
        return problems
