"""The swarm as the program declares it, under Pulumi's mocks: every node prepared over its own
SSH connection, the join token a secret that reaches workers on standard input only, steps in
the order that keeps a worker out of the swarm until its storage is checked, and destroy's
reverse order draining a worker before it leaves and is removed."""

from __future__ import annotations

import base64
import json
import shlex
from typing import Any

import pulumi
import pytest

from tests.support.pulumi_mocks import (
    LabMocks,
    ProgramRun,
    RecordingMonitor,
    Registration,
    evaluate_stack,
    start_mocked_stack,
)

pytestmark = pytest.mark.unit

COMMAND = "command:remote:Command"
TOKEN = "SWMTKN-1-mocked-worker-join-token-should-stay-secret"
HOST_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nHOST-KEY-BODY\n-----END OPENSSH PRIVATE KEY-----\n"
WORKER_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nWORKER-2-KEY-BODY\n-----END OPENSSH PRIVATE KEY-----\n"
WORKERS: list[dict[str, Any]] = [
    {"name": "worker-1", "address": "10.0.0.11", "labels": {"zone": "a"}},
    {
        "name": "worker-2",
        "address": "10.0.0.12",
        "sshPort": 2222,
        "sshUser": "ops",
        "useSudo": True,
        "sshPrivateKey": WORKER_KEY,
        "advertiseAddress": "eth1",
    },
]


class SwarmMocks(LabMocks):
    """Lab mocks whose manager hands out a join token, as the real one does."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        resource_id, outputs = super().new_resource(args)
        if args.typ == COMMAND and args.name.endswith("-join-token"):
            outputs["stdout"] = json.dumps({"JoinToken": TOKEN, "RemoteAddrs": ["10.0.0.10:2377"]})
        elif args.typ == COMMAND and args.name.endswith("-join"):
            outputs["stdout"] = f"id-{args.name} joined\n"
        return resource_id, outputs


def config(workers: list[dict[str, Any]] = WORKERS, **swarm: Any) -> dict[str, Any]:
    return {
        "host": {"address": "10.0.0.10", "sshPrivateKey": HOST_KEY},
        "images": {"registry": "registry.example.org/lab", "push": True},
        "swarm": {"enabled": True, "workers": workers, **swarm},
    }


def run(raw: dict[str, Any]) -> ProgramRun:
    from infra.program import main

    mocks = SwarmMocks()
    monitor = RecordingMonitor(mocks)
    start_mocked_stack(mocks, monitor, raw, ["host", "swarm", "images"], "dev")
    result = evaluate_stack(main)
    return ProgramRun(monitor.registrations, result.get("outputs", {}), result.get("secret_outputs", set()))


@pytest.fixture(scope="module")
def swarm() -> ProgramRun:
    return run(config())


def named(program: ProgramRun, name: str) -> Registration:
    return program.named(f"juvini-dev-swarm-{name}")


def test_every_worker_gets_the_host_setup_over_its_own_connection(swarm: ProgramRun) -> None:
    for worker, port, user in (("worker-1", 22, "root"), ("worker-2", 2222, "ops")):
        for step in ("lab-user", "folders"):
            command = named(swarm, f"worker-{worker}-{step}")
            connection = command.inputs["connection"]
            assert (connection["host"], connection["port"], connection["user"]) == (
                WORKERS[int(worker[-1]) - 1]["address"],
                port,
                user,
            ), command
            assert "connection" in command.secret_inputs, command
    manager_user = swarm.named("juvini-dev-host-lab-user")
    assert named(swarm, "worker-worker-1-lab-user").inputs["create"] == manager_user.inputs["create"]


def test_a_worker_uses_its_own_key_or_else_the_hosts(swarm: ProgramRun) -> None:
    assert named(swarm, "worker-worker-1-lab-user").inputs["connection"]["privateKey"] == HOST_KEY.strip()
    assert named(swarm, "worker-worker-2-lab-user").inputs["connection"]["privateKey"] == WORKER_KEY.strip()


def test_sudo_is_each_nodes_own(swarm: ProgramRun) -> None:
    assert named(swarm, "worker-worker-2-folders").inputs["create"].startswith("sudo -n sh -c ")
    assert named(swarm, "worker-worker-2-join").inputs["create"].startswith("sudo -n sh -c ")
    assert named(swarm, "worker-worker-1-join").inputs["create"].startswith("sh -c ")
    assert swarm.named("juvini-dev-host-folders").inputs["create"].startswith("sh -c ")


def test_the_single_host_resources_keep_their_names(swarm: ProgramRun) -> None:
    for name in ("juvini-dev-host-lab-user", "juvini-dev-host-folders"):
        assert swarm.named(name).parent.endswith("::juvini-dev-host"), name


def test_the_join_token_is_a_secret_never_logged(swarm: ProgramRun) -> None:
    token = named(swarm, "join-token")
    assert token.inputs["logging"] == "none", token
    assert token.inputs["addPreviousOutputInEnv"] is False, token
    assert {"stdout", "stderr"} <= set(token.additional_secret_outputs), token
    for worker in ("worker-1", "worker-2"):
        join = named(swarm, f"worker-{worker}-join")
        assert "stdin" in join.secret_inputs, join
        assert json.loads(join.inputs["stdin"])["JoinToken"] == TOKEN, join


def _plain(value: Any, secret: set[str], path: str = "") -> list[str]:
    """Every plain (not secret) string below ``value``."""
    if path in secret:
        return []
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in _plain(item, secret, f"{path}.{key}" if path else key)]
    if isinstance(value, list):
        return [text for index, item in enumerate(value) for text in _plain(item, secret, f"{path}[{index}]")]
    return [str(value)]


def test_the_token_is_on_no_command_line_and_in_no_plain_input_or_output(swarm: ProgramRun) -> None:
    for registration in swarm.registrations:
        for text in _plain(registration.inputs, registration.secret_inputs):
            assert TOKEN not in text, registration
        for key in ("create", "delete", "update"):
            assert TOKEN not in str(registration.inputs.get(key, "")), registration
    assert TOKEN not in json.dumps(swarm.outputs)


def script(registration: Registration, key: str = "create") -> str:
    """The script a command line runs (``[sudo -n] sh -c SCRIPT``)."""
    return shlex.split(registration.inputs[key])[-1]


def depends(program: ProgramRun, name: str, *others: str) -> None:
    registration = named(program, name)
    for other in others:
        assert program.depends_on(registration, named(program, other)), f"{registration} waits for {other}"


def test_a_worker_joins_once_prepared_and_its_storage_checked(swarm: ProgramRun) -> None:
    depends(swarm, "worker-worker-1-storage", "worker-worker-1-folders", "storage-markers")
    assert swarm.depends_on(named(swarm, "storage-markers"), swarm.named("juvini-dev-host-folders"))
    depends(swarm, "worker-worker-1-join", "worker-worker-1-storage", "worker-worker-1-removal", "join-token")
    depends(swarm, "worker-worker-1-node", "worker-worker-1-join")
    depends(swarm, "storage-checked", "worker-worker-1-storage", "worker-worker-2-storage")
    # Its script names no nonce: the nonce is its trigger, so every new check removes its markers.
    (nonce,) = named(swarm, "storage-checked").inputs["triggers"]
    assert f"nonce={nonce}" in script(named(swarm, "storage-markers")).replace("'", "")


def test_the_workers_storage_check_reads_what_the_manager_wrote(swarm: ProgramRun) -> None:
    check = named(swarm, "worker-worker-1-storage")
    assert check.inputs["connection"]["host"] == "10.0.0.11"
    assert "a marker written there by the manager is not seen" in check.inputs["create"]
    markers = named(swarm, "storage-markers")
    assert markers.inputs["connection"]["host"] == "10.0.0.10"


def test_users_network_and_so_the_hub_wait_for_every_node(swarm: ProgramRun) -> None:
    network = swarm.named("juvini-dev-networks-users")
    for node in ("manager-node", "worker-worker-1-node", "worker-worker-2-node"):
        assert swarm.depends_on(network, named(swarm, node)), node
    assert swarm.depends_on(swarm.named("juvini-dev-hub-hub"), named(swarm, "worker-worker-2-node"))


def test_nodes_are_labelled_with_the_stack_and_the_operators_labels(swarm: ProgramRun) -> None:
    create = script(named(swarm, "worker-worker-1-node"))
    assert "--label-add 'juvini.stack=juvini-dev' --label-add 'zone=a'" in create
    assert named(swarm, "worker-worker-1-node").inputs["stdin"] == "id-juvini-dev-swarm-worker-worker-1-join joined\n"


def test_the_join_advertises_the_workers_address(swarm: ProgramRun) -> None:
    assert '\\"AdvertiseAddr\\": \\"10.0.0.11\\"' in script(named(swarm, "worker-worker-1-join"))
    assert '\\"AdvertiseAddr\\": \\"eth1\\"' in script(named(swarm, "worker-worker-2-join"))


def test_adding_a_worker_leaves_the_others_resources_as_they_were(swarm: ProgramRun) -> None:
    third = {"name": "worker-3", "address": "10.0.0.13"}
    grown = run(config([*WORKERS, third]))
    for name in ("worker-1", "worker-2"):
        for step in ("lab-user", "folders", "removal", "join", "node"):
            before, after = named(swarm, f"worker-{name}-{step}"), named(grown, f"worker-{name}-{step}")
            assert before.inputs == after.inputs, after
    assert named(grown, "worker-worker-3-join").inputs["connection"]["host"] == "10.0.0.13"
    # ... but the shared storage is checked again on every node.
    assert named(swarm, "storage-nonce").inputs["keepers"] != named(grown, "storage-nonce").inputs["keepers"]


def test_the_storage_check_is_redone_when_the_folders_change(swarm: ProgramRun) -> None:
    moved = run(config() | {"paths": {"usersDir": "/data/juvini/users"}})
    assert named(swarm, "storage-nonce").inputs["keepers"] != named(moved, "storage-nonce").inputs["keepers"]
    assert "keepers" in named(swarm, "storage-nonce").secret_inputs  # they hold digests of SSH keys


def test_an_existing_swarm_is_checked_and_labelled_never_joined(swarm: ProgramRun) -> None:
    existing = run(config(existing=True))
    names = {registration.name for registration in existing.registrations}
    assert "juvini-dev-swarm-join-token" not in names
    assert not [name for name in names if name.endswith("-removal")]
    join = named(existing, "worker-worker-1-join")
    assert "stdin" not in join.inputs or not join.inputs["stdin"]
    assert "swarm init" not in named(existing, "manager").inputs["create"]
    assert "worker-worker-1-storage" in {name.removeprefix("juvini-dev-swarm-") for name in names}


def test_no_swarm_no_swarm_resources() -> None:
    single = run({"host": {"address": "10.0.0.10", "sshPrivateKey": HOST_KEY}})
    assert not [r for r in single.registrations if "swarm" in r.name]


REGISTRY_PASSWORD = "registry-password-should-stay-secret"


def test_the_images_are_pushed_with_the_registry_login_a_secret() -> None:
    raw = config()
    raw["images"] |= {"registryUsername": "lab-pusher", "registryPassword": REGISTRY_PASSWORD}
    program = run(raw | {"images": raw["images"]})
    images = [item for item in program.registrations if item.type == "docker:index/image:Image"]
    assert images
    for image in images:
        assert image.inputs["skipPush"] is False, image
        assert image.inputs["imageName"].startswith("registry.example.org/lab/"), image
        registry = image.inputs["registry"]
        assert (registry["server"], registry["username"]) == ("registry.example.org", "lab-pusher"), image
        assert registry["password"] == REGISTRY_PASSWORD, image
        assert _plain(image.inputs, image.secret_inputs).count(REGISTRY_PASSWORD) == 0, image
    assert REGISTRY_PASSWORD not in json.dumps(program.outputs)


def test_without_a_login_the_pushes_use_none(swarm: ProgramRun) -> None:
    for image in (item for item in swarm.registrations if item.type == "docker:index/image:Image"):
        assert image.inputs["skipPush"] is False, image
        assert "registry" not in image.inputs, image


REGISTRY_CA = (
    "-----BEGIN CERTIFICATE-----\nMIIBregistryCA\n-----END CERTIFICATE-----\n"  # the settings keep only the PEM blocks
)
PULL_PASSWORD = "pull-password-should-stay-secret"


@pytest.fixture(scope="module")
def private_registry() -> ProgramRun:
    raw = config()
    raw["images"] |= {"registryCa": REGISTRY_CA, "pullUsername": "lab-puller", "pullPassword": PULL_PASSWORD}
    return run(raw)


def test_every_node_trusts_the_registrys_ca_from_stdin_before_it_pushes_or_pulls(private_registry: ProgramRun) -> None:
    manager = private_registry.named("juvini-dev-host-registry-ca")
    assert manager.inputs["stdin"] == REGISTRY_CA
    assert "/etc/docker/certs.d/registry.example.org/juvini-dev.crt" in script(manager)
    assert "/etc/docker/certs.d/registry.example.org/juvini-dev.crt" in script(manager, "delete")
    for image in (item for item in private_registry.registrations if item.type == "docker:index/image:Image"):
        assert private_registry.depends_on(image, manager), f"{image} is pushed once the Docker host trusts the CA"
    for worker in ("worker-1", "worker-2"):
        trust = named(private_registry, f"worker-{worker}-registry-ca")
        assert trust.inputs["stdin"] == REGISTRY_CA
        assert trust.inputs["connection"]["host"] == next(w["address"] for w in WORKERS if w["name"] == worker)
        depends(private_registry, f"worker-{worker}-registry-check", f"worker-{worker}-registry-ca")


def test_every_node_proves_it_can_pull_the_pushed_images_before_the_hub_runs(private_registry: ProgramRun) -> None:
    hub = private_registry.named("juvini-dev-hub-hub")
    notebooks = [
        item
        for item in private_registry.registrations
        if item.type == "docker:index/image:Image" and "-notebook-" in item.inputs["imageName"]
    ]
    assert len(notebooks) == 3
    for node in ("manager", "worker-worker-1", "worker-worker-2"):
        check = named(private_registry, f"{node}-registry-check")
        assert private_registry.depends_on(hub, check), f"the hub waits for {check}"
        assert "GET /distribution/$image/json" in script(check)
        for image in notebooks:
            assert f"'{image.inputs['imageName']}'" in script(check), f"{check} checks {image.name}"
        # Pushed again (a new digest): checked again.
        assert len(check.inputs["triggers"]) == len(notebooks)
    depends(private_registry, "worker-worker-1-registry-check", "worker-worker-1-node")


def test_the_pull_login_reaches_the_checks_on_stdin_and_the_hub_as_secrets(private_registry: ProgramRun) -> None:
    for node in ("manager", "worker-worker-1"):
        check = named(private_registry, f"{node}-registry-check")
        assert "stdin" in check.secret_inputs, check
        login = json.loads(base64.urlsafe_b64decode(check.inputs["stdin"]))
        assert login == {"username": "lab-puller", "password": PULL_PASSWORD, "serveraddress": "registry.example.org"}
    hub = private_registry.named("juvini-dev-hub-hub")
    assert f"JUVINI_REGISTRY_PULL_PASSWORD={PULL_PASSWORD}" in hub.inputs["envs"]
    assert "envs" in hub.secret_inputs
    for registration in private_registry.registrations:
        for text in _plain(registration.inputs, registration.secret_inputs):
            assert PULL_PASSWORD not in text, registration
    assert PULL_PASSWORD not in json.dumps(private_registry.outputs)


def test_without_a_registry_ca_or_pull_login_nothing_is_written_and_the_check_pulls_anonymously(
    swarm: ProgramRun,
) -> None:
    assert not [item for item in swarm.registrations if item.name.endswith("-registry-ca")]
    check = named(swarm, "manager-registry-check")
    assert not check.inputs.get("stdin")
    assert "JUVINI_REGISTRY_PULL" not in json.dumps(swarm.named("juvini-dev-hub-hub").inputs["envs"])


def test_the_hub_gets_the_notebook_images_pinned_to_the_digests_pushed(swarm: ProgramRun) -> None:
    hub = swarm.named("juvini-dev-hub-hub")
    (line,) = [env for env in hub.inputs["envs"] if env.startswith("JUVINI_PINNED_IMAGES=")]
    pinned = json.loads(line.partition("=")[2])
    notebooks = {
        item.inputs["imageName"]: item
        for item in swarm.registrations
        if item.type == "docker:index/image:Image" and "-notebook-" in item.inputs["imageName"]
    }
    assert set(pinned) == set(notebooks)
    for name, reference in pinned.items():
        repository, _, digest = reference.partition("@")
        assert repository == name and len(digest) == len("sha256:") + 64, reference


def test_images_kept_on_one_host_pin_nothing() -> None:
    from infra.images import pinned_references

    assert pinned_references({"lab/base:1": "sha256:0123"}) == {}, "a local image's id is no registry digest"
    assert pinned_references({"lab/base:1": None}) == {}
    digest = "sha256:" + "ab" * 32
    assert pinned_references({"r:5000/lab/base:1": f"r:5000/lab/base@{digest}"}) == {
        "r:5000/lab/base:1": f"r:5000/lab/base:1@{digest}"
    }
