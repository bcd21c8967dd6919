"""The lab as its users and its operator meet it, end to end over HTTPS.

The tests run in file order: the idle user's server is started first so that the
culling test near the end only waits for what is left of the idle timeout, and the
teardown test comes last.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import docker
import pytest
import requests

from infra.flavours import BY_NAME as FLAVOURS
from tests.e2e.conftest import IDLE_TIMEOUT, STACK, Lab
from tests.support.lab_client import LabUser, wait_for

pytestmark = pytest.mark.e2e

LAB_UID = 2100
LAB_GID = 2100


def user_container(lab: Lab, name: str) -> docker.models.containers.Container | None:
    try:
        return lab.docker.containers.get(f"juvini-{STACK}-user-{name}")
    except docker.errors.NotFound:
        return None


@pytest.fixture(scope="module")
def alice(lab: Lab) -> LabUser:
    user = lab.user("alice")
    user.sign_up()
    user.log_in()
    return user


@pytest.fixture
def alice_server(lab: Lab, alice: LabUser) -> Iterator[LabUser]:
    alice.start_server(FLAVOURS["datascience"].display_name)
    yield alice
    if alice.model().get("servers"):
        alice.stop_server()


def test_hub_is_healthy_over_https_verified_by_the_stack_ca(lab: Lab, idle_user: LabUser) -> None:
    response = requests.get(lab.url + "hub/health", verify=lab.ca_file, timeout=10)
    assert response.status_code == 200
    assert lab.url.startswith("https://localhost:")
    # The idle user's server (started by its fixture) is up; the culling test checks on it later.
    assert idle_user.model()["servers"][""]["ready"]


def test_untrusted_clients_and_plain_http_are_refused(lab: Lab) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(lab.url + "hub/health", timeout=10)  # system trust store: the lab CA is not in it
    plain = lab.url.replace("https://", "http://", 1) + "hub/health"
    try:
        response = requests.get(plain, timeout=10, allow_redirects=False)
    except requests.exceptions.ConnectionError:
        return  # the TLS port drops plain HTTP
    assert response.status_code >= 400 or response.headers.get("location", "").startswith("https://"), response


@pytest.mark.parametrize("flavour", ["base", "datascience", "pyspark"])
def test_a_user_picks_each_allowed_image_and_the_server_starts(lab: Lab, alice: LabUser, flavour: str) -> None:
    alice.start_server(FLAVOURS[flavour].display_name)
    try:
        container = user_container(lab, "alice")
        assert container is not None
        assert f"juvini-{STACK}-notebook-{flavour}:e2e" in container.image.tags
        status = alice.server_api("GET", "api/status")
        assert status.status_code == 200, status.text
        config = container.attrs["HostConfig"]
        assert config["Memory"] == 2 * 1024**3
        assert config["CpuQuota"] / config["CpuPeriod"] == 1.0
        assert container.attrs["Config"]["User"] == f"{LAB_UID}:{LAB_GID}"
    finally:
        alice.stop_server()


def test_code_runs_in_a_kernel(alice_server: LabUser) -> None:
    output = alice_server.run_code("import os, numpy\nprint(os.getuid(), os.getgid(), numpy.arange(5).sum())")
    assert output.split() == [str(LAB_UID), str(LAB_GID), "10"]


def test_files_persist_on_the_host_and_the_shared_folder_is_shared(lab: Lab, alice_server: LabUser) -> None:
    alice_server.run_code(
        "from pathlib import Path\n"
        "Path('~/persist.txt').expanduser().write_text('mine')\n"
        "Path('~/shared/from-alice.txt').expanduser().write_text('for everyone')\n"
    )
    private = lab.path("usersDir") / "alice" / "persist.txt"
    shared = lab.path("sharedDir") / "from-alice.txt"
    for path in (private, shared):
        assert path.is_file(), path
        stat = path.stat()
        assert (stat.st_uid, stat.st_gid) == (LAB_UID, LAB_GID), path
    assert private.read_text() == "mine"

    bob = lab.user("bob")
    bob.sign_up()
    bob.log_in()
    bob.start_server(FLAVOURS["base"].display_name)
    try:
        assert bob.run_code("print(open('/home/labuser/shared/from-alice.txt').read())").strip() == "for everyone"
        assert "persist.txt" not in bob.run_code("import os; print(os.listdir('/home/labuser'))")
        # Bob's token does not open Alice's server.
        intrusion = requests.get(
            lab.url + "user/alice/api/contents",
            headers={"Authorization": f"token {bob.token}"},
            verify=lab.ca_file,
            allow_redirects=False,
            timeout=30,
        )
        assert intrusion.status_code in (302, 403, 404), intrusion.status_code
        assert "persist.txt" not in intrusion.text
    finally:
        bob.stop_server()


def test_users_may_pip_install_and_it_persists_in_their_folder(lab: Lab, alice_server: LabUser) -> None:
    output = alice_server.run_code(
        "import subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', 'pyjokes==0.8.3'],"
        " capture_output=True, text=True)\n"
        "print(done.returncode, done.stderr[-500:])\n",
        timeout=300,
    )
    assert output.startswith("0"), output
    assert alice_server.run_code("import pyjokes; print(pyjokes.__name__)").strip() == "pyjokes"
    installed = list((lab.path("usersDir") / "alice" / ".local").rglob("pyjokes/__init__.py"))
    assert installed, "pip install did not land in the user's persistent folder"


def test_stopping_removes_the_container_and_a_new_start_finds_the_files(lab: Lab, alice: LabUser) -> None:
    alice.start_server(FLAVOURS["base"].display_name)
    alice.run_code("open('/home/labuser/kept.txt', 'w').write('still here')")
    alice.stop_server()
    wait_for("alice's container to be removed", lambda: user_container(lab, "alice") is None, timeout=60)
    alice.start_server(FLAVOURS["base"].display_name)
    try:
        assert alice.run_code("print(open('/home/labuser/kept.txt').read())").strip() == "still here"
    finally:
        alice.stop_server()


def test_pyspark_kernel_runs_a_local_job_with_the_configured_driver_memory(alice: LabUser) -> None:
    alice.start_server(FLAVOURS["pyspark"].display_name)
    try:
        kernels = alice.server_api("GET", "api/kernelspecs").json()["kernelspecs"]
        assert {"python3", "pyspark"} <= set(kernels)
        output = alice.run_code(
            "from pyspark.sql import SparkSession\n"
            "spark = SparkSession.builder.master('local[1]').appName('e2e').getOrCreate()\n"
            "print(spark.conf.get('spark.driver.memory'), spark.range(1000).count())\n"
            "spark.stop()\n",
            kernel_name="pyspark",
            timeout=240,
        )
        assert output.split() == ["768m", "1000"]
    finally:
        alice.stop_server()


def test_restarting_the_hub_keeps_running_sessions_routed(lab: Lab, alice_server: LabUser) -> None:
    # A first request lets the server cache Alice's token (it asks the hub once per token).
    assert alice_server.server_api("GET", "api/status").status_code == 200
    hub = lab.docker.containers.get(f"juvini-{STACK}-hub")
    hub.stop(timeout=10)
    try:
        # The hub is down; the proxy still routes Alice to her server.
        status = alice_server.server_api("GET", "api/status")
        assert status.status_code == 200, status.text
        assert requests.get(lab.url + "hub/health", verify=lab.ca_file, timeout=10).status_code != 200
    finally:
        hub.start()
    wait_for(
        "the hub to be back",
        lambda: requests.get(lab.url + "hub/health", verify=lab.ca_file, timeout=5).status_code == 200,
        timeout=120,
    )
    assert alice_server.model()["servers"][""]["ready"]
    assert alice_server.run_code("print(6 * 7)").strip() == "42"


def test_the_idle_culler_stops_an_idle_server(lab: Lab, idle_user: LabUser) -> None:
    started = time.monotonic()
    wait_for("the idle server to be culled", lambda: not idle_user.model().get("servers"), timeout=IDLE_TIMEOUT + 120)
    wait_for("the idle container to be removed", lambda: user_container(lab, "idler") is None, timeout=60)
    assert time.monotonic() - started < IDLE_TIMEOUT + 180


def spark_bindings(container: docker.models.containers.Container) -> dict[int, int]:
    """Published Spark ports of a user's container: container port -> host port."""
    bindings = container.attrs["HostConfig"]["PortBindings"] or {}
    return {int(key.split("/")[0]): int(value[0]["HostPort"]) for key, value in bindings.items() if value}


def test_spark_ports_are_allocated_published_and_released(lab: Lab, alice: LabUser) -> None:
    alice.start_server(FLAVOURS["pyspark"].display_name)
    try:
        container = user_container(lab, "alice")
        assert container is not None
        environment = dict(entry.split("=", 1) for entry in container.attrs["Config"]["Env"])
        driver, block_manager = int(environment["SPARK_DRIVER_PORT"]), int(environment["SPARK_BLOCKMANAGER_PORT"])
        assert 12000 <= driver <= 12003 and 11100 <= block_manager <= 11103
        # Published with the same number on the host, as Spark advertises the port it binds.
        assert spark_bindings(container) == {driver: driver, block_manager: block_manager}
        assert environment["SPARK_DRIVER_HOST"] == "127.0.0.1"
        with alice.kernel("pyspark") as run:
            output = run(
                "from pyspark.sql import SparkSession\n"
                "spark = SparkSession.builder.master('local[1]').getOrCreate()\n"
                "conf = spark.sparkContext.getConf()\n"
                "print(conf.get('spark.driver.port'), conf.get('spark.blockManager.port'),"
                " conf.get('spark.driver.host'), spark.range(10).count())\n",
                240,
            )
            assert output.split() == [str(driver), str(block_manager), "127.0.0.1", "10"]
            # An external cluster calls back to the driver on the host's published port.
            with socket.create_connection(("127.0.0.1", driver), timeout=10):
                pass
    finally:
        alice.stop_server()
    # Released: the freed pair is handed out again.
    alice.start_server(FLAVOURS["pyspark"].display_name)
    try:
        container = user_container(lab, "alice")
        assert container is not None
        assert driver in spark_bindings(container)
    finally:
        alice.stop_server()


def container_environment(container: docker.models.containers.Container) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in container.attrs["Config"]["Env"])


def pairs_in_use(lab: Lab) -> int:
    """Pairs of the e2e ranges held by running servers of any lab on the host (they share host ports)."""
    running = lab.docker.containers.list(filters={"label": ["org.juvini.spark-driver-port"]})
    return sum(1 for container in running if set(spark_bindings(container)) & set(range(12000, 12004)))


def test_servers_of_images_without_spark_take_no_spark_ports(lab: Lab) -> None:
    """More base servers than the 4 Spark port pairs start (the 12th of 20 users used to get 503)."""
    started: list[LabUser] = []
    try:
        for index in range(5):
            user = lab.user(f"plain{index}")
            user.sign_up()
            user.log_in()
            user.start_server(FLAVOURS["base"].display_name)
            started.append(user)
            container = user_container(lab, user.name)
            assert container is not None
            assert not spark_bindings(container)
            assert not {"SPARK_DRIVER_PORT", "JUVINI_SPARK_WARNING"} & set(container_environment(container))
    finally:
        for user in started:
            user.stop_server()


def test_when_spark_ports_run_out_a_pyspark_server_starts_for_local_spark_and_says_why(lab: Lab) -> None:
    """The spawn page's progress shows each step; past the 4 pairs a PySpark server starts without
    one, and says why in its environment, in the progress and in the PySpark kernel's first cell.
    (The refusal with spark.requirePorts is tested in tests/unit/test_hub_spawner.py.)"""
    started: list[LabUser] = []
    try:
        free = 4 - pairs_in_use(lab)
        for index in range(free + 1):
            user = lab.user(f"sparky{index}")
            user.sign_up()
            user.log_in()
            events = user.start_server_following_progress(FLAVOURS["pyspark"].display_name)
            started.append(user)
            assert events[-1].get("ready"), events
            messages = [event["message"] for event in events]
            assert messages[0] == "Server requested", messages
            assert any(message.startswith("Server answering after") for message in messages), messages
            container = user_container(lab, user.name)
            assert container is not None
            environment = container_environment(container)
            if index < free:
                assert spark_bindings(container), f"{user.name} got no pair with {free - index} free"
                assert "JUVINI_SPARK_WARNING" not in environment
                assert any(message.startswith("Spark ports: driver ") for message in messages), messages
                continue
            # No pair left: local Spark only.
            assert not spark_bindings(container)
            assert "SPARK_DRIVER_PORT" not in environment
            warning = environment["JUVINI_SPARK_WARNING"]
            assert warning.startswith("All 4 Spark port pairs of this lab are in use"), warning
            assert f"Warning: {warning}" in messages, messages
            streams = user.run_code_streams(
                "from pyspark.sql import SparkSession\n"
                "spark = SparkSession.builder.master('local[1]').getOrCreate()\n"
                "print(spark.range(10).count())\n",
                kernel_name="pyspark",
                timeout=240,
            )
            assert streams["stdout"].split() == ["10"], streams
            assert f"Juvini: {warning}" in streams["stderr"], streams
        assert pairs_in_use(lab) == 4
    finally:
        for user in started:
            user.stop_server()
