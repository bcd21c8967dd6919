"""Users' containers locked down (security.userContainers), checked on the running lab: no
capabilities and no setuid escalation, a fork bomb and a memory hog kept inside their container,
login abuse locked out, users' servers and their kernels living through an engine restart."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
import requests

from infra import outputs
from infra.host import DAEMON_JSON
from tests.e2e.conftest import LOCKOUT_SECONDS, STACK, Lab, servers_running, signed_in
from tests.support.engine import engine_restart_unsafe, restart_engine
from tests.support.lab_client import DeadlineExceeded, KernelDied, LabUser, wait_for

pytestmark = pytest.mark.e2e

#: The default of security.userContainers.pidsLimit (Pulumi.dev.yaml and the e2e lab keep it).
PIDS_LIMIT = 2048
#: A setuid-root copy of `id` that the test puts into a container as root: run by the lab user,
#: it prints the effective uid it got.
SETUID_ID = "/tmp/juvini-setuid-id"
MAKE_SETUID_ID = f"cp /usr/bin/id {SETUID_ID} && chmod 4755 {SETUID_ID}"

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
#: Run in the same kernel afterwards: no fork is possible while the container is full, so the
#: kernel ends its own children.
STOP_FLOOD = """
for child in children:
    child.kill()
for child in children:
    child.wait()
print(len(children))
"""
#: Run in a kernel: what the kernel's process may do.
PRIVILEGES = (
    f"SETUID_ID = {SETUID_ID!r}\n"
    + """
import json, subprocess
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
effective = subprocess.run([SETUID_ID, "-u"], capture_output=True, text=True)
setuid = subprocess.run(["find", "/usr/bin", "/bin", "-perm", "-4000", "-type", "f"], capture_output=True, text=True)
print(json.dumps({
    "no_new_privs": status["NoNewPrivs"].strip(),
    "cap_eff": status["CapEff"].strip(),
    "cap_bnd": status["CapBnd"].strip(),
    "setuid_id_euid": effective.stdout.strip() or effective.stderr.strip(),
    "setuid_binaries": setuid.stdout.split(),
    "core": subprocess.run(["sh", "-c", "ulimit -c"], capture_output=True, text=True).stdout.strip(),
}))
"""
)


def container(lab: Lab, name: str) -> docker.models.containers.Container:
    return lab.docker.containers.get(f"juvini-{STACK}-user-{name}")


@pytest.fixture(scope="module")
def accounts(lab: Lab) -> tuple[LabUser, ...]:
    return signed_in(lab, "mallory", "trent")


@pytest.fixture
def two_users(accounts: tuple[LabUser, ...]) -> Iterator[tuple[LabUser, ...]]:
    with servers_running(accounts) as users:
        yield users


def answers(user: LabUser) -> bool:
    try:
        return user.server_api("GET", "api/status").status_code == 200
    except requests.RequestException:
        return False


def test_users_containers_have_no_capabilities_and_gain_no_privileges(lab: Lab, two_users: tuple) -> None:
    mallory, _ = two_users
    user_container = container(lab, mallory.name)
    host_config = user_container.attrs["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"], host_config["CapDrop"]
    assert host_config["SecurityOpt"] == ["no-new-privileges:true"], host_config["SecurityOpt"]
    assert host_config["PidsLimit"] == PIDS_LIMIT
    made = user_container.exec_run(["sh", "-c", MAKE_SETUID_ID], user="0")
    assert made.exit_code == 0, made.output
    inside = json.loads(mallory.run_code(PRIVILEGES).strip().splitlines()[-1])
    assert inside["setuid_binaries"], "the images hold setuid binaries (su, mount, ...)"
    assert inside["no_new_privs"] == "1" and int(inside["cap_eff"], 16) == 0 and int(inside["cap_bnd"], 16) == 0
    assert inside["setuid_id_euid"] == "2100", f"a setuid-root program ran as {inside['setuid_id_euid']}"
    assert inside["core"] == "0", inside
    # The same program in the same image without the lab's options does give root: the check
    # above means something.
    control = lab.docker.containers.run(
        user_container.image.id,
        ["sh", "-c", f"{MAKE_SETUID_ID} && su -s /bin/sh labuser -c '{SETUID_ID} -u'"],
        entrypoint=[],
        user="0",
        remove=True,
    )
    assert control.decode().strip() == "0", control


def test_a_fork_bomb_stays_inside_its_container(lab: Lab, two_users: tuple) -> None:
    mallory, trent = two_users
    with mallory.kernel() as run:
        flood = json.loads(run(PROCESS_FLOOD, 600).strip().splitlines()[-1])
        try:
            # While mallory's container is full, the other user's server and the hub answer.
            assert answers(trent), "another user's server stopped answering"
            assert requests.get(lab.url + "hub/health", verify=lab.ca_file, timeout=20).status_code == 200
        finally:
            stopped = run(STOP_FLOOD, 300).strip()
    assert flood["failure"] == "EAGAIN" and 0 < flood["started"] < PIDS_LIMIT, flood
    assert stopped == str(flood["started"])
    assert answers(mallory)
    assert mallory.run_code("print('a new kernel starts again')").strip() == "a new kernel starts again"


def test_a_memory_hog_loses_its_kernel_not_its_server(lab: Lab, two_users: tuple) -> None:
    """Past the container's memory limit the kernel is killed (the largest process in the container's
    memory cgroup); its server restarts it, and the server, the other user's server and the hub go on."""
    mallory, trent = two_users
    server = container(lab, mallory.name)
    limit = server.attrs["HostConfig"]["Memory"]
    assert limit > 0
    with mallory.kernel() as run:
        first_pid = run("import os; print(os.getpid())").strip()
        with pytest.raises(KernelDied):
            run(f"hog = b'x' * {limit + 512 * 1024**2}", 120)
        restarted = wait_for(
            f"the killed kernel to be restarted by its server (log: docker logs {server.name})",
            lambda: _output(run, "import os; print(os.getpid())"),
            timeout=120,
            interval=2,
        )
    assert restarted != first_pid
    server.reload()
    assert server.status == "running", server.logs(tail=40).decode()
    assert answers(mallory) and answers(trent)
    assert requests.get(lab.url + "hub/health", verify=lab.ca_file, timeout=20).status_code == 200


def _output(run: Callable[[str, float], str], code: str) -> str | None:
    try:
        return run(code, 20).strip() or None
    except (DeadlineExceeded, KernelDied, OSError):
        return None


def test_users_servers_and_kernels_live_through_an_engine_restart(lab: Lab, two_users: tuple) -> None:
    """Live-restore (security.liveRestore, on by default for one host): kernels, servers, hub and proxy live on."""
    mallory, trent = two_users
    assert lab.docker.info()["LiveRestoreEnabled"] is True
    # And the engine starts with it again: the configuration file says so, not just the running engine.
    assert json.loads(Path(DAEMON_JSON).read_text(encoding="utf-8"))["live-restore"] is True
    server = container(lab, mallory.name)
    with mallory.kernel() as run:
        run("kept_in_memory = 6 * 7")
        unsafe = engine_restart_unsafe()
        if unsafe:
            pytest.skip(unsafe)
        restart_engine()
        lab.docker = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=300)
        assert container(lab, mallory.name).attrs["State"]["Pid"] == server.attrs["State"]["Pid"]
        # The same kernel, with what it held in memory.
        assert wait_for("the kernel to answer", lambda: _output(run, "print(kept_in_memory)"), timeout=120) == "42"
    assert wait_for("the hub", lambda: requests.get(lab.url + "hub/health", verify=lab.ca_file, timeout=10).ok, 120)
    assert answers(trent)
    # The hub still manages the server it started before the restart: it stops it, and starts it again.
    try:
        mallory.stop_server()
    except AssertionError as refused:
        hub_log = lab.docker.containers.get(lab.outputs[outputs.HUB_CONTAINER]).logs(tail=80).decode(errors="replace")
        raise AssertionError(f"{refused}\nhub log:\n{hub_log}") from None
    assert wait_for("the container to go", lambda: _gone(lab, server.name), timeout=120, interval=1)
    mallory.start_server()
    assert answers(mallory)


def _gone(lab: Lab, name: str) -> bool:
    try:
        lab.docker.containers.get(name)
    except docker.errors.NotFound:
        return True
    return False


#: auth.native.allowedFailedLogins (the default; the e2e lab keeps it).
ALLOWED_FAILED_LOGINS = 5


def _logs_in(lab: Lab, username: str, password: str) -> bool:
    """One login through the form, in a fresh browser-like session."""
    session = requests.Session()
    session.verify, session.trust_env = lab.ca_file, False
    session.get(lab.url + "hub/login", timeout=30).raise_for_status()
    form = {"_xsrf": session.cookies.get("_xsrf", ""), "username": username, "password": password}
    answer = session.post(lab.url + "hub/login", data=form, timeout=30, allow_redirects=False)
    return answer.status_code in (302, 303) and "jupyterhub-session-id" in session.cookies


def test_password_guessing_locks_the_account_for_a_while(lab: Lab) -> None:
    victim, bystander = lab.user("guessed"), lab.user("bystander")
    victim.sign_up()
    bystander.sign_up()
    assert _logs_in(lab, victim.name, victim.password)
    for attempt in range(ALLOWED_FAILED_LOGINS):
        assert not _logs_in(lab, victim.name, f"guess-{attempt}")
    assert not _logs_in(lab, victim.name, victim.password), "the right password must wait out the lockout"
    assert _logs_in(lab, bystander.name, bystander.password), "only the guessed account is locked"
    wait_for(
        f"the account to unlock after {LOCKOUT_SECONDS} s",
        lambda: _logs_in(lab, victim.name, victim.password),
        timeout=LOCKOUT_SECONDS * 4,
        interval=2,
    )
