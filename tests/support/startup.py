"""Start a notebook image's server as the lab does and measure the start: wall time, CPU, imports.

``start_server`` runs the image's own command (its ``Cmd``: ``juvini-singleuser`` in the lab's
images, ``jupyterhub-singleuser`` in stock ones; under the image's ``tini`` entrypoint) in a
detached container with the environment DockerSpawner gives it, beside a stub hub in the same
container (it answers the server's Hub API calls on 127.0.0.1:8081 with the image's JupyterHub
version and a user model), so the start needs no network at all: by default the container runs
with ``--network none``. The start is timed from Docker's own log timestamps: a marker line
written just before ``exec`` of the server, its first log line, and the line that says it is
listening ("is running at").

``profile_server_start`` repeats that a few times (medians) and adds one run under
``python -X importtime`` whose output ``parse_importtime`` turns into ``ImportTime`` rows:
the top ones by cumulative time say where the start-up goes. The benchmark prints it per
image (``StartProfile.report``); the integration tests use ``imported`` to check what a
server start loads.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.support.images import ImageToolError, docker, image_config

#: The lab user the images run as (notebook-base's default).
LAB_USER = "labuser"
#: Where the server listens in the container and its URL prefix there (as DockerSpawner sets it).
SERVER_PORT = 8888
SERVER_PREFIX = f"/user/{LAB_USER}/"
#: The stub hub's address in the container (JUPYTERHUB_API_URL).
HUB_API_URL = "http://127.0.0.1:8081/hub/api"
#: What the wrapper writes to stderr just before it execs the server; the start is timed from it.
EXEC_MARKER = "juvini-startup: exec"
#: jupyter_server logs this once it listens.
READY_TEXT = "is running at"
#: How long a start may take before it counts as failed.
START_DEADLINE_SECONDS = 180
#: Where the wrapper writes the server's pid (the process it execs keeps it).
PID_FILE = "/tmp/juvini-server.pid"
STUB_READY_FILE = "/tmp/juvini-stub-hub.ready"

#: A hub, as far as one singleuser server needs one: the version (header and body) on every
#: answer, and for ``GET .../user`` (HubAuth resolving the token a request carries) the lab
#: user's model with the scope the server requires. Quiet; it writes STUB_READY_FILE once bound.
STUB_HUB = f"""
import http.server, importlib.metadata, json, os, pathlib
version = importlib.metadata.version("jupyterhub")
user = os.environ["JUPYTERHUB_USER"]
model = {{"kind": "user", "name": user, "admin": False, "groups": [], "servers": {{}},
          "scopes": [f"access:servers!user={{user}}", f"read:users:name!user={{user}}"]}}
class Hub(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        body = json.dumps(model if path.endswith("/api/user") else {{"version": version}}).encode()
        self.send_response(200)
        self.send_header("X-JupyterHub-Version", version)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = _answer
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 8081), Hub)
pathlib.Path({STUB_READY_FILE!r}).touch()
server.serve_forever()
"""

#: The container's command: the stub hub in the background, then (once it listens) the marker
#: and ``exec`` of the server, so the server is the process the image would run. $1: the stub's
#: source; $2: "importtime" to run the server under ``python -X importtime``; then the image's
#: command and the server options.
WRAPPER = f"""
set -eu
stub="$1"; mode="$2"; shift 2
python3 -c "$stub" &
while [ ! -e {STUB_READY_FILE} ]; do sleep 0.02; done
echo $$ > {PID_FILE}
echo "{EXEC_MARKER}" >&2
if [ "$mode" = importtime ]; then
    program="$(command -v "$1")"; shift
    exec python -X importtime "$program" "$@"
fi
exec "$@"
"""

_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")
_TIMESTAMPED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z (.*)$")


@dataclass(frozen=True)
class ImportTime:
    """One line of ``python -X importtime``: a module and what importing it cost."""

    module: str
    self_seconds: float
    #: The module and everything it imported first.
    cumulative_seconds: float
    #: 0 for an import of the program itself, 1 for one made by such a module, ...
    depth: int


def parse_importtime(text: str) -> list[ImportTime]:
    """The ``import time:`` lines of ``text`` (other lines, such as a server's log, are skipped)."""
    found = []
    for line in text.splitlines():
        match = _IMPORT_LINE.match(line.strip("\r"))
        if match:
            own, cumulative, indent, module = match.groups()
            found.append(ImportTime(module, int(own) / 1e6, int(cumulative) / 1e6, (len(indent) - 1) // 2))
    return found


def top_imports(imports: Sequence[ImportTime], count: int = 10, *, by: str = "cumulative") -> list[ImportTime]:
    """The ``count`` costliest imports, by ``cumulative`` (module and what it pulled in) or ``self`` time."""
    if by not in ("cumulative", "self"):
        raise ValueError(f"by must be 'cumulative' or 'self', not {by!r}")
    key = (lambda item: item.cumulative_seconds) if by == "cumulative" else (lambda item: item.self_seconds)
    return sorted(imports, key=key, reverse=True)[:count]


def imported(imports: Sequence[ImportTime], module: str) -> bool:
    """Whether ``imports`` hold ``module`` or a submodule of it.

    ``-X importtime`` also lists imports that failed (a module that is not installed, tried
    in a ``try``/``except ImportError``), so for a module with no submodules this means
    "imported or tried".
    """
    return any(item.module == module or item.module.startswith(f"{module}.") for item in imports)


def total_import_seconds(imports: Sequence[ImportTime]) -> float:
    """The time of all ``imports``: the cumulative times of the top-level ones."""
    return sum(item.cumulative_seconds for item in imports if item.depth == 0)


def _log_time(stamp: str, fraction: str | None) -> float:
    # Docker writes nanoseconds; datetime takes microseconds.
    micro = (fraction or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{stamp}.{micro}+00:00").timestamp()


def timestamped_logs(container: str) -> list[tuple[float, str]]:
    """``(epoch seconds, line)`` of a container's stdout and stderr, in Docker's time order."""
    result = docker("logs", "--timestamps", container, check=False)
    lines = []
    for line in (result.stdout + result.stderr).splitlines():
        match = _TIMESTAMPED.match(line)
        if match:
            lines.append((_log_time(match.group(1), match.group(2)), match.group(3)))
    return sorted(lines, key=lambda item: item[0])


def hub_environment(token: str) -> dict[str, str]:
    """What DockerSpawner sets for the lab user's server (the API URL points at the stub hub)."""
    return {
        "JUPYTERHUB_API_TOKEN": token,
        "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{LAB_USER}",
        "JUPYTERHUB_API_URL": HUB_API_URL,
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVICE_PREFIX": SERVER_PREFIX,
        "JUPYTERHUB_USER": LAB_USER,
        "JUPYTERHUB_SERVER_NAME": "",
        "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:{SERVER_PORT}{SERVER_PREFIX}",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{SERVER_PREFIX}oauth_callback",
        "JUPYTERHUB_ACTIVITY_URL": f"{HUB_API_URL}/users/{LAB_USER}/activity",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(
            [f"access:servers!server={LAB_USER}/", f"access:servers!user={LAB_USER}"]
        ),
    }


@dataclass
class ServerStart:
    """A server started by ``start_server`` (its container is removed when the ``with`` ends)."""

    image: str
    container: str
    token: str
    #: Host clock when ``docker run`` was called, and Docker's log times (same clock) of the
    #: marker before ``exec``, of the server's first log line and of its "is running at" line.
    run_at: float
    exec_at: float
    first_log_at: float
    ready_at: float
    #: CPU time (user + system) the server process had used when it was found listening.
    cpu_seconds: float
    #: The container's log lines up to then (stdout and stderr, time order).
    log_lines: list[str] = field(repr=False)

    @property
    def first_log_seconds(self) -> float:
        """From ``exec`` of the server to its first log line: Python start-up and the imports."""
        return self.first_log_at - self.exec_at

    @property
    def ready_seconds(self) -> float:
        """From ``exec`` of the server to listening."""
        return self.ready_at - self.exec_at

    @property
    def container_ready_seconds(self) -> float:
        """From ``docker run`` to listening: what a spawn waits for, container creation included."""
        return self.ready_at - self.run_at

    @property
    def log(self) -> str:
        return "\n".join(self.log_lines)

    @property
    def imports(self) -> list[ImportTime]:
        """The imports of the start (empty unless started with ``importtime``)."""
        return parse_importtime(self.log)

    def server_log(self) -> str:
        """The container's whole log now, ``-X importtime`` lines left out."""
        lines = [line for _, line in timestamped_logs(self.container)]
        return "\n".join(line for line in lines if not line.startswith("import time:"))

    def request(
        self, method: str, path: str, body: Any = None, *, token: bool = True, timeout: float = 60
    ) -> tuple[int, str]:
        """``method`` ``SERVER_PREFIX + path`` from inside the container (its network may be none),
        with ``body`` as JSON if given: status, body."""
        script = (
            "import sys, urllib.error, urllib.request\n"
            "data = sys.argv[3].encode() if sys.argv[3] else None\n"
            "headers = {'Content-Type': 'application/json'} if data else {}\n"
            "headers.update([sys.argv[4:6]] if sys.argv[4] else [])\n"
            "request = urllib.request.Request(sys.argv[2], data=data, headers=headers, method=sys.argv[1])\n"
            "try:\n"
            "    with urllib.request.urlopen(request, timeout=30) as response:\n"
            "        status, body = response.status, response.read()\n"
            "except urllib.error.HTTPError as error:\n"
            "    status, body = error.code, error.read()\n"
            "print(status); sys.stdout.write(body.decode('utf-8', 'replace'))\n"
        )
        url = f"http://127.0.0.1:{SERVER_PORT}{SERVER_PREFIX}{path.lstrip('/')}"
        header = ["Authorization", f"token {self.token}"] if token else ["", ""]
        data = "" if body is None else json.dumps(body)
        result = docker("exec", self.container, "python3", "-c", script, method, url, data, *header, timeout=timeout)
        status, _, answer = result.stdout.partition("\n")
        return int(status), answer

    def get(self, path: str, *, token: bool = True, timeout: float = 60) -> tuple[int, str]:
        """GET ``SERVER_PREFIX + path`` from inside the container: status, body."""
        return self.request("GET", path, token=token, timeout=timeout)

    def get_json(self, path: str) -> Any:
        """GET ``path`` (from inside the container) and its JSON; anything but 200 raises."""
        status, body = self.get(path)
        if status != 200:
            raise ImageToolError(f"GET {path} answered {status}: {body[:500]}")
        return json.loads(body)


def _cpu_seconds(container: str) -> float:
    """utime + stime of the server process (its pid is in PID_FILE), from /proc."""
    script = f'cat /proc/"$(cat {PID_FILE})"/stat; getconf CLK_TCK'
    stat, _, ticks = docker("exec", container, "sh", "-c", script).stdout.strip().rpartition("\n")
    # Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / int(ticks)


@contextmanager
def start_server(
    image: str,
    *,
    importtime: bool = False,
    network: str = "none",
    server_args: Sequence[str] = (),
    deadline_seconds: float = START_DEADLINE_SECONDS,
    environment: Mapping[str, str] | None = None,
) -> Iterator[ServerStart]:
    """Start ``image``'s server as the lab does; yields once it listens, removes the container after.

    ``network`` is the container's Docker network (``none``: loopback only, so any attempt to
    reach out fails at once); ``server_args`` are added to the image's command; ``environment``
    is added to what DockerSpawner sets (e.g. ``MEM_LIMIT``, which JupyterHub sets from the
    spawner's limit).
    """
    command = image_config(image).get("Cmd") or []
    if not command:
        raise ImageToolError(f"{image} has no command (Cmd) to start its server with")
    token = uuid.uuid4().hex
    name = f"juvini-startup-{uuid.uuid4().hex[:10]}"
    server_environment = hub_environment(token) | dict(environment or {})
    env_args = [arg for key, value in server_environment.items() for arg in ("--env", f"{key}={value}")]
    mode = "importtime" if importtime else "plain"
    run_at = time.time()
    docker(
        "run", "--detach", "--name", name, "--network", network, *env_args, image,
        "sh", "-c", WRAPPER, "sh", STUB_HUB, mode, *command, *server_args,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + deadline_seconds
        while True:
            lines = timestamped_logs(name)
            ready = [at for at, line in lines if READY_TEXT in line]
            if ready:
                break
            running = docker("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip()
            if running != "true" or time.monotonic() > deadline:
                log = "\n".join(line for _, line in lines if not line.startswith("import time:"))
                raise ImageToolError(
                    f"{image}: the server did not start listening "
                    f"({'stopped' if running != 'true' else f'within {deadline_seconds:.0f} s'}):\n{log[-6000:]}"
                )
            time.sleep(0.2)
        cpu = _cpu_seconds(name)
        exec_at = next(at for at, line in lines if line == EXEC_MARKER)
        after = [(at, line) for at, line in lines if at >= exec_at and line != EXEC_MARKER]
        first_log_at = next(at for at, line in after if not line.startswith("import time:"))
        yield ServerStart(
            image=image,
            container=name,
            token=token,
            run_at=run_at,
            exec_at=exec_at,
            first_log_at=first_log_at,
            ready_at=ready[0],
            cpu_seconds=cpu,
            log_lines=[line for _, line in lines],
        )
    finally:
        subprocess.run(["/usr/bin/docker", "rm", "--force", name], capture_output=True, check=False, timeout=120)


@dataclass(frozen=True)
class StartProfile:
    """Medians of a few server starts of one image, and the imports of one more run under -X importtime."""

    image: str
    runs: int
    first_log_seconds: float
    ready_seconds: float
    container_ready_seconds: float
    cpu_seconds: float
    imports: tuple[ImportTime, ...]

    def top(self, count: int = 10, *, by: str = "cumulative") -> list[ImportTime]:
        return top_imports(self.imports, count, by=by)

    def imported(self, module: str) -> bool:
        """Whether the start imported ``module`` (or a submodule of it)."""
        return imported(self.imports, module)

    @property
    def import_seconds(self) -> float:
        """All the imports of the start (the top-level ones' cumulative times)."""
        return total_import_seconds(self.imports)

    def report(self, count: int = 10) -> str:
        """Printable lines: the timings, then the top imports by cumulative time."""
        lines = [
            f"{self.image}: server start, median of {self.runs}: first log line {self.first_log_seconds:.2f} s, "
            f"listening {self.ready_seconds:.2f} s (docker run -> listening {self.container_ready_seconds:.2f} s), "
            f"CPU {self.cpu_seconds:.2f} s; imports {self.import_seconds:.2f} s (one run under -X importtime)",
            f"  {'cumulative s':>12} {'self s':>8}  import (python -X importtime, one run)",
        ]
        for item in self.top(count):
            lines.append(
                f"  {item.cumulative_seconds:12.3f} {item.self_seconds:8.3f}  {'  ' * item.depth}{item.module}"
            )
        return "\n".join(lines)


def profile_server_start(image: str, runs: int = 3, *, network: str = "none") -> StartProfile:
    """Start ``image``'s server ``runs`` times for the timings (medians), and once under -X importtime."""
    if runs < 1:
        raise ValueError("runs must be at least 1")
    starts = []
    for _ in range(runs):
        with start_server(image, network=network) as start:
            starts.append(start)
    with start_server(image, importtime=True, network=network) as profiled:
        imports = tuple(profiled.imports)
    return StartProfile(
        image=image,
        runs=runs,
        first_log_seconds=statistics.median(start.first_log_seconds for start in starts),
        ready_seconds=statistics.median(start.ready_seconds for start in starts),
        container_ready_seconds=statistics.median(start.container_ready_seconds for start in starts),
        cpu_seconds=statistics.median(start.cpu_seconds for start in starts),
        imports=imports,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tests.support.startup IMAGE... [--runs N] [--top N]``: print each image's profile."""
    parser = argparse.ArgumentParser(description="Profile the server start of notebook images.")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--runs", type=int, default=3, help="timed starts per image (medians)")
    parser.add_argument("--top", type=int, default=12, help="imports to list")
    args = parser.parse_args(argv)
    for image in args.images:
        print(profile_server_start(image, args.runs).report(args.top), flush=True)


if __name__ == "__main__":
    main()
