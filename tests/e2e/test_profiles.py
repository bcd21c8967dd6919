"""Profiles, group folders and the read-only data folder in the e2e lab (tests/e2e/conftest.py):
the spawn form lists the profiles a user may pick, with their descriptions; a profile asked for by
its slug over the REST API gets its limits and environment; a profile the user may not pick is
refused with 403, an unknown one with 400; a group's folder is mounted only into its members'
servers; the data folder is read-only in every server; JupyterLab's memory indicator measures against
the profile's limits; git is there in Lab; idle kernels and terminals are culled; a GPU profile on this machine (no GPU
runtime) fails at once, saying why.

Groups are hub groups an admin manages over the REST API (the lab logs in with
NativeAuthenticator; LDAP groups are tested against a real directory in tests/integration).
"""

from __future__ import annotations

import concurrent.futures
import html
import re
import time
from collections.abc import Iterator

import docker
import pytest

from infra import outputs
from tests.e2e.conftest import GPU_USERS, KERNEL_IDLE_TIMEOUT, Lab
from tests.support.lab_client import LabUser, wait_for

pytestmark = pytest.mark.e2e

STACK = "e2e"
MODELLERS = "modellers"
LARGE = "base-large"


def container(lab: Lab, name: str) -> docker.models.containers.Container:
    return lab.docker.containers.get(f"juvini-{STACK}-user-{name}")


def signed_up(lab: Lab, name: str) -> LabUser:
    user = lab.user(name)
    user.sign_up()
    user.log_in()
    return user


@pytest.fixture(scope="module")
def admin(lab: Lab) -> LabUser:
    """The lab's admin (hub.adminUsers), who manages hub groups over the REST API."""
    return signed_up(lab, "admin")


def join_group(admin: LabUser, group: str, *names: str) -> None:
    created = admin.api("POST", f"hub/api/groups/{group}")
    assert created.status_code in (201, 409), created.text  # 409: made by an earlier test
    added = admin.api("POST", f"hub/api/groups/{group}/users", json={"users": list(names)})
    assert added.status_code == 200, added.text


@pytest.fixture(scope="module")
def modeller(lab: Lab, admin: LabUser) -> LabUser:
    user = signed_up(lab, "modeller")
    join_group(admin, MODELLERS, user.name)
    return user


@pytest.fixture(scope="module")
def outsider(lab: Lab) -> LabUser:
    return signed_up(lab, "outsider")


@pytest.fixture
def stop_after(request: pytest.FixtureRequest) -> Iterator[list[LabUser]]:
    """Users whose servers the test started; stopped at its end, whatever happened."""
    started: list[LabUser] = []
    yield started
    for user in started:
        if user.model().get("servers"):
            user.stop_server()


def spawn_form(user: LabUser) -> str:
    response = user.session.get(user.url("hub/spawn"), timeout=30)
    response.raise_for_status()
    return response.text


def offered(form: str) -> list[str]:
    return re.findall(r'<input[^>]*name="profile"[^>]*value="([a-z0-9-]+)"', form)


def test_the_spawn_form_lists_the_profiles_a_user_may_pick_with_descriptions(
    lab: Lab, modeller: LabUser, outsider: LabUser
) -> None:
    profiles = {profile["slug"]: profile for profile in lab.config["profiles"]}
    form = spawn_form(modeller)
    assert offered(form) == ["datascience", "pyspark", "base", LARGE], form
    for slug in offered(form):
        assert html.escape(profiles[slug]["displayName"]) in form
        assert html.escape(profiles[slug]["description"]) in form
    assert "1.5 CPUs, 1.5 GiB memory" in form
    assert re.search(r'value="datascience"[^>]*checked', form), "the first profile is the default"
    assert offered(spawn_form(outsider)) == ["datascience", "pyspark", "base"]


def test_a_profile_asked_for_by_slug_gets_its_limits_and_environment(
    lab: Lab, modeller: LabUser, stop_after: list[LabUser]
) -> None:
    stop_after.append(modeller)
    events = modeller.start_server_following_progress(profile=LARGE)
    assert events[-1].get("ready"), events
    messages = [event["message"] for event in events]
    assert "Profile: Base, larger (1.5 CPUs, 1.5 GiB memory)" in messages, messages
    server = container(lab, modeller.name)
    assert f"juvini-{STACK}-notebook-base:e2e" in server.image.tags
    host_config = server.attrs["HostConfig"]
    assert host_config["Memory"] == 1536 * 1024**2
    assert host_config["CpuQuota"] / host_config["CpuPeriod"] == 1.5
    assert "LAB_PROFILE=large" in server.attrs["Config"]["Env"]
    assert modeller.run_code("import os; print(os.environ['LAB_PROFILE'])").strip() == "large"
    # JupyterLab's memory and CPU indicator (jupyter-resource-usage) measures against the profile's limits.
    metrics = modeller.server_api("GET", "api/metrics/v1")
    assert metrics.status_code == 200, metrics.text
    limits = metrics.json()["limits"]
    assert limits["memory"]["rss"] == 1536 * 1024**2, limits
    assert limits["cpu"]["cpu"] == 1.5, limits


def test_a_profile_the_user_may_not_pick_is_refused_and_an_unknown_one_too(lab: Lab, outsider: LabUser) -> None:
    refused = outsider.request_server(profile=LARGE)
    assert refused.status_code == 403, refused.text
    message = refused.json()["message"]
    assert message.startswith(
        f"You may not use the profile '{LARGE}' (Base, larger): it is for members of modellers."
    ), message
    assert "Profiles you may use: datascience, pyspark, base." in message
    unknown = outsider.request_server(profile="no-such-profile")
    assert unknown.status_code == 400, unknown.text
    assert unknown.json()["message"] == (
        "There is no profile 'no-such-profile'. Profiles you may use: datascience, pyspark, base."
    )
    assert not outsider.model().get("servers"), "a refused start leaves no server"


def test_a_group_folder_is_mounted_only_into_its_members_servers(
    lab: Lab, modeller: LabUser, outsider: LabUser, stop_after: list[LabUser]
) -> None:
    stop_after.extend([modeller, outsider])
    modeller.start_server(profile="base")
    outsider.start_server(profile="base")
    written = modeller.run_code(
        "from pathlib import Path\n"
        "folder = Path('~/shared-groups/modellers').expanduser()\n"
        "(folder / 'model.txt').write_text('for modellers')\n"
        "print(sorted(p.name for p in folder.parent.iterdir()))\n"
    )
    assert written.strip() == "['modellers']", written
    on_host = lab.path("groupsDir") / MODELLERS / "model.txt"
    assert on_host.read_text(encoding="utf-8") == "for modellers"
    seen = outsider.run_code("from pathlib import Path\nprint(Path('~/shared-groups').expanduser().exists())")
    assert seen.strip() == "False"
    mounts = {mount["Source"] for mount in container(lab, outsider.name).attrs["Mounts"]}
    assert str(lab.path("groupsDir") / MODELLERS) not in mounts
    assert str(lab.path("groupsDir") / "analysts") not in mounts


def test_the_data_folder_is_read_only_in_every_server(lab: Lab, outsider: LabUser, stop_after: list[LabUser]) -> None:
    data = lab.path("dataDir")
    (data / "readme.txt").write_text("reference data\n", encoding="utf-8")
    stop_after.append(outsider)
    outsider.start_server(profile="base")
    output = outsider.run_code(
        "from pathlib import Path\n"
        "data = Path('~/data').expanduser()\n"
        "print(data.joinpath('readme.txt').read_text().strip())\n"
        "try:\n"
        "    data.joinpath('mine.txt').write_text('x')\n"
        "except OSError as error:\n"
        "    print('refused', error.errno)\n"
    )
    assert output.split("\n")[:2] == ["reference data", "refused 30"], output  # 30: EROFS
    assert not (data / "mine.txt").exists()


def test_git_is_there_in_lab_for_the_users_folder(lab: Lab, outsider: LabUser, stop_after: list[LabUser]) -> None:
    """jupyterlab-git's panel is in Lab and its server side runs git on a repository in the user's folder."""
    stop_after.append(outsider)
    outsider.start_server(profile="base")
    page_config = outsider.server_api("GET", "lab")
    assert page_config.status_code == 200, page_config.text[:300]
    assert "@jupyterlab/git" in page_config.text, "the Lab page does not load jupyterlab-git"
    settings = outsider.server_api("GET", "git/settings")
    assert settings.status_code == 200, settings.text
    assert settings.json()["gitVersion"], settings.json()
    outsider.run_code("import subprocess; subprocess.run(['git', 'init', '-q', 'repo'], check=True)")
    outsider.run_code("open('repo/new.txt', 'w').write('hello')")
    status = outsider.server_api("POST", "git/repo/status", json={})
    assert status.status_code == 200, status.text
    assert [entry["to"] for entry in status.json()["files"]] == ["new.txt"], status.json()
    assert (lab.path("usersDir") / outsider.name / "repo" / ".git").is_dir()


def test_an_idle_kernel_and_terminal_are_culled_while_a_kernel_in_use_stays(
    lab: Lab, outsider: LabUser, stop_after: list[LabUser]
) -> None:
    """The e2e lab's servers cull kernels and terminals idle for KERNEL_IDLE_TIMEOUT (spawner.kernelIdleTimeout,
    spawner.terminalIdleTimeout); a kernel running code, its notebook connected, is left alone."""
    stop_after.append(outsider)
    outsider.start_server(profile="base")
    idle_kernel = outsider.server_api("POST", "api/kernels", json={"name": "python3"})
    assert idle_kernel.status_code == 201, idle_kernel.text
    idle_terminal = outsider.server_api("POST", "api/terminals")
    assert idle_terminal.status_code == 200, idle_terminal.text

    def remaining() -> tuple[set[str], set[str]]:
        kernels = {kernel["id"] for kernel in outsider.server_api("GET", "api/kernels").json()}
        terminals = {terminal["name"] for terminal in outsider.server_api("GET", "api/terminals").json()}
        return kernels, terminals

    began = time.monotonic()
    with outsider.kernel() as run:
        # Busy for longer than the idle timeout, and connected all along.
        busy_for = KERNEL_IDLE_TIMEOUT + 20
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            busy = pool.submit(run, f"import time; time.sleep({busy_for}); print('still here')", busy_for + 60)
            wait_for(
                "the idle kernel and terminal to be culled",
                lambda: (
                    idle_kernel.json()["id"] not in remaining()[0]
                    and idle_terminal.json()["name"] not in remaining()[1]
                ),
                timeout=KERNEL_IDLE_TIMEOUT + 60,
                interval=2,
            )
            culled_after = time.monotonic() - began
            assert busy.result().strip() == "still here"
    assert culled_after >= KERNEL_IDLE_TIMEOUT - 2, f"culled after {culled_after:.0f} s, before the timeout"


def test_a_gpu_profile_without_a_gpu_runtime_fails_at_once_saying_so(lab: Lab) -> None:
    user = signed_up(lab, GPU_USERS[0])
    began = time.monotonic()
    response = user.request_server(profile="base-gpu")
    # Within the 10 s the hub waits before answering: the start failed, it did not hang.
    assert response.status_code == 503, response.text
    assert time.monotonic() - began < 10
    why = (
        "The profile Base with a GPU asks for 1 GPU, but the Docker host cannot hand out GPUs "
        '(Docker: could not select device driver "" with capabilities: [[gpu]]). Pick another profile, '
        "or ask an admin to install the host's GPU runtime (e.g. the NVIDIA Container Toolkit)."
    )
    assert response.json()["message"] == why
    # What the spawn page's event stream ends with.
    events = wait_for("the failed start's event", user._progress_events, 30, interval=0.2)
    assert events[-1] == {"progress": 100, "failed": True, "message": f"Spawn failed: {why}"}, events
    wait_for("no server left after the failed start", lambda: not user.model().get("servers"), 60)
    hub_log = lab.docker.containers.get(lab.outputs[outputs.HUB_CONTAINER]).logs(tail=300).decode(errors="replace")
    assert "server of profile base-gpu asks for 1 GPU; Docker refused it: could not select device driver" in hub_log
