"""The whole lab, brought up from the program's own declarations on this machine's Docker
engine (through the provider double), and torn down after the tier.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from infra import outputs
from infra.flavours import BY_NAME as FLAVOURS
from tests.support.lab_client import LabUser, wait_for
from tests.support.local_stack import SSH_KEY, free_port, lab_paths, local_host
from tests.support.provider_double import Deployment, bring_up

STACK = "e2e"
IDLE_TIMEOUT = 150  # seconds; short so that the culling test finishes in CI
#: spawner.kernelIdleTimeout and terminalIdleTimeout of the e2e lab: longer than any test leaves a kernel
#: idle (kernels the tests use are connected, so never culled), short for the kernel-culling test.
KERNEL_IDLE_TIMEOUT = 40
#: auth.native.lockoutSeconds of the e2e lab (the default, 600, is too long to wait for).
LOCKOUT_SECONDS = 15


def remove_stack_objects(client: docker.DockerClient, stack: str) -> None:
    """Clear what an aborted earlier run may have left behind (labels name the stack)."""
    label = f"org.juvini.stack={stack}"
    for container in client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)
    for network in client.networks.list(filters={"label": label}):
        network.remove()


@dataclass
class Lab:
    deployment: Deployment
    config: dict[str, Any]
    url: str
    ca_file: str
    root: Path
    docker: docker.DockerClient
    destroyed: bool = False

    @property
    def outputs(self) -> dict[str, Any]:
        return self.deployment.outputs

    def path(self, key: str) -> Path:
        return Path(self.config["paths"][key])

    def user(self, name: str) -> LabUser:
        return LabUser(base_url=self.url, ca_file=self.ca_file, name=name)

    def destroy(self) -> list[str]:
        self.destroyed = True
        return self.deployment.destroy()


#: What a server that stops writes or removes itself: its runtime files, IPython's history database.
_CHANGED_BY_A_STOPPING_SERVER = (".local/share/jupyter/runtime", ".ipython")


def user_data(folder: Path) -> dict[str, str]:
    """Every file and folder below ``folder``: relative path -> content digest ('dir' for folders).

    Leaves out what users' servers change themselves when destroy stops them.
    """
    return {
        str(path.relative_to(folder)): "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if not path.is_symlink() and not any(part in str(path) for part in _CHANGED_BY_A_STOPPING_SERVER)
    }


def destroy_and_check(lab: Lab, stack: str) -> None:
    """`pulumi destroy` through the double: the stack's objects go, users' data stays as it was.

    Runs as the lab fixture's finalizer, after every test that used the lab, whichever ran.
    """
    kept = ("usersDir", "sharedDir", "groupsDir", "dataDir")
    before = {key: user_data(lab.path(key)) for key in kept}
    assert before["usersDir"], "the e2e tier started servers, so users' folders exist before destroy"
    errors = lab.destroy()
    assert not errors, errors
    label = f"org.juvini.stack={stack}"
    assert lab.docker.containers.list(all=True, filters={"label": label}) == []
    assert lab.docker.networks.list(filters={"label": label}) == []
    assert {key: user_data(lab.path(key)) for key in kept} == before, "destroy changed user data"
    assert not lab.path("tlsDir").exists(), "TLS material belongs to the stack and goes with it"
    assert lab.path("hubStateDir").is_dir(), "the hub database is kept"


#: Hub groups with a shared folder; the e2e tests make them (and their members) as the admin.
GROUP_FOLDERS = ("modellers", "analysts")
#: Users that may pick the GPU profile (this machine has no GPU runtime: its starts must fail, saying so).
GPU_USERS = ("gpu-tester",)


def lab_profiles() -> list[dict[str, Any]]:
    """The e2e lab's profiles: each image for everyone with the global limits (the defaults' order, so
    `{"image": ...}` picks keep their limits), a larger one for a group, a GPU one for a user."""
    return [
        *(
            {"slug": name, "displayName": FLAVOURS[name].display_name, "description": FLAVOURS[name].description}
            | {"image": name}
            for name in ("datascience", "pyspark", "base")
        ),
        {
            "slug": "base-large",
            "displayName": "Base, larger",
            "description": "The base image with more CPU and memory, for the modellers.",
            "image": "base",
            "cpuLimit": 1.5,
            "memLimit": "1536m",
            "environment": {"LAB_PROFILE": "large"},
            "groups": ["modellers"],
        },
        {
            "slug": "base-gpu",
            "displayName": "Base with a GPU",
            "description": "The base image with one GPU.",
            "image": "base",
            "gpu": {"count": 1},
            "users": list(GPU_USERS),
        },
    ]


def lab_config(root: Path, port: int) -> dict[str, Any]:
    return {
        "host": local_host(),
        "paths": lab_paths(root, groupsDir=root / "groups", dataDir=root / "data"),
        "folders": {"groups": list(GROUP_FOLDERS)},
        "profiles": lab_profiles(),
        "images": {
            "baseImage": "juvini-base:bookworm",
            "extraCaBundle": "/usr/local/share/ca-certificates",
            "tag": "e2e",
        },
        "hub": {"httpsPort": port, "publicHostname": "localhost", "adminUsers": ["admin"]},
        # A short lockout, so that the login-abuse test sees an account unlock again.
        "auth": {"type": "native", "native": {"openSignup": True, "lockoutSeconds": LOCKOUT_SECONDS}},
        "spawner": {
            "memLimit": "2g",
            "cpuLimit": 1,
            "idleTimeout": IDLE_TIMEOUT,
            "cullEvery": 10,
            "kernelIdleTimeout": KERNEL_IDLE_TIMEOUT,
            "terminalIdleTimeout": KERNEL_IDLE_TIMEOUT,
            "kernelCullEvery": 5,
            "httpTimeout": 180,
            "startTimeout": 300,
        },
        # Small ranges, so that running out of Spark ports is quick to reach.
        "spark": {"driverMemory": "768m", "driverPorts": "12000-12003", "blockManagerPorts": "11100-11103"},
    }


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    if not SSH_KEY.is_file():
        pytest.fail(f"{SSH_KEY} is missing: run tests/setup.sh (it authorizes this key for root@127.0.0.1)")
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=300)
    remove_stack_objects(client, STACK)
    root = Path(tempfile.mkdtemp(prefix="juvini-e2e-", dir="/var/tmp"))
    root.chmod(0o755)
    config = lab_config(root, free_port())
    deployment = bring_up(config, stack=STACK)
    ca_file = root / "lab-ca.pem"
    ca_file.write_text(deployment.outputs[outputs.CA_CERTIFICATE], encoding="utf-8")
    lab = Lab(deployment, config, deployment.outputs[outputs.HUB_URL], str(ca_file), root, client)
    wait_for(
        "the hub to answer /hub/health over HTTPS",
        lambda: requests.get(lab.url + "hub/health", verify=lab.ca_file, timeout=5).status_code == 200,
        timeout=180,
    )
    yield lab
    try:
        if not lab.destroyed:
            destroy_and_check(lab, STACK)
    finally:
        remove_stack_objects(client, STACK)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def idle_user(lab: Lab) -> LabUser:
    """A user whose server is started early and never touched again, for the culling test."""
    user = lab.user("idler")
    user.sign_up()
    user.log_in()
    user.start_server()
    return user


def signed_in(lab: Lab, *names: str) -> tuple[LabUser, ...]:
    """Users who signed up and logged in (the e2e lab's open sign-up authorizes them at once)."""
    users = tuple(lab.user(name) for name in names)
    for user in users:
        user.sign_up()
        user.log_in()
    return users


@contextlib.contextmanager
def servers_running(users: tuple[LabUser, ...]) -> Iterator[tuple[LabUser, ...]]:
    """The users' servers, started for one test and stopped after: the e2e lab culls servers idle for
    IDLE_TIMEOUT (the hub learns of activity only every few minutes), shorter than a module's tests."""
    for user in users:
        user.start_server()
    yield users
    for user in users:
        if user.model().get("servers"):
            user.stop_server()
