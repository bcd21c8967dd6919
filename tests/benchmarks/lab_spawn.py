"""Prints spawn, stop, memory and image figures for the lab beside a reference deployment (asserts nothing).

    ./venv/bin/python tests/benchmarks/lab_spawn.py [--flavours base,datascience] [--users 1,10,20]
        [--rounds 5] [--idle-seconds 5] [--start-runs 3] [--builds] [--cold] [--keep-images]

The Juvini lab runs on the dev stack's own settings: ``Pulumi.dev.yaml``'s ``juvini:`` keys as they
are (spawner limits and timeouts, concurrentSpawnLimit, Spark ranges, the culler), brought up from
the program by the provider double (tests/support/provider_double.py), HTTPS through the separate
proxy. Only what running beside other things on this machine needs is changed, and printed: the
lab's folders (under a temporary root), a free HTTPS port, the image tag, ``extraCaBundle`` (kept
when its path exists here), and the idle culler, turned off only if it could cull a server during
the run.

The reference is a jupyterhub-deploy-docker style hub: one hub container (the lab's hub image,
for the same JupyterHub and DockerSpawner versions) with stock DockerSpawner (its single Docker
thread, the hub's own backing-off check), its in-process proxy, plain HTTP, the dummy
authenticator, a named volume per user as in jupyterhub-deploy-docker, and the dev stack's
limits, timeouts and spawn limit. Its users' servers run a stock-like build of the same notebook
image (tests/benchmarks/reference-notebook/Dockerfile): the lab's image plus what a stock install
has and the lab's images leave out (rfc3987-syntax and lark, for jsonschema[format-nongpl]), minus
the lab's server config and Lab overrides (no news, no update check, read-only extension manager).

What one run measures, for each notebook image of ``--flavours`` and each count of ``--users``,
``--rounds`` rounds per count, the lab and the reference taking turns (their order swapped every
round, so neither always runs first):

- spawn latency, request -> server ready: POST /hub/api/users/<name>/server for every user at
  once, then each user's progress event stream to its ready (or failed) event, as the spawn page
  follows it; p50/p95 over all the spawns of the rounds. A failed spawn is counted, with why;
- time to stop the servers: from the DELETE requests (all at once) to every container gone, as
  Docker lists them, and each stop cut into phases from the hub's log and Docker's events (kill,
  die, destroy), with the CPU used meanwhile;
- at the largest count, once every server is ready and idle for ``--idle-seconds``: each user
  server's memory (Docker's stats API, page cache left out, as ``docker stats``), the median over
  the running servers, and the hub's (lab: hub + proxy containers; reference: its hub container,
  which holds its proxy);
- at every count, where each spawn's time went: cut into phases from the hub's log, the
  container's start time and the server's log (tests/support/spawn_timeline.py), and the CPU the
  host, the hub, the proxy, the servers, the Docker engine and this client used meanwhile;
- then the ratio lab / reference of each figure, each goal of issue 8 with met or not met;
- each notebook image's server start (tests/support/startup.py: time, CPU, the costliest
  imports), the lab's and the stock-like one, and the image sizes (each beside its goal, if it has
  one: the data-science image's 3.5 GB, ``SIZE_GOALS`` in tests/support/images.py); with
  ``--builds`` the warm (cached) build time of each image too, and with ``--cold`` a --no-cache
  build as well.

Everything the run creates is removed at the end (containers and networks by their stack label,
the reference's volumes, the lab's folders, the images it tagged unless ``--keep-images``).
Needs what the e2e tier needs (tests/setup.sh): a Docker engine, sshd, the base image. Takes
20-40 minutes with the defaults on 2 cores; keep the machine otherwise quiet meanwhile.
"""

from __future__ import annotations

import argparse
import copy
import functools
import io
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from infra import outputs  # noqa: E402
from infra.flavours import BY_NAME, FLAVOURS  # noqa: E402
from infra.images import build_order, context_path  # noqa: E402
from infra.naming import Naming  # noqa: E402
from infra.settings import parse_settings  # noqa: E402
from infra.settings.base import memory_bytes  # noqa: E402
from tests.e2e.conftest import remove_stack_objects  # noqa: E402
from tests.support.images import SIZE_GOALS, chain_build_args, image_id  # noqa: E402
from tests.support.lab_client import LabUser, new_api_token, wait_for  # noqa: E402
from tests.support.local_stack import free_port, lab_paths  # noqa: E402
from tests.support.provider_double import bring_up  # noqa: E402
from tests.support.spawn_timeline import (  # noqa: E402
    PHASES,
    STOP_PHASES,
    CpuSample,
    CpuUse,
    container_cpu_seconds,
    cpu_between,
    docker_time,
    hub_events,
    median_of,
    median_phases,
    memory_in_use,
    percentile,
    server_events,
    spawn_phases,
    stop_events,
    stop_phases,
)
from tests.support.startup import profile_server_start  # noqa: E402

STACK = "bench"
PROJECT = "juvini"
TAG = "bench"
LABEL = f"org.juvini.stack={STACK}"
REFERENCE = "juvini-bench-reference"
#: The reference's users' containers are <prefix>-<username>, their volumes <prefix>-user-<username>.
REFERENCE_PREFIX = "juvini-bench-ref"
REFERENCE_DOCKERFILE_DIR = ROOT / "tests" / "benchmarks" / "reference-notebook"
DEV_STACK_FILE = ROOT / "Pulumi.dev.yaml"
#: Extra seconds a round may take beyond the servers' own timeouts before the benchmark gives up on it.
ROUND_MARGIN_SECONDS = 120
MIB = 1024 * 1024

#: Issue 8's goals: figure, the most the ratio lab / reference may be.
#: {most}: the largest count of users of the run (issue 8 asks for 20); the first goal needs 1 in --users.
GOALS = (
    ("p50 spawn latency at 1 user", 0.5),
    ("p95 spawn latency at {most} concurrent users", 0.5),
    ("time to stop {most} servers", 0.3),
    ("idle user-server memory", 1.0),
)


# --- the dev stack's settings, made to run beside other things ---------------------------------


def dev_stack_config(root: Path, port: int, server_lifetime: float) -> tuple[dict[str, Any], list[str]]:
    """``Pulumi.dev.yaml``'s ``juvini:`` keys with only what this machine needs changed; and what changed.

    ``server_lifetime``: the longest a server of the run lives, from its spawn to its stop; the
    idle culler is turned off only when it could cull a server that young.
    """
    document = yaml.safe_load(DEV_STACK_FILE.read_text(encoding="utf-8"))
    config: dict[str, Any] = {
        key.removeprefix("juvini:"): copy.deepcopy(value)
        for key, value in (document.get("config") or {}).items()
        if key.startswith("juvini:")
    }
    changes = []
    config["paths"] = lab_paths(root)
    changes.append(f"paths.*: under {root}")
    config.setdefault("hub", {})["httpsPort"] = port
    changes.append(f"hub.httpsPort: {port}")
    images = config.setdefault("images", {})
    images["tag"] = TAG
    changes.append(f"images.tag: {TAG}")
    bundle = images.get("extraCaBundle")
    if bundle and not Path(str(bundle)).expanduser().exists():
        del images["extraCaBundle"]
        changes.append(f"images.extraCaBundle: dropped ({bundle} is not on this machine)")
    settings = parse_settings(config)
    idle = settings.spawner.idle_timeout
    if idle and idle <= server_lifetime:
        config.setdefault("spawner", {})["idleTimeout"] = 0
        changes.append(f"spawner.idleTimeout: 0 (the culler could cull a {server_lifetime:.0f} s old server)")
    return config, changes


# --- who is measured ---------------------------------------------------------------------------


@dataclass
class Target:
    """A deployment the benchmark spawns on: the lab or the reference."""

    name: str
    api: Callable[..., requests.Response]
    #: Role -> container name of what serves the hub (lab: hub, proxy; reference: hub).
    hub_containers: dict[str, str]
    #: The container whose log holds the hub's.
    hub_log: str
    #: Users' containers are named <user_prefix>-<username>.
    user_prefix: str
    #: Seconds a spawn may take before it counts as failed: the hub's own timeouts, and a margin.
    spawn_deadline: float


@dataclass
class Spawn:
    user: str
    request_at: float
    ready_at: float | None = None
    error: str | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.ready_at is None else self.ready_at - self.request_at


@dataclass
class Round:
    """One round: ``users`` spawns at once on ``target`` with ``flavour``, then their stop."""

    target: str
    flavour: str
    users: int
    index: int
    spawns: list[Spawn]
    stop_seconds: float | None = None
    stop_error: str | None = None
    #: Bytes in use per running server, and per hub container, after the idle wait (largest count only).
    server_memory: list[int] = field(default_factory=list)
    hub_memory: dict[str, int] = field(default_factory=dict)
    #: CPU seconds each server had used when idle (its start, mostly).
    server_cpu: list[float] = field(default_factory=list)
    phases: list[dict[str, float | None]] = field(default_factory=list)
    cpu: CpuUse | None = None
    stop_phases: list[dict[str, float | None]] = field(default_factory=list)
    stop_cpu: CpuUse | None = None

    @property
    def latencies(self) -> list[float]:
        return [spawn.seconds for spawn in self.spawns if spawn.seconds is not None]

    @property
    def failures(self) -> list[Spawn]:
        return [spawn for spawn in self.spawns if spawn.error is not None]


def _events(response: requests.Response) -> Iterable[dict[str, Any]]:
    prefix = b"data:"
    for line in response.iter_lines():
        if line.startswith(prefix):
            yield json.loads(line[len(prefix) :])


def spawn_one(target: Target, name: str, body: dict[str, Any], go: threading.Event) -> Spawn:
    """Ask for ``name``'s server; follow its progress to ready or failed. Never raises."""
    go.wait()
    spawn = Spawn(name, time.time())
    try:
        response = target.api("POST", f"hub/api/users/{name}/server", json=body)
        if response.status_code == 201:  # the hub waited for the start (up to its slow_spawn_timeout)
            spawn.ready_at = time.time()
            return spawn
        if response.status_code != 202:
            spawn.error = f"POST {response.status_code}: {response.text[:300]}"
            return spawn
        with target.api("GET", f"hub/api/users/{name}/server/progress", stream=True) as progress:
            if progress.status_code != 200:
                spawn.error = f"progress {progress.status_code}: {progress.text[:300]}"
                return spawn
            for event in _events(progress):
                if event.get("ready"):
                    spawn.ready_at = time.time()
                    return spawn
                if event.get("failed"):
                    spawn.error = str(event.get("message") or "failed, no message")
                    return spawn
                if time.time() - spawn.request_at > target.spawn_deadline:
                    break
        spawn.error = f"no ready or failed event within {time.time() - spawn.request_at:.0f} s"
    except Exception as error:  # counted, not raised: the round goes on
        spawn.error = f"{type(error).__name__}: {error}"
    return spawn


def all_at_once(work: Callable[[str, threading.Event], Any], names: list[str]) -> list[Any]:
    """Run ``work(name, go)`` for every name on its own thread, all released together; results in order."""
    results: list[Any] = [None] * len(names)
    go = threading.Event()

    def run(index: int, name: str) -> None:
        results[index] = work(name, go)

    threads = [threading.Thread(target=run, args=(index, name)) for index, name in enumerate(names)]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join()
    return results


def _timestamped(raw: bytes) -> list[tuple[float, str]]:
    lines = []
    for line in raw.decode("utf-8", "replace").splitlines():
        stamp, _, text = line.partition(" ")
        try:
            lines.append((docker_time(stamp), text))
        except ValueError:
            continue
    return lines


def _ids(client: docker.DockerClient, names: dict[str, str]) -> dict[str, str]:
    """Role -> container id of the containers ``names`` (role -> name) that exist."""
    found = {}
    for role, name in names.items():
        try:
            found[role] = client.api.inspect_container(name)["Id"]
        except docker.errors.NotFound:
            continue
    return found


def _memory(client: docker.DockerClient, container: str) -> int | None:
    try:
        return memory_in_use(client.api.stats(container, stream=False, one_shot=True))
    except docker.errors.NotFound:
        return None


def run_round(
    client: docker.DockerClient,
    target: Target,
    flavour: str,
    names: list[str],
    index: int,
    idle_seconds: float,
    measure_idle: bool,
) -> Round:
    body = {"image": BY_NAME[flavour].display_name}
    containers = {name: f"{target.user_prefix}-{name}" for name in names}
    hub_ids = _ids(client, target.hub_containers)
    before = CpuSample.take(time.time(), hub_ids)
    spawns: list[Spawn] = all_at_once(lambda name, go: spawn_one(target, name, body, go), names)
    after = CpuSample.take(time.time(), hub_ids)
    result = Round(target.name, flavour, len(names), index, spawns)
    running = {name: _ids(client, {"server": containers[name]}).get("server") for name in names}
    running_ids = {name: cid for name, cid in running.items() if cid}
    if any(spawn.ready_at for spawn in spawns):
        result.cpu = cpu_between(before, after)
        # The servers' containers are younger than the round: all they used is the round's.
        used = [container_cpu_seconds(cid) for cid in running_ids.values()]
        result.server_cpu = [value for value in used if value is not None]
    if measure_idle:
        time.sleep(idle_seconds)
        memory = all_at_once(lambda cid, go: _memory(client, cid), list(running_ids.values()))
        result.server_memory = [value for value in memory if value is not None]
        hub_memory = {role: _memory(client, cid) for role, cid in hub_ids.items()}
        result.hub_memory = {role: value for role, value in hub_memory.items() if value is not None}
    # Where the time went: the hub's log, and each server's container (read once all are ready).
    since = min(spawn.request_at for spawn in spawns)
    hub_log = _timestamped(client.api.logs(target.hub_log, timestamps=True, since=int(since) - 1))
    events = hub_events(hub_log, names, since=since - 0.5)
    for spawn in spawns:
        cid = running_ids.get(spawn.user)
        if spawn.ready_at is None or cid is None:
            continue
        started = client.api.inspect_container(cid)["State"]["StartedAt"]
        server = server_events(started, _timestamped(client.api.logs(cid, timestamps=True)))
        result.phases.append(spawn_phases(spawn.request_at, spawn.ready_at, events[spawn.user], server))
    stop(client, target, names, running_ids, result)
    return result


def stop(client: docker.DockerClient, target: Target, names: list[str], running: dict[str, str], result: Round) -> None:
    """DELETE every server at once; time it to the last container gone; wait for the hub to agree.

    ``running``: user -> id of their server's container. Then cut each stop into STOP_PHASES from
    the hub's log and Docker's events.
    """
    deadline = target.spawn_deadline
    ids = set(running.values())
    hub_ids = _ids(client, target.hub_containers)

    def delete(name: str, go: threading.Event) -> None:
        go.wait()
        target.api("DELETE", f"hub/api/users/{name}/server")

    before = CpuSample.take(time.time(), hub_ids)
    delete_at = time.time()
    started = time.perf_counter()
    threads = threading.Thread(target=all_at_once, args=(delete, names))
    threads.start()
    while ids:
        listed = {item["Id"] for item in client.api.containers(all=True, filters={"id": sorted(ids)})}
        ids &= listed
        if not ids:
            break
        if time.perf_counter() - started > deadline:
            result.stop_error = f"{len(ids)} container(s) still there after {deadline:.0f} s"
            break
        time.sleep(0.1)
    if result.stop_error is None:
        result.stop_seconds = time.perf_counter() - started
        result.stop_cpu = cpu_between(before, CpuSample.take(time.time(), hub_ids))
    threads.join()

    def stopped(name: str) -> bool:
        model = target.api("GET", f"hub/api/users/{name}").json()
        return not model.get("servers") and not model.get("pending")

    for name in names:
        wait_for(f"{target.name}: {name}'s server stopped", functools.partial(stopped, name), deadline)
    if not running:
        return
    until = time.time() + 0.5
    hub_log = _timestamped(client.api.logs(target.hub_log, timestamps=True, since=int(delete_at) - 1))
    events = client.api.events(
        since=int(delete_at) - 1, until=int(until) + 1, filters={"type": "container"}, decode=True
    )
    containers = {user: (f"{target.user_prefix}-{user}", cid) for user, cid in running.items()}
    found = stop_events(hub_log, events, containers, since=delete_at - 0.5)
    result.stop_phases = [stop_phases(delete_at, found[user]) for user in running]


def admin_target(
    name: str, url: str, ca_file: str, deployment_outputs: dict[str, Any], stack: str, spawn_deadline: float
) -> Target:
    """A lab brought up by the provider double as a Target: its hub's admin signed up and logged in,
    with a token that outlasts the run."""
    admin = LabUser(base_url=url, ca_file=ca_file, name="admin")
    admin.sign_up()
    admin.log_in()
    # A token that outlasts the run (log_in's lasts an hour).
    admin.token = new_api_token(admin.session, url, admin.name, "lab_spawn benchmark", expires_in=8 * 3600)
    return Target(
        name,
        admin.api,
        {
            "hub": deployment_outputs[outputs.HUB_CONTAINER],
            "proxy": deployment_outputs[outputs.PROXY_CONTAINER],
        },
        deployment_outputs[outputs.HUB_CONTAINER],
        Naming(PROJECT, stack).physical("user"),
        spawn_deadline,
    )


# --- the reference ---------------------------------------------------------------------------


def build_reference_images(client: docker.DockerClient, lab_images: dict[str, str]) -> dict[str, str]:
    """The stock-like notebook image of each of ``lab_images`` (flavour -> image)."""
    built = {}
    for flavour, image in lab_images.items():
        tag = f"{REFERENCE}-notebook-{flavour}:{TAG}"
        argv = ["/usr/bin/docker", "build", "-q", "-t", tag, "--build-arg", f"NOTEBOOK_IMAGE={image}"]
        argv.append(str(REFERENCE_DOCKERFILE_DIR))
        env = {"DOCKER_BUILDKIT": "1", "PATH": "/usr/bin:/bin"}
        subprocess.run(argv, check=True, capture_output=True, env=env, timeout=1800)
        built[flavour] = tag
    return built


def installed_versions(image: str, packages: list[str]) -> str:
    script = (
        "import importlib.metadata as m, sys\n"
        "for name in sys.argv[1:]:\n"
        "    try: print(f'{name} {m.version(name)}', end='; ')\n"
        "    except m.PackageNotFoundError: print(f'{name} absent', end='; ')\n"
    )
    argv = ["/usr/bin/docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c", script]
    done = subprocess.run([*argv, *packages], capture_output=True, text=True, timeout=120, check=False)
    return done.stdout.strip().rstrip(";") or done.stderr.strip()[-200:]


def reference_deployment(
    client: docker.DockerClient, hub_image: str, images: dict[str, str], settings: Any
) -> tuple[str, str]:
    """A jupyterhub-deploy-docker style hub: stock DockerSpawner, in-process proxy, HTTP."""
    token = secrets.token_hex(32)
    network = client.networks.create(REFERENCE, driver="bridge", labels={"org.juvini.stack": STACK})
    allowed = {BY_NAME[flavour].display_name: image for flavour, image in images.items()}
    spawner = settings.spawner
    config = "\n".join(
        [
            "c = get_config()  # noqa",
            "import os",
            "c.JupyterHub.spawner_class = 'dockerspawner.DockerSpawner'",
            f"c.DockerSpawner.allowed_images = {allowed!r}",
            f"c.DockerSpawner.image = {next(iter(images.values()))!r}",
            f"c.DockerSpawner.network_name = {REFERENCE!r}",
            "c.DockerSpawner.use_internal_ip = True",
            "c.DockerSpawner.remove = True",
            "c.DockerSpawner.notebook_dir = '/home/labuser/work'",
            f"c.DockerSpawner.volumes = {{{REFERENCE_PREFIX + '-user-{username}'!r}: '/home/labuser/work'}}",
            f"c.DockerSpawner.prefix = {REFERENCE_PREFIX!r}",
            # Labels only, so that the run's clean-up finds them (DockerSpawner sets none).
            f"c.DockerSpawner.extra_create_kwargs = {{'labels': {{'org.juvini.stack': {STACK!r}}}}}",
            # The dev stack's limits, timeouts and spawn limit, as the operator would set them here too.
            f"c.DockerSpawner.mem_limit = {memory_bytes(spawner.mem_limit)!r}",
            f"c.DockerSpawner.cpu_limit = {spawner.cpu_limit!r}",
            f"c.Spawner.http_timeout = {spawner.http_timeout!r}",
            f"c.Spawner.start_timeout = {spawner.start_timeout!r}",
            f"c.JupyterHub.concurrent_spawn_limit = {settings.hub.concurrent_spawn_limit!r}",
            "c.JupyterHub.hub_ip = '0.0.0.0'",
            f"c.JupyterHub.hub_connect_ip = {REFERENCE + '-hub'!r}",
            "c.JupyterHub.authenticator_class = 'dummy'",
            "c.Authenticator.allow_all = True",
            "c.JupyterHub.services = [{'name': 'bench', 'api_token': os.environ['BENCH_TOKEN']}]",
            "c.JupyterHub.load_roles = [{'name': 'bench', 'scopes': ['admin:users', 'admin:servers'],"
            " 'services': ['bench']}]",
            "c.JupyterHub.db_url = 'sqlite:////tmp/jupyterhub.sqlite'",
        ]
    )
    port = free_port()
    container = client.containers.create(
        hub_image,
        command=["jupyterhub", "-f", "/tmp/reference_config.py"],
        name=REFERENCE + "-hub",
        environment={"BENCH_TOKEN": token},
        ports={"8000/tcp": ("127.0.0.1", port)},
        network=network.name,
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"}},
        labels={"org.juvini.stack": STACK},
    )
    data = config.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("reference_config.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    container.put_archive("/tmp", buffer.getvalue())
    container.start()
    url = f"http://127.0.0.1:{port}/"
    wait_for("the reference hub", lambda: requests.get(url + "hub/health", timeout=5).status_code == 200, 120)
    return url, token


# --- builds, sizes, server starts ------------------------------------------------------------

#: What the benchmark builds with --builds, in the program's order.
BUILDS = {build.key: build for build in build_order()}


def timed_build(role: str, tag: str, args: dict[str, str], no_cache: bool) -> float:
    folder = context_path(BUILDS[role].folder)
    argv = ["/usr/bin/docker", "build", "-q", "-t", tag, "-f", f"{folder}/Dockerfile"]
    argv += ["--no-cache"] if no_cache else []
    for key, value in args.items():
        argv += ["--build-arg", f"{key}={value}"]
    argv.append(folder)
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env={"DOCKER_BUILDKIT": "1", "PATH": "/usr/bin:/bin"})
    return time.perf_counter() - started


def build_figures(client: docker.DockerClient, cold: bool, ca_bundle: str) -> list[str]:
    """Warm (and with ``cold`` no-cache) build times; returns the tags it made."""
    images = {role: f"juvini-bench-build-{role}:{TAG}" for role in BUILDS}
    print("\nimage builds (BuildKit, local base image; each after the image it is built FROM)")
    print(f"  {'image':<14}{'warm s':>9}{'cold s':>9}{'size MB':>10}")
    for role, build in BUILDS.items():
        base = images[build.parent] if build.parent else "juvini-base:bookworm"
        digest = image_id(base) if build.parent else ""
        args = chain_build_args(build, base, ca_bundle, TAG, digest)
        warm = timed_build(role, images[role], args, no_cache=False)
        cold_seconds = f"{timed_build(role, images[role], args, no_cache=True):9.1f}" if cold else f"{'-':>9}"
        size = client.images.get(images[role]).attrs["Size"] / 1e6
        print(f"  {role:<14}{warm:9.1f}{cold_seconds}{size:10.0f}", flush=True)
    return list(images.values())


def size_figures(client: docker.DockerClient, lab: dict[str, str], reference: dict[str, str]) -> None:
    print("\nimage sizes (MB, as `docker images` counts them: all layers)")
    for role, image in lab.items():
        stock = reference.get(role)
        stock_size = f"  stock-like {client.images.get(stock).attrs['Size'] / 1e6:7.0f}" if stock else ""
        size = client.images.get(image).attrs["Size"]
        goal = SIZE_GOALS.get(BY_NAME[role].folder) if role in BY_NAME else None
        verdict = f"  goal < {goal / 1e6:.0f}: {'met' if size < goal else 'NOT met'}" if goal else ""
        print(f"  {role:<13}{size / 1e6:7.0f}  {image}{stock_size}{verdict}")


def startup_figures(lab: dict[str, str], reference: dict[str, str], runs: int) -> None:
    """Each notebook image's server start, the lab's and the stock-like one (no network, a stub hub)."""
    print("\nserver start per notebook image (exec -> first log line / listening; CPU of the server process)")
    for flavour, image in lab.items():
        print(profile_server_start(image, runs).report(8), flush=True)
        if flavour in reference:
            print(profile_server_start(reference[flavour], runs).report(8), flush=True)


# --- figures ---------------------------------------------------------------------------------


def _pooled(rounds: list[Round], target: str, flavour: str, users: int) -> list[Round]:
    return [item for item in rounds if item.target == target and item.flavour == flavour and item.users == users]


def _latencies(rounds: list[Round]) -> list[float]:
    return [value for item in rounds for value in item.latencies]


def ratio_of(lab: float | None, reference: float | None) -> float | None:
    return lab / reference if lab is not None and reference else None


def cell(value: float | None, width: int = 7, digits: int = 2, suffix: str = "") -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.{digits}f}{suffix}"


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class Figures:
    """The headline figures per flavour, for the goals and the README."""

    lab: dict[str, float | None] = field(default_factory=dict)
    reference: dict[str, float | None] = field(default_factory=dict)


def report(rounds: list[Round], flavours: list[str], counts: list[int]) -> None:
    most = max(counts)
    figures: dict[str, Figures] = {flavour: Figures() for flavour in flavours}
    print("\n== spawn latency, request -> server ready (s); p50 / p95 over all spawns of the rounds")
    print(
        f"  {'image':<12}{'users':>6}{'rounds':>7}  {'juvini p50':>10}{'p95':>7}  {'ref p50':>8}{'p95':>7}"
        f"  {'ratio p50':>9}{'p95':>7}  {'failed j/r':>10}"
    )
    for flavour in flavours:
        for count in counts:
            lab, ref = _pooled(rounds, "juvini", flavour, count), _pooled(rounds, "reference", flavour, count)
            lab_values, ref_values = _latencies(lab), _latencies(ref)
            lab50 = statistics.median(lab_values) if lab_values else None
            ref50 = statistics.median(ref_values) if ref_values else None
            lab95 = percentile(lab_values, 0.95) if lab_values else None
            ref95 = percentile(ref_values, 0.95) if ref_values else None
            failed = f"{sum(len(item.failures) for item in lab)}/{sum(len(item.failures) for item in ref)}"
            print(
                f"  {flavour:<12}{count:>6}{len(lab):>7}  {cell(lab50, 10)}{cell(lab95)}  {cell(ref50, 8)}"
                f"{cell(ref95)}  {cell(ratio_of(lab50, ref50), 8, 2, 'x')}{cell(ratio_of(lab95, ref95), 6, 2, 'x')}"
                f"  {failed:>10}"
            )
            if count == 1:
                figures[flavour].lab["p50_1"], figures[flavour].reference["p50_1"] = lab50, ref50
            if count == most:
                figures[flavour].lab["p95_n"], figures[flavour].reference["p95_n"] = lab95, ref95
                figures[flavour].lab["failed"] = sum(len(item.failures) for item in lab)
                figures[flavour].reference["failed"] = sum(len(item.failures) for item in ref)

    print(f"\n== the rounds at {most} users: failed spawns, p95, stop time (s) per round")
    print(
        f"  {'image':<12}{'round':>6}  {'juvini failed':>13}{'p95':>7}{'stop':>7}"
        f"  {'ref failed':>10}{'p95':>7}{'stop':>7}"
    )
    for flavour in flavours:
        lab, ref = _pooled(rounds, "juvini", flavour, most), _pooled(rounds, "reference", flavour, most)
        for one, other in zip(lab, ref, strict=False):
            values = [
                (len(item.failures), percentile(item.latencies, 0.95) if item.latencies else None, item.stop_seconds)
                for item in (one, other)
            ]
            print(
                f"  {flavour:<12}{one.index + 1:>6}  {values[0][0]:>13}{cell(values[0][1])}{cell(values[0][2])}"
                f"  {values[1][0]:>10}{cell(values[1][1])}{cell(values[1][2])}"
            )

    print(
        f"\n== time to stop {most} servers (DELETE requests -> every container gone), s; median and max of the rounds"
    )
    for flavour in flavours:
        lab_stops = [item.stop_seconds for item in _pooled(rounds, "juvini", flavour, most) if item.stop_seconds]
        ref_stops = [item.stop_seconds for item in _pooled(rounds, "reference", flavour, most) if item.stop_seconds]
        lab_median, ref_median = median_or_none(lab_stops), median_or_none(ref_stops)
        figures[flavour].lab["stop"], figures[flavour].reference["stop"] = lab_median, ref_median
        print(
            f"  {flavour:<12} juvini {cell(lab_median)} (max {cell(max(lab_stops) if lab_stops else None, 5)})"
            f"   reference {cell(ref_median)} (max {cell(max(ref_stops) if ref_stops else None, 5)})"
            f"   ratio {cell(ratio_of(lab_median, ref_median), 5, 2, 'x')}"
        )

    print(
        f"\n== idle memory with {most} servers running (MiB; Docker stats, page cache left out; medians of the rounds)"
    )
    for flavour in flavours:
        row = {}
        for target in ("juvini", "reference"):
            pooled = _pooled(rounds, target, flavour, most)
            server = median_or_none([statistics.median(item.server_memory) for item in pooled if item.server_memory])
            hub = median_or_none([sum(item.hub_memory.values()) for item in pooled if item.hub_memory])
            parts = {
                role: median_or_none([item.hub_memory[role] for item in pooled if role in item.hub_memory])
                for role in sorted({role for item in pooled for role in item.hub_memory})
            }
            row[target] = (server, hub, parts)
        (lab_server, lab_hub, lab_parts), (ref_server, ref_hub, ref_parts) = row["juvini"], row["reference"]
        figures[flavour].lab["memory"], figures[flavour].reference["memory"] = lab_server, ref_server
        figures[flavour].lab["hub_memory"], figures[flavour].reference["hub_memory"] = lab_hub, ref_hub

        def mib(value: float | None) -> float | None:
            return None if value is None else value / MIB

        lab_detail = " + ".join(f"{role} {cell(mib(value), 1, 0)}" for role, value in lab_parts.items())
        ref_detail = " + ".join(f"{role} {cell(mib(value), 1, 0)}" for role, value in ref_parts.items())
        print(
            f"  {flavour:<12} user server: juvini {cell(mib(lab_server), 6, 1)}"
            f"  reference {cell(mib(ref_server), 6, 1)}"
            f"  ratio {cell(ratio_of(lab_server, ref_server), 5, 2, 'x')}"
        )
        print(
            f"  {'':<12} hub + proxy: juvini {cell(mib(lab_hub), 6, 1)} ({lab_detail})  reference"
            f" {cell(mib(ref_hub), 6, 1)} ({ref_detail}, its proxy inside)"
            f"  ratio {cell(ratio_of(lab_hub, ref_hub), 5, 2, 'x')}"
        )

    print("\n== where a spawn's time goes (s, medians over the spawns of the rounds; total: the p50 latency)")
    for name, meaning in PHASES:
        print(f"  {name:<8} {meaning}")
    print(f"  {'image':<12}{'users':>6} {'target':<10}" + "".join(f"{name:>8}" for name, _ in PHASES) + f"{'total':>8}")
    for flavour in flavours:
        for count in counts:
            for target in ("juvini", "reference"):
                pooled = _pooled(rounds, target, flavour, count)
                medians = median_phases(row for item in pooled for row in item.phases)
                cells = "".join(cell(medians[name], 8) for name, _ in PHASES)
                print(f"  {flavour:<12}{count:>6} {target:<10}{cells}{cell(median_or_none(_latencies(pooled)), 8)}")

    print(f"\n== CPU during the rounds at {most} users (first request -> last ready; 2 cores = 200 %), medians")
    print(
        f"  {'image':<12}{'target':<10}{'wall s':>7}{'busy %':>8}{'hub s':>7}{'proxy s':>8}{'servers s':>10}"
        f"{'per server':>11}{'engine s':>9}{'client s':>9}"
    )
    cores = _cores()
    for flavour in flavours:
        for target in ("juvini", "reference"):
            pooled = [item for item in _pooled(rounds, target, flavour, most) if item.cpu is not None]
            uses = [item.cpu for item in pooled if item.cpu is not None]
            if not uses:
                continue
            busy = median_or_none([use.busy_fraction * 100 * cores for use in uses])
            per_server = median_or_none([statistics.median(item.server_cpu) for item in pooled if item.server_cpu])
            print(
                f"  {flavour:<12}{target:<10}{cell(median_or_none([use.wall_seconds for use in uses]), 7, 1)}"
                f"{cell(busy, 8, 0)}{cell(median_or_none([use.containers.get('hub', 0.0) for use in uses]), 7, 1)}"
                f"{cell(median_or_none([use.containers['proxy'] for use in uses if 'proxy' in use.containers]), 8, 1)}"
                f"{cell(median_or_none([sum(item.server_cpu) for item in pooled if item.server_cpu]), 10, 1)}"
                f"{cell(per_server, 11, 2)}"
                f"{cell(median_or_none([use.engine_seconds for use in uses]), 9, 1)}"
                f"{cell(median_or_none([use.client_seconds for use in uses]), 9, 1)}"
            )

    print(f"\n== where a stop's time goes at {most} users (s, medians over the servers of the rounds)")
    for name, meaning in STOP_PHASES:
        print(f"  {name:<8} {meaning}")
    print(
        f"  {'image':<12}{'target':<10}"
        + "".join(f"{name:>8}" for name, _ in STOP_PHASES)
        + f"{'last gone':>10}{'busy %':>8}{'hub s':>7}{'engine s':>9}"
    )
    for flavour in flavours:
        for target in ("juvini", "reference"):
            pooled = _pooled(rounds, target, flavour, most)
            medians = median_of((row for item in pooled for row in item.stop_phases), [n for n, _ in STOP_PHASES])
            uses = [item.stop_cpu for item in pooled if item.stop_cpu is not None]
            print(
                f"  {flavour:<12}{target:<10}"
                + "".join(cell(medians[name], 8) for name, _ in STOP_PHASES)
                + cell(median_or_none([item.stop_seconds for item in pooled if item.stop_seconds]), 10)
                + cell(median_or_none([use.busy_fraction * 100 * cores for use in uses]), 8, 0)
                + cell(median_or_none([use.containers.get("hub", 0.0) for use in uses]), 7, 1)
                + cell(median_or_none([use.engine_seconds for use in uses]), 9, 1)
            )

    failures = [(item, spawn) for item in rounds for spawn in item.failures]
    print(f"\n== failed spawns: {len(failures)}")
    for item, spawn in failures:
        print(f"  {item.target} {item.flavour} {item.users} users round {item.index + 1}: {spawn.user}: {spawn.error}")
    stop_errors = [item for item in rounds if item.stop_error]
    for item in stop_errors:
        print(f"  stop: {item.target} {item.flavour} {item.users} users round {item.index + 1}: {item.stop_error}")

    print("\n== issue 8's goals (lab / reference), per image")
    keys = ("p50_1", "p95_n", "stop", "memory")
    for flavour in flavours:
        chosen = figures[flavour]
        for (template, most_ratio), key in zip(GOALS, keys, strict=True):
            goal = template.format(most=most)
            ratio = ratio_of(chosen.lab.get(key), chosen.reference.get(key))
            verdict = "n/a" if ratio is None else ("met" if ratio <= most_ratio else "NOT met")
            print(f"  {flavour:<12}{goal:<42} <= {most_ratio:.1f}x: {cell(ratio, 5, 2, 'x')}  {verdict}")
        lab_failed = chosen.lab.get("failed")
        verdict = "met" if lab_failed == 0 else "NOT met"
        print(f"  {flavour:<12}{f'failed spawns in the rounds at {most} users':<42} == 0:    {lab_failed}  {verdict}")


def _cores() -> int:
    return os.cpu_count() or 1


# --- the run ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [flavour.name for flavour in FLAVOURS]
    parser.add_argument("--flavours", default="base,datascience", help=f"notebook images to spawn, of {names}")
    parser.add_argument("--users", default="1,10,20", help="concurrent users per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per count of users and image, per deployment")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="idle wait before memory is read")
    parser.add_argument("--start-runs", type=int, default=3, help="server starts timed per notebook image")
    parser.add_argument("--builds", action="store_true", help="also time warm (cached) builds of every image")
    parser.add_argument("--cold", action="store_true", help="also time --no-cache builds (slow; implies --builds)")
    parser.add_argument("--keep-images", action="store_true", help="keep the images the run tagged")
    args = parser.parse_args()
    flavours = [value for value in args.flavours.split(",") if value]
    unknown = set(flavours) - set(names)
    if unknown:
        parser.error(f"unknown images {sorted(unknown)}")
    counts = sorted(int(value) for value in args.users.split(","))

    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=600)
    remove_stack_objects(client, STACK)
    probe_config, _ = dev_stack_config(Path("/var/tmp/unused"), 8443, 0)  # for its timeouts only
    dev = parse_settings(probe_config)
    spawn_deadline = dev.spawner.start_timeout + dev.spawner.http_timeout + ROUND_MARGIN_SECONDS
    lifetime = spawn_deadline + args.idle_seconds + ROUND_MARGIN_SECONDS
    root = Path(tempfile.mkdtemp(prefix="juvini-bench-", dir="/var/tmp"))
    root.chmod(0o755)
    config, changes = dev_stack_config(root, free_port(), lifetime)
    settings = parse_settings(config)
    print(f"lab_spawn benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine_summary()}")
    print("Juvini: the dev stack's settings (Pulumi.dev.yaml), changed only in:")
    for change in changes:
        print(f"  - {change}")
    spawner = settings.spawner
    print(
        f"  spawner: cpu {spawner.cpu_limit}, memory {spawner.mem_limit}, start {spawner.start_timeout} s, http "
        f"{spawner.http_timeout} s, idle culler {spawner.idle_timeout or 'off'}; concurrentSpawnLimit "
        f"{settings.hub.concurrent_spawn_limit}; Spark ports {settings.spark.driver_ports}"
    )
    started = time.perf_counter()
    try:
        deployment = bring_up(config, stack=STACK)  # undoes what it applied should it fail
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    print(f"Juvini lab up (builds cached or not) in {time.perf_counter() - started:.1f} s", flush=True)
    tagged: list[str] = []
    try:
        images = deployment.outputs[outputs.IMAGES]
        tagged += [Naming(PROJECT, STACK).image("foundation", TAG), *images.values()]
        lab_images = {flavour: images[flavour] for flavour in flavours}
        started = time.perf_counter()
        reference_images = build_reference_images(client, lab_images)
        tagged += list(reference_images.values())
        print(f"stock-like reference images built in {time.perf_counter() - started:.1f} s:", flush=True)
        for flavour, image in reference_images.items():
            print(f"  {image}: FROM {lab_images[flavour]} + {installed_versions(image, ['rfc3987-syntax', 'lark'])}")
            print("    (the lab's image has none of them: " + installed_versions(lab_images[flavour], ["lark"]) + ")")

        ca_file = root / "ca.pem"
        ca_file.write_text(deployment.outputs[outputs.CA_CERTIFICATE])
        url = deployment.outputs[outputs.HUB_URL]
        wait_for("the lab", lambda: requests.get(url + "hub/health", verify=str(ca_file), timeout=5).ok, 180)
        lab_target = admin_target("juvini", url, str(ca_file), deployment.outputs, STACK, spawn_deadline)
        reference_url, reference_token = reference_deployment(client, images["hub"], reference_images, settings)

        def reference_api(method: str, path: str, **kwargs: Any) -> requests.Response:
            headers = {"Authorization": f"token {reference_token}"}
            return requests.request(method, reference_url + path, headers=headers, timeout=60, **kwargs)

        targets = [
            lab_target,
            Target(
                "reference",
                reference_api,
                {"hub": REFERENCE + "-hub"},
                REFERENCE + "-hub",
                REFERENCE_PREFIX,
                spawn_deadline,
            ),
        ]
        all_names = [f"u{count}x{index}" for count in counts for index in range(count)]
        for target in targets:
            created = target.api("POST", "hub/api/users", json={"usernames": all_names})
            if created.status_code not in (201, 409):
                raise RuntimeError(f"{target.name}: creating users answered {created.status_code} {created.text[:300]}")
        print(
            f"\nhub containers: juvini {targets[0].hub_containers}, reference {targets[1].hub_containers}; "
            f"{args.rounds} round(s) per count, the two taking turns",
            flush=True,
        )

        rounds: list[Round] = []
        for flavour in flavours:
            for count in counts:
                names_now = [f"u{count}x{index}" for index in range(count)]
                for index in range(args.rounds):
                    order = targets if index % 2 == 0 else targets[::-1]
                    for target in order:
                        done = run_round(
                            client, target, flavour, names_now, index, args.idle_seconds, count == max(counts)
                        )
                        rounds.append(done)
                        values = done.latencies
                        print(
                            f"  {flavour:<12}{target.name:<10}{count:>3} users round {index + 1}: "
                            f"p50 {cell(median_or_none(values), 5, 1)}"
                            f"  p95 {cell(percentile(values, 0.95) if values else None, 5, 1)}"
                            f"  stop {cell(done.stop_seconds, 5, 1)}  failed {len(done.failures)}",
                            flush=True,
                        )
        report(rounds, flavours, counts)
        size_figures(client, {"hub": images["hub"], **lab_images}, reference_images)
        startup_figures(lab_images, reference_images, args.start_runs)
        if args.builds or args.cold:
            tagged += build_figures(client, args.cold, settings.images.extra_ca_bundle or "")
    finally:
        errors = deployment.destroy()
        remove_stack_objects(client, STACK)
        for volume in client.volumes.list(filters={"name": REFERENCE_PREFIX + "-user-"}):
            volume.remove(force=True)
        if not args.keep_images:
            for image in reversed(tagged):  # each before the image it is built FROM
                try:
                    client.images.remove(image)
                except docker.errors.APIError as error:
                    errors.append(f"image {image}: {error}")
        shutil.rmtree(root, ignore_errors=True)
        if errors:
            print("teardown errors:", errors)


def machine_summary() -> str:
    memory = ""
    try:
        with Path("/proc/meminfo").open(encoding="ascii") as meminfo:
            memory = f", {int(meminfo.readline().split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with Path("/proc/cpuinfo").open(encoding="ascii") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{_cores()} cores ({cpu}){memory}, {platform.system()} {platform.release()}, Docker {_docker_version()}"


def _docker_version() -> str:
    try:
        return str(docker.DockerClient(base_url="unix:///var/run/docker.sock").version().get("Version", "?"))
    except Exception:
        return "?"


if __name__ == "__main__":
    main()
