"""Prints build and spawn figures for the lab, beside a reference deployment (asserts nothing).

    ./venv/bin/python tests/benchmarks/lab_spawn.py [--cold] [--users 1,10,20] [--flavour base]

- Build: warm (cached) build time per image, and with --cold a --no-cache build too; sizes.
- Server start per notebook image (tests/support/startup.py): time to the first log line and to
  listening, CPU, and the costliest imports under `python -X importtime`.
- Spawn latency p50/p95 for N concurrent users (request -> server ready), for the Juvini lab
  (brought up from the program by the provider double, HTTPS through the separate proxy)
  and for a reference deployment in the jupyterhub-deploy-docker style: one hub container
  with its own in-process proxy, stock DockerSpawner settings, the same notebook image,
  plain HTTP. Figures are printed as ratios Juvini / reference.

Needs what the e2e tier needs (tests/setup.sh): a Docker engine, sshd, the base image.
"""

from __future__ import annotations

import argparse
import io
import secrets
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from infra import outputs  # noqa: E402
from infra.flavours import FLAVOURS  # noqa: E402
from infra.images import build_order, context_path  # noqa: E402
from infra.settings import parse_settings  # noqa: E402
from tests.e2e.conftest import _free_port, lab_config, remove_stack_objects  # noqa: E402
from tests.support.images import chain_build_args, image_id  # noqa: E402
from tests.support.lab_client import LabUser, wait_for  # noqa: E402
from tests.support.provider_double import bring_up  # noqa: E402
from tests.support.startup import profile_server_start  # noqa: E402

STACK = "bench"
REFERENCE = "juvini-bench-reference"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


#: What the benchmark builds, in the program's order: the foundation, then each image after its parent.
BUILDS = {build.key: build for build in build_order()}
#: Build context of each image the benchmark builds, in build order.
FOLDERS = {key: build.folder for key, build in BUILDS.items()}


def timed_build(role: str, tag: str, args: dict[str, str], no_cache: bool) -> float:
    argv = ["/usr/bin/docker", "build", "-q", "-t", tag, "-f", f"{context_path(FOLDERS[role])}/Dockerfile"]
    argv += ["--no-cache"] if no_cache else []
    for key, value in args.items():
        argv += ["--build-arg", f"{key}={value}"]
    argv.append(context_path(FOLDERS[role]))
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env={"DOCKER_BUILDKIT": "1", "PATH": "/usr/bin:/bin"})
    return time.perf_counter() - started


def build_figures(client: docker.DockerClient, cold: bool, ca_bundle: str) -> None:
    images = {role: f"juvini-bench-{role}:bench" for role in FOLDERS}
    print("\nimage builds (BuildKit, local base image; each after the image it is built FROM)")
    print(f"  {'image':<14}{'warm s':>9}{'cold s':>9}{'size MB':>10}")
    for role, build in BUILDS.items():
        base = images[build.parent] if build.parent else "juvini-base:bookworm"
        digest = image_id(base) if build.parent else ""
        args = chain_build_args(build, base, ca_bundle, "bench", digest)
        warm = timed_build(role, images[role], args, no_cache=False)
        cold_seconds = f"{timed_build(role, images[role], args, no_cache=True):9.1f}" if cold else f"{'-':>9}"
        size = client.images.get(images[role]).attrs["Size"] / 1e6
        print(f"  {role:<14}{warm:9.1f}{cold_seconds}{size:10.0f}")


def startup_figures(images: dict[str, str], runs: int) -> None:
    """The server start of each notebook image the lab built (no network, a stub hub; medians of ``runs``)."""
    print("\nserver start per notebook image (exec -> first log line / listening; CPU of the server process)")
    for flavour in FLAVOURS:
        if flavour.name in images:
            print(profile_server_start(images[flavour.name], runs).report(8))


def spawn_round(api: Callable[..., requests.Response], names: list[str], body: dict) -> list[float]:
    """Start a server for each name at once; return request-to-ready seconds."""
    latencies: dict[str, float] = {}
    errors: list[str] = []

    def one(name: str) -> None:
        started = time.perf_counter()
        response = api("POST", f"hub/api/users/{name}/server", json=body)
        if response.status_code not in (201, 202):
            errors.append(f"{name}: {response.status_code} {response.text[:200]}")
            return

        def ready() -> bool:
            model = api("GET", f"hub/api/users/{name}").json()
            server = model.get("servers", {}).get("")
            return bool(server and server.get("ready"))

        wait_for(f"{name}'s server", ready, timeout=600, interval=0.5)
        latencies[name] = time.perf_counter() - started

    threads = [threading.Thread(target=one, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError("; ".join(errors))
    for name in names:
        api("DELETE", f"hub/api/users/{name}/server")
    for name in names:

        def stopped(user: str = name) -> bool:
            return not api("GET", f"hub/api/users/{user}").json().get("servers")

        wait_for(f"{name} stopped", stopped, 300)
    return list(latencies.values())


def measure(label: str, api: Callable[..., requests.Response], counts: list[int], body: dict) -> dict[int, list[float]]:
    results = {}
    for count in counts:
        names = [f"u{count}x{index}" for index in range(count)]
        api("POST", "hub/api/users", json={"usernames": names})
        results[count] = spawn_round(api, names, body)
        print(
            f"  {label:<10} {count:>3} users: p50 {statistics.median(results[count]):6.1f} s"
            f"  p95 {percentile(results[count], 0.95):6.1f} s"
        )
    return results


def reference_deployment(client: docker.DockerClient, hub_image: str, notebook_image: str) -> tuple[str, str]:
    """A jupyterhub-deploy-docker style hub: stock DockerSpawner, in-process proxy, HTTP."""
    token = secrets.token_hex(32)
    network = client.networks.create(REFERENCE, driver="bridge", labels={"org.juvini.stack": STACK})
    config = "\n".join(
        [
            "c = get_config()  # noqa",
            "c.JupyterHub.spawner_class = 'dockerspawner.DockerSpawner'",
            f"c.DockerSpawner.image = {notebook_image!r}",
            f"c.DockerSpawner.network_name = {REFERENCE!r}",
            "c.DockerSpawner.remove = True",
            "c.DockerSpawner.pull_policy = 'never'",
            "c.DockerSpawner.notebook_dir = '/home/labuser/work'",
            "c.DockerSpawner.volumes = {'jupyterhub-user-{username}': '/home/labuser/work'}",
            "c.DockerSpawner.prefix = 'juvini-bench-ref'",
            "c.DockerSpawner.extra_labels = {'org.juvini.stack': 'bench'}",
            "c.JupyterHub.hub_ip = '0.0.0.0'",
            f"c.JupyterHub.hub_connect_ip = {REFERENCE + '-hub'!r}",
            "c.JupyterHub.authenticator_class = 'dummy'",
            "c.Authenticator.allow_all = True",
            "c.Spawner.http_timeout = 180",
            "c.Spawner.start_timeout = 600",
            "c.JupyterHub.concurrent_spawn_limit = 0",
            "c.JupyterHub.services = [{'name': 'bench', 'api_token': __import__('os').environ['BENCH_TOKEN']}]",
            "c.JupyterHub.load_roles = [{'name': 'bench', 'scopes': ['admin:users', 'admin:servers'],"
            " 'services': ['bench']}]",
            "c.JupyterHub.db_url = 'sqlite:////tmp/jupyterhub.sqlite'",
        ]
    )
    port = _free_port()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", action="store_true", help="also time --no-cache builds (slow)")
    parser.add_argument("--users", default="1,10,20", help="concurrent users per round")
    parser.add_argument("--start-runs", type=int, default=3, help="server starts timed per notebook image")
    parser.add_argument(
        "--flavour", default="base", choices=[flavour.name for flavour in FLAVOURS], help="notebook image to spawn"
    )
    args = parser.parse_args()
    counts = [int(value) for value in args.users.split(",")]
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=600)
    remove_stack_objects(client, STACK)

    root = Path(tempfile.mkdtemp(prefix="juvini-bench-", dir="/var/tmp"))
    root.chmod(0o755)
    config = lab_config(root, _free_port())
    config["spawner"] |= {"idleTimeout": 0, "allowedImages": [args.flavour]}
    config["hub"]["concurrentSpawnLimit"] = 0
    # One Spark port pair per running server of a Spark image (--flavour pyspark): room for the
    # largest round, so that every server runs as in client mode (others take no pair).
    most = max(counts)
    config["spark"] |= {"driverPorts": f"12000-{12000 + most}", "blockManagerPorts": f"11100-{11100 + most}"}
    started = time.perf_counter()
    deployment = bring_up(config, stack=STACK)
    print(f"Juvini lab up (builds cached or not) in {time.perf_counter() - started:.1f} s")
    try:
        images = deployment.outputs[outputs.IMAGES]
        ca_file = root / "ca.pem"
        ca_file.write_text(deployment.outputs[outputs.CA_CERTIFICATE])
        url = deployment.outputs[outputs.HUB_URL]
        wait_for("the lab", lambda: requests.get(url + "hub/health", verify=str(ca_file), timeout=5).ok, 180)
        admin = LabUser(base_url=url, ca_file=str(ca_file), name="admin")
        admin.sign_up()
        admin.log_in()

        reference_url, reference_token = reference_deployment(client, images["hub"], images[args.flavour])

        def reference_api(method: str, path: str, **kwargs: object) -> requests.Response:
            headers = {"Authorization": f"token {reference_token}"}
            return requests.request(method, reference_url + path, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]

        print(f"\nspawn latency, image {images[args.flavour]} (request -> ready)")
        lab = measure("juvini", admin.api, counts, {})
        reference = measure("reference", reference_api, counts, {})
        print("\n  ratio juvini/reference:")
        for count in counts:
            p50 = statistics.median(lab[count]) / statistics.median(reference[count])
            p95 = percentile(lab[count], 0.95) / percentile(reference[count], 0.95)
            print(f"  {count:>3} users: p50 x{p50:.2f}  p95 x{p95:.2f}")
        ca_bundle = parse_settings(config).images.extra_ca_bundle or ""
        build_figures(client, args.cold, ca_bundle)
        startup_figures(images, args.start_runs)
    finally:
        errors = deployment.destroy()
        remove_stack_objects(client, STACK)
        for volume in client.volumes.list(filters={"name": "jupyterhub-user-"}):
            volume.remove(force=True)
        if errors:
            print("teardown errors:", errors)


if __name__ == "__main__":
    main()
