"""The program's swarm applied for real on the three-node test bed (tests/support/swarm_bed.py).

A small part of the program (the Docker host's setup and the SwarmCluster) is declared and applied
through the provider double, over SSH to the bed's nodes as to a lab's hosts: the first node
becomes the manager, two workers join, a re-run listing a third worker adds only it, a worker
whose folder is private makes `up` fail naming it, and destroy drains and removes only the nodes
the stack joined. Run under the Docker lock, one module at a time.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest

from infra.host import Host
from infra.naming import Naming
from infra.settings import load_settings
from infra.swarm import SwarmCluster
from tests.support import swarm_bed
from tests.support.provider_double import Deployment, apply
from tests.support.swarm_bed import BedNode, SwarmBed

pytestmark = pytest.mark.integration

STACK = "it-swarm"
PREFIX = f"juvini-{STACK}"
#: This module's own bed, apart from the bed's own tests' one.
BED_PREFIX = "juvini-bed-swarmnodes"


def declare() -> None:
    settings = load_settings()
    naming = Naming(pulumi.get_project(), pulumi.get_stack())
    SwarmCluster("it-swarm", settings, naming, Host("it-swarm-host", settings))


def lab_paths(shared: Path) -> dict[str, str]:
    """The lab's folders: users' servers' folders on the shared storage, the manager's own elsewhere."""
    return {
        "usersDir": str(shared / "users"),
        "sharedDir": str(shared / "shared"),
        "hubStateDir": "/srv/juvini-it/hub",
        "tlsDir": "/etc/juvini-it/ssl",
    }


def worker(bed: SwarmBed, name: str, node: BedNode, **extra: Any) -> dict[str, Any]:
    target = bed.ssh_target(node)
    return {"name": name, "address": target.host, "sshPort": target.port, "hostKey": target.host_key, **extra}


def config(bed: SwarmBed, workers: list[dict[str, Any]]) -> dict[str, Any]:
    manager = bed.ssh_target(bed.nodes[0])
    assert bed.shared_dir is not None
    return {
        "host": {
            "address": manager.host,
            "sshPort": manager.port,
            "sshUser": manager.user,
            "sshPrivateKeyFile": str(manager.key_file),
            "hostKey": manager.host_key,
        },
        "paths": lab_paths(bed.shared_dir),
        "images": {"registry": bed.registry, "push": True},
        "swarm": {
            "enabled": True,
            "manager": {"advertiseAddress": manager.host, "labels": {"role": "hub"}},
            "workers": workers,
        },
    }


@pytest.fixture(scope="module")
def bed() -> Iterator[SwarmBed]:
    shared = Path(tempfile.mkdtemp(prefix="juvini-it-swarm-", dir="/var/tmp"))
    shared.chmod(0o755)
    # Node 1 is the manager, 2 and 3 the first workers, 4 is added later, 5 the operator joins.
    with swarm_bed.swarm_bed_running(nodes=5, shared_dir=shared, prefix=BED_PREFIX) as running:
        yield running
    shutil.rmtree(shared, ignore_errors=True)


def nodes_of(bed: SwarmBed) -> dict[str, dict[str, Any]]:
    """The manager's node list: hostname -> state, availability, role and labels."""
    listed = {}
    for node in bed.engine(bed.nodes[0]).nodes.list():
        attrs = node.attrs
        listed[attrs["Description"]["Hostname"]] = {
            "state": attrs["Status"]["State"],
            "availability": attrs["Spec"]["Availability"],
            "role": attrs["Spec"]["Role"],
            "labels": attrs["Spec"].get("Labels", {}),
        }
    return listed


@pytest.fixture(scope="module")
def lab(bed: SwarmBed) -> Iterator[Deployment]:
    first, second = bed.nodes[1], bed.nodes[2]
    workers = [worker(bed, "worker-1", first, labels={"zone": "a"}), worker(bed, "worker-2", second)]
    deployment = apply(declare, config(bed, workers), STACK)
    yield deployment
    deployment.destroy()


def test_the_manager_is_initialised_and_two_workers_join_ready_and_labelled(bed: SwarmBed, lab: Deployment) -> None:
    manager, first, second = bed.nodes[:3]
    assert bed.engine(manager).info()["Swarm"]["ControlAvailable"] is True
    listed = nodes_of(bed)
    assert {manager.hostname, first.hostname, second.hostname} <= set(listed), listed
    for node in (manager, first, second):
        assert listed[node.hostname]["state"] == "ready", listed
        assert listed[node.hostname]["labels"]["juvini.stack"] == PREFIX, listed
    assert listed[first.hostname]["labels"]["zone"] == "a"
    assert listed[manager.hostname]["labels"]["role"] == "hub"
    assert listed[first.hostname]["role"] == "worker"


def test_every_node_has_the_lab_user_and_the_mounted_folders(bed: SwarmBed, lab: Deployment) -> None:
    assert bed.shared_dir is not None
    for node in bed.nodes[:3]:
        status, output = bed.exec(node, "id", "-u", "labuser")
        assert (status, output.strip()) == (0, "2100"), node
        status, output = bed.exec(node, "stat", "-c", "%a %u", str(bed.shared_dir / "users"))
        assert (status, output.strip()) == (0, "750 2100"), node


def test_the_storage_markers_are_gone_once_checked(bed: SwarmBed, lab: Deployment) -> None:
    assert bed.shared_dir is not None
    assert not list(bed.shared_dir.glob("*/.juvini-storage-check-*"))


def test_the_join_token_is_a_secret_of_the_declarations(lab: Deployment) -> None:
    (token,) = [item for item in lab.double.applied if item.name == "it-swarm-join-token"]
    assert "SWMTKN-" in token.outputs["stdout"]
    registered = [r for r in lab.monitor.registrations if r.name.endswith("-join")]
    assert registered and all("stdin" in r.secret_inputs for r in registered)
    for item in lab.double.applied:
        for key in ("create", "delete"):
            assert "SWMTKN-" not in str(item.inputs.get(key, "")), item.name


def test_a_third_worker_listed_is_added_alone_and_a_node_joined_by_its_operator_is_labelled(
    bed: SwarmBed, lab: Deployment
) -> None:
    manager, first, second, third, operators = bed.nodes[:5]
    bed.join(operators, manager)  # joined by its operator, not by the stack
    ids_before = {name: node["labels"] for name, node in nodes_of(bed).items()}
    workers = [
        worker(bed, "worker-1", first, labels={"zone": "a"}),
        worker(bed, "worker-2", second),
        worker(bed, "worker-3", third),
        worker(bed, "worker-4", operators),
    ]
    grown = apply(declare, config(bed, workers), STACK, previous=lab)
    lab.double = grown.double  # the module's deployment is now the grown one (destroyed at the end)
    joined_again = [name for name in grown.double.changed if name.endswith("-join")]
    assert sorted(joined_again) == ["it-swarm-worker-worker-3-join", "it-swarm-worker-worker-4-join"]
    listed = nodes_of(bed)
    assert listed[third.hostname]["state"] == "ready"
    assert listed[third.hostname]["labels"]["juvini.stack"] == PREFIX
    assert listed[operators.hostname]["labels"]["juvini.stack"] == PREFIX
    assert set(ids_before) | {third.hostname} == set(listed)


def test_a_worker_whose_folder_is_private_makes_up_fail_naming_it(bed: SwarmBed, lab: Deployment) -> None:
    private = bed.add_node(shared_storage=False)
    assert bed.shared_dir is not None
    other = config(bed, [worker(bed, "private-1", private)])
    with pytest.raises(Exception) as failed:
        apply(declare, other, "it-swarm-private")
    users = bed.shared_dir / "users"
    message = (
        f"swarm node private-1 ({private.ip}): {users} is not the manager's folder: a marker written there by the "
        "manager is not seen; mount the same shared filesystem (NFS/SMB/cluster) at that path on every node"
    )
    assert message in str(failed.value)
    assert private.hostname not in nodes_of(bed), "a worker whose storage failed the check joined the swarm"


def test_destroy_drains_and_removes_only_the_nodes_it_joined(bed: SwarmBed, lab: Deployment) -> None:
    manager, first, second, third, operators = bed.nodes[:5]
    assert not lab.destroy()
    listed = nodes_of(bed)
    assert set(listed) == {manager.hostname, operators.hostname}, listed
    assert "juvini.stack" not in listed[operators.hostname]["labels"]
    for node in (first, second, third):
        assert bed.engine(node).info()["Swarm"]["LocalNodeState"] == "inactive", node
    # The stack initialised the swarm, but a node its operator joined is still in it: kept.
    assert bed.engine(manager).info()["Swarm"]["LocalNodeState"] == "active"
