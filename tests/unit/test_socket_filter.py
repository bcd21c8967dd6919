"""The Docker API filter as the program declares it, and the policy it renders (under Pulumi's mocks).

What the policy does with each call is proven against the real engine in
tests/integration/test_socket_filter.py; here: that the filter sits where it must (the hub has
no Docker socket of its own), and that its policy holds the lab's own facts, from the same
values the hub's jupyterhub_config.py is rendered from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import flavours
from infra.hub_config import hub_config_values
from infra.naming import Naming
from infra.settings import Settings, parse_settings
from infra.socket_filter import (
    CONFIG_DIR,
    ENGINE_SOCKET_DIR,
    FILTERED_SOCKET,
    HAPROXY_CONFIG_PATH,
    HUB_DOCKER_HOST,
    POLICY_CODE,
    POLICY_PATH,
    SOCKET_DIR,
    filter_policy,
    render_haproxy_config,
    render_policy,
)
from tests.support.pulumi_mocks import ProgramRun, Registration, run_program

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FILTER = "juvini-dev-socket-filter-filter"
HUB = "juvini-dev-hub-hub"
NAMING = Naming("juvini", "dev")
IMAGES = {name: NAMING.image(flavours.BY_NAME[name].role, "0.1.0") for name in flavours.NAMES}
LDAP = {"type": "ldap", "ldap": {"serverAddress": "ldap.example.org", "bindDnTemplate": ["uid={username},dc=x"]}}


def dev_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n")
    return {"host": {"address": "127.0.0.1", "sshUser": "root", "sshPrivateKeyFile": str(key)}, **extra}


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> ProgramRun:
    return run_program(dev_config(tmp_path_factory.mktemp("dev")), stack="dev")


def uploaded(container: Registration, path: str) -> str:
    (upload,) = [upload for upload in container.inputs["uploads"] if upload["file"] == path]
    return str(upload["content"])


def settings(**raw: Any) -> Settings:
    return parse_settings(raw)


# --- where the filter sits --------------------------------------------------------------------


def test_the_hub_reaches_docker_only_through_the_filters_socket(dev: ProgramRun) -> None:
    hub = dev.named(HUB)
    sources = {mount["source"] for mount in hub.inputs["mounts"]}
    assert "/var/run/docker.sock" not in sources, f"{hub} mounts the Docker socket"
    (volume_mount,) = [mount for mount in hub.inputs["mounts"] if mount["target"] == SOCKET_DIR]
    assert (volume_mount["type"], volume_mount["source"]) == ("volume", "juvini-dev-docker-api"), hub
    assert f"DOCKER_HOST={HUB_DOCKER_HOST}" in hub.inputs["envs"], hub
    assert FILTERED_SOCKET.startswith(SOCKET_DIR + "/")


def test_the_filter_holds_the_engine_socket_and_shares_its_own_through_a_volume(dev: ProgramRun) -> None:
    container = dev.named(FILTER)
    (volume,) = [r for r in dev.of_type("docker:index/volume:Volume") if r.name == "juvini-dev-socket-filter-socket"]
    assert volume.inputs["name"] == "juvini-dev-docker-api", volume
    mounts = {mount["target"]: (mount["type"], mount["source"]) for mount in container.inputs["mounts"]}
    # The socket's folder, not the socket file: an engine restart makes a new socket file.
    assert mounts == {ENGINE_SOCKET_DIR: ("bind", "/var/run"), SOCKET_DIR: ("volume", "juvini-dev-docker-api")}
    assert container.inputs["name"] == "juvini-dev-socket-filter", container
    assert container.inputs["command"] == ["haproxy", "-W", "-db", "-f", HAPROXY_CONFIG_PATH], container


def test_the_filter_runs_without_capabilities_network_or_privileges_to_gain(dev: ProgramRun) -> None:
    container = dev.named(FILTER)
    assert container.inputs["capabilities"] == {"drops": ["ALL"]}, container
    assert container.inputs["securityOpts"] == ["no-new-privileges:true"], container
    assert container.inputs["networkMode"] == "none", container
    assert container.inputs["restart"] == "unless-stopped", container
    # Its labels are not the users' servers', so the policy refuses every call on it.
    labels = {label["label"]: label["value"] for label in container.inputs["labels"]}
    assert labels["org.juvini.role"] == "socket-filter", container


def test_the_filter_runs_its_own_image_and_starts_before_the_hub(dev: ProgramRun) -> None:
    container = dev.named(FILTER)
    image = dev.named("juvini-dev-images-socket-filter")
    assert image.inputs["build"]["context"].endswith("images/socket-filter"), image
    assert (ROOT / "images" / "socket-filter" / "juvini-docker-policy.lua").is_file()
    assert dev.depends_on(container, image), f"{container} must wait for {image}"
    assert dev.depends_on(dev.named(HUB), container), f"the hub must wait for {container} (and go first on destroy)"


def test_the_filter_is_a_component_of_the_lab(dev: ProgramRun) -> None:
    container = dev.named(FILTER)
    parent = dev.by_urn[container.parent]
    assert parent.type == "juvini:index:SocketFilter", container
    assert dev.by_urn[parent.parent].type == "juvini:index:Lab", parent


def test_haproxy_loads_the_policy_and_binds_the_socket_the_hub_uses(dev: ProgramRun) -> None:
    config = uploaded(dev.named(FILTER), HAPROXY_CONFIG_PATH)
    assert f"lua-load {POLICY_CODE}" in config
    assert f"setenv JUVINI_DOCKER_POLICY {POLICY_PATH}" in config
    assert f"bind unix@{FILTERED_SOCKET} mode 600" in config
    assert f"server engine unix@{ENGINE_SOCKET_DIR}/docker.sock" in config
    # The whole body reaches the policy before it decides, and each verdict is logged.
    assert "option http-buffer-request" in config
    assert "http-request lua.juvini_docker_policy" in config
    assert "var(txn.juvini_verdict)" in config
    assert config == render_haproxy_config(settings(), NAMING)
    dockerfile = (ROOT / "images" / "socket-filter" / "Dockerfile").read_text(encoding="utf-8")
    assert f"COPY juvini-docker-policy.lua {POLICY_CODE}" in dockerfile
    assert f"mkdir -p {CONFIG_DIR}" in dockerfile  # uploads land in an existing folder
    assert {HAPROXY_CONFIG_PATH, POLICY_PATH} == {f"{CONFIG_DIR}/haproxy.cfg", f"{CONFIG_DIR}/policy.json"}


def test_without_the_filter_the_hub_mounts_the_socket_and_nothing_of_the_filter_exists(tmp_path: Path) -> None:
    run = run_program(dev_config(tmp_path, security={"dockerApiFilter": False}), stack="dev")
    assert not run.of_type("juvini:index:SocketFilter")
    assert not [r for r in run.registrations if "socket-filter" in r.name]
    hub = run.named(HUB)
    # The socket's folder (an engine restart makes a new socket file), and DOCKER_HOST pointing into it.
    engine = {"type": "bind", "source": "/var/run", "target": ENGINE_SOCKET_DIR, "readOnly": True}
    assert engine in hub.inputs["mounts"], hub
    assert f"DOCKER_HOST=unix://{ENGINE_SOCKET_DIR}/docker.sock" in hub.inputs["envs"], hub


# --- the policy: the lab's own facts ----------------------------------------------------------


def test_the_uploaded_policy_is_the_rendered_one_for_the_stack(dev: ProgramRun) -> None:
    policy = json.loads(uploaded(dev.named(FILTER), POLICY_PATH))
    assert policy["userLabels"] == {
        "org.juvini.project": "juvini",
        "org.juvini.stack": "dev",
        "org.juvini.role": "user",
    }
    assert policy["namePrefix"] == "juvini-dev-user-"
    assert policy["networks"] == ["juvini-dev-users-net"]
    assert policy["images"] == sorted(IMAGES.values())
    assert policy["engineSocket"] == f"{ENGINE_SOCKET_DIR}/docker.sock"
    assert policy["swarm"] is False


def test_the_policy_takes_each_fact_from_the_hubs_own_configuration() -> None:
    lab = settings(auth=LDAP, paths={"dataDir": "/srv/data", "groupsDir": "/srv/groups"}, folders={"groups": ["a"]})
    values = hub_config_values(lab, NAMING, IMAGES)
    policy = filter_policy(lab, NAMING, IMAGES)
    assert policy["userLabels"] == values["container_labels"]
    assert policy["userShareLabels"] == values["user_share_labels"]
    assert policy["user"] == values["container_user"] == "2100:2100"
    assert policy["namePrefix"] + "{username}" == values["name_template"]
    assert policy["networks"] == [values["users_network"]]
    assert set(values["allowed_images"].values()) <= set(policy["images"])
    assert {profile["image"] for profile in values["profiles"]} <= set(policy["images"])


def test_users_servers_may_bind_the_lab_folders_only() -> None:
    lab = settings(
        auth=LDAP,
        paths={"usersDir": "/lab/users", "sharedDir": "/lab/shared", "dataDir": "/lab/data", "groupsDir": "/lab/g"},
        folders={"groups": ["modellers", "analysts"]},
    )
    folders = {folder["path"]: folder for folder in filter_policy(lab, NAMING, IMAGES)["folders"]}
    assert folders == {
        # Each user's own folder below it, never the folder of all users itself.
        "/lab/users": {"path": "/lab/users", "children": True, "readOnly": False},
        "/lab/shared": {"path": "/lab/shared", "children": False, "readOnly": False},
        # Mounted read-only by the spawner: a writable bind of it is refused.
        "/lab/data": {"path": "/lab/data", "children": False, "readOnly": True},
        "/lab/g/modellers": {"path": "/lab/g/modellers", "children": False, "readOnly": False},
        "/lab/g/analysts": {"path": "/lab/g/analysts", "children": False, "readOnly": False},
    }
    # Not the TLS folder, the hub's state, nor the Docker socket.
    assert not {lab.paths.tls_dir, lab.paths.hub_state_dir, lab.docker_socket} & set(folders)


def test_with_kerberos_the_ticket_folders_and_krb5_conf_may_be_bound() -> None:
    lab = settings(auth=LDAP, kerberos={"enabled": True, "realm": "EXAMPLE.ORG", "kdcs": ["kdc.example.org"]})
    folders = {folder["path"]: folder for folder in filter_policy(lab, NAMING, IMAGES)["folders"]}
    assert folders["/srv/juvini/hub/krb5cc"] == {"path": "/srv/juvini/hub/krb5cc", "children": True, "readOnly": False}
    assert folders["/srv/juvini/hub/krb5.conf"]["readOnly"] is True
    assert "/srv/juvini/hub" not in folders


def test_share_volumes_are_the_labs_cifs_shares() -> None:
    shares = [
        {"name": "team", "unc": "//10.0.0.9/team", "username": "svc", "password": "pw"},
        {"name": "home", "unc": "//10.0.0.9/home", "perUser": True},
    ]
    policy = filter_policy(settings(auth=LDAP, cifs={"shares": shares}), NAMING, IMAGES)
    assert policy["namedVolumes"] == ["juvini-dev-cifs-team"]
    assert policy["userShares"] == ["home"]
    assert policy["userShareDevices"] == ["//10.0.0.9/home"]


def test_added_capabilities_and_no_new_privileges_follow_the_security_settings() -> None:
    default = filter_policy(settings(), NAMING, IMAGES)
    assert (default["capAdd"], default["noNewPrivileges"]) == ([], True)
    loosened = settings(security={"userContainers": {"capAdd": ["SYS_PTRACE"], "noNewPrivileges": False}})
    policy = filter_policy(loosened, NAMING, IMAGES)
    assert (policy["capAdd"], policy["noNewPrivileges"]) == (["SYS_PTRACE"], False)


def test_host_ports_are_the_spark_ranges_on_one_host_and_none_under_swarm() -> None:
    one_host = filter_policy(
        settings(spark={"driverPorts": "12000-12003", "blockManagerPorts": "11100-11103"}), NAMING, IMAGES
    )
    assert one_host["hostPorts"] == [[12000, 12003], [11100, 11103]]
    swarm = filter_policy(
        settings(swarm={"enabled": True}, images={"registry": "registry.example.org/lab", "push": True}), NAMING, IMAGES
    )
    assert (swarm["hostPorts"], swarm["swarm"], swarm["noNewPrivileges"]) == ([], True, False)


def test_the_policy_renders_as_json() -> None:
    assert json.loads(render_policy(settings(), NAMING, IMAGES)) == filter_policy(settings(), NAMING, IMAGES)
