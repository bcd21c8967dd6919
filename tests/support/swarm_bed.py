"""A Docker Swarm test bed on this machine: a few nodes and a registry, all containers (TEST ONLY).

Each node is a Docker-in-Docker container of ``tests/peers/swarm-node`` (the local base image
plus Debian's ``docker.io``, ``openssh-server``, ``sudo`` and ``tini`` as PID 1), with a fixed
address on the bed's own bridge network. The registry is Debian's ``docker-registry``
(distribution 2.8) from ``tests/peers/registry``, on the same network. Nothing comes from a
registry on the internet: both images build ``FROM`` the local base image.

What the program and the tests reach, from this machine:

================  ===============================  =========================================
what              where                            how
================  ===============================  =========================================
a node's engine   ``tcp://<node ip>:2375``         :meth:`SwarmBed.engine` (no TLS: the bed
                                                   network is private to this machine)
a node's sshd     ``<node ip>:22``                 :meth:`SwarmBed.ssh_target`: root, or
                                                   ``bedadmin`` with password-less sudo, with
                                                   the dev key ``~/.ssh/juvini_dev_ed25519``
                                                   (``tests/setup.sh`` makes it)
the registry      ``<registry ip>:5000``           :attr:`SwarmBed.registry`; plain HTTP, the
                                                   nodes list it in ``insecure-registries``
                                                   (or HTTPS from a bed CA the nodes trust,
                                                   ``registry_tls=True``)
shared storage    the same host folder, mounted    :attr:`SwarmBed.shared_dir`; a node added
                  at the same path in every node   with ``shared_storage=False`` gets a
                                                   private folder at that path instead
================  ===============================  =========================================

Measured on the test VM (2 vCPU, cgroup v1, Docker 20.10 inside and out):

- ``--privileged`` is refused; a node runs with ``--cap-add ALL --cap-drop SYS_RESOURCE
  --security-opt seccomp=unconfined --cgroupns=private``, remounts its cgroup mounts
  read-write (a bind remount for each v1 controller) and keeps ``/var/lib/docker`` on a named
  volume (overlay2 cannot stack on the container's own overlay);
- overlay networks (VXLAN) work between nodes; service virtual IPs and the ingress routing
  mesh do not (no IPVS in the nested kernel namespaces): services use ``endpoint_mode=dnsrr``
  and publish in host mode;
- a node's engine builds the lab's images on its default build network (the issue's
  ``--network host`` was not needed on this VM), but BuildKit in Docker 20.10 does not resolve
  ``FROM`` at a plain-HTTP registry (``insecure-registries`` or not): pull the base image
  first, or start the bed with ``registry_tls=True``;
- figures (start time, idle memory, failover, pulls of the notebook image, disk) are in
  ``tests/integration/test_swarm_bed.py``.

Shared storage: put every lab folder that must be shared (users' folders, the shared folder)
under :attr:`SwarmBed.shared_dir`; the nodes see it at the same path as this machine does.

The bed does not join nodes into a swarm by itself: :meth:`SwarmBed.init_swarm` and
:meth:`SwarmBed.join` are for the bed's own tests; the program joins nodes itself.

Everything the bed makes is named ``juvini-bed-...`` (``prefix``) and labelled
``org.juvini.stack=swarm-bed``; :meth:`SwarmBed.start` first removes what an aborted run left
(containers, their ``/var/lib/docker`` volumes, the network, the bed's folders under
``/var/tmp/juvini-bed``) and :meth:`SwarmBed.stop` removes it all. Run it under the Docker
lock (``flock /tmp/juvini-docker.lock``), as every Docker test here.

Typical use::

    with swarm_bed_running(nodes=3, shared_dir=Path("/var/tmp/lab-shared")) as bed:
        manager, *workers = bed.nodes
        bed.engine(manager).info()
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import docker
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from docker.errors import DockerException, NotFound
from docker.models.containers import Container

from tests.support import peers
from tests.support.local_stack import SSH_KEY
from tests.support.peers import PeerNetwork

# --- names and places -----------------------------------------------------------------------
BED_PREFIX = "juvini-bed"
STACK_LABEL = peers.STACK_LABEL
STACK_VALUE = "swarm-bed"
#: Which bed an object belongs to (its prefix), so that cleaning one bed leaves another.
BED_LABEL = "org.juvini.bed"
NODE_IMAGE = f"juvini-test/peer-swarm-node:{peers.IMAGE_VERSION}"
REGISTRY_IMAGE = f"juvini-test/peer-registry:{peers.IMAGE_VERSION}"
#: Folders the bed makes on this machine (shared and private storage, TLS files, known_hosts).
BED_FILES = Path("/var/tmp/juvini-bed")

# --- ports and addresses --------------------------------------------------------------------
ENGINE_PORT = 2375
SSH_PORT = 22
REGISTRY_PORT = 5000
SWARM_PORT = 2377
#: Addresses on the bed network: the subnet's network address plus these.
REGISTRY_ADDRESS_INDEX = 5
FIRST_NODE_ADDRESS_INDEX = 11

# --- access ---------------------------------------------------------------------------------
#: The nodes' non-root account with password-less sudo (tests/peers/swarm-node/install.sh).
SUDO_USER = "bedadmin"

# --- how a node runs ------------------------------------------------------------------------
#: What a nested engine needs instead of --privileged (refused here): every capability but
#: SYS_RESOURCE, no seccomp filter (mount, unshare, keyctl...), its own cgroup namespace.
NODE_CAP_ADD = ["ALL"]
NODE_CAP_DROP = ["SYS_RESOURCE"]
NODE_SECURITY_OPT = ["seccomp=unconfined"]
NODE_CGROUPNS = "private"
NODE_DOCKER_DIR = "/var/lib/docker"
#: Where a node finds the registry's CA (``<host:port>/ca.crt``) when the registry serves HTTPS.
NODE_CA_DIR = "/etc/juvini-bed/certs.d"
REGISTRY_TLS_DIR = "/etc/juvini-bed/tls"
REGISTRY_AUTH_DIR = "/etc/juvini-bed/auth"
REGISTRY_DATA_DIR = "/var/lib/docker-registry"

#: Deadlines (seconds): a node's engine and sshd answer within a few seconds here.
START_TIMEOUT = 120.0
SWARM_TIMEOUT = 60.0
POLL_INTERVAL = 0.2


class BedError(RuntimeError):
    """The bed could not be built, started or reached; the message says which part and why."""


@dataclass(frozen=True)
class SshTarget:
    """How the program reaches a node over SSH, as its host commands do for a lab host."""

    host: str
    port: int
    user: str
    key_file: Path
    #: The node's host key (``ssh-ed25519 AAAA...``), to pin it (``host.hostKey``).
    host_key: str

    def private_key(self) -> str:
        """The private key's text (the dev key is a TEST-ONLY key, but keep it off logs)."""
        return self.key_file.read_text(encoding="utf-8")


@dataclass(frozen=True)
class BedNode:
    """One node: a container with its own Docker engine and sshd at a fixed address."""

    #: Container name, e.g. ``juvini-bed-node-1``.
    name: str
    #: The node's hostname, as the swarm lists it, e.g. ``node-1``.
    hostname: str
    ip: str
    #: False for a node whose folder at the shared path is a private one (not shared storage).
    shared_storage: bool
    #: The host folder mounted in the node at the bed's shared path.
    storage_dir: Path

    @property
    def engine_url(self) -> str:
        return f"tcp://{self.ip}:{ENGINE_PORT}"

    @property
    def volume(self) -> str:
        """The named volume holding the node's /var/lib/docker."""
        return f"{self.name}-docker"


def _labels(prefix: str, role: str) -> dict[str, str]:
    return {STACK_LABEL: STACK_VALUE, BED_LABEL: prefix, "org.juvini.role": role}


def _engine_client(url: str, timeout: int = 120) -> docker.DockerClient:
    return docker.DockerClient(base_url=url, timeout=timeout)


def _until(what: str, probe: Callable[[], str | None], timeout: float) -> None:
    """Call ``probe`` until it returns None (ready) or raise :class:`BedError` at the deadline.

    ``probe`` returns what is still wrong, or raises BedError itself when waiting is useless.
    """
    deadline = time.monotonic() + timeout
    while True:
        problem = probe()
        if problem is None:
            return
        if time.monotonic() >= deadline:
            raise BedError(f"gave up after {timeout:.0f} s waiting for {what}: {problem}")
        time.sleep(POLL_INTERVAL)


def remove_bed(client: docker.DockerClient | None = None, prefix: str = BED_PREFIX) -> None:
    """Remove every container, volume and network of the bed ``prefix`` and its folders.

    Safe to call when nothing is left; what other beds, peers or labs made is not touched.
    """
    client = client or peers.docker_client()
    bed_filter = {"label": [f"{STACK_LABEL}={STACK_VALUE}", f"{BED_LABEL}={prefix}"]}
    for container in client.containers.list(all=True, filters=bed_filter):
        with contextlib.suppress(NotFound):
            container.remove(force=True, v=True)
    for volume in client.volumes.list(filters=bed_filter):
        with contextlib.suppress(NotFound):
            volume.remove(force=True)
    for network in client.networks.list(filters=bed_filter):
        with contextlib.suppress(NotFound):
            network.remove()
    shutil.rmtree(BED_FILES / prefix, ignore_errors=True)


def _registry_tls_files(ip: str, folder: Path) -> tuple[str, Path, Path]:
    """A TEST-ONLY CA and a server certificate for ``ip``; the CA's PEM and the cert and key files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Juvini swarm bed test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "server.crt", folder / "server.key"
    cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    # The registry runs as its own user: a TEST-ONLY key, readable by it through the bind mount.
    key_file.chmod(0o644)
    return ca_cert.public_bytes(serialization.Encoding.PEM).decode(), cert_file, key_file


@dataclass
class SwarmBed:
    """Nodes and a registry on one private network; see the module's documentation."""

    prefix: str = BED_PREFIX
    #: The key every node accepts: its public half goes to the nodes at their start (BED_AUTHORIZED_KEYS).
    ssh_key: Path = SSH_KEY
    #: Serve the registry over HTTPS from a bed CA, instead of plain HTTP.
    registry_tls: bool = False
    #: With ``registry_tls``: the nodes' engines trust the bed CA from their start. False: they do
    #: not, until someone puts it in their /etc/docker/certs.d (the program's images.registryCa).
    registry_trusted_by_nodes: bool = True
    #: Accounts (user: password) the registry asks for, pulls and pushes alike (htpasswd, bcrypt);
    #: empty: anonymous. Needs ``registry_tls`` (basic auth over plain HTTP sends passwords in clear).
    registry_users: dict[str, str] = field(default_factory=dict)
    client: docker.DockerClient = field(default_factory=peers.docker_client)

    network: PeerNetwork | None = field(default=None, init=False)
    #: The shared storage: this host folder, mounted at the same path in every shared node.
    shared_dir: Path | None = field(default=None, init=False)
    nodes: list[BedNode] = field(default_factory=list, init=False)
    registry_ip: str | None = field(default=None, init=False)
    #: PEM of the CA that signed the registry's certificate (``registry_tls`` only).
    registry_ca_pem: str | None = field(default=None, init=False)
    #: Seconds each start step took (``images``, ``registry``, ``nodes``), for the figures.
    timings: dict[str, float] = field(default_factory=dict, init=False)
    _engines: dict[str, docker.DockerClient] = field(default_factory=dict, init=False, repr=False)
    _host_keys: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _killed: set[str] = field(default_factory=set, init=False, repr=False)

    # --- life cycle -------------------------------------------------------------------------

    @property
    def files(self) -> Path:
        """This bed's folder on this machine (removed by :meth:`stop`)."""
        return BED_FILES / self.prefix

    def start(self, nodes: int = 3, shared_dir: Path | None = None, timeout: float = START_TIMEOUT) -> SwarmBed:
        """Clear leftovers, then start the registry and ``nodes`` nodes, all serving on return.

        ``shared_dir``: the host folder standing in for shared storage (made if missing; left in
        place by :meth:`stop`). Without it the bed makes one under :data:`BED_FILES` (removed).
        """
        if not self.ssh_key.is_file():
            raise BedError(f"{self.ssh_key} is missing: run tests/setup.sh (it makes the dev SSH key)")
        remove_bed(self.client, self.prefix)
        began = time.monotonic()
        peers.build_peer_image("swarm-node", NODE_IMAGE, ((STACK_LABEL, STACK_VALUE),))
        peers.build_peer_image("registry", REGISTRY_IMAGE, ((STACK_LABEL, STACK_VALUE),))
        self.timings["images"] = time.monotonic() - began
        try:
            self.files.mkdir(parents=True)
            self.shared_dir = shared_dir or self.files / "shared"
            self.shared_dir.mkdir(parents=True, exist_ok=True)
            self.network = self._create_network()
            began = time.monotonic()
            self._start_registry(timeout)
            self.timings["registry"] = time.monotonic() - began
            began = time.monotonic()
            # Start every node's container first, then wait: their engines start side by side.
            started = [self._create_node(shared_storage=True) for _ in range(nodes)]
            for node in started:
                self._wait_node(node, timeout)
            self.timings["nodes"] = time.monotonic() - began
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Remove the bed's containers, volumes, network and folders (not a given ``shared_dir``)."""
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()
        remove_bed(self.client, self.prefix)
        self.nodes.clear()
        self._host_keys.clear()
        self._killed.clear()
        self.network = None
        self.registry_ip = None

    def __enter__(self) -> SwarmBed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def add_node(self, shared_storage: bool = True, timeout: float = START_TIMEOUT) -> BedNode:
        """Start one more node, serving on return (not in the swarm: the program joins it).

        ``shared_storage=False``: its folder at the shared path is a private one, for the
        "storage not shared" check.
        """
        node = self._create_node(shared_storage)
        self._wait_node(node, timeout)
        return node

    # --- what the tests and the program reach -----------------------------------------------

    @property
    def addresses(self) -> list[str]:
        """The nodes' addresses, in order (the first is the natural manager)."""
        return [node.ip for node in self.nodes]

    @property
    def registry(self) -> str:
        """The registry as image references name it: ``<ip>:5000``."""
        if self.registry_ip is None:
            raise BedError("the bed is not started")
        return f"{self.registry_ip}:{REGISTRY_PORT}"

    @property
    def registry_url(self) -> str:
        return f"{'https' if self.registry_tls else 'http'}://{self.registry}"

    @property
    def registry_ca_file(self) -> Path | None:
        """The registry CA as a file on this machine (``registry_tls`` only), for HTTPS clients."""
        return self.files / "registry-ca.crt" if self.registry_tls else None

    def node(self, hostname: str) -> BedNode:
        for node in self.nodes:
            if hostname in (node.hostname, node.name):
                return node
        raise KeyError(f"no bed node {hostname!r}; nodes: {[node.hostname for node in self.nodes]}")

    def container(self, node: BedNode) -> Container:
        return self.client.containers.get(node.name)

    def engine(self, node: BedNode) -> docker.DockerClient:
        """A Docker client for the node's own engine, over TCP."""
        if node.name not in self._engines:
            self._engines[node.name] = _engine_client(node.engine_url)
        return self._engines[node.name]

    def ssh_target(self, node: BedNode, user: str = "root") -> SshTarget:
        """How to reach the node over SSH: ``root``, or :data:`SUDO_USER` (privileged steps via ``sudo -n``)."""
        return SshTarget(node.ip, SSH_PORT, user, self.ssh_key, self._host_keys[node.name])

    def ssh(
        self, node: BedNode, command: str, user: str = "root", stdin: str = "", timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on the node over SSH (host key pinned), as the program's host commands do."""
        return subprocess.run(
            [
                "ssh",
                "-i",
                str(self.ssh_key),
                "-p",
                str(SSH_PORT),
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                f"UserKnownHostsFile={self.files / 'known_hosts'}",
                f"{user}@{node.ip}",
                command,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def exec(self, node: BedNode, *command: str) -> tuple[int, str]:
        """Run ``command`` in the node's container (``docker exec`` from this machine)."""
        result = self.container(node).exec_run(list(command))
        return result.exit_code, result.output.decode(errors="replace")

    # --- swarm helpers for the bed's own tests (the program joins nodes itself) -------------

    def init_swarm(self, manager: BedNode) -> None:
        """Make ``manager`` a swarm manager advertising its bed address."""
        self.engine(manager).swarm.init(advertise_addr=manager.ip, listen_addr=f"{manager.ip}:{SWARM_PORT}")

    def join(self, worker: BedNode, manager: BedNode, timeout: float = SWARM_TIMEOUT) -> None:
        """Join ``worker`` to ``manager``'s swarm and wait until the manager lists it Ready."""
        swarm = self.engine(manager).swarm
        swarm.reload()
        token = swarm.attrs["JoinTokens"]["Worker"]
        # The join token is a secret: it goes through the API, never onto a command line.
        self.engine(worker).swarm.join(
            remote_addrs=[f"{manager.ip}:{SWARM_PORT}"],
            join_token=token,
            advertise_addr="eth0",
            listen_addr=f"0.0.0.0:{SWARM_PORT}",
        )
        self.wait_swarm_state(manager, worker, "ready", timeout)

    def swarm_state(self, manager: BedNode, node: BedNode) -> str | None:
        """The node's state as ``manager`` sees it (``ready``, ``down``...); None when not listed."""
        for item in self.engine(manager).nodes.list():
            if item.attrs["Description"]["Hostname"] == node.hostname:
                return str(item.attrs["Status"]["State"])
        return None

    def wait_swarm_state(self, manager: BedNode, node: BedNode, state: str, timeout: float = SWARM_TIMEOUT) -> None:
        def probe() -> str | None:
            seen = self.swarm_state(manager, node)
            return None if seen == state else f"{node.hostname} is {seen or 'not listed'}"

        _until(f"{manager.hostname} to see {node.hostname} {state}", probe, timeout)

    def kill(self, node: BedNode) -> None:
        """Kill the node's container (SIGKILL: no goodbye to the swarm), as a host that dies."""
        self.container(node).kill()
        self._killed.add(node.name)
        engine = self._engines.pop(node.name, None)
        if engine is not None:
            engine.close()

    def is_killed(self, node: BedNode) -> bool:
        return node.name in self._killed

    # --- images -----------------------------------------------------------------------------

    def push(self, image: str, repository: str, via: BedNode | None = None) -> str:
        """Put this machine's ``image`` into the registry as ``<registry>/<repository>``; that reference.

        This machine's engine does not trust the bed's registry (its configuration is shared),
        so the image is streamed into a node's engine (``via``, default the first node) and
        pushed from there, as the program's builds on a manager push.
        """
        node = via or self.nodes[0]
        engine = self.engine(node)
        reference = f"{self.registry}/{repository}"
        try:
            engine.images.load(self.client.images.get(image).save(named=True))
            engine.images.get(image).tag(reference)
            login = next(iter(self.registry_users.items()), None)
            auth = {"username": login[0], "password": login[1]} if login else None
            for event in engine.images.push(reference, stream=True, decode=True, auth_config=auth):
                if "error" in event:
                    raise BedError(f"pushing {reference} from {node.hostname}: {event['error']}")
        except DockerException as error:
            raise BedError(f"putting {image} into the registry as {reference} via {node.hostname}: {error}") from error
        return reference

    # --- figures ----------------------------------------------------------------------------

    def memory_mib(self) -> dict[str, float]:
        """Each bed container's memory in MiB, as ``docker stats`` counts it (page cache left out)."""
        figures = {}
        for container in self.client.containers.list(filters={"label": f"{BED_LABEL}={self.prefix}"}):
            memory = container.stats(stream=False, one_shot=True)["memory_stats"]
            stats = memory.get("stats", {})
            inactive = stats.get("total_inactive_file", stats.get("inactive_file", 0))
            figures[container.name] = (memory["usage"] - inactive) / 2**20
        return figures

    # --- internals --------------------------------------------------------------------------

    def _require_network(self) -> PeerNetwork:
        if self.network is None:
            raise BedError("the bed is not started")
        return self.network

    def _create_network(self) -> PeerNetwork:
        """The bed's bridge network, on a subnet Docker considers free (fixed addresses need one)."""
        labels = _labels(self.prefix, "network")
        subnet = peers.free_subnet(self.client, f"{self.prefix}-probe", labels)
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet))])
        name = f"{self.prefix}-net"
        self.client.networks.create(name, driver="bridge", ipam=ipam, labels=labels, check_duplicate=True)
        return PeerNetwork(name, subnet)

    def _endpoint(self, ip: str, alias: str) -> dict[str, object]:
        network = self._require_network()
        return {network.name: self.client.api.create_endpoint_config(aliases=[alias], ipv4_address=ip)}

    def _start_registry(self, timeout: float) -> None:
        network = self._require_network()
        ip = network.address(REGISTRY_ADDRESS_INDEX)
        self.registry_ip = ip
        volume = f"{self.prefix}-registry-data"
        self.client.volumes.create(volume, labels=_labels(self.prefix, "registry-data"))
        volumes: dict[str, dict[str, str]] = {volume: {"bind": REGISTRY_DATA_DIR, "mode": "rw"}}
        environment: dict[str, str] = {}
        if self.registry_users:
            if not self.registry_tls:
                raise BedError("registry_users needs registry_tls: basic auth over plain HTTP sends passwords in clear")
            htpasswd = self.files / "registry-auth" / "htpasswd"
            htpasswd.parent.mkdir(parents=True)
            htpasswd.write_text(
                "".join(
                    f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
                    for user, password in self.registry_users.items()
                ),
                encoding="ascii",
            )
            # The registry runs as its own user: readable through the bind mount (TEST-ONLY hashes).
            htpasswd.chmod(0o644)
            volumes[str(htpasswd.parent)] = {"bind": REGISTRY_AUTH_DIR, "mode": "ro"}
            environment |= {
                "REGISTRY_AUTH": "htpasswd",
                "REGISTRY_AUTH_HTPASSWD_REALM": "juvini-bed",
                "REGISTRY_AUTH_HTPASSWD_PATH": f"{REGISTRY_AUTH_DIR}/htpasswd",
            }
        if self.registry_tls:
            ca_pem, cert_file, key_file = _registry_tls_files(ip, self.files / "registry-tls")
            self.registry_ca_pem = ca_pem
            ca_folder = self.files / "certs.d" / self.registry
            ca_folder.mkdir(parents=True)
            (ca_folder / "ca.crt").write_text(ca_pem, encoding="ascii")
            (self.files / "registry-ca.crt").write_text(ca_pem, encoding="ascii")
            volumes[str(cert_file.parent)] = {"bind": REGISTRY_TLS_DIR, "mode": "ro"}
            environment |= {
                "REGISTRY_HTTP_TLS_CERTIFICATE": f"{REGISTRY_TLS_DIR}/{cert_file.name}",
                "REGISTRY_HTTP_TLS_KEY": f"{REGISTRY_TLS_DIR}/{key_file.name}",
            }
        container = self.client.containers.create(
            REGISTRY_IMAGE,
            name=f"{self.prefix}-registry",
            hostname="registry",
            environment=environment,
            labels=_labels(self.prefix, "registry"),
            volumes=volumes,
            network=network.name,
            networking_config=self._endpoint(ip, "registry"),
            detach=True,
        )
        container.start()
        verify: str | bool = str(self.registry_ca_file) if self.registry_ca_file else False

        def probe() -> str | None:
            self._raise_if_exited(container)
            try:
                answer = requests.get(f"{self.registry_url}/v2/", timeout=5, verify=verify)
            except requests.RequestException as error:
                return repr(error)
            # With accounts, /v2/ asks for a login (401) once the registry serves.
            serving = (401,) if self.registry_users else (200,)
            return None if answer.status_code in serving else f"/v2/ answered {answer.status_code}"

        _until(f"the registry at {self.registry_url}/v2/", probe, timeout)

    def _create_node(self, shared_storage: bool) -> BedNode:
        network = self._require_network()
        if self.shared_dir is None or self.registry_ip is None:
            raise BedError("the bed is not started")
        number = len(self.nodes) + 1
        hostname = f"node-{number}"
        name = f"{self.prefix}-{hostname}"
        ip = network.address(FIRST_NODE_ADDRESS_INDEX + number - 1)
        if shared_storage:
            storage = self.shared_dir
        else:
            storage = self.files / f"private-{hostname}"
            storage.mkdir(parents=True)
        node = BedNode(name, hostname, ip, shared_storage, storage)
        self.client.volumes.create(node.volume, labels=_labels(self.prefix, "node-docker"))
        volumes = {
            node.volume: {"bind": NODE_DOCKER_DIR, "mode": "rw"},
            str(storage): {"bind": str(self.shared_dir), "mode": "rw"},
        }
        environment = {
            "BED_NODE_IP": ip,
            "BED_AUTHORIZED_KEYS": Path(f"{self.ssh_key}.pub").read_text(encoding="utf-8").strip(),
        }
        if self.registry_tls:
            if self.registry_trusted_by_nodes:
                volumes[str(self.files / "certs.d")] = {"bind": NODE_CA_DIR, "mode": "ro"}
                environment["BED_REGISTRY_CA_DIR"] = NODE_CA_DIR
        else:
            environment["BED_INSECURE_REGISTRIES"] = self.registry
        container = self.client.containers.create(
            NODE_IMAGE,
            name=name,
            hostname=hostname,
            environment=environment,
            labels=_labels(self.prefix, "node"),
            volumes=volumes,
            cap_add=NODE_CAP_ADD,
            cap_drop=NODE_CAP_DROP,
            security_opt=NODE_SECURITY_OPT,
            cgroupns=NODE_CGROUPNS,
            network=network.name,
            networking_config=self._endpoint(ip, hostname),
            detach=True,
        )
        self.nodes.append(node)
        container.start()
        return node

    @staticmethod
    def _raise_if_exited(container: Container) -> None:
        container.reload()
        state = container.attrs["State"]
        if state["Status"] in ("exited", "dead"):
            logs = container.logs(tail=40).decode(errors="replace")
            raise BedError(f"{container.name} exited with {state['ExitCode']} while starting:\n{logs}")

    def _wait_node(self, node: BedNode, timeout: float) -> None:
        """Wait until the node's engine answers over TCP and its sshd lets the dev key in."""
        container = self.container(node)
        deadline = time.monotonic() + timeout

        def host_key() -> str | None:
            self._raise_if_exited(container)
            code, output = self.exec(node, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
            if code != 0:
                return f"no host key yet: {output.strip()}"
            self._host_keys[node.name] = " ".join(output.split()[:2])
            with (self.files / "known_hosts").open("a", encoding="ascii") as known_hosts:
                known_hosts.write(f"{node.ip} {self._host_keys[node.name]}\n")
            return None

        def engine() -> str | None:
            self._raise_if_exited(container)
            try:
                self.engine(node).ping()
            except (DockerException, requests.RequestException) as error:
                return repr(error)
            return None

        def sshd() -> str | None:
            self._raise_if_exited(container)
            result = self.ssh(node, "true", timeout=15)
            return None if result.returncode == 0 else f"ssh exited {result.returncode}: {result.stderr.strip()}"

        _until(f"{node.name}'s host key", host_key, deadline - time.monotonic())
        _until(f"{node.name}'s engine at {node.engine_url}", engine, deadline - time.monotonic())
        _until(f"{node.name}'s sshd at {node.ip}:{SSH_PORT}", sshd, deadline - time.monotonic())


@contextlib.contextmanager
def swarm_bed_running(
    nodes: int = 3,
    shared_dir: Path | None = None,
    *,
    registry_tls: bool = False,
    registry_trusted_by_nodes: bool = True,
    registry_users: dict[str, str] | None = None,
    prefix: str = BED_PREFIX,
) -> Iterator[SwarmBed]:
    """A started bed (not yet a swarm), removed afterwards even when the block fails."""
    bed = SwarmBed(
        prefix=prefix,
        registry_tls=registry_tls,
        registry_trusted_by_nodes=registry_trusted_by_nodes,
        registry_users=dict(registry_users or {}),
    )
    bed.start(nodes=nodes, shared_dir=shared_dir)
    try:
        yield bed
    finally:
        bed.stop()
