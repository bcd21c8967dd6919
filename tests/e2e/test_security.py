"""Users' containers locked down (security.userContainers), checked on the running lab."""

from __future__ import annotations

import json
from collections.abc import Iterator

import docker
import pytest
import requests

from tests.e2e.conftest import STACK, Lab
from tests.support.lab_client import DeadlineExceeded, LabUser, wait_for

pytestmark = pytest.mark.e2e

#: The default of security.userContainers.pidsLimit (Pulumi.dev.yaml and the e2e lab keep it).
PIDS_LIMIT = 2048
#: What util-linux's mount says when it runs without its setuid root (no-new-privileges).
MOUNT_WITHOUT_SETUID = "effective UID is 2100"

#: Run in a kernel: as many `sleep` processes as the container allows (a fork bomb that stops).
PROCESS_FLOOD = """
import errno, json, subprocess
children, failure = [], None
try:
    for _ in range(20000):
        children.append(subprocess.Popen(["sleep", "300"]))
except OSError as error:
    failure = errno.errorcode.get(error.errno, str(error.errno))
print(json.dumps({"started": len(children), "failure": failure}))
"""
STOP_FLOOD = """
import subprocess
subprocess.run(["pkill", "-x", "sleep"], check=False)
"""
#: Run in a kernel: what the kernel's process may do.
PRIVILEGES = """
import json, subprocess
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
mount = subprocess.run(["mount", "-t", "tmpfs", "none", "/mnt"], capture_output=True, text=True)
setuid = subprocess.run(["find", "/usr/bin", "/bin", "-perm", "-4000", "-type", "f"], capture_output=True, text=True)
print(json.dumps({
    "no_new_privs": status["NoNewPrivs"].strip(),
    "cap_eff": status["CapEff"].strip(),
    "cap_bnd": status["CapBnd"].strip(),
    "mount": mount.returncode, "mount_says": mount.stderr.strip(),
    "setuid_binaries": setuid.stdout.split(),
    "core": subprocess.run(["sh", "-c", "ulimit -c"], capture_output=True, text=True).stdout.strip(),
}))
"""


def container(lab: Lab, name: str) -> docker.models.containers.Container:
    return lab.docker.containers.get(f"juvini-{STACK}-user-{name}")


@pytest.fixture(scope="module")
def two_users(lab: Lab) -> Iterator[tuple[LabUser, LabUser]]:
    users = []
    for name in ("mallory", "trent"):
        user = lab.user(name)
        user.sign_up()
        user.log_in()
        user.start_server()
        users.append(user)
    yield users[0], users[1]
    for user in users:
        if user.model().get("servers"):
            user.stop_server()


def answers(user: LabUser) -> bool:
    try:
        return user.server_api("GET", "api/status", timeout=20).status_code == 200
    except requests.RequestException:
        return False


def test_users_containers_have_no_capabilities_and_gain_no_privileges(lab: Lab, two_users: tuple) -> None:
    mallory, _ = two_users
    host_config = container(lab, mallory.name).attrs["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"], host_config["CapDrop"]
    assert host_config["SecurityOpt"] == ["no-new-privileges:true"], host_config["SecurityOpt"]
    assert host_config["PidsLimit"] == PIDS_LIMIT
    inside = json.loads(mallory.run_code(PRIVILEGES).strip().splitlines()[-1])
    assert inside["setuid_binaries"], "the images hold setuid binaries: the check below must mean something"
    assert inside["no_new_privs"] == "1" and int(inside["cap_eff"], 16) == 0 and int(inside["cap_bnd"], 16) == 0
    assert inside["mount"] != 0 and MOUNT_WITHOUT_SETUID in inside["mount_says"], inside["mount_says"]
    assert inside["core"] == "0", inside


def test_a_fork_bomb_stays_inside_its_container(lab: Lab, two_users: tuple) -> None:
    mallory, trent = two_users
    with mallory.kernel() as run:
        flood = json.loads(run(PROCESS_FLOOD, 600).strip().splitlines()[-1])
        try:
            # While mallory's container is full, the other user's server and the hub answer.
            assert answers(trent), "another user's server stopped answering"
            assert requests.get(lab.url + "hub/health", verify=lab.ca_file, timeout=20).status_code == 200
        finally:
            run(STOP_FLOOD, 120)
    assert flood["failure"] == "EAGAIN" and 0 < flood["started"] < PIDS_LIMIT, flood
    assert answers(mallory)


def test_a_memory_hog_loses_its_kernel_not_its_server(lab: Lab, two_users: tuple) -> None:
    mallory, trent = two_users
    limit = container(lab, mallory.name).attrs["HostConfig"]["Memory"]
    assert limit > 0
    with mallory.kernel() as run:
        first_pid = run("import os; print(os.getpid())").strip()
        hog = f"hog = b'x' * {limit + 512 * 1024 * 1024}"
        with pytest.raises((DeadlineExceeded, AssertionError, OSError)):
            run(hog, 60)  # the kernel is killed: no reply ever comes
        restarted = wait_for(
            "the killed kernel to be restarted by its server",
            lambda: (pid := _pid(run)) and pid != first_pid and pid,
            timeout=120,
            interval=2,
        )
    assert restarted != first_pid
    assert container(lab, mallory.name).status == "running"
    assert answers(mallory) and answers(trent)


def _pid(run: object) -> str | None:
    try:
        return run("import os; print(os.getpid())", 20).strip()  # type: ignore[operator]
    except (DeadlineExceeded, AssertionError, OSError):
        return None
