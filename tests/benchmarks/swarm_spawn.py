"""Prints spawn p50/p95 for N users on the three-node Swarm test bed beside the single-host lab (asserts nothing).

    ./venv/bin/python tests/benchmarks/swarm_spawn.py [--users 20] [--rounds 2]

Two labs, one after the other (never both at once: the machine has 2 cores), each from the
program's own declarations through the provider double:

- the single-host lab: this machine's Docker engine, users' servers as containers on a bridge
  network, the images built here;
- the swarm lab: brought up exactly as tests/e2e/test_swarm.py does (``swarm_lab_running``: the
  three-node bed of tests/support/swarm_bed.py, its ``lab_config``; the program joins two workers
  and pushes the images to the bed's registry), users' servers as Swarm services on an overlay
  network, spread over the nodes; its own bed prefix, so it leaves the e2e module's bed alone.

Both offer only the base notebook image and give users' servers the same limits and timeouts
(test_swarm's ``SPAWNER`` and ``SPARK``), the same spawn limit (the default), native
authentication, HTTPS through the lab's proxy. What differs is printed.

Each round asks for every user's server at once and follows each progress stream to ready or
failed (lab_spawn.py's ``spawn_one``, as the spawn page does); then stops them all and waits for
the hub (and, on the swarm, the services) to be gone. Round 1 on the swarm includes each worker's
first pull of the notebook image from the registry, so it is reported apart from the warm rounds
(2 and later); the single-host lab's round 1 is reported apart too, for the same comparison.
Printed: p50/p95 per lab, the ratio swarm / single-host, where the swarm's servers ran (servers
per node), the failed spawns with why, and what the figures mean on one machine.

Everything the run makes is removed at the end, even after an error or Ctrl-C: both labs
destroyed, the single-host lab's containers, networks, folders and the images it tagged, the
bed (nodes, their volumes, registry, network, shared folder). Needs what the e2e tier needs
(tests/setup.sh). Run it under the Docker lock; ~10 minutes with the defaults on 2 cores.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from infra import outputs  # noqa: E402
from infra.naming import Naming  # noqa: E402
from infra.settings import parse_settings  # noqa: E402
from tests.benchmarks.lab_spawn import (  # noqa: E402
    ROUND_MARGIN_SECONDS,
    Spawn,
    Target,
    admin_target,
    all_at_once,
    cell,
    machine_summary,
    median_or_none,
    ratio_of,
    spawn_one,
)
from tests.e2e import test_swarm  # noqa: E402
from tests.e2e.conftest import remove_stack_objects  # noqa: E402
from tests.support.lab_client import DeadlineExceeded, wait_for  # noqa: E402
from tests.support.local_stack import SSH_KEY, free_port, lab_paths, local_host  # noqa: E402
from tests.support.provider_double import bring_up  # noqa: E402
from tests.support.spawn_timeline import percentile  # noqa: E402

PROJECT = "juvini"
SINGLE_HOST_STACK = "swarmbench"
TAG = "swarmbench"
BED_PREFIX = "juvini-bed-swarmbench"
SINGLE_HOST = "single-host"
SWARM = "swarm"
#: Seconds the single-host lab's leftovers (containers, networks) may take to go at the end.
CLEANUP_SECONDS = 60
#: Where the single-host lab's servers run, in the placement figures.
THIS_MACHINE = "this machine"

#: What the two labs do not share, for the printout (the rest of their settings is the same).
DIFFERENCES = (
    "hub, proxy and users' servers: single-host on this machine's engine; swarm: hub and proxy on the "
    "manager node, servers as Swarm services on any of the 3 nodes, each node a Docker-in-Docker "
    "container of this machine (a nested engine: its own overlay2, cgroups, network namespaces)",
    "users' network: single-host a bridge; swarm an attachable overlay (VXLAN between the nodes), DNS "
    "round-robin endpoints",
    "images: single-host built on this machine; swarm built on the manager, pushed to the bed's "
    "registry, pulled by each worker on its first server (round 1)",
    "users' folders: single-host a folder of this machine; swarm the bed's shared folder (the same "
    "folder of this machine bind-mounted into every node)",
    "the hub's address: single-host 127.0.0.1; swarm the manager's address on the bed's bridge",
)

OVERHEAD_NOT_CAPACITY = (
    'What this measures: the three swarm "nodes" are containers on this one machine and share its '
    "{cores} cores (and its disk and memory) with each other, the hub and this client. The swarm lab "
    "has no more CPU than the single-host lab, so its figures cannot show added capacity; the ratio "
    "swarm / single-host is Swarm's overhead on a spawn (the service API and the scheduler, the task's "
    "way to a node, the overlay network, a nested engine per node) and, in round 1, the image pulls. "
    "On real hosts each node brings its own cores, and N users' starts are spread over them."
)


def single_host_config(root: Path, port: int) -> dict[str, Any]:
    """The single-host lab: the swarm lab's limits and image (test_swarm), on this machine's engine."""
    return {
        "host": local_host(),
        "paths": lab_paths(root),
        "images": {
            "baseImage": test_swarm.BASE_IMAGE,
            "extraCaBundle": "/usr/local/share/ca-certificates",
            "tag": TAG,
        },
        "hub": {"httpsPort": port, "publicHostname": "localhost", "adminUsers": ["admin"]},
        "auth": {"type": "native", "native": {"openSignup": True}},
        "spawner": dict(test_swarm.SPAWNER),
        "spark": dict(test_swarm.SPARK),
    }


# --- a lab under measure ------------------------------------------------------------------------


@dataclass
class RoundResult:
    index: int
    spawns: list[Spawn]
    #: User -> where their server ran (node hostname), for the spawns that got ready.
    placement: dict[str, str] = field(default_factory=dict)
    #: DELETE of every server -> the hub (and the swarm) says all are gone.
    stop_seconds: float | None = None

    @property
    def latencies(self) -> list[float]:
        return [spawn.seconds for spawn in self.spawns if spawn.seconds is not None]

    @property
    def failures(self) -> list[Spawn]:
        return [spawn for spawn in self.spawns if spawn.error is not None]


@dataclass
class LabUnderTest:
    name: str
    target: Target
    #: User -> where their server runs now (None: not running).
    where: Callable[[str], str | None]
    #: True once nothing of the users' servers is left (beyond what the hub says).
    servers_gone: Callable[[list[str]], bool]
    #: Hostname -> its role, for the placement figures.
    nodes: dict[str, str]
    up_seconds: float
    rounds: list[RoundResult] = field(default_factory=list)


def _spawn_deadline() -> float:
    """The servers' own timeouts (the same in both labs) and a margin: then a spawn counts as failed."""
    spawner = parse_settings(single_host_config(Path("/var/tmp/unused"), 8443)).spawner
    return spawner.start_timeout + spawner.http_timeout + ROUND_MARGIN_SECONDS


def measure(lab: LabUnderTest, names: list[str], rounds: int) -> None:
    created = lab.target.api("POST", "hub/api/users", json={"usernames": names})
    if created.status_code not in (201, 409):
        raise RuntimeError(f"{lab.name}: creating users answered {created.status_code} {created.text[:300]}")
    for index in range(rounds):
        # No image in the body: the labs offer only the base image (as test_swarm's users start).
        spawns: list[Spawn] = all_at_once(lambda name, go: spawn_one(lab.target, name, {}, go), names)
        done = RoundResult(index, spawns)
        for spawn in spawns:
            node = lab.where(spawn.user) if spawn.ready_at is not None else None
            if node is not None:
                done.placement[spawn.user] = node
        done.stop_seconds = stop_all(lab, names)
        lab.rounds.append(done)
        values = done.latencies
        print(
            f"  {lab.name:<12} round {index + 1}: p50 {cell(median_or_none(values), 6, 1)}"
            f"  p95 {cell(percentile(values, 0.95) if values else None, 6, 1)}  failed {len(done.failures)}"
            f"  stop {cell(done.stop_seconds, 5, 1)}  on {dict(collections.Counter(done.placement.values()))}",
            flush=True,
        )


def stop_all(lab: LabUnderTest, names: list[str]) -> float:
    """DELETE every server at once; seconds until the hub says each is stopped and nothing is left."""
    started = time.perf_counter()

    def delete(name: str, go: threading.Event) -> None:
        go.wait()
        lab.target.api("DELETE", f"hub/api/users/{name}/server")

    all_at_once(delete, names)

    def stopped(name: str) -> bool:
        model = lab.target.api("GET", f"hub/api/users/{name}").json()
        return not model.get("servers") and not model.get("pending")

    for name in names:
        wait_for(f"{lab.name}: {name}'s server stopped", functools.partial(stopped, name), lab.target.spawn_deadline)
    wait_for(f"{lab.name}: the users' servers gone", lambda: lab.servers_gone(names), lab.target.spawn_deadline)
    return time.perf_counter() - started


# --- the two labs -------------------------------------------------------------------------------


@contextmanager
def single_host_lab() -> Iterator[LabUnderTest]:
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=600)
    remove_stack_objects(client, SINGLE_HOST_STACK)
    root = Path(tempfile.mkdtemp(prefix="juvini-swarmbench-", dir="/var/tmp"))
    root.chmod(0o755)
    tagged: list[str] = []
    started = time.perf_counter()
    try:
        deployment = bring_up(single_host_config(root, free_port()), stack=SINGLE_HOST_STACK)
        try:
            up_seconds = time.perf_counter() - started
            tagged += [Naming(PROJECT, SINGLE_HOST_STACK).image("foundation", TAG)]
            tagged += list(deployment.outputs[outputs.IMAGES].values())
            ca_file = root / "lab-ca.pem"
            ca_file.write_text(deployment.outputs[outputs.CA_CERTIFICATE], encoding="utf-8")
            url = deployment.outputs[outputs.HUB_URL]
            wait_for("the lab", lambda: requests.get(url + "hub/health", verify=str(ca_file), timeout=5).ok, 180)
            target = admin_target(
                SINGLE_HOST, url, str(ca_file), deployment.outputs, SINGLE_HOST_STACK, _spawn_deadline()
            )

            def container_of(name: str) -> str:
                return f"{target.user_prefix}-{name}"

            def where(name: str) -> str | None:
                try:
                    running = client.containers.get(container_of(name)).status == "running"
                except docker.errors.NotFound:
                    return None
                return THIS_MACHINE if running else None

            def gone(names: list[str]) -> bool:
                listed = client.containers.list(all=True, filters={"name": target.user_prefix + "-"})
                return not {container.name for container in listed} & {container_of(name) for name in names}

            yield LabUnderTest(SINGLE_HOST, target, where, gone, {THIS_MACHINE: "the only host"}, up_seconds)
        finally:
            errors = deployment.destroy()
            if errors:
                print("destroy of the single-host lab reported:", *errors, sep="\n  ")
    finally:
        # The engine may still count a just-removed container's endpoint on the lab's networks.
        def removed() -> bool:
            remove_stack_objects(client, SINGLE_HOST_STACK)  # raises while an endpoint lingers
            return True

        try:
            wait_for("the single-host lab's containers and networks removed", removed, CLEANUP_SECONDS)
        except DeadlineExceeded as error:
            print(error)
        for image in reversed(tagged):  # each before the image it is built FROM
            try:
                client.images.remove(image)
            except docker.errors.APIError as error:
                print(f"image {image} not removed: {error}")
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def swarm_lab() -> Iterator[LabUnderTest]:
    started = time.perf_counter()
    with test_swarm.swarm_lab_running(bed_prefix=BED_PREFIX) as lab:
        up_seconds = time.perf_counter() - started
        target = admin_target(SWARM, lab.url, lab.ca_file, lab.deployment.outputs, test_swarm.STACK, _spawn_deadline())

        def gone(names: list[str]) -> bool:
            services = lab.engine.services.list(filters={"label": test_swarm.STACK_LABEL})
            return not {service.name for service in services} & {f"{target.user_prefix}-{name}" for name in names}

        roles = {node.hostname: "manager" if index == 0 else "worker" for index, node in enumerate(lab.bed.nodes)}
        yield LabUnderTest(SWARM, target, lab.node_of, gone, roles, up_seconds)


# --- figures ------------------------------------------------------------------------------------


def _p50_p95(rounds: list[RoundResult]) -> tuple[float | None, float | None, int, int]:
    values = [value for item in rounds for value in item.latencies]
    failed = sum(len(item.failures) for item in rounds)
    return median_or_none(values), (percentile(values, 0.95) if values else None), len(values), failed


def report(labs: dict[str, LabUnderTest], users: int, rounds: int) -> None:
    parts = {"first": lambda item: item.index == 0, "warm": lambda item: item.index > 0}
    print(f"\n== spawn latency, request -> server ready (s), {users} users at once; p50 / p95 over the spawns")
    print("   first: round 1 (on the swarm each worker pulls the notebook image first); warm: rounds 2 and later")
    print(f"  {'lab':<12}{'rounds':<8}{'ready':>6}{'p50':>8}{'p95':>8}{'failed':>8}   up (s)")
    figures: dict[tuple[str, str], tuple[float | None, float | None]] = {}
    for name, lab in labs.items():
        for part, chosen in parts.items():
            picked = [item for item in lab.rounds if chosen(item)]
            label = f"{part} ({len(picked)})"
            p50, p95, ready, failed = _p50_p95(picked)
            figures[(name, part)] = (p50, p95)
            up = f"   {lab.up_seconds:.0f}" if part == "first" else ""
            print(f"  {name:<12}{label:<8}{ready:>6}{cell(p50, 8)}{cell(p95, 8)}{failed:>8}{up}")
    print("\n== ratio swarm / single-host")
    for part in parts:
        if {SWARM, SINGLE_HOST} <= set(labs):
            swarm50, swarm95 = figures[(SWARM, part)]
            host50, host95 = figures[(SINGLE_HOST, part)]
            print(
                f"  {part:<6} p50 {cell(ratio_of(swarm50, host50), 6, 2, 'x')}"
                f"  p95 {cell(ratio_of(swarm95, host95), 6, 2, 'x')}"
            )
    print("\n== where the servers ran (ready servers per node, per round)")
    for name, lab in labs.items():
        for item in lab.rounds:
            counts = collections.Counter(item.placement.values())
            cells = ", ".join(f"{node} ({role}) {counts.get(node, 0)}" for node, role in lab.nodes.items())
            print(f"  {name:<12} round {item.index + 1}: {cells}")
    print("\n== stop, DELETE of every server -> all gone (s), per round")
    for name, lab in labs.items():
        print(f"  {name:<12}" + "  ".join(cell(item.stop_seconds, 6, 1) for item in lab.rounds))
    failures = [(name, item, spawn) for name, lab in labs.items() for item in lab.rounds for spawn in item.failures]
    print(f"\n== failed spawns: {len(failures)}")
    for name, item, spawn in failures:
        print(f"  {name} round {item.index + 1}: {spawn.user}: {spawn.error}")
    print()
    print(OVERHEAD_NOT_CAPACITY.format(cores=os.cpu_count() or 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20, help="users whose servers are asked for at once")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per lab (round 1 is reported apart)")
    args = parser.parse_args()
    if not SSH_KEY.is_file():
        parser.error(f"{SSH_KEY} is missing: run tests/setup.sh")
    names = [f"bench{index}" for index in range(args.users)]
    print(f"swarm_spawn benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine_summary()}")
    spawner = test_swarm.SPAWNER
    print(
        f"both labs: the base notebook image only; servers' cpuLimit {spawner['cpuLimit']}, memLimit "
        f"{spawner['memLimit']}, startTimeout {spawner['startTimeout']} s, httpTimeout {spawner['httpTimeout']} s; "
        "concurrentSpawnLimit the default; native authentication; HTTPS through the lab's proxy. What differs:"
    )
    for difference in DIFFERENCES:
        print(f"  - {difference}")
    print(f"{args.rounds} round(s) of {args.users} users per lab; the single-host lab first, then the swarm lab")
    labs: dict[str, LabUnderTest] = {}
    try:
        for bring in (single_host_lab, swarm_lab):
            with bring() as lab:
                print(f"{lab.name} lab up in {lab.up_seconds:.0f} s (bring-up, builds cached or not)", flush=True)
                labs[lab.name] = lab
                measure(lab, names, args.rounds)
    finally:
        if labs:
            report(labs, args.users, args.rounds)


if __name__ == "__main__":
    main()
