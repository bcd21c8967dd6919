"""The lab scaled out onto a three-node Docker Swarm (the test bed, tests/support/swarm_bed.py),
brought up from the program's own declarations through the provider double, and used over HTTPS.

The bed's first node is the lab's Docker host and swarm manager (its engine over TCP for the
provider, its sshd for the host commands); the program joins the other two as workers, builds
the images on the manager and pushes them to the bed's registry, from which the workers pull.
Users' folders and the shared folder are on the bed's shared storage (one
folder of this machine mounted at the same path in every node). Only the base notebook image
is offered (pushing the data-science image and pulling it on three nodes costs minutes and GBs).

The bed's registry is a private one, as in production: HTTPS from the bed's own CA, which the
nodes' engines do not trust until the program writes it (images.registryCa), and a login for
pushes and another for pulls (images.pullUsername: the hub hands it to the swarm with each
server), both secrets. A fourth node whose folders are not the shared storage makes ``up`` fail
naming it, and the lab recovers with the next ``up`` without it.

The module has its own stack name, prefix and bed, apart from tests/e2e/conftest.py's ``e2e``
lab. Run under the Docker lock.

Measured on the test VM (2 vCPU, Docker 20.10 outside and in the nodes), ``pytest -s`` prints them:

- the module: 230-255 s, of which bed and ``up`` ~110-130 s (the four images built on a fresh
  manager and pushed), destroy ~25-35 s and the bed's removal ~17-20 s;
- six starts at once: 30-36 s each on a worker (the node pulls the notebook image first), ~2-3 s
  on the manager (the image is there); a start again after the pull takes 1-2 s;
- a killed worker: the hub sees its servers stopped after ~24 s (the node is down after 10-13 s,
  then the hub's next poll), and their users start again on the other nodes in 1-2 s.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from infra import outputs
from infra.naming import Naming
from infra.program import main
from infra.settings import SHARED_MOUNT, parse_settings
from tests.e2e.conftest import SSH_KEY, user_data
from tests.support import swarm_bed
from tests.support.lab_client import LabUser, wait_for
from tests.support.provider_double import Deployment, apply, bring_up
from tests.support.swarm_bed import BedNode, SwarmBed

pytestmark = pytest.mark.e2e

STACK = "e2e-swarm"
STACK_LABEL = f"org.juvini.stack={STACK}"
BED_PREFIX = "juvini-bed-e2eswarm"
BASE_IMAGE = "juvini-base:bookworm"
HTTPS_PORT = 8443
USERS = [f"roamer{index}" for index in range(1, 7)]
#: How long the hub may take to see a server whose node died: the node is marked down (~15 s),
#: then the hub's next poll of its servers (Spawner.poll_interval, 30 s) finds the task shut down.
NODE_DEATH_NOTICED_SECONDS = 150


#: The users' servers' limits and timeouts (tests/benchmarks/swarm_spawn.py gives its single-host lab the same).
SPAWNER: dict[str, Any] = {
    "allowedImages": ["base"],
    "memLimit": "1g",
    "cpuLimit": 1,
    "httpTimeout": 180,
    "startTimeout": 300,
}
#: No Spark image is offered; the driver's memory must still fit in the servers' limit.
SPARK: dict[str, Any] = {"driverMemory": "768m"}
#: The registry's accounts (TEST-ONLY): the program pushes as one, the nodes pull as the other.
SECRET_KEYS = ["images"]
PUSHER = ("lab-pusher", "e2e-swarm-push-password")
PULLER = ("lab-puller", "e2e-swarm-pull-password")


@dataclass
class SwarmLab:
    bed: SwarmBed
    deployment: Deployment
    config: dict[str, Any]
    url: str
    ca_file: str
    users: dict[str, LabUser]
    #: The progress events of each user's first start, as the spawn page follows them.
    progress: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def manager(self) -> BedNode:
        return self.bed.nodes[0]

    @property
    def engine(self) -> docker.DockerClient:
        return self.bed.engine(self.manager)

    def path(self, key: str) -> Path:
        return Path(self.config["paths"][key])

    def node_of(self, user: str) -> str | None:
        """The hostname of the node running ``user``'s server (its task), None without one running."""
        for service in self.engine.services.list(filters={"label": STACK_LABEL}):
            if service.name.endswith(f"-user-{user}"):
                for task in service.tasks(filters={"desired-state": "running"}):
                    if task["Status"]["State"] == "running":
                        return str(self.engine.nodes.get(task["NodeID"]).attrs["Description"]["Hostname"])
        return None


def lab_config(bed: SwarmBed) -> dict[str, Any]:
    manager, *workers = (bed.ssh_target(node) for node in bed.nodes)
    assert bed.shared_dir is not None
    shared = bed.shared_dir
    return {
        "dockerHost": f"tcp://{manager.host}:{swarm_bed.ENGINE_PORT}",
        "host": {
            "address": manager.host,
            "sshPort": manager.port,
            "sshUser": manager.user,
            "sshPrivateKeyFile": str(SSH_KEY),
            "hostKey": manager.host_key,
        },
        "paths": {
            # Users' servers' folders on the shared storage; the manager's own (TLS, hub state) not.
            "usersDir": str(shared / "users"),
            "sharedDir": str(shared / "shared"),
            "hubStateDir": "/srv/juvini-e2e-swarm/hub",
            "tlsDir": "/etc/juvini-e2e-swarm/ssl",
        },
        "images": {
            "baseImage": BASE_IMAGE,
            "extraCaBundle": "/usr/local/share/ca-certificates",
            "tag": "e2e-swarm",
            "registry": bed.registry,
            "push": True,
            "registryCa": bed.registry_ca_pem,
            "registryUsername": PUSHER[0],
            "registryPassword": PUSHER[1],
            "pullUsername": PULLER[0],
            "pullPassword": PULLER[1],
        },
        "hub": {"httpsPort": HTTPS_PORT, "publicHostname": manager.host, "adminUsers": ["admin"]},
        # The lab's certificate names the address the hub is reached at (the manager's).
        "tls": {"ipAddresses": [manager.host]},
        "auth": {"type": "native", "native": {"openSignup": True}},
        "spawner": dict(SPAWNER),
        "spark": dict(SPARK),
        "swarm": {
            "enabled": True,
            "manager": {"advertiseAddress": manager.host},
            "workers": [
                {"name": f"worker-{index}", "address": target.host, "hostKey": target.host_key}
                for index, target in enumerate(workers, start=1)
            ],
        },
    }


@contextlib.contextmanager
def swarm_lab_running(stack: str = STACK, bed_prefix: str = BED_PREFIX) -> Iterator[SwarmLab]:
    """The three-node bed and the lab on it (``lab_config``), answering over HTTPS; all removed
    afterwards (the lab destroyed, the bed and its shared folder gone), even when the block fails.
    Also used by tests/benchmarks/swarm_spawn.py."""
    shared = Path(tempfile.mkdtemp(prefix="juvini-e2e-swarm-", dir="/var/tmp"))
    shared.chmod(0o755)
    try:
        with swarm_bed.swarm_bed_running(
            nodes=3,
            shared_dir=shared,
            prefix=bed_prefix,
            registry_tls=True,
            registry_trusted_by_nodes=False,
            registry_users=dict([PUSHER, PULLER]),
        ) as bed:
            manager = bed.nodes[0]
            # The stack's base image is made on this machine (debootstrap): the manager builds on it.
            local = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=600)
            bed.engine(manager).images.load(local.images.get(BASE_IMAGE).save(named=True))
            config = lab_config(bed)
            # The registry's passwords: the stack keeps the images section encrypted.
            deployment = bring_up(config, stack=stack, secret_keys=SECRET_KEYS)
            try:
                ca_file = bed.files / "lab-ca.pem"
                ca_file.write_text(deployment.outputs[outputs.CA_CERTIFICATE], encoding="utf-8")
                url = deployment.outputs[outputs.HUB_URL]
                wait_for(
                    "the hub to answer /hub/health over HTTPS",
                    lambda: requests.get(url + "hub/health", verify=str(ca_file), timeout=5).status_code == 200,
                    timeout=180,
                )
                yield SwarmLab(bed, deployment, config, url, str(ca_file), {})
            finally:
                errors = deployment.destroy()
                if errors:
                    print("destroy of the swarm lab reported:", *errors, sep="\n  ")
    finally:
        shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture(scope="module")
def swarm_lab() -> Iterator[SwarmLab]:
    if not SSH_KEY.is_file():
        pytest.fail(f"{SSH_KEY} is missing: run tests/setup.sh")
    with swarm_lab_running() as lab:
        yield lab


@pytest.fixture(scope="module")
def users(swarm_lab: SwarmLab) -> dict[str, LabUser]:
    """Six users, signed up and logged in, their servers started at once."""
    for name in USERS:
        user = LabUser(base_url=swarm_lab.url, ca_file=swarm_lab.ca_file, name=name)
        user.sign_up()
        user.log_in()
        swarm_lab.users[name] = user

    def timed_start(user: LabUser) -> float:
        began = time.monotonic()
        swarm_lab.progress[user.name] = user.start_server_following_progress(timeout=420)
        return time.monotonic() - began

    with concurrent.futures.ThreadPoolExecutor(len(USERS)) as pool:
        seconds = dict(zip(swarm_lab.users, pool.map(timed_start, swarm_lab.users.values()), strict=True))
    print("spawn seconds (6 at once):", {name: round(value, 1) for name, value in seconds.items()})
    return swarm_lab.users


def test_the_program_joined_two_workers_and_pushed_the_images(swarm_lab: SwarmLab) -> None:
    nodes = {node.attrs["Description"]["Hostname"]: node.attrs for node in swarm_lab.engine.nodes.list()}
    assert set(nodes) == {node.hostname for node in swarm_lab.bed.nodes}, nodes
    assert all(attrs["Status"]["State"] == "ready" for attrs in nodes.values()), nodes
    registry = swarm_lab.bed
    anonymous = requests.get(f"{registry.registry_url}/v2/_catalog", timeout=10, verify=str(registry.registry_ca_file))
    assert anonymous.status_code == 401, "the bed's registry lets nobody in without a login"
    catalog = requests.get(
        f"{registry.registry_url}/v2/_catalog", timeout=10, verify=str(registry.registry_ca_file), auth=PULLER
    ).json()["repositories"]
    assert {f"juvini-{STACK}-hub", f"juvini-{STACK}-notebook-base"} <= set(catalog), catalog


def test_every_node_trusts_the_registry_with_the_ca_the_program_wrote(swarm_lab: SwarmLab) -> None:
    """The nodes started without the bed's CA: the program put it where each engine reads it."""
    bed = swarm_lab.bed
    written = f"/etc/docker/certs.d/{bed.registry}/juvini-{STACK}.crt"
    for node in bed.nodes:
        code, output = bed.exec(node, "cat", written)
        assert code == 0 and output == bed.registry_ca_pem, f"{node.hostname}: {output}"
    checked = {
        item.name: item.outputs["stdout"]
        for item in swarm_lab.deployment.double.applied
        if item.name.endswith("-registry-check")
    }
    assert len(checked) == len(bed.nodes), checked
    for name, said in checked.items():
        assert f"registry: {bed.registry}/juvini-{STACK}-notebook-base:e2e-swarm resolves to sha256:" in said, name


def test_servers_spread_over_the_nodes_and_each_runs_code(swarm_lab: SwarmLab, users: dict[str, LabUser]) -> None:
    placed = {name: swarm_lab.node_of(name) for name in users}
    assert None not in placed.values(), placed
    assert len(set(placed.values())) >= 2, f"every server on one node: {placed}"
    uid = parse_settings(swarm_lab.config).lab_user.uid
    for name, user in users.items():
        assert user.run_code("import os; print(os.getuid(), 6 * 7)").split() == [str(uid), "42"], name


def test_servers_run_the_notebook_image_pinned_to_the_digest_pushed(
    swarm_lab: SwarmLab, users: dict[str, LabUser]
) -> None:
    """Every node runs exactly what the stack pushed: the services name the digest, not the tag."""
    pushed = next(
        item.outputs["repo_digest"]
        for item in swarm_lab.deployment.double.applied
        if item.type == "docker:index/image:Image" and item.inputs["imageName"].endswith("-notebook-base:e2e-swarm")
    )
    digest = pushed.rpartition("@")[2]
    assert digest.startswith("sha256:"), pushed
    base = swarm_lab.deployment.outputs[outputs.IMAGES]["base"]
    for service in swarm_lab.engine.services.list(filters={"label": STACK_LABEL}):
        image = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        assert image == f"{base}@{digest}", (service.name, image)
    for name in users:
        node = swarm_lab.bed.node(swarm_lab.node_of(name) or "")
        (container,) = swarm_lab.bed.engine(node).containers.list(
            filters={"label": f"com.docker.swarm.service.name=juvini-{STACK}-user-{name}"}
        )
        assert digest in container.attrs["Config"]["Image"], (name, container.attrs["Config"]["Image"])


def test_the_spawn_page_says_on_which_node_and_when_a_node_fetches_the_image(
    swarm_lab: SwarmLab, users: dict[str, LabUser]
) -> None:
    """No node had the notebook image: each worker's first server waited on a pull, and said so."""
    for name in users:
        events = swarm_lab.progress[name]
        messages = [str(event.get("message", "")) for event in events]
        assert events[-1].get("ready"), (name, messages)
        assert f"Scheduled on node {swarm_lab.node_of(name)}" in messages, (name, messages)
    fetched = {
        message.split()[1]
        for events in swarm_lab.progress.values()
        for message in (str(event.get("message", "")) for event in events)
        if message.startswith("Node ") and "is fetching the image" in message
    }
    workers = {node.hostname for node in swarm_lab.bed.nodes[1:]}
    assert workers & {swarm_lab.node_of(name) for name in users} <= fetched, fetched


#: Runs in the hub's Python, through the hub's own Docker access (DOCKER_HOST: the filter's socket),
#: as SwarmSpawner makes its client: each attempt a service as the spawner would create one but for
#: the one thing it tries, or a swarm call the spawner never makes. Prints {name: [status, message]}.
ATTEMPTS_IN_THE_HUB = r"""
import json, sys
import docker
from docker.types import ContainerSpec, EndpointSpec, Mount, TaskTemplate
spec = json.loads(sys.argv[1])
api = docker.from_env(version="auto").api
def service(suffix, **changes):
    container = dict(image=spec["image"], user=spec["user"], labels=spec["labels"], command=["sleep", "600"])
    container.update(changes)
    task = TaskTemplate(ContainerSpec(**container), networks=[spec["network"]])
    return api.create_service(task, name=spec["name"] + suffix, labels=spec["labels"],
                              endpoint_spec=EndpointSpec(mode="dnsrr"))
node = spec["node"]
calls = {
    "bind /": lambda: service("-root", mounts=[Mount("/host", "/", type="bind")]),
    "cap SYS_ADMIN": lambda: service("-caps", cap_add=["SYS_ADMIN"]),
    "foreign image": lambda: service("-image", image=spec["foreign_image"]),
    "foreign image pinned": lambda: service("-pinned", image=spec["foreign_image"] + "@sha256:" + "a" * 64),
    "a lab image, its digest spoiled": lambda: service("-spoiled", image=spec["image"] + "@sha256:" + "A" * 64),
    "the join tokens": lambda: api.inspect_swarm(),
    "promote a node": lambda: api.update_node(node["ID"], node["Version"]["Index"], dict(node["Spec"], Role="manager")),
    "list the nodes": lambda: api.nodes(),
    "allowed: inspect a node": lambda: api.inspect_node(node["ID"])["ID"],
}
results = {}
for name, call in calls.items():
    try:
        call()
        results[name] = [0, ""]
    except docker.errors.APIError as error:
        results[name] = [error.status_code, str(error.explanation)]
print(json.dumps(results))
"""


def test_the_hub_s_docker_access_lets_only_the_swarm_spawner_s_calls_through(
    swarm_lab: SwarmLab, users: dict[str, LabUser]
) -> None:
    """The six starts went through the filter on the manager, every call allowed; what the spawner
    never asks for (a bind of /, added capabilities, another image, the join tokens, a node
    promoted) is refused by its rule and creates nothing."""
    naming = Naming("juvini", STACK)
    filter_log = swarm_lab.engine.containers.get(naming.physical("socket-filter")).logs().decode(errors="replace")
    lines = [line for line in filter_log.splitlines() if "allowed: " in line or "refused: " in line]
    assert not [line for line in lines if "refused: " in line], "a spawner call was refused"
    created = [line for line in lines if "allowed: create one of the lab's users' services" in line]
    assert len(created) >= len(users), lines[-20:]

    settings = parse_settings(swarm_lab.config)
    outputs_ = swarm_lab.deployment.outputs
    worker = next(node for node in swarm_lab.engine.nodes.list() if node.attrs["Spec"]["Role"] == "worker")
    spec = {
        "name": f"{naming.physical('user')}-intruder",
        "image": outputs_[outputs.IMAGES]["base"],
        "foreign_image": outputs_[outputs.IMAGES]["hub"],
        "user": f"{settings.lab_user.uid}:{settings.lab_user.gid}",
        "labels": naming.labels("user"),
        "network": outputs_[outputs.NETWORKS]["users"],
        "node": {"ID": worker.id, "Version": worker.attrs["Version"], "Spec": worker.attrs["Spec"]},
    }
    hub = swarm_lab.engine.containers.get(outputs_[outputs.HUB_CONTAINER])
    exit_code, output = hub.exec_run(["python", "-c", ATTEMPTS_IN_THE_HUB, json.dumps(spec)], demux=True)
    assert exit_code == 0, output
    results = json.loads(output[0])
    intruders = swarm_lab.engine.services.list(filters={"name": spec["name"]})
    for service in intruders:
        service.remove()
    assert not intruders, f"a forbidden service went through: {[service.name for service in intruders]}"
    assert results.pop("allowed: inspect a node") == [0, ""], results
    rules = {
        "bind /": "binds /, which is not one of the lab's folders",
        "cap SYS_ADMIN": "CapabilityAdd adds SYS_ADMIN",
        "foreign image": "is not one of the lab's images",
        "foreign image pinned": "is not one of the lab's images",
        "a lab image, its digest spoiled": "is not one of the lab's images",
        "the join tokens": "GET /swarm is not a call the lab's spawner makes",
        "promote a node": "/update is not a call the lab's spawner makes",
        "list the nodes": "GET /nodes is not a call the lab's spawner makes",
    }
    for attempt, rule in rules.items():
        status, message = results[attempt]
        assert status == 403 and message.startswith("juvini docker filter: ") and rule in message, (attempt, message)
    assert swarm_lab.engine.nodes.get(worker.id).attrs["Spec"]["Role"] == "worker"


def _on_a_worker(swarm_lab: SwarmLab, users: dict[str, LabUser]) -> tuple[str, str]:
    manager = swarm_lab.manager.hostname
    for name in users:
        node = swarm_lab.node_of(name)
        if node is not None and node != manager:
            return name, node
    raise AssertionError("no user's server runs on a worker")


def test_the_shared_folder_is_the_same_on_every_node(swarm_lab: SwarmLab, users: dict[str, LabUser]) -> None:
    by_node: dict[str, str] = {}
    for name in users:
        by_node.setdefault(swarm_lab.node_of(name) or "", name)
    writer, reader = list(by_node.values())[:2]
    note = f"from {writer} {uuid.uuid4().hex}"
    users[writer].run_code(f"open('{SHARED_MOUNT}/{writer}.txt', 'w').write({note!r})")
    assert users[reader].run_code(f"print(open('{SHARED_MOUNT}/{writer}.txt').read())").strip() == note
    assert (swarm_lab.path("sharedDir") / f"{writer}.txt").read_text() == note


def test_a_worker_whose_storage_is_not_shared_makes_up_fail_and_the_next_up_recovers(
    swarm_lab: SwarmLab, users: dict[str, LabUser]
) -> None:
    """Before the kill below: the failed ``up`` checks every worker's storage again."""
    bed = swarm_lab.bed
    private = bed.add_node(shared_storage=False)
    target = bed.ssh_target(private)
    grown = json.loads(json.dumps(swarm_lab.config))
    grown["swarm"]["workers"].append({"name": "private-1", "address": target.host, "hostKey": target.host_key})
    with pytest.raises(Exception) as failed:
        apply(main, grown, STACK, secret_keys=SECRET_KEYS, previous=swarm_lab.deployment)
    message = (
        f"swarm node private-1 ({private.ip}): {swarm_lab.path('usersDir')} is not the manager's folder: a marker "
        "written there by the manager is not seen; mount the same shared filesystem (NFS/SMB/cluster) at that "
        "path on every node"
    )
    assert message in str(failed.value)
    nodes = {node.attrs["Description"]["Hostname"] for node in swarm_lab.engine.nodes.list()}
    assert private.hostname not in nodes, "a worker whose storage failed the check joined the swarm"
    assert users[USERS[0]].run_code("print(6 * 7)").strip() == "42", "the failed up broke a running server"

    # The operator takes the node out of the stack again: the next up passes and undoes its setup.
    swarm_lab.deployment = apply(main, swarm_lab.config, STACK, secret_keys=SECRET_KEYS, previous=swarm_lab.deployment)
    held = [item.name for item in swarm_lab.deployment.double.applied if "private-1" in item.name]
    assert held == [], f"the stack still holds the node it no longer lists: {held}"
    code, _ = bed.exec(private, "test", "-e", f"/etc/docker/certs.d/{bed.registry}/juvini-{STACK}.crt")
    assert code != 0, "the registry CA stays on the node the stack no longer lists"
    markers = [
        path for key in ("usersDir", "sharedDir") for path in swarm_lab.path(key).glob(".juvini-storage-check-*")
    ]
    assert markers == [], markers


def _server_gone(user: LabUser) -> Callable[[], bool]:
    return lambda: not user.model().get("servers")


def test_a_killed_worker_s_users_start_again_elsewhere_with_their_files(
    swarm_lab: SwarmLab, users: dict[str, LabUser]
) -> None:
    name, node = _on_a_worker(swarm_lab, users)
    note = f"kept {uuid.uuid4().hex}"
    users[name].run_code(f"open('kept.txt', 'w').write({note!r})")
    assert (swarm_lab.path("usersDir") / name / "kept.txt").read_text() == note, "not on the shared storage"
    affected = [other for other in users if swarm_lab.node_of(other) == node]

    killed_at = time.monotonic()
    swarm_lab.bed.kill(swarm_lab.bed.node(node))
    for other in affected:
        wait_for(
            f"the hub to see {other}'s server gone with {node}",
            _server_gone(users[other]),
            NODE_DEATH_NOTICED_SECONDS,
            interval=2,
        )
    noticed = time.monotonic() - killed_at
    placed = {}
    for other in affected:
        began = time.monotonic()
        users[other].start_server(timeout=420)
        placed[other] = (swarm_lab.node_of(other), round(time.monotonic() - began, 1))
        assert placed[other][0] not in (None, node), f"{other} started on {placed[other][0]}"
    print(f"{node} killed: the hub saw {affected} stopped after {noticed:.0f} s; started again on (node, s): {placed}")
    assert users[name].run_code("print(open('kept.txt').read())").strip() == note


def test_destroy_removes_the_services_and_the_joined_nodes_and_keeps_user_data(
    swarm_lab: SwarmLab, users: dict[str, LabUser]
) -> None:
    """Last in the module: destroy (the fixture's teardown then has nothing left to undo).

    The program made the manager's swarm, so destroy takes the users' services down, then the
    workers it joined out of it, then the swarm itself; a dead worker's own steps fail (nothing
    answers there), nothing else does."""
    kept = ("usersDir", "sharedDir")
    before = {key: user_data(swarm_lab.path(key)) for key in kept}
    services = {service.name for service in swarm_lab.engine.services.list(filters={"label": STACK_LABEL})}
    assert services >= {f"juvini-{STACK}-user-{name}" for name in users}, services
    workers = {f"worker-{index}": node for index, node in enumerate(swarm_lab.bed.nodes[1:], start=1)}
    killed = {name for name, node in workers.items() if swarm_lab.bed.is_killed(node)}
    began = int(time.time())
    errors = swarm_lab.deployment.destroy()
    print("destroy reported:", *errors, sep="\n  ")
    assert all(any(f"-worker-{name}-" in error for name in killed) for error in errors), errors
    # The manager's own steps for the dead worker (drain, removal from the swarm) do not wait on it.
    assert not [error for error in errors if "-node: " in error or "-removal: " in error], errors
    removed = {
        event["Actor"]["Attributes"].get("name")
        for event in swarm_lab.engine.events(
            since=began, until=int(time.time()) + 1, filters={"type": "service", "event": "remove"}, decode=True
        )
    }
    assert services <= removed, f"services destroy did not remove: {services - removed}"
    assert swarm_lab.engine.info()["Swarm"]["LocalNodeState"] == "inactive", "the stack's swarm is still up"
    for name, node in [("manager", swarm_lab.manager), *[(n, w) for n, w in workers.items() if n not in killed]]:
        engine = swarm_lab.bed.engine(node)
        assert engine.info()["Swarm"]["LocalNodeState"] == "inactive", f"{name} is still in a swarm"
        assert engine.containers.list(all=True, filters={"label": STACK_LABEL}) == [], f"{name} keeps containers"
    assert {key: user_data(swarm_lab.path(key)) for key in kept} == before, "destroy changed user data"
