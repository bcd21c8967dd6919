"""The subnet check: a host command before the stack's networks, and its script run for real
against a stub engine (``docker network ls`` / ``inspect`` answered from a JSON file).

The stub answers ``inspect`` only in the program's own format (``LISTING_FORMAT``); that the real
engine answers it alike is tests/integration/test_subnet_check.py's business.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.host import privileged
from infra.naming import Naming
from infra.network import LISTING_FORMAT, subnet_check_script
from infra.settings import Settings, parse_settings
from tests.support.pulumi_mocks import ProgramRun, run_program

pytestmark = pytest.mark.unit

DEV = Naming("juvini", "dev")
COMMAND = "command:remote:Command"
NETWORK = "docker:index/network:Network"
CHECK = "juvini-dev-networks-subnet-check"
SWARM = {"swarm": {"enabled": True}, "images": {"registry": "registry.example.org/lab", "push": True}}

#: ``docker network ls --quiet --no-trunc [--filter label=k=v ...]`` and
#: ``docker network inspect --format LISTING_FORMAT ID...`` from $STUB_STATE/networks.json (a list of
#: {id, name, labels, subnets, vanishing}); a vanishing network is listed, then gone when inspected.
STUB_DOCKER = f"""#!{sys.executable}
import json, os, sys
from pathlib import Path

state = Path(os.environ["STUB_STATE"])
with (state / "calls").open("a") as calls:
    calls.write(" ".join(sys.argv[1:]) + "\\n")
if os.environ.get("STUB_DOWN"):
    sys.exit("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")
database = state / "networks.json"
networks = json.loads(database.read_text())
args = sys.argv[1:]
if args[:4] == ["network", "ls", "--quiet", "--no-trunc"]:
    filters = args[4:]
    assert filters[::2] == ["--filter"] * (len(filters) // 2), args
    assert all(f.startswith("label=") for f in filters[1::2]), args
    wanted = dict(f.removeprefix("label=").split("=", 1) for f in filters[1::2])
    for network in networks:
        if wanted.items() <= network["labels"].items():
            print(network["id"])
elif args[:3] == ["network", "inspect", "--format"]:
    assert args[3] == {LISTING_FORMAT!r}, args[3]
    by_id = {{network["id"]: network for network in networks}}
    failed = False
    for network_id in args[4:]:
        network = by_id.get(network_id)
        if network is None or network["vanishing"]:
            print(f"Error response from daemon: network {{network_id}} not found", file=sys.stderr)
            failed = True
            continue
        print(" ".join([network["id"], network["name"], *network["subnets"]]))
    database.write_text(json.dumps([network for network in networks if not network["vanishing"]]))
    sys.exit(1 if failed else 0)
else:
    sys.exit(f"docker {{' '.join(args)}} is not stubbed")
"""


@dataclass
class Engine:
    """A stub engine's networks; ``check`` runs a stack's subnet check against them."""

    state: Path
    env: dict[str, str]

    def add(self, name: str, *subnets: str, labels: dict[str, str] | None = None, vanishing: bool = False) -> None:
        """A network of the engine; a ``vanishing`` one is removed after it is listed, before it is inspected."""
        path = self.state / "networks.json"
        networks = json.loads(path.read_text())
        network = {"name": name, "labels": labels or {}, "subnets": list(subnets), "vanishing": vanishing}
        networks.append({"id": f"{len(networks):064x}", **network})
        path.write_text(json.dumps(networks))

    def check(self, network: dict[str, Any] | None = None, naming: Naming = DEV, **env: str) -> Result:
        settings = parse_settings({"network": network or {}})
        script = subnet_check_script(settings, naming)
        assert script is not None
        done = subprocess.run(
            ["sh", "-c", privileged(settings, script)],
            capture_output=True,
            text=True,
            env=self.env | env,
            check=False,
            timeout=60,
        )
        return Result(done.returncode, done.stdout, done.stderr)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def passed(self) -> bool:
        return self.returncode == 0


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "docker"
    stub.write_text(STUB_DOCKER, encoding="utf-8")
    stub.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    engine = Engine(
        state, {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "STUB_STATE": str(state), "LC_ALL": "C"}
    )
    (state / "networks.json").write_text("[]")
    # What every engine has: its default bridge, host and none (no subnet).
    engine.add("bridge", "172.17.0.0/16")
    engine.add("host")
    engine.add("none")
    return engine


def refusals(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if " overlaps the Docker network " in line]


# --- the script against the stub engine ----------------------------------------------------------


def test_free_subnets_pass_and_say_so(engine: Engine) -> None:
    engine.add("juvini-other-users-net", "172.16.20.0/22")  # right after the default users' subnet
    result = engine.check()
    assert result.passed, result.stderr
    assert result.stdout == "subnets free on this Docker host: network.usersSubnet 172.16.16.0/22\n"


def test_an_overlapping_network_is_named_with_the_key_its_value_and_a_free_subnet(engine: Engine) -> None:
    engine.add("juvini-other-users-net", "172.16.18.0/24", labels={"org.juvini.stack": "other"})
    result = engine.check()
    assert result.returncode == 1, result.stdout
    assert refusals(result) == [
        "juvini: network.usersSubnet 172.16.16.0/22 overlaps the Docker network juvini-other-users-net "
        "(172.16.18.0/24) on this Docker host: the engine would refuse to make the stack's network "
        '("Pool overlaps with other one on this address space")'
    ]
    assert (
        "pick another network.usersSubnet, e.g. 172.16.20.0/22 (free on this host now): "
        "pulumi config set --path 'juvini:network.usersSubnet' 172.16.20.0/22"
    ) in result.stderr


def test_the_suggestion_skips_taken_subnets_and_the_stacks_other_subnet(engine: Engine) -> None:
    engine.add("other-a", "172.16.16.0/22")
    engine.add("other-b", "172.16.20.0/23")
    result = engine.check({"hubSubnet": "172.16.24.0/24"})
    assert result.returncode == 1
    assert "e.g. 172.16.28.0/22 (free on this host now)" in result.stderr, result.stderr


def test_two_keys_in_the_way_get_two_different_suggestions(engine: Engine) -> None:
    engine.add("other-hub-net", "172.16.32.0/24")
    engine.add("other-users-net", "172.16.33.0/24")
    result = engine.check({"hubSubnet": "172.16.32.0/24", "usersSubnet": "172.16.33.0/24"})
    assert "pick another network.hubSubnet, e.g. 172.16.34.0/24 " in result.stderr, result.stderr
    assert "pick another network.usersSubnet, e.g. 172.16.35.0/24 " in result.stderr, result.stderr


def test_the_suggestion_wraps_around_to_the_start_of_the_16(engine: Engine) -> None:
    engine.add("other", "172.16.252.0/22")
    engine.add("wide", "172.16.0.0/20")
    result = engine.check({"usersSubnet": "172.16.252.0/22"})
    assert "e.g. 172.16.16.0/22 (free on this host now)" in result.stderr, result.stderr


def test_a_subnet_inside_the_engines_pools_gets_one_outside_its_16(engine: Engine) -> None:
    result = engine.check({"hubSubnet": "172.17.5.0/24"})
    assert refusals(result) == [
        "juvini: network.hubSubnet 172.17.5.0/24 overlaps the Docker network bridge (172.17.0.0/16) on this Docker "
        "host: the engine would refuse to make the stack's network "
        '("Pool overlaps with other one on this address space")'
    ]
    assert "e.g. 172.18.0.0/24 (free on this host now)" in result.stderr, result.stderr


def test_without_a_free_subnet_nearby_it_says_what_to_look_for(engine: Engine) -> None:
    engine.add("everything", "172.16.0.0/12")
    result = engine.check()
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "juvini: each stack on one Docker host needs subnets of its own: pick another network.usersSubnet "
        "that overlaps none of the engine's networks (docker network inspect)"
    )


def test_every_clash_of_both_subnets_is_reported_at_once(engine: Engine) -> None:
    engine.add("other-hub-net", "10.30.0.0/24")
    engine.add("other-users-net", "10.31.0.0/24")
    engine.add("overlay", "10.0.0.0/8")
    result = engine.check({"hubSubnet": "10.30.0.0/24", "usersSubnet": "10.31.0.0/24"})
    assert result.returncode == 1
    assert [line.split(" on this")[0] for line in refusals(result)] == [
        "juvini: network.hubSubnet 10.30.0.0/24 overlaps the Docker network other-hub-net (10.30.0.0/24)",
        "juvini: network.hubSubnet 10.30.0.0/24 overlaps the Docker network overlay (10.0.0.0/8)",
        "juvini: network.usersSubnet 10.31.0.0/24 overlaps the Docker network other-users-net (10.31.0.0/24)",
        "juvini: network.usersSubnet 10.31.0.0/24 overlaps the Docker network overlay (10.0.0.0/8)",
    ]


@pytest.mark.parametrize(
    ("subnet", "other"),
    [
        ("172.16.16.0/22", "172.16.16.0/22"),  # the same
        ("172.16.16.0/22", "172.16.19.240/28"),  # inside, at its end
        ("172.16.16.0/22", "172.16.0.0/16"),  # around it
        ("10.0.0.0/28", "10.0.0.0/31"),
    ],
)
def test_overlaps_are_found_whichever_holds_the_other(engine: Engine, subnet: str, other: str) -> None:
    engine.add("other", other)
    assert len(refusals(engine.check({"usersSubnet": subnet}))) == 1


@pytest.mark.parametrize(("subnet", "other"), [("172.16.16.0/22", "172.16.15.240/28"), ("10.0.0.16/28", "10.0.0.0/28")])
def test_neighbours_do_not_overlap(engine: Engine, subnet: str, other: str) -> None:
    engine.add("other", other)
    result = engine.check({"usersSubnet": subnet})
    assert result.passed, result.stderr


def test_the_stacks_own_networks_pass_so_up_passes_again(engine: Engine) -> None:
    engine.add("juvini-dev-users-net", "172.16.16.0/22", labels=DEV.labels("users-net"))
    engine.add("juvini-dev-hub-net", "10.40.0.0/24", labels=DEV.labels("hub-net"))
    result = engine.check({"hubSubnet": "10.40.0.0/24"})
    assert result.passed, result.stderr


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("juvini-dev-users-net", Naming("juvini", "other").labels("users-net")),  # another stack's labels
        ("juvini-dev-users-net", {}),  # not made by a stack
        ("juvini-dev-hub-net", DEV.labels("users-net")),  # the stack's labels, another role's name
        ("juvini-dev-users-net-2", DEV.labels("users-net")),  # the stack's labels, another name
    ],
)
def test_a_network_is_the_stacks_own_only_by_its_name_and_its_labels(
    engine: Engine, name: str, labels: dict[str, str]
) -> None:
    engine.add(name, "172.16.16.0/22", labels=labels)
    assert len(refusals(engine.check())) == 1


def test_another_stack_is_checked_against_this_stacks_networks(engine: Engine) -> None:
    engine.add("juvini-dev-users-net", "172.16.16.0/22", labels=DEV.labels("users-net"))
    result = engine.check(naming=Naming("juvini", "second"))
    assert refusals(result) == [
        "juvini: network.usersSubnet 172.16.16.0/22 overlaps the Docker network juvini-dev-users-net "
        "(172.16.16.0/22) on this Docker host: the engine would refuse to make the stack's network "
        '("Pool overlaps with other one on this address space")'
    ]


def test_ipv6_subnets_are_left_out_on_both_sides(engine: Engine) -> None:
    engine.add("dual-stack", "fd00:10::/64", "10.50.0.0/24")
    result = engine.check({"hubSubnet": "fd00:10::/64"})
    assert result.passed, result.stderr
    assert result.stdout == "subnets free on this Docker host: network.usersSubnet 172.16.16.0/22\n"
    assert len(refusals(engine.check({"usersSubnet": "10.50.0.0/25"}))) == 1


def test_a_network_removed_while_listed_is_listed_again(engine: Engine) -> None:
    engine.add("going", "172.16.16.0/22", vanishing=True)
    result = engine.check()
    assert result.passed, result.stderr
    calls = (engine.state / "calls").read_text().splitlines()
    assert sum(call.startswith("network inspect") for call in calls) == 2, calls


def test_an_unreachable_engine_fails_the_check(engine: Engine) -> None:
    result = engine.check(STUB_DOWN="1")
    assert result.returncode != 0
    assert "Cannot connect to the Docker daemon" in result.stderr
    assert "subnets free" not in result.stdout


def test_the_check_only_reads(engine: Engine) -> None:
    engine.add("other", "172.16.16.0/22")
    engine.check()
    calls = (engine.state / "calls").read_text().splitlines()
    assert {" ".join(call.split()[:2]) for call in calls} == {"network ls", "network inspect"}, calls


# --- the program: a host command before the networks --------------------------------------------


@pytest.fixture(scope="module")
def ssh_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    path.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n")
    return path


def program(ssh_key_file: Path, **sections: Any) -> tuple[ProgramRun, Settings]:
    config = {"host": {"sshPrivateKeyFile": str(ssh_key_file)}, **sections}
    return run_program(config, stack="dev"), parse_settings(config)


@pytest.mark.parametrize(
    "sections", [{}, {"network": {"hubSubnet": "10.40.0.0/24"}}, SWARM], ids=["defaults", "hub-subnet", "swarm"]
)
def test_the_check_runs_over_the_hosts_ssh_before_both_networks(ssh_key_file: Path, sections: dict) -> None:
    run, settings = program(ssh_key_file, **sections)
    check = run.named(CHECK)
    assert run.by_urn[check.parent].type == "juvini:index:Networks", check
    assert check.inputs["connection"] == run.named("juvini-dev-host-lab-user").inputs["connection"], check
    assert "connection" in check.secret_inputs, f"{check} sends its SSH key in plain state"
    assert check.inputs["create"] == privileged(settings, subnet_check_script(settings, DEV) or ""), check
    assert "delete" not in check.inputs, f"{check} has nothing to undo"
    networks = run.of_type(NETWORK)
    assert len(networks) == 2
    for network in networks:
        assert run.depends_on(network, check), f"{network} does not wait for {check}"


@pytest.mark.parametrize(
    ("network", "keys"),
    [
        ({}, ["network.usersSubnet 172.16.16.0/22"]),
        ({"hubSubnet": "10.40.0.0/24"}, ["network.hubSubnet 10.40.0.0/24", "network.usersSubnet 172.16.16.0/22"]),
        ({"usersSubnet": "192.168.77.0/24"}, ["network.usersSubnet 192.168.77.0/24"]),
    ],
)
def test_the_command_carries_each_key_with_its_value(ssh_key_file: Path, network: dict, keys: list[str]) -> None:
    run, _ = program(ssh_key_file, network=network)
    create = run.named(CHECK).inputs["create"]
    for key in keys:
        assert key in create, f"{CHECK} lacks {key}"
    assert ("network.hubSubnet" in create) == ("hubSubnet" in network)


def test_the_check_waits_for_nothing_on_the_host(ssh_key_file: Path) -> None:
    """It changes nothing there, so it runs first: a clash stops `up` before the host is touched."""
    run, _ = program(ssh_key_file)
    check = run.named(CHECK)
    assert not [urn for urn in check.dependencies if urn in run.by_urn], check


def test_without_an_ipv4_subnet_there_is_nothing_to_check(ssh_key_file: Path) -> None:
    run, _ = program(
        ssh_key_file,
        network={"usersSubnet": "fd00:20::/64", "hubSubnet": "fd00:21::/64"},
        security={"networkIsolation": False},
    )
    assert not [r for r in run.of_type(COMMAND) if r.name.endswith("subnet-check")]
    assert len(run.of_type(NETWORK)) == 2
