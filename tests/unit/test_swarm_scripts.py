"""The swarm scripts: parsed by sh and shellcheck, and run for real against a stub swarm engine.

The stub ``docker`` answers from a JSON state file as the engine would (``docker info``,
``swarm init``/``join-token``/``leave``, ``node inspect``/``update``/``ps``/``rm``/``ls``,
``service ls``) and logs every command line it gets. A worker's join goes to the engine's API
over a unix socket: here a small HTTP server on a socket in the test's folder, which records the
request body and joins the stub's swarm. So the join token can be followed: it must reach the
engine, and never a command line or an output.
"""

from __future__ import annotations

import json
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from infra.host import Node
from infra.naming import Naming
from infra.settings import Settings, parse_settings
from infra.swarm import (
    join_scripts,
    join_token_script,
    manager_scripts,
    node_labels,
    node_removal_script,
    node_scripts,
    storage_scripts,
)

pytestmark = pytest.mark.unit

SHELLCHECK = shutil.which("shellcheck")
STACK = Naming("juvini", "dev")
TOKEN = "SWMTKN-1-unit-test-secret-token-0123456789abcdef"
REGISTRY = {"registry": "registry.example.org/lab", "push": True}
WORKERS = [
    {"name": "worker-1", "address": "10.0.0.11", "labels": {"zone": "a b"}},
    {"name": "worker-2", "address": "10.0.0.12"},
]


def swarm_settings(tmp: Path | None = None, **swarm: Any) -> Settings:
    raw: dict[str, Any] = {
        "host": {"address": "10.0.0.10"},
        "images": REGISTRY,
        "swarm": {"enabled": True, "workers": WORKERS, **swarm},
    }
    if tmp is not None:
        raw["paths"] = {
            "sharedDir": str(tmp / "shared"),
            "usersDir": str(tmp / "users"),
            "hubStateDir": str(tmp / "hub"),
            "tlsDir": str(tmp / "tls"),
            "dataDir": str(tmp / "data"),
        }
        raw["dockerSocket"] = str(tmp / "docker.sock")
    return parse_settings(raw)


def worker_node(settings: Settings, index: int = 0) -> Node:
    return Node.of_worker(settings, settings.swarm.workers[index])


def every_script(settings: Settings) -> dict[str, str]:
    node = worker_node(settings)
    manager, manager_delete = manager_scripts(settings, STACK)
    join, join_delete = join_scripts(settings, STACK, node, "10.0.0.11")
    join_auto, _ = join_scripts(settings, STACK, node, None)
    labels = node_labels(STACK, {"zone": "a b"})
    node_create, node_delete = node_scripts(STACK, node, labels)
    storage = storage_scripts(settings, STACK, "0123456789abcdef", node)
    return {
        "manager": manager,
        "manager-delete": manager_delete,
        "join-token": join_token_script(),
        "join": join,
        "join-delete": join_delete,
        "join-docker-picks-the-address": join_auto,
        "node": node_create,
        "node-delete": node_delete,
        "node-removal": node_removal_script(STACK, node),
        **{f"storage-{name}": script for name, script in storage.items()},
    }


VARIANTS: dict[str, dict[str, Any]] = {
    "joined-by-the-stack": {},
    "existing-swarm": {"existing": True},
    "no-advertise-address": {"manager": {"advertiseAddress": "eth0"}},
}
CASES = [(variant, name) for variant, raw in VARIANTS.items() for name in every_script(swarm_settings(**raw))]


@pytest.mark.parametrize(("variant", "name"), CASES, ids=[f"{v}-{n}" for v, n in CASES])
def test_script_parses_with_sh(variant: str, name: str, tmp_path: Path) -> None:
    path = tmp_path / "script.sh"
    path.write_text(every_script(swarm_settings(**VARIANTS[variant]))[name], encoding="utf-8")
    result = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed")
@pytest.mark.parametrize(("variant", "name"), CASES, ids=[f"{v}-{n}" for v, n in CASES])
def test_script_passes_shellcheck(variant: str, name: str) -> None:
    script = every_script(swarm_settings(**VARIANTS[variant]))[name]
    result = subprocess.run(
        [SHELLCHECK or "shellcheck", "-s", "sh", "-"], input=script, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_existing_swarm_is_never_initialised_joined_or_left() -> None:
    scripts = every_script(swarm_settings(existing=True))
    for name in ("manager", "manager-delete", "join", "join-delete"):
        assert "swarm init" not in scripts[name], name
        assert "swarm leave" not in scripts[name], name
        assert "/swarm/join" not in scripts[name], name


# --- a stub swarm engine -------------------------------------------------------------------

STUB_DOCKER = r'''#!@PYTHON@
"""A stub `docker` CLI over a JSON state file (see test_swarm_scripts.py)."""
import json, os, sys

path = os.environ["STUB_STATE"]
state = json.load(open(path))
args = sys.argv[1:]
with open(os.environ["STUB_CALLS"], "a") as log:
    log.write(" ".join(args) + "\n")


def save():
    with open(path, "w") as f:
        json.dump(state, f)


def option(name, default=None):
    return args[args.index(name) + 1] if name in args else default


def node(node_id):
    if node_id not in state["nodes"]:
        print(f"Error response from daemon: node {node_id} not found", file=sys.stderr)
        sys.exit(1)
    return state["nodes"][node_id]


if args[0] == "info":
    fmt = option("--format")
    if "RemoteManagers" in fmt:
        print("".join(f'"{address}" ' for address in state["remote_managers"]))
    elif "ControlAvailable" in fmt and "LocalNodeState" in fmt:
        print(f"{state['state']} {'true' if state['manager'] else 'false'}")
    elif "ControlAvailable" in fmt:
        print("true" if state["manager"] else "false")
    elif "LocalNodeState" in fmt:
        print(state["state"])
    elif "NodeID" in fmt:
        print(state["node_id"] if state["state"] == "active" else "")
    else:
        sys.exit(f"info format {fmt} not stubbed")
elif args[:2] == ["swarm", "init"]:
    state.update(state="active", manager=True, init_args=args[2:])
    state["nodes"][state["node_id"]] = {"state": "ready", "availability": "active", "labels": {}}
    save()
    print("Swarm initialized: current node (%s) is now a manager." % state["node_id"])
    print("To add a worker to this swarm, run the following command:")
    print(f"    docker swarm join --token {state['token']} 10.0.0.10:2377")
elif args[:2] == ["swarm", "join-token"]:
    print(state["token"])
elif args[:2] == ["swarm", "leave"]:
    state.update(state="inactive", manager=False, left=True)
    save()
elif args[:2] == ["node", "inspect"]:
    fmt, node_id = option("--format", ""), args[-1]
    found = node(node_id)
    if "Status.State" in fmt:
        print(found["state"])
    elif "Availability" in fmt:
        print(found["availability"])
    else:
        print(json.dumps(found))
elif args[:2] == ["node", "update"]:
    found = node(args[-1])
    rest = args[2:-1]
    while rest:
        flag, value, rest = rest[0], rest[1], rest[2:]
        if flag == "--label-add":
            key, _, label = value.partition("=")
            found["labels"][key] = label
        elif flag == "--label-rm":
            found["labels"].pop(value)
        elif flag == "--availability":
            found["availability"] = value
            if value == "drain":
                found["stopping_polls"] = found.get("stop_after_polls", 0)
    save()
elif args[:2] == ["node", "ps"]:
    found = node(args[2])
    if found["availability"] == "drain":
        if found.get("stopping_polls", 0) <= 0 and found.get("stops", True):
            found["tasks"] = [[name, "Shutdown 1 second ago"] for name, _ in found.get("tasks", [])]
        found["stopping_polls"] = found.get("stopping_polls", 0) - 1
        save()
    for name, current in found.get("tasks", []):
        print(f"{name} {current}")
elif args[:2] == ["node", "rm"]:
    node(args[-1])
    del state["nodes"][args[-1]]
    save()
elif args[:2] == ["node", "ls"]:
    for node_id in state["nodes"]:
        print(node_id)
elif args[:2] == ["service", "ls"]:
    for service in state.get("services", []):
        print(service)
else:
    sys.exit("docker " + " ".join(args) + " is not stubbed")
'''


class JoinEndpoint(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The engine's API on its unix socket: POST /swarm/join joins the stub's swarm."""

    daemon_threads = True

    def __init__(self, socket_path: Path, engine: Engine) -> None:
        self.engine = engine
        super().__init__(str(socket_path), JoinHandler)


class JoinHandler(BaseHTTPRequestHandler):
    server: JoinEndpoint

    def address_string(self) -> str:  # a unix socket has no client address
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        engine = self.server.engine
        engine.join_requests.append((self.path, json.loads(body)))
        if engine.refuse_join:
            answer, status = b'{"message": "rpc error: code = InvalidArgument desc = invalid join token"}', 400
        else:
            state = engine.state()
            state.update(state="active", manager=False)
            engine.save(state)
            answer, status = b"", 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@dataclass
class Engine:
    """A stub swarm engine: state, command log, and its API socket."""

    root: Path
    join_requests: list[tuple[str, dict[str, Any]]]
    refuse_join: bool = False

    @property
    def markers(self) -> str:
        return str(self.root / "etc" / "juvini-swarm")

    def state(self) -> dict[str, Any]:
        return json.loads((self.root / "state.json").read_text())

    def save(self, state: dict[str, Any]) -> None:
        (self.root / "state.json").write_text(json.dumps(state))

    def set(self, **values: Any) -> None:
        self.save(self.state() | values)

    def calls(self) -> list[str]:
        log = self.root / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def run(self, script: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        env = os.environ | {
            "PATH": f"{self.root / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "STUB_STATE": str(self.root / "state.json"),
            "STUB_CALLS": str(self.root / "calls.log"),
        }
        return subprocess.run(["sh", "-c", script], input=stdin, env=env, capture_output=True, text=True, check=False)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    (tmp_path / "bin").mkdir()
    docker = tmp_path / "bin" / "docker"
    docker.write_text(STUB_DOCKER.replace("@PYTHON@", sys.executable))
    docker.chmod(0o755)
    found = Engine(tmp_path, [])
    found.save(
        {
            "state": "inactive",
            "manager": False,
            "node_id": "nodeid-self",
            "token": TOKEN,
            "nodes": {},
            "remote_managers": ["10.0.0.10:2377"],
        }
    )
    server = JoinEndpoint(tmp_path / "docker.sock", found)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# --- the manager ---------------------------------------------------------------------------


def test_the_manager_is_initialised_once_and_its_output_holds_no_token(engine: Engine, tmp_path: Path) -> None:
    create, _ = manager_scripts(swarm_settings(tmp_path), STACK, marker_dir=engine.markers)
    result = engine.run(create)
    assert ok(result) == "nodeid-self initialised\n"
    assert TOKEN not in result.stdout + result.stderr
    assert engine.state()["init_args"] == ["--advertise-addr", "10.0.0.10"]
    assert Path(engine.markers, ".initialised-by-juvini").exists()
    assert Path(engine.markers, "stacks", STACK.prefix).exists()
    again = engine.run(create)
    assert ok(again) == "nodeid-self manager\n"
    assert sum(call.startswith("swarm init") for call in engine.calls()) == 1


def test_a_manager_the_stack_did_not_make_is_kept_on_destroy(engine: Engine, tmp_path: Path) -> None:
    engine.set(state="active", manager=True, nodes={"nodeid-self": {"state": "ready", "availability": "active"}})
    create, delete = manager_scripts(swarm_settings(tmp_path), STACK, marker_dir=engine.markers)
    assert ok(engine.run(create)) == "nodeid-self manager\n"
    assert not Path(engine.markers, ".initialised-by-juvini").exists()
    assert "this stack did not initialise it" in ok(engine.run(delete))
    assert engine.state()["state"] == "active"


def test_a_swarm_the_stack_made_is_left_on_destroy_unless_others_use_it(engine: Engine, tmp_path: Path) -> None:
    settings = swarm_settings(tmp_path)
    create, delete = manager_scripts(settings, STACK, marker_dir=engine.markers)
    other_create, other_delete = manager_scripts(settings, Naming("juvini", "other"), marker_dir=engine.markers)
    ok(engine.run(create))
    ok(engine.run(other_create))
    assert "other stacks rely on it: juvini-other" in ok(engine.run(delete))
    assert engine.state()["state"] == "active"
    engine.set(services=["svc-of-someone"])
    assert "1 service(s) are still in it" in ok(engine.run(other_delete))
    assert engine.state()["state"] == "active"
    engine.set(services=[])
    ok(engine.run(other_create))
    assert "left (this stack had initialised it)" in ok(engine.run(other_delete))
    assert engine.state()["state"] == "inactive"
    assert not Path(engine.markers).exists()


@pytest.mark.parametrize(
    ("state", "existing", "message"),
    [
        ("active false", False, "this engine is a worker of another swarm, not a manager"),
        ("inactive false", True, "this engine is in no swarm, and swarm.existing is true"),
        ("locked false", False, "the engine's swarm state is 'locked false'"),
    ],
)
def test_a_manager_that_cannot_be_is_refused_naming_it(
    engine: Engine, tmp_path: Path, state: str, existing: bool, message: str
) -> None:
    local, manager = state.split()
    engine.set(state=local, manager=manager == "true")
    create, _ = manager_scripts(swarm_settings(tmp_path, existing=existing), STACK, marker_dir=engine.markers)
    result = engine.run(create)
    assert result.returncode != 0
    assert "swarm manager manager (10.0.0.10): " + message in result.stderr
    assert not any(call.startswith("swarm init") for call in engine.calls())


def test_the_join_request_holds_the_token_and_the_managers_addresses(engine: Engine) -> None:
    engine.set(state="active", manager=True, remote_managers=["10.0.0.10:2377", "10.0.0.20:2377"])
    result = engine.run(join_token_script())
    assert json.loads(ok(result)) == {"JoinToken": TOKEN, "RemoteAddrs": ["10.0.0.10:2377", "10.0.0.20:2377"]}


# --- a worker joining and leaving ----------------------------------------------------------


def join_request() -> str:
    return json.dumps({"JoinToken": TOKEN, "RemoteAddrs": ["10.0.0.10:2377"]}) + "\n"


def test_a_worker_joins_through_the_engine_api_with_the_token_on_no_command_line(
    engine: Engine, tmp_path: Path
) -> None:
    settings = swarm_settings(tmp_path)
    create, _ = join_scripts(settings, STACK, worker_node(settings), "10.0.0.11", marker_dir=engine.markers)
    assert TOKEN not in create
    result = engine.run(create, stdin=join_request())
    assert ok(result) == "nodeid-self joined\n"
    assert engine.join_requests == [
        (
            "/swarm/join",
            {
                "ListenAddr": "0.0.0.0:2377",
                "AdvertiseAddr": "10.0.0.11",
                "JoinToken": TOKEN,
                "RemoteAddrs": ["10.0.0.10:2377"],
            },
        )
    ]
    assert not any(TOKEN in call for call in engine.calls()), engine.calls()
    assert TOKEN not in result.stdout + result.stderr


def test_a_worker_without_an_advertise_address_lets_docker_pick(engine: Engine, tmp_path: Path) -> None:
    settings = swarm_settings(tmp_path)
    create, _ = join_scripts(settings, STACK, worker_node(settings), None, marker_dir=engine.markers)
    ok(engine.run(create, stdin=join_request()))
    assert "AdvertiseAddr" not in engine.join_requests[0][1]


def test_a_refused_join_fails_naming_the_node_and_why(engine: Engine, tmp_path: Path) -> None:
    engine.refuse_join = True
    settings = swarm_settings(tmp_path)
    create, _ = join_scripts(settings, STACK, worker_node(settings), "10.0.0.11", marker_dir=engine.markers)
    result = engine.run(create, stdin=join_request())
    assert result.returncode != 0
    assert "the engine refused to join the swarm: rpc error: code = InvalidArgument desc = invalid join token" in (
        result.stderr
    )
    assert "swarm node worker-1 (10.0.0.11): could not join the swarm" in result.stderr
    assert TOKEN not in result.stdout + result.stderr


def test_a_worker_already_in_the_swarm_is_a_member_and_never_leaves(engine: Engine, tmp_path: Path) -> None:
    engine.set(state="active")
    settings = swarm_settings(tmp_path)
    create, delete = join_scripts(settings, STACK, worker_node(settings), "10.0.0.11", marker_dir=engine.markers)
    assert ok(engine.run(create, stdin=join_request())) == "nodeid-self member\n"
    assert engine.join_requests == []
    assert "not joined by this stack" in ok(engine.run(delete))
    assert engine.state()["state"] == "active"


def test_a_worker_the_stack_joined_stays_joined_on_a_rerun_and_leaves_on_delete(engine: Engine, tmp_path: Path) -> None:
    settings = swarm_settings(tmp_path)
    create, delete = join_scripts(settings, STACK, worker_node(settings), "10.0.0.11", marker_dir=engine.markers)
    ok(engine.run(create, stdin=join_request()))
    assert ok(engine.run(create, stdin=join_request())) == "nodeid-self joined\n"
    assert len(engine.join_requests) == 1
    assert "left the swarm" in ok(engine.run(delete))
    assert engine.state()["state"] == "inactive"
    assert not Path(engine.markers).exists()


def test_a_manager_listed_as_a_worker_is_refused(engine: Engine, tmp_path: Path) -> None:
    engine.set(state="active", manager=True)
    settings = swarm_settings(tmp_path)
    create, _ = join_scripts(settings, STACK, worker_node(settings), "10.0.0.11", marker_dir=engine.markers)
    result = engine.run(create, stdin=join_request())
    assert result.returncode != 0
    assert "swarm node worker-1 (10.0.0.11): this engine is a swarm manager" in result.stderr


def test_an_existing_swarm_finds_the_worker_and_refuses_one_outside_it(engine: Engine, tmp_path: Path) -> None:
    settings = swarm_settings(tmp_path, existing=True)
    create, _ = join_scripts(settings, STACK, worker_node(settings), "10.0.0.11", marker_dir=engine.markers)
    refused = engine.run(create)
    assert refused.returncode != 0
    assert "swarm node worker-1 (10.0.0.11): this engine is in no swarm, and swarm.existing is true" in refused.stderr
    engine.set(state="active")
    assert ok(engine.run(create)) == "nodeid-self member\n"


# --- nodes from the manager: Ready, labels, drain, removal ---------------------------------


def worker_in_swarm(engine: Engine, **node: Any) -> None:
    engine.set(
        state="active",
        manager=True,
        nodes={"nodeid-w1": {"state": "ready", "availability": "active", "labels": {}} | node},
    )


def labels(engine: Engine) -> dict[str, str]:
    result: dict[str, str] = engine.state()["nodes"]["nodeid-w1"]["labels"]
    return result


def test_a_ready_node_gets_the_stacks_and_the_operators_labels(engine: Engine, tmp_path: Path) -> None:
    worker_in_swarm(engine)
    settings = swarm_settings(tmp_path)
    create, _ = node_scripts(
        STACK, worker_node(settings), node_labels(STACK, {"zone": "a b"}), marker_dir=engine.markers
    )
    assert ok(engine.run(create, stdin="nodeid-w1 joined\n")) == "nodeid-w1 joined\n"
    assert labels(engine) == {"juvini.stack": "juvini-dev", "zone": "a b"}


def test_labels_the_stack_no_longer_wants_are_removed_and_others_kept(engine: Engine, tmp_path: Path) -> None:
    worker_in_swarm(engine, labels={"operators.own": "x"})
    node = worker_node(swarm_settings(tmp_path))
    first, _ = node_scripts(STACK, node, node_labels(STACK, {"zone": "a", "gpu": "no"}), marker_dir=engine.markers)
    second, _ = node_scripts(STACK, node, node_labels(STACK, {"zone": "b"}), marker_dir=engine.markers)
    ok(engine.run(first, stdin="nodeid-w1 member\n"))
    ok(engine.run(second, stdin="nodeid-w1 member\n"))
    assert labels(engine) == {"operators.own": "x", "juvini.stack": "juvini-dev", "zone": "b"}


def test_a_node_that_is_not_ready_fails_naming_it(engine: Engine, tmp_path: Path) -> None:
    worker_in_swarm(engine, state="down")
    create, _ = node_scripts(
        STACK,
        worker_node(swarm_settings(tmp_path)),
        node_labels(STACK, {}),
        marker_dir=engine.markers,
        deadline_seconds=1,
    )
    result = engine.run(create, stdin="nodeid-w1 joined\n")
    assert result.returncode != 0
    assert "swarm node worker-1 (10.0.0.11): node nodeid-w1 is 'down', not Ready, after 1s" in result.stderr


def test_a_joined_node_is_drained_until_its_tasks_are_gone_then_left_then_removed(
    engine: Engine, tmp_path: Path
) -> None:
    worker_in_swarm(engine, tasks=[["jupyter-alice.1", "Running 2 minutes ago"]], stop_after_polls=2)
    settings = swarm_settings(tmp_path)
    node = worker_node(settings)
    create, delete = node_scripts(STACK, node, node_labels(STACK, {}), marker_dir=engine.markers)
    ok(engine.run(create, stdin="nodeid-w1 joined\n"))
    assert "drained" in ok(engine.run(delete))
    found = engine.state()["nodes"]["nodeid-w1"]
    assert found["availability"] == "drain"
    assert found["tasks"] == [["jupyter-alice.1", "Shutdown 1 second ago"]]
    assert sum(call.startswith("node ps nodeid-w1") for call in engine.calls()) >= 3
    # The worker leaves (its join's delete), the manager sees it down, then removes it.
    engine.set(nodes={"nodeid-w1": found | {"state": "down"}})
    assert "nodeid-w1 removed from the swarm" in ok(engine.run(node_removal_script(STACK, node, engine.markers)))
    assert engine.state()["nodes"] == {}
    assert not Path(engine.markers, "nodes", STACK.prefix).exists()


def test_a_drain_whose_tasks_do_not_stop_fails_by_its_deadline_naming_them(engine: Engine, tmp_path: Path) -> None:
    worker_in_swarm(engine, tasks=[["jupyter-bob.1", "Running 1 minute ago"]], stops=False)
    node = worker_node(swarm_settings(tmp_path))
    create, delete = node_scripts(
        STACK, node, node_labels(STACK, {}), marker_dir=engine.markers, drain_deadline_seconds=1
    )
    ok(engine.run(create, stdin="nodeid-w1 joined\n"))
    result = engine.run(delete)
    assert result.returncode != 0
    assert "swarm node worker-1 (10.0.0.11) still runs tasks 1s after it was drained: jupyter-bob.1" in result.stderr


def test_a_joined_node_that_is_down_is_drained_without_waiting_for_its_tasks(engine: Engine, tmp_path: Path) -> None:
    # Its host died: the swarm never hears its tasks stop, so waiting would only run out the deadline.
    worker_in_swarm(engine, tasks=[["jupyter-carol.1", "Running 3 minutes ago"]], stops=False)
    node = worker_node(swarm_settings(tmp_path))
    create, delete = node_scripts(STACK, node, node_labels(STACK, {}), marker_dir=engine.markers)
    ok(engine.run(create, stdin="nodeid-w1 joined\n"))
    engine.set(nodes={"nodeid-w1": engine.state()["nodes"]["nodeid-w1"] | {"state": "down"}})
    assert "down, drained without waiting for its tasks" in ok(engine.run(delete))
    assert engine.state()["nodes"]["nodeid-w1"]["availability"] == "drain"
    assert not any(call.startswith("node ps") for call in engine.calls())


def test_a_node_the_stack_did_not_join_only_loses_its_labels(engine: Engine, tmp_path: Path) -> None:
    worker_in_swarm(engine, labels={"operators.own": "x"}, tasks=[["other.1", "Running 1 minute ago"]])
    node = worker_node(swarm_settings(tmp_path))
    create, delete = node_scripts(STACK, node, node_labels(STACK, {"zone": "a"}), marker_dir=engine.markers)
    ok(engine.run(create, stdin="nodeid-w1 member\n"))
    assert "the node stays in the swarm" in ok(engine.run(delete))
    assert "nothing to remove" in ok(engine.run(node_removal_script(STACK, node, engine.markers)))
    found = engine.state()["nodes"]["nodeid-w1"]
    assert found["labels"] == {"operators.own": "x"} and found["availability"] == "active"
    assert not any(call.startswith(("node rm", "node update --availability")) for call in engine.calls())


def test_a_removal_waits_for_the_node_to_be_down_by_a_deadline(engine: Engine, tmp_path: Path) -> None:
    worker_in_swarm(engine)
    node = worker_node(swarm_settings(tmp_path))
    create, _ = node_scripts(STACK, node, node_labels(STACK, {}), marker_dir=engine.markers)
    ok(engine.run(create, stdin="nodeid-w1 joined\n"))
    result = engine.run(node_removal_script(STACK, node, engine.markers, deadline_seconds=1))
    assert result.returncode != 0
    assert "is not down 1s after leaving the swarm; remove it with: docker node rm --force nodeid-w1" in result.stderr


# --- the shared-storage contract -----------------------------------------------------------


@dataclass
class Storage:
    """The manager's folders, and a worker that sees them (shared) or folders of its own."""

    settings: Settings
    scripts: dict[str, str]

    def run(self, name: str, stdin: str = "", root: Path | None = None) -> subprocess.CompletedProcess[str]:
        script = self.scripts[name]
        if root is not None:  # the worker's own disk: the same paths there, other folders (here, other paths)
            script = script.replace(str(root / "manager"), str(root / "worker"))
            stdin = stdin.replace(str(root / "manager"), str(root / "worker"))
        return subprocess.run(["sh", "-c", script], input=stdin, capture_output=True, text=True, check=False)


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A folder the lab user may traverse (pytest's own are root's, 0700)."""
    root = Path(tempfile.mkdtemp(prefix="juvini-storage-", dir="/var/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def storage(root: Path, nonce: str = "00112233aabbccdd") -> Storage:
    settings = swarm_settings(root / "manager")
    for folder in ("users", "shared", "data"):
        (root / "manager" / folder).mkdir(parents=True, exist_ok=True)
        os.chown(root / "manager" / folder, 2100, 2100)
    (root / "manager" / "data" / "set.csv").write_text("a,b\n")
    return Storage(settings, storage_scripts(settings, STACK, nonce, worker_node(settings)))


@pytest.mark.skipif(os.geteuid() != 0, reason="markers are written as each folder's owner (setpriv needs root)")
def test_markers_written_through_the_manager_are_read_back_through_a_worker(open_root: Path) -> None:
    found = storage(open_root)
    written = ok(found.run("markers"))
    assert written.splitlines() == [f"marker {open_root}/manager/{name}" for name in ("users", "shared", "data")]
    marker = open_root / "manager" / "users" / ".juvini-storage-check-juvini-dev-00112233aabbccdd"
    assert marker.read_text() == "00112233aabbccdd\n"
    assert (marker.stat().st_uid, marker.stat().st_gid) == (2100, 2100)
    assert "shared with the manager" in ok(found.run("check", stdin=written))
    ok(found.run("markers-delete"))
    assert not list(open_root.glob("manager/*/.juvini-storage-check-*"))


@pytest.mark.skipif(os.geteuid() != 0, reason="markers are written as each folder's owner (setpriv needs root)")
def test_a_worker_with_its_own_folders_fails_naming_the_node_and_each_folder(open_root: Path) -> None:
    found = storage(open_root)
    written = ok(found.run("markers"))
    (open_root / "worker" / "users").mkdir(parents=True)
    (open_root / "worker" / "shared").mkdir(parents=True)
    result = found.run("check", stdin=written, root=open_root)
    assert result.returncode != 0
    worker_users = open_root / "worker" / "users"
    assert (
        f"swarm node worker-1 (10.0.0.11): {worker_users} is not the manager's folder: a marker written there by "
        "the manager is not seen; mount the same shared filesystem (NFS/SMB/cluster) at that path on every node"
    ) in result.stderr
    assert f"{open_root}/worker/data is not the manager's folder: there is no such folder on this node" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="markers are written as each folder's owner (setpriv needs root)")
def test_a_stale_marker_of_an_earlier_check_does_not_pass(open_root: Path) -> None:
    earlier = storage(open_root, nonce="aaaaaaaaaaaaaaaa")
    ok(earlier.run("markers"))
    shutil.copytree(open_root / "manager", open_root / "worker")  # a copy, not the same folder
    now = storage(open_root, nonce="bbbbbbbbbbbbbbbb")
    result = now.run("check", stdin=ok(now.run("markers")), root=open_root)
    assert result.returncode != 0
    assert "a marker written there by the manager is not seen" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="markers are written as each folder's owner (setpriv needs root)")
def test_markers_a_failed_check_left_go_with_the_next_check_and_other_stacks_stay(open_root: Path) -> None:
    failed = storage(open_root, nonce="aaaaaaaaaaaaaaaa")
    ok(failed.run("markers"))  # a worker failed this check: its markers were never removed
    others = open_root / "manager" / "users" / ".juvini-storage-check-juvini-prod-cccccccccccccccc"
    others.write_text("cccccccccccccccc\n")
    now = storage(open_root, nonce="bbbbbbbbbbbbbbbb")
    ok(now.run("markers"))
    left = sorted(path.name for path in (open_root / "manager" / "users").glob(".juvini-storage-check-*"))
    assert left == [".juvini-storage-check-juvini-dev-bbbbbbbbbbbbbbbb", others.name]
    ok(failed.run("markers"))
    ok(now.run("markers-delete"))  # destroy: every marker of the stack, whatever its nonce
    assert sorted(path.name for path in open_root.glob("manager/*/.juvini-storage-check-*")) == [others.name]


@pytest.mark.skipif(os.geteuid() != 0, reason="markers are written as each folder's owner (setpriv needs root)")
def test_a_read_only_data_folder_is_compared_by_its_listing(open_root: Path) -> None:
    found = storage(open_root)
    # Its owner cannot write it, as nobody can write a read-only mount.
    (open_root / "manager" / "data").chmod(0o555)
    written = ok(found.run("markers"))
    assert [line.split()[0] for line in written.splitlines()] == ["marker", "marker", "listing"]
    fingerprint = written.splitlines()[2].split()[2]
    assert len(fingerprint) == 32
    assert "shared with the manager" in ok(found.run("check", stdin=written))
    changed = written.replace(fingerprint, "0" * 32)
    result = found.run("check", stdin=changed)
    assert "it is read-only and its content differs from the manager's" in result.stderr
