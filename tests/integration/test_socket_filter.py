"""The Docker API filter run for real in front of this machine's engine, as the program declares it.

The SocketFilter component is applied through the provider double (its image built from
images/socket-filter, its configuration rendered for a stack with folders, a group, a per-user
share and Spark ports). Then the lab's real spawner (juvini_hub, configured by the rendered
jupyterhub_config.py) drives a user's server through it, and forbidden calls are tried, each
otherwise a call the spawner could make, so that its refusal is the rule's.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker
import docker.errors
import pulumi
import pulumi_docker
import pytest
from jupyterhub.objects import Hub
from traitlets.config import PyFileConfigLoader

from infra import flavours
from infra.hub_config import render_hub_config
from infra.images import FOUNDATION, SOCKET_FILTER
from infra.naming import Naming
from infra.settings import load_settings, parse_settings
from infra.socket_filter import SocketFilter, socket_volume_name
from juvini_hub import spawner as spawner_module
from juvini_hub.docker_calls import DockerCalls
from juvini_hub.reconcile import remove_unrecorded
from juvini_hub.spawner import JuviniDockerSpawner
from tests.support.images import BASE_IMAGE_TAG, ImageChain, ensure_base_image, ensure_engine, extra_ca_bundle
from tests.support.lab_client import wait_for
from tests.support.provider_double import Deployment, apply

pytestmark = pytest.mark.integration

STACK = "sfit"
NAMING = Naming("juvini", STACK)
USERS_NETWORK = NAMING.physical("users-net")
#: A container of the host that is not one of the lab's (no labels).
FOREIGN = "juvini-sfit-foreign"
SHARE = "home"
SHARE_UNC = "//192.0.2.10/homes"  # TEST-NET-1: never mounted, only declared
LAB_USER = "2100:2100"


# --- the filter, applied -------------------------------------------------------------------------


@dataclass
class Filter:
    deployment: Deployment
    socket: str
    root: Path
    images: dict[str, str]
    config: dict[str, Any]
    engine: docker.DockerClient

    def client(self) -> docker.APIClient:
        return docker.APIClient(base_url=f"unix://{self.socket}", version="auto", timeout=60)

    def log(self) -> str:
        return self.engine.containers.get(NAMING.physical("socket-filter")).logs().decode(errors="replace")


def stack_config(root: Path) -> dict[str, Any]:
    return {
        "paths": {
            "usersDir": str(root / "users"),
            "sharedDir": str(root / "shared"),
            "dataDir": str(root / "data"),
            "groupsDir": str(root / "groups"),
            "hubStateDir": str(root / "hub"),
            "tlsDir": str(root / "tls"),
        },
        "folders": {"groups": ["modellers"]},
        "auth": {"type": "ldap", "ldap": {"serverAddress": "ldap.test", "bindDnTemplate": ["uid={username}"]}},
        "cifs": {"shares": [{"name": SHARE, "unc": SHARE_UNC, "perUser": True}]},
        "spark": {"driverPorts": "12900-12901", "blockManagerPorts": "12950-12951"},
    }


def remove_stack_objects(engine: docker.DockerClient) -> None:
    label = f"org.juvini.stack={STACK}"
    for container in engine.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)
    with contextlib.suppress(docker.errors.NotFound):
        engine.containers.get(FOREIGN).remove(force=True)
    for network in engine.networks.list(filters={"label": label}):
        network.remove()
    for volume in engine.volumes.list(filters={"label": label}):
        volume.remove(force=True)


@pytest.fixture(scope="module")
def lab_filter() -> Iterator[Filter]:
    ensure_engine()
    ensure_base_image(BASE_IMAGE_TAG)
    chain = ImageChain(BASE_IMAGE_TAG, extra_ca_bundle(), prefix="juvini-sfit", tag="it", version="0.1.0")
    filter_image = chain.image(SOCKET_FILTER)
    # The users' servers run the foundation here: a lab image that starts fast.
    images = dict.fromkeys(flavours.NAMES, chain.image(FOUNDATION))
    engine = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=300)
    remove_stack_objects(engine)
    root = Path(tempfile.mkdtemp(prefix="juvini-sfit-", dir="/var/tmp"))
    for folder in ("users", "shared", "data", "groups/modellers", "hub"):
        (root / folder).mkdir(parents=True)
    engine.networks.create(USERS_NETWORK, driver="bridge", labels=NAMING.labels("users-net"))
    engine.containers.run(images["base"], ["sleep", "600"], name=FOREIGN, detach=True)
    config = stack_config(root)

    def declare() -> None:
        provider = pulumi_docker.Provider("it-docker", host="unix:///var/run/docker.sock")
        SocketFilter(
            "it-socket-filter",
            load_settings(),
            Naming(pulumi.get_project(), pulumi.get_stack()),
            image=filter_image,
            notebook_images=images,
            opts=pulumi.ResourceOptions(providers={"docker": provider}),
        )

    deployment = apply(declare, config, STACK)
    try:
        mountpoint = engine.volumes.get(socket_volume_name(NAMING)).attrs["Mountpoint"]
        lab = Filter(deployment, f"{mountpoint}/docker.sock", root, images, config, engine)
        wait_for("the filter to pass on /_ping", lambda: lab.client().ping(), timeout=30)
        yield lab
    finally:
        errors = deployment.destroy()
        remove_stack_objects(engine)
        shutil.rmtree(root, ignore_errors=True)
        assert not errors, errors


def test_a_call_is_answered_at_once_while_hundreds_of_idle_connections_are_open(lab_filter: Filter) -> None:
    """Busy minutes leave many idle keep-alive connections open (each until the filter's idle
    timeout): a new call must not queue behind them. Found at 256 connections: ~15 s waits."""
    idle: list[socket.socket] = []
    try:
        for _ in range(600):
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.settimeout(5)
            try:
                connection.connect(lab_filter.socket)
            except OSError as error:
                connection.close()
                pytest.fail(f"the filter takes no connection beyond {len(idle)} idle ones: {error}")
            idle.append(connection)
        began = time.monotonic()
        answered = lab_filter.client().ping()
        seconds = time.monotonic() - began
    finally:
        for connection in idle:
            connection.close()
    assert answered and seconds < 3, f"a call behind {len(idle)} idle connections took {seconds:.1f} s"


def test_the_filter_container_runs_without_capabilities_or_network(lab_filter: Filter) -> None:
    attrs = lab_filter.engine.containers.get(NAMING.physical("socket-filter")).attrs
    host_config = attrs["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"]
    assert host_config["SecurityOpt"] == ["no-new-privileges:true"]
    assert host_config["NetworkMode"] == "none"
    assert attrs["State"]["Running"]


# --- the spawner's own calls -----------------------------------------------------------------------


@pytest.fixture
def spawner(lab_filter: Filter, monkeypatch: pytest.MonkeyPatch) -> JuviniDockerSpawner:
    """alice's spawner, configured by the rendered jupyterhub_config.py, reaching Docker as the hub does."""
    settings = parse_settings(lab_filter.config)
    folder = lab_filter.root / "config"
    folder.mkdir(exist_ok=True)
    (folder / "jupyterhub_config.py").write_text(render_hub_config(settings, NAMING, lab_filter.images))
    config = PyFileConfigLoader("jupyterhub_config.py", path=str(folder)).load_config()
    # The foundation has no notebook server: something that runs until it is stopped, with the args.
    config.DockerSpawner.cmd = ["sh", "-c", "exec sleep 600", "--"]
    # The hub's own environment: its docker-py clients (one per thread) go to the filter.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{lab_filter.socket}")
    monkeypatch.setattr(spawner_module, "_DOCKER_CALLS", DockerCalls())

    async def auth_state() -> dict[str, Any]:
        return {"password": "alice's password"}

    user = SimpleNamespace(name="alice", escaped_name="alice", id=1, url="/user/alice/", settings={}, groups=[])
    user.get_auth_state = auth_state
    made = JuviniDockerSpawner(config=config, user=user, hub=Hub(ip="hub", port=8081))
    made.api_token = "not-a-real-token"  # the server never talks to a hub here
    return made


def test_a_users_server_is_made_run_and_removed_through_the_filter(
    lab_filter: Filter, spawner: JuviniDockerSpawner
) -> None:
    log = logging.getLogger("test")

    async def lifecycle() -> dict[str, Any]:
        spawner.apply_profile({})
        await spawner.prepare_user_shares()  # alice's CIFS share volume: made and labelled here ...
        share_volume = f"{NAMING.physical('user-alice')}-cifs-{SHARE}"
        assert lab_filter.engine.volumes.get(share_volume).attrs["Options"]["device"] == SHARE_UNC
        # ... but not mounted: its server (TEST-NET-1) does not exist. stop() removes the volume.
        spawner.volumes = {source: mount for source, mount in spawner.volumes.items() if source != share_volume}
        await spawner.pull_image(spawner.image)  # "never": inspects the image
        ports = await spawner._allocate_spark_ports()  # lists the host's Spark servers
        assert ports is not None
        spawner._publish(ports)
        spawner.object_id = (await spawner.create_object())["Id"]
        await spawner.start_object()
        inspected = await spawner.get_object()  # by name
        await spawner.server_output(5)
        kept = await remove_unrecorded(spawner.docker, NAMING.labels("user"), {spawner.object_id}, log)
        assert kept == []
        await spawner.stop()  # stop, remove, and the share volume
        return inspected

    inspected = asyncio.run(lifecycle())
    assert inspected["State"]["Running"]
    host_config = inspected["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"] and host_config["SecurityOpt"] == ["no-new-privileges:true"]
    assert set(host_config["PortBindings"]) == {"12900/tcp", "12950/tcp"}
    # Auto-removed once stopped (DockerSpawner.remove), as in the lab.
    wait_for(
        "alice's stopped container to go",
        lambda: not lab_filter.engine.api.containers(all=True, filters={"name": NAMING.physical("user-alice")}),
        timeout=30,
    )
    assert lab_filter.engine.volumes.list(filters={"name": f"{NAMING.physical('user-alice')}-cifs-{SHARE}"}) == []
    calls = [line for line in lab_filter.log().splitlines() if "juvini-sfit-user-alice" in line or "/version" in line]
    assert calls, lab_filter.log()[-3000:]
    assert not [line for line in lab_filter.log().splitlines() if "refused: " in line and "alice" in line]


# --- forbidden calls -----------------------------------------------------------------------------

#: A container any of the lab's users could get: the spawner's create, in docker-py's words.
INTRUDER = NAMING.physical("user-intruder")


def create(
    lab_filter: Filter, *, image: str | None = None, name: str = INTRUDER, **host_config: Any
) -> Callable[[docker.APIClient], Any]:
    def call(client: docker.APIClient) -> Any:
        options = {
            "network_mode": USERS_NETWORK,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
        } | host_config
        return client.create_container(
            image or lab_filter.images["base"],
            command=["sleep", "600"],
            name=name,
            user=LAB_USER,
            labels=NAMING.labels("user"),
            host_config=client.create_host_config(**options),
        )

    return call


def users(lab_filter: Filter, name: str) -> str:
    return str(lab_filter.root / "users" / name)


#: (what, call, rule): each call made through the filter must be refused with the rule in its message.
FORBIDDEN: list[tuple[str, Callable[[Filter], Callable[[docker.APIClient], Any]], str]] = [
    ("bind of /", lambda f: create(f, binds={"/": {"bind": "/host", "mode": "rw"}}), "binds /, which is not one"),
    (
        "bind of the docker socket",
        lambda f: create(f, binds={"/var/run/docker.sock": {"bind": "/d.sock", "mode": "rw"}}),
        "binds /var/run/docker.sock",
    ),
    (
        "bind of every user's folder",
        lambda f: create(f, binds={str(f.root / "users"): {"bind": "/u", "mode": "rw"}}),
        "which is not one of the lab's folders",
    ),
    (
        "bind through ..",
        lambda f: create(f, binds={users(f, "alice") + "/../..": {"bind": "/u", "mode": "rw"}}),
        "which is not one of the lab's folders",
    ),
    (
        "writable data folder",
        lambda f: create(f, binds={str(f.root / "data"): {"bind": "/d", "mode": "rw"}}),
        "writable; the lab mounts it read-only",
    ),
    (
        "mount of the filter's socket volume",
        lambda f: create(f, binds={socket_volume_name(NAMING): {"bind": "/d", "mode": "rw"}}),
        "mounts the volume juvini-sfit-docker-api, which is not one of the lab's",
    ),
    ("CapAdd SYS_ADMIN", lambda f: create(f, cap_add=["SYS_ADMIN"]), "CapAdd adds SYS_ADMIN"),
    ("PidMode host", lambda f: create(f, pid_mode="host"), "HostConfig.PidMode is not allowed"),
    ("IpcMode host", lambda f: create(f, ipc_mode="host"), "IpcMode host is not allowed"),
    ("UsernsMode host", lambda f: create(f, userns_mode="host"), "HostConfig.UsernsMode is not allowed"),
    ("NetworkMode host", lambda f: create(f, network_mode="host"), "NetworkMode host is not one of the lab's"),
    (
        "NetworkMode of another container",
        lambda f: create(f, network_mode=f"container:{FOREIGN}"),
        "is not one of the lab's networks",
    ),
    ("Privileged", lambda f: create(f, privileged=True), "HostConfig.Privileged is not allowed"),
    ("Devices", lambda f: create(f, devices=["/dev/null:/dev/x:rwm"]), "HostConfig.Devices is not allowed"),
    ("Sysctls", lambda f: create(f, sysctls={"net.ipv4.ip_forward": "1"}), "HostConfig.Sysctls is not allowed"),
    (
        "seccomp unconfined",
        lambda f: create(f, security_opt=["no-new-privileges:true", "seccomp=unconfined"]),
        "seccomp=unconfined is not allowed",
    ),
    ("without no-new-privileges", lambda f: create(f, security_opt=[]), "must hold no-new-privileges"),
    ("VolumesFrom", lambda f: create(f, volumes_from=[FOREIGN]), "HostConfig.VolumesFrom is not allowed"),
    ("host port outside Spark's", lambda f: create(f, port_bindings={8888: 2222}), "publishes 8888/tcp on host port"),
    ("an image not the lab's", lambda f: create(f, image=BASE_IMAGE_TAG), "is not one of the lab's images"),
    ("a name not the lab's", lambda f: create(f, name="someone-else"), "must start with juvini-sfit-user-"),
    ("exec into another container", lambda f: lambda c: c.exec_create(FOREIGN, ["id"]), "is not a call"),
    ("stop of an unlabelled container", lambda f: lambda c: c.stop(FOREIGN), "is not one of the lab's"),
    ("kill of the filter", lambda f: lambda c: c.kill(NAMING.physical("socket-filter")), "is not one of the lab's"),
    (
        "removal of an unlabelled container",
        lambda f: lambda c: c.remove_container(FOREIGN, force=True),
        "is not one of the lab's",
    ),
    ("archive into a container", lambda f: lambda c: c.put_archive(FOREIGN, "/tmp", b""), "is not a call"),
    ("commit", lambda f: lambda c: c.commit(FOREIGN, "juvini-sfit-committed"), "is not a call"),
    ("image pull", lambda f: lambda c: c.pull("busybox", tag="latest"), "is not a call"),
    (
        "a local volume binding a host folder",
        lambda f: (
            lambda c: c.create_volume(
                f"{NAMING.physical('user-alice')}-cifs-{SHARE}",
                driver="local",
                driver_opts={"type": "none", "o": "bind", "device": "/"},
                labels=NAMING.labels("user-share"),
            )
        ),
        "must be a CIFS mount of one of the lab's per-user shares",
    ),
    ("swarm services on one host", lambda f: lambda c: c.services(), "is not a call"),
    ("plugins", lambda f: lambda c: c.plugins(), "is not a call"),
]


@pytest.mark.parametrize(("what", "make_call", "rule"), FORBIDDEN, ids=[item[0] for item in FORBIDDEN])
def test_a_forbidden_call_is_refused_with_a_403_naming_its_rule(
    lab_filter: Filter, what: str, make_call: Callable[[Filter], Callable[[docker.APIClient], Any]], rule: str
) -> None:
    with pytest.raises(docker.errors.APIError) as refused:
        make_call(lab_filter)(lab_filter.client())
    assert refused.value.status_code == 403, f"{what}: {refused.value}"
    message = str(refused.value.explanation)
    assert message.startswith("juvini docker filter: ") and rule in message, f"{what}: {message}"
    assert lab_filter.engine.api.containers(all=True, filters={"name": INTRUDER}) == []
    assert lab_filter.engine.containers.get(FOREIGN).status == "running"
    assert f"refused: {message.removeprefix('juvini docker filter: ')}" in lab_filter.log()


def test_the_same_create_without_the_forbidden_part_goes_through(lab_filter: Filter) -> None:
    """The refusals above are their rules' own: the spawner's create with nothing forbidden passes."""
    client = lab_filter.client()
    created = create(
        lab_filter,
        binds={
            users(lab_filter, "intruder"): {"bind": "/home/x", "mode": "rw"},
            str(lab_filter.root / "data"): {"bind": "/d", "mode": "ro"},
        },
        port_bindings={8888: 12901},
    )(client)
    try:
        assert client.inspect_container(INTRUDER)["Id"] == created["Id"]
    finally:
        client.remove_container(created["Id"], force=True)


# --- what the engine would read differently from a naive filter -------------------------------


class UnixConnection(http.client.HTTPConnection):
    """HTTP over the filter's socket, for bodies and paths docker-py never sends."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.path)


def raw(lab_filter: Filter, method: str, path: str, body: bytes | None = None, **headers: str) -> tuple[int, str]:
    connection = UnixConnection(lab_filter.socket)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def create_body(lab_filter: Filter, **host_config: Any) -> dict[str, Any]:
    return {
        "Image": lab_filter.images["base"],
        "Cmd": ["sleep", "600"],
        "User": LAB_USER,
        "Labels": NAMING.labels("user"),
        "HostConfig": {"NetworkMode": USERS_NETWORK, "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"]}
        | host_config,
    }


def test_a_plain_raw_create_passes(lab_filter: Filter) -> None:
    status, text = raw(
        lab_filter, "POST", f"/v1.41/containers/create?name={INTRUDER}", json.dumps(create_body(lab_filter)).encode()
    )
    assert status == 201, text
    lab_filter.engine.containers.get(INTRUDER).remove(force=True)


RAW_REFUSALS = [
    # Go's JSON reads field names without case: "privileged" is Privileged to the engine.
    ("lower-case field", {"privileged": True}, "HostConfig.privileged is not allowed"),
    ("two spellings", {"Binds": [], "binds": ["/:/host"]}, "spells the field"),
    # An empty list is not "unset" to the engine: it unmasks /proc.
    ("MaskedPaths []", {"MaskedPaths": []}, "HostConfig.MaskedPaths is not allowed"),
    # U+017F folds onto "s" in Go: "ſecurityOpt" is SecurityOpt.
    ("non-ASCII field", {"\u017fecurityOpt": ["seccomp=unconfined"]}, "non-ASCII"),
    (
        "a volume mount with a driver configuration",
        {
            "Mounts": [
                {"Type": "volume", "Source": "x", "Target": "/x", "VolumeOptions": {"DriverConfig": {"Name": "local"}}}
            ]
        },
        "VolumeOptions.DriverConfig is not allowed",
    ),
    (
        "a bind mount propagating",
        {"Mounts": [{"Type": "bind", "Source": "/", "Target": "/h", "BindOptions": {"Propagation": "rshared"}}]},
        "Propagation rshared",
    ),
]


@pytest.mark.parametrize(("what", "host_config", "rule"), RAW_REFUSALS, ids=[item[0] for item in RAW_REFUSALS])
def test_bodies_the_engine_reads_its_own_way_are_refused(
    lab_filter: Filter, what: str, host_config: dict[str, Any], rule: str
) -> None:
    body = json.dumps(create_body(lab_filter, **host_config)).encode()
    status, text = raw(lab_filter, "POST", f"/v1.41/containers/create?name={INTRUDER}", body)
    assert status == 403 and rule in json.loads(text)["message"], f"{what}: {status} {text}"
    assert lab_filter.engine.api.containers(all=True, filters={"name": INTRUDER}) == []


@pytest.mark.parametrize(
    ("what", "method", "path", "body", "rule"),
    [
        # Before API 1.24 a start carried a HostConfig the engine applied.
        ("old API start", "POST", f"/v1.23/containers/{FOREIGN}/start", b'{"Privileged": true}', "older than 1.24"),
        ("escaped path", "POST", "/v1.41/containers%2Fcreate", b"{}", "is not plain"),
        ("dot segments", "GET", "/v1.41/containers/x/../../info", None, "is not plain"),
        ("a body on a start", "POST", f"/v1.41/containers/{FOREIGN}/start", b'{"Privileged": true}', "is not one"),
        ("not JSON", "POST", f"/v1.41/containers/create?name={INTRUDER}", b"{", "is not JSON"),
        ("name twice", "POST", f"/v1.41/containers/create?name={INTRUDER}&name=x", b"{}", "names name twice"),
    ],
)
def test_requests_shaped_around_the_policy_are_refused(
    lab_filter: Filter, what: str, method: str, path: str, body: bytes | None, rule: str
) -> None:
    status, text = raw(lab_filter, method, path, body)
    assert status == 403 and rule in json.loads(text)["message"], f"{what}: {status} {text}"


def test_a_chunked_body_is_refused(lab_filter: Filter) -> None:
    body = json.dumps(create_body(lab_filter)).encode()
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    status, text = raw(
        lab_filter, "POST", f"/v1.41/containers/create?name={INTRUDER}", chunked, **{"Transfer-Encoding": "chunked"}
    )
    assert status == 403 and "chunked" in text, text
    assert lab_filter.engine.api.containers(all=True, filters={"name": INTRUDER}) == []
