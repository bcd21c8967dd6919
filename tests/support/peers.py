"""Peer services for the integration and end-to-end tests: a directory, a KDC, a file server,
an OpenID provider.

Each peer is a small container built from ``tests/peers/<name>/Dockerfile`` on the local
Debian base image (no registry is needed), started on one user-defined Docker network
with a fixed address and a DNS alias there:

===========  ==================  ==================================================
peer         alias               service
===========  ==================  ==================================================
``slapd``    ``ldap.lab.test``   OpenLDAP ``dc=lab,dc=test`` on 389, StartTLS from a
                                 test CA; simple binds without TLS are refused
``kdc``      ``kdc.lab.test``    MIT Kerberos KDC for ``LAB.TEST`` on 88 (TCP, UDP)
``samba``    ``smb.lab.test``    Samba on 445: share ``team`` and ``[homes]``
``oidc``     ``oidc.lab.test``   OpenID provider (oidc-provider) on 8443, HTTPS from a
                                 test CA; issuer and client from its environment
===========  ==================  ==================================================

The accounts and their passwords are TEST-ONLY values read from
``tests/peers/accounts.txt``, the same file the peers are seeded from, so the tests and
the peers always agree. Readiness is checked for real (a StartTLS bind, a ``kinit``, an
``smbclient`` listing) in a loop with a deadline, never with a fixed sleep.

The tests connect from this machine to the containers' addresses, so the Docker engine
must run here. Everything is labelled ``org.juvini.stack=peers``; :func:`remove_peers`
removes what an aborted run left behind.

Typical use::

    with peers_running("slapd", "kdc") as peers:
        ldap_ip = peers["slapd"].ip
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import ipaddress
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError, NotFound
from docker.models.containers import Container

REPO = Path(__file__).resolve().parents[2]
PEERS_DIR = REPO / "tests" / "peers"
ACCOUNTS_FILE = PEERS_DIR / "accounts.txt"
MAKE_BASE_IMAGE = REPO / "images" / "tools" / "make-base-image.sh"
BASE_IMAGE = "juvini-base:bookworm"
#: The docker client with buildx/BuildKit on the test machines.
DOCKER_CLI = os.environ.get("DOCKER", "/usr/bin/docker")
IMAGE_VERSION = "1"
NETWORK = "juvini-test-peers"
STACK_LABEL = "org.juvini.stack"
LABELS = {STACK_LABEL: "peers"}
LABEL_FILTER = f"{STACK_LABEL}=peers"

# --- the directory --------------------------------------------------------------------------
DOMAIN = "lab.test"
BASE_DN = "dc=lab,dc=test"
PEOPLE_DN = f"ou=people,{BASE_DN}"
SERVICES_DN = f"ou=services,{BASE_DN}"
GROUPS_DN = f"ou=groups,{BASE_DN}"
USERS_GROUP_DN = f"cn=datalab-users,{GROUPS_DN}"
ADMINS_GROUP_DN = f"cn=datalab-admins,{GROUPS_DN}"
BIND_DN_TEMPLATE = f"uid={{username}},{PEOPLE_DN}"
LDAP_HOSTNAME = f"ldap.{DOMAIN}"
LDAP_PORT = 389
#: Where the slapd peer keeps the test CA that signs its server certificate.
LDAP_CA_IN_CONTAINER = "/etc/ldap/tls/ca.crt"

# --- Kerberos -------------------------------------------------------------------------------
REALM = "LAB.TEST"
KDC_HOSTNAME = f"kdc.{DOMAIN}"
KDC_PORT = 88

# --- the file server ------------------------------------------------------------------------
SMB_HOSTNAME = f"smb.{DOMAIN}"
SMB_PORT = 445
TEAM_SHARE = "team"
TEAM_FILE = "welcome.txt"
TEAM_FILE_TEXT = "Welcome to the team share (juvini test peer).\n"
#: Unix group of the users on the file server (and of the team share).
LAB_GID = 2100

# --- the OpenID provider --------------------------------------------------------------------
OIDC_HOSTNAME = f"oidc.{DOMAIN}"
OIDC_PORT = 8443
#: The lab's client at the provider; its secret is a public TEST-ONLY value.
OIDC_CLIENT_ID = "juvini-lab"
OIDC_CLIENT_SECRET = "Juvini-lab-oidc-secret-0001"
#: Where the OpenID peer keeps the test CA that signs its server certificate.
OIDC_CA_IN_CONTAINER = "/etc/oidc-peer/ca.crt"
#: Its users' group claim, released with the scope of the same name.
OIDC_GROUPS_CLAIM = "groups"
#: Extra CAs (e.g. a TLS-inspecting proxy's) for peer builds that download packages.
EXTRA_CA_DIR = Path(os.environ.get("JUVINI_EXTRA_CA_DIR", "/usr/local/share/ca-certificates"))


class PeerError(RuntimeError):
    """A peer could not be built, started or reached; the message carries its log."""


# --- accounts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """One TEST-ONLY account of ``tests/peers/accounts.txt``."""

    kind: str  # user, service (LDAP service account), admin (LDAP rootdn), master (KDC master key)
    name: str
    password: str
    uid_number: int | None
    groups: tuple[str, ...]
    peers: frozenset[str]

    @property
    def dn(self) -> str:
        """The account's LDAP entry (or rootdn)."""
        if self.kind == "user":
            return f"uid={self.name},{PEOPLE_DN}"
        if self.kind == "service":
            return f"cn={self.name},{SERVICES_DN}"
        if self.kind == "admin":
            return f"cn={self.name},{BASE_DN}"
        raise ValueError(f"{self.kind} account {self.name!r} has no LDAP entry")

    @property
    def principal(self) -> str:
        return f"{self.name}@{REALM}"

    @property
    def group_dns(self) -> tuple[str, ...]:
        return tuple(f"cn={group},{GROUPS_DN}" for group in self.groups)


def load_accounts(path: Path = ACCOUNTS_FILE) -> dict[str, Account]:
    """The accounts of ``path`` by name."""
    accounts = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 6:
            raise ValueError(f"{path}:{number}: expected 6 columns, found {len(fields)}: {line!r}")
        kind, name, password, uid, groups, peers = fields
        accounts[name] = Account(
            kind=kind,
            name=name,
            password=password,
            uid_number=None if uid == "-" else int(uid),
            groups=() if groups == "-" else tuple(groups.split(",")),
            peers=frozenset(peers.split(",")),
        )
    return accounts


ACCOUNTS = load_accounts()
#: In datalab-users; in the directory, the KDC and the file server.
ALICE = ACCOUNTS["alice"]
#: In datalab-users and datalab-admins; in the directory, the KDC and the file server.
BOB = ACCOUNTS["bob"]
#: In no lab group; only in the directory (no principal, no file-server account).
CAROL = ACCOUNTS["carol"]
#: The hub's search account for ``lookup_dn``.
SEARCH_ACCOUNT = ACCOUNTS["svc-jupyterhub"]
LDAP_ADMIN = ACCOUNTS["admin"]


# --- network and containers -----------------------------------------------------------------


def docker_client() -> docker.DockerClient:
    return docker.from_env(timeout=120)


@dataclass(frozen=True)
class PeerNetwork:
    """The peers' user-defined network; its subnet is fixed so peers keep their addresses."""

    name: str
    subnet: ipaddress.IPv4Network

    def address(self, index: int) -> str:
        return str(self.subnet.network_address + index)


@dataclass(frozen=True)
class PeerSpec:
    name: str
    hostname: str
    #: The peer's address is the subnet's network address plus this.
    address_index: int
    ports: tuple[int, ...]
    #: A real request to the service; returns None when it is served, else what went wrong.
    check: Callable[[Peer], str | None]
    #: Its build downloads from a package registry (npm): it gets this machine's extra CAs.
    uses_registry: bool = False

    @property
    def image(self) -> str:
        return f"juvini-test/peer-{self.name}:{IMAGE_VERSION}"

    #: Another container name than the shared one (a test module running its own peer).
    container_name_override: str | None = None

    @property
    def container_name(self) -> str:
        return self.container_name_override or f"juvini-test-peer-{self.name}"


@dataclass
class Peer:
    """A started peer container; ``ip`` is fixed, so it survives :meth:`stop`/:meth:`start`."""

    spec: PeerSpec
    container: Container
    network: PeerNetwork
    ip: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def hostname(self) -> str:
        return self.spec.hostname

    def exec(self, *command: str, environment: dict[str, str] | None = None) -> tuple[int, str]:
        """Run ``command`` in the container; its exit code and combined output."""
        result = self.container.exec_run(list(command), environment=environment)
        return result.exit_code, result.output.decode(errors="replace")

    def logs(self, tail: int = 40) -> str:
        return self.container.logs(tail=tail).decode(errors="replace")

    def is_running(self) -> bool:
        self.container.reload()
        return self.container.status == "running"

    def stop(self, timeout: int = 10) -> None:
        self.container.stop(timeout=timeout)
        self.container.reload()
        if self.container.status == "running":
            raise PeerError(f"{self.spec.container_name} is still running after docker stop")

    def start(self, timeout: float = 60) -> None:
        """Start the stopped peer again and wait until it serves."""
        self.container.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        """Loop until the service answers a real request, or raise :class:`PeerError` at the deadline."""
        deadline = time.monotonic() + timeout
        last = "not checked yet"
        while True:
            self.container.reload()
            state = self.container.attrs["State"]
            if state["Status"] in ("exited", "dead"):
                raise PeerError(
                    f"{self.spec.container_name} exited with {state['ExitCode']} while starting:\n{self.logs()}"
                )
            if state["Status"] == "running":
                last = _ports_closed(self.ip, self.spec.ports) or self.spec.check(self) or ""
                if not last:
                    return
            if time.monotonic() >= deadline:
                raise PeerError(f"{self.spec.container_name} is not ready after {timeout:.0f} s: {last}\n{self.logs()}")
            time.sleep(0.25)

    def remove(self) -> None:
        with contextlib.suppress(NotFound):
            self.container.remove(force=True)


def _ports_closed(ip: str, ports: tuple[int, ...]) -> str | None:
    for port in ports:
        try:
            with socket.create_connection((ip, port), timeout=2):
                pass
        except OSError as error:
            return f"TCP {ip}:{port} from this machine: {error}"
    return None


def _check_slapd(peer: Peer) -> str | None:
    # A StartTLS (-ZZ: TLS required) bind of the search account, to the directory's DNS
    # alias on the peers' network, with the certificate checked against the test CA.
    code, output = peer.exec(
        "ldapwhoami",
        "-x",
        "-ZZ",
        "-H",
        f"ldap://{LDAP_HOSTNAME}",
        "-D",
        SEARCH_ACCOUNT.dn,
        "-w",
        SEARCH_ACCOUNT.password,
        environment={"LDAPTLS_CACERT": LDAP_CA_IN_CONTAINER, "LDAPTLS_REQCERT": "demand"},
    )
    if code == 0 and f"dn:{SEARCH_ACCOUNT.dn}" in output:
        return None
    return f"ldapwhoami -ZZ exited {code}: {output.strip()}"


def _check_kdc(peer: Peer) -> str | None:
    # A real AS exchange over TCP: the password goes to kinit on its standard input.
    code, output = peer.exec(
        "sh",
        "-c",
        'printf "%s\\n" "$PEER_PASSWORD" | kinit -c MEMORY:ready "$PEER_PRINCIPAL"',
        environment={"PEER_PASSWORD": ALICE.password, "PEER_PRINCIPAL": ALICE.principal},
    )
    return None if code == 0 else f"kinit {ALICE.principal} exited {code}: {output.strip()}"


def _check_samba(peer: Peer) -> str | None:
    # An authenticated SMB3 session that lists the shares (smbclient reads PASSWD).
    code, output = peer.exec(
        "smbclient", "-L", "//127.0.0.1", "-U", ALICE.name, "-m", "SMB3", environment={"PASSWD": ALICE.password}
    )
    if code == 0 and TEAM_SHARE in output:
        return None
    return f"smbclient -L exited {code}: {output.strip()}"


def _check_oidc(peer: Peer) -> str | None:
    # The discovery document over HTTPS, checked against the test CA, naming the issuer the
    # peer was started with (OIDC_ISSUER in the container's environment).
    code, output = peer.exec(
        "node", "/usr/local/lib/peer/ready.mjs", environment={"NODE_EXTRA_CA_CERTS": OIDC_CA_IN_CONTAINER}
    )
    return None if code == 0 and "ready: https://" in output else f"ready.mjs exited {code}: {output.strip()}"


PEERS: dict[str, PeerSpec] = {
    "slapd": PeerSpec("slapd", LDAP_HOSTNAME, 10, (LDAP_PORT,), _check_slapd),
    "kdc": PeerSpec("kdc", KDC_HOSTNAME, 11, (KDC_PORT,), _check_kdc),
    "samba": PeerSpec("samba", SMB_HOSTNAME, 12, (SMB_PORT,), _check_samba),
    "oidc": PeerSpec("oidc", OIDC_HOSTNAME, 13, (OIDC_PORT,), _check_oidc, uses_registry=True),
}


@functools.cache
def ensure_base_image() -> str:
    """Make the local Debian base image unless it exists (the script is idempotent)."""
    result = subprocess.run(
        [str(MAKE_BASE_IMAGE), BASE_IMAGE],
        capture_output=True,
        text=True,
        env=os.environ | {"DOCKER": DOCKER_CLI},
        check=False,
    )
    if result.returncode != 0:
        raise PeerError(f"{MAKE_BASE_IMAGE.name} failed:\n{result.stderr[-3000:]}")
    return BASE_IMAGE


def extra_ca_certificates() -> str:
    """PEM text of this machine's extra CAs (EXTRA_CA_DIR's .crt files; empty when there are none)."""
    if not EXTRA_CA_DIR.is_dir():
        return ""
    return "".join(path.read_text(encoding="utf-8") for path in sorted(EXTRA_CA_DIR.glob("*.crt")))


@functools.cache
def build_peer_image(
    folder: str,
    tag: str,
    labels: tuple[tuple[str, str], ...] = (),
    build_args: tuple[tuple[str, str], ...] = (),
) -> str:
    """Build ``tests/peers/<folder>/Dockerfile`` (context ``tests/peers``) on the local base image
    as ``tag``, once per run; Docker's layer cache makes a rebuild of unchanged files instant.

    Used for the peers of PEERS (:func:`build_peer`) and for images made outside them (e.g. the
    swarm test bed's node and registry)."""
    every_build_arg = (("BASE_IMAGE", ensure_base_image()), *build_args)
    options = [option for name, value in every_build_arg for option in ("--build-arg", f"{name}={value}")]
    options += [option for name, value in labels for option in ("--label", f"{name}={value}")]
    result = subprocess.run(
        [
            DOCKER_CLI,
            "build",
            *options,
            "--tag",
            tag,
            "--file",
            str(PEERS_DIR / folder / "Dockerfile"),
            str(PEERS_DIR),
        ],
        capture_output=True,
        text=True,
        env=os.environ | {"DOCKER_BUILDKIT": "1"},
        check=False,
    )
    if result.returncode != 0:
        raise PeerError(f"building {tag} failed:\n{(result.stdout + result.stderr)[-4000:]}")
    return tag


@functools.cache
def build_peer(name: str) -> str:
    """Build the peer's image (cached by Docker's layer cache); its tag."""
    spec = PEERS[name]
    registry_args = (("EXTRA_CA_CERTS", extra_ca_certificates()),) if spec.uses_registry else ()
    return build_peer_image(name, spec.image, tuple(LABELS.items()), registry_args)


def free_subnet(client: docker.DockerClient, probe_name: str, labels: dict[str, str]) -> ipaddress.IPv4Network:
    """A subnet Docker considers free: the one it gives a throwaway probe network."""
    probe = client.networks.create(probe_name, driver="bridge", labels=labels)
    try:
        probe.reload()
        return ipaddress.ip_network(probe.attrs["IPAM"]["Config"][0]["Subnet"])  # type: ignore[return-value]
    finally:
        probe.remove()


def ensure_network(client: docker.DockerClient | None = None) -> PeerNetwork:
    """The peers' network, created when missing.

    Docker assigns fixed addresses only on networks with a configured subnet, so the
    subnet is the one Docker itself picks as free for a throwaway probe network.
    """
    client = client or docker_client()
    for _ in range(3):
        with contextlib.suppress(NotFound):
            network = client.networks.get(NETWORK)
            configs = network.attrs.get("IPAM", {}).get("Config") or []
            subnets = [ipaddress.ip_network(item["Subnet"]) for item in configs if "Subnet" in item]
            ipv4 = [subnet for subnet in subnets if isinstance(subnet, ipaddress.IPv4Network)]
            if ipv4:
                return PeerNetwork(NETWORK, ipv4[0])
            network.remove()  # an unusable leftover
        subnet = free_subnet(client, f"{NETWORK}-probe-{os.getpid()}", LABELS)
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet))])
        with contextlib.suppress(APIError):  # another run may have created it meanwhile
            client.networks.create(NETWORK, driver="bridge", ipam=ipam, labels=LABELS, check_duplicate=True)
    raise PeerError(f"could not create the Docker network {NETWORK}")


def start_peer(
    name: str,
    network: PeerNetwork,
    client: docker.DockerClient | None = None,
    timeout: float = 90,
    *,
    environment: dict[str, str] | None = None,
    container_name: str | None = None,
    labels: dict[str, str] | None = None,
) -> Peer:
    """A fresh container of the peer on ``network``, serving when this returns.

    ``environment`` configures peers that take it (the OpenID provider); ``container_name``
    and ``labels`` replace the shared defaults, for a test module that runs its own peers.
    """
    client = client or docker_client()
    spec = PEERS[name]
    if container_name is not None:
        spec = dataclasses.replace(spec, container_name_override=container_name)
    image = build_peer(name)
    with contextlib.suppress(NotFound):
        client.containers.get(spec.container_name).remove(force=True)
    ip = network.address(spec.address_index)
    endpoint = client.api.create_endpoint_config(aliases=[spec.hostname], ipv4_address=ip)
    container = client.containers.create(
        image,
        name=spec.container_name,
        hostname=spec.hostname,
        environment=environment or {},
        labels=(labels or LABELS) | {"org.juvini.role": f"peer-{name}"},
        network=network.name,
        networking_config={network.name: endpoint},
        detach=True,
    )
    peer = Peer(spec, container, network, ip)
    try:
        container.start()
        peer.wait_ready(timeout)
    except BaseException:
        peer.remove()
        raise
    return peer


def remove_network_if_unused(client: docker.DockerClient | None = None) -> None:
    client = client or docker_client()
    with contextlib.suppress(NotFound):
        network = client.networks.get(NETWORK)
        network.reload()
        if not network.attrs.get("Containers"):
            with contextlib.suppress(APIError):
                network.remove()


@contextlib.contextmanager
def peers_running(*names: str, client: docker.DockerClient | None = None) -> Iterator[dict[str, Peer]]:
    """Start the named peers (fresh containers); remove them, and the network when unused, after."""
    client = client or docker_client()
    network = ensure_network(client)
    started: dict[str, Peer] = {}
    try:
        for name in names:
            started[name] = start_peer(name, network, client)
        yield started
    finally:
        for peer in started.values():
            peer.remove()
        remove_network_if_unused(client)


def attach_to_peers(container: Container | str, client: docker.DockerClient | None = None) -> None:
    """Connect another container (e.g. the lab's hub) to the peers' network.

    Docker isolates bridge networks from each other: a container elsewhere reaches the
    peers only once attached; then ``ldap.lab.test`` etc. resolve in it, and the name
    matches the directory's certificate.
    """
    client = client or docker_client()
    ensure_network(client)
    network = client.networks.get(NETWORK)
    network.reload()
    name = container if isinstance(container, str) else container.name
    attached = {item.get("Name") for item in (network.attrs.get("Containers") or {}).values()}
    if name not in attached:
        network.connect(container)


def remove_peers(client: docker.DockerClient | None = None) -> None:
    """Remove every container, volume and network labelled as the peers' (images stay cached)."""
    client = client or docker_client()
    for container in client.containers.list(all=True, filters={"label": LABEL_FILTER}):
        with contextlib.suppress(NotFound):
            container.remove(force=True)
    for volume in client.volumes.list(filters={"label": LABEL_FILTER}):
        with contextlib.suppress(NotFound):
            volume.remove(force=True)
    for network in client.networks.list(filters={"label": LABEL_FILTER}):
        with contextlib.suppress(NotFound):
            network.remove()


# --- helpers for tests ----------------------------------------------------------------------


def ldap_ca_certificate(peer: Peer) -> str:
    """PEM of the test CA that signs the directory's certificate (for ``ca_certs_file``)."""
    code, output = peer.exec("cat", LDAP_CA_IN_CONTAINER)
    if code != 0 or "BEGIN CERTIFICATE" not in output:
        raise PeerError(f"cannot read {LDAP_CA_IN_CONTAINER} from {peer.spec.container_name}: {output}")
    return output


def run_in_peer_image(
    name: str,
    command: list[str],
    network: PeerNetwork,
    environment: dict[str, str] | None = None,
    client: docker.DockerClient | None = None,
    timeout: float = 60,
) -> tuple[int, str]:
    """Run ``command`` in a throwaway container of the peer's image on the peers' network.

    E.g. ``smbclient`` from the samba image, as a client elsewhere on the network.
    Returns the exit code and the combined output.
    """
    client = client or docker_client()
    container = client.containers.create(
        build_peer(name),
        command=command,
        entrypoint=[],
        environment=environment or {},
        labels=LABELS | {"org.juvini.role": f"peer-{name}-client"},
        network=network.name,
        detach=True,
    )
    try:
        container.start()
        status = container.wait(timeout=timeout)
        return status["StatusCode"], container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def stack_ldap_config(ldap_ip: str, ca_pem: str, lookup_dn: bool = True) -> dict[str, object]:
    """The ``juvini:auth`` stack keys (camelCase) for logging in against the slapd peer."""
    ldap: dict[str, object] = {
        "serverAddress": ldap_ip,
        "serverPort": LDAP_PORT,
        "tlsStrategy": "before_bind",
        "caCertificate": ca_pem,
        "userAttribute": "uid",
        "allowedGroups": [USERS_GROUP_DN, ADMINS_GROUP_DN],
        "adminGroups": [ADMINS_GROUP_DN],
    }
    if lookup_dn:
        ldap |= {
            "lookupDn": True,
            "searchUser": SEARCH_ACCOUNT.dn,
            "searchPassword": SEARCH_ACCOUNT.password,
            "userSearchBase": PEOPLE_DN,
        }
    else:
        ldap["bindDnTemplate"] = [BIND_DN_TEMPLATE]
    return {"type": "ldap", "ldap": ldap}


def stack_kerberos_config(kdc_ip: str, on_failure: str = "warn") -> dict[str, object]:
    """The ``juvini:kerberos`` stack keys (camelCase) for tickets from the kdc peer."""
    return {"enabled": True, "realm": REALM, "kdcs": [kdc_ip], "onFailure": on_failure}


def oidc_issuer(ip: str) -> str:
    """The OpenID peer's issuer at ``ip``: the URL the lab's hub and the tests both reach."""
    return f"https://{ip}:{OIDC_PORT}"


def oidc_environment(ip: str, redirect_uris: list[str], client_secret: str = OIDC_CLIENT_SECRET) -> dict[str, str]:
    """The OpenID peer's configuration: its issuer at ``ip`` and the lab's client."""
    return {
        "OIDC_ISSUER": oidc_issuer(ip),
        "OIDC_CLIENT_ID": OIDC_CLIENT_ID,
        "OIDC_CLIENT_SECRET": client_secret,
        "OIDC_REDIRECT_URIS": " ".join(redirect_uris),
        "OIDC_PORT": str(OIDC_PORT),
    }


def oidc_ca_certificate(peer: Peer) -> str:
    """PEM of the test CA that signs the OpenID peer's certificate."""
    code, output = peer.exec("cat", OIDC_CA_IN_CONTAINER)
    if code != 0 or "BEGIN CERTIFICATE" not in output:
        raise PeerError(f"cannot read {OIDC_CA_IN_CONTAINER} from {peer.spec.container_name}: {output}")
    return output


def stack_oidc_config(ip: str, ca_pem: str, client_secret: str = OIDC_CLIENT_SECRET) -> dict[str, object]:
    """The ``juvini:auth`` stack keys (camelCase) for logging in at the OpenID peer.

    Members of datalab-users or datalab-admins may log in; datalab-admins are hub admins.
    """
    return {
        "type": "oidc",
        "oidc": {
            "issuer": oidc_issuer(ip),
            "clientId": OIDC_CLIENT_ID,
            "clientSecret": client_secret,
            "scopes": ["openid", "profile", "email", OIDC_GROUPS_CLAIM],
            "usernameClaim": "preferred_username",
            "groupsClaim": OIDC_GROUPS_CLAIM,
            "allowedGroups": ["datalab-users", "datalab-admins"],
            "adminGroups": ["datalab-admins"],
            "caCertificate": ca_pem,
            "loginService": "Lab test SSO",
        },
    }
