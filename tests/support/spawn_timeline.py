"""Where a spawn's time goes, and what a server costs: the benchmark's pure helpers.

``lab_spawn.py`` (tests/benchmarks) measures spawns through a hub's REST API; this module turns
what it gathers into figures, with no Docker or network of its own, so the unit tier checks it:

- ``hub_events`` reads a hub's log (Docker's timestamps, as ``startup.timestamped_logs`` gives
  them) for each user's spawn: when the hub began it, created and started the container, found
  the server answering (the lab's spawner says so), counted it up, and added its proxy route.
  The log lines are stock JupyterHub and DockerSpawner ones, so they serve the reference hub too.
- ``server_events`` reads a user's container (its start time, its log): when the server process
  began, wrote its first line, and listened.
- ``spawn_phases`` cuts request -> ready into ``PHASES`` from both, and the client's own times.
- ``memory_in_use`` is a container's memory as ``docker stats`` shows it (page cache left out).
- ``CpuSample`` / ``cpu_between`` tell how busy the host was during a round and who used it.
"""

from __future__ import annotations

import os
import re
import resource
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

#: jupyter_server logs this once it listens (as tests/support/startup.py has it).
LISTENING_TEXT = "is running at"

_SPAWN_BEGINS = re.compile(r"(?:Creating|Updating) oauth client jupyterhub-user-(?P<user>\S+)")
_CREATED = re.compile(r"Created container (?P<container>\S+) \(id")
_STARTING = re.compile(r"Starting container (?P<container>\S+) \(id")
_ANSWERS = re.compile(r"(?P<user>\S+)'s server answers at ")
_UP = re.compile(r"User (?P<user>\S+) took (?P<seconds>[\d.]+) seconds to start")
_PROXY = re.compile(r"Adding user (?P<user>\S+) to proxy ")
_DOCKER_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` (0..1) percentile of ``values``, nearest rank on the sorted values."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def docker_time(text: str) -> float:
    """Epoch seconds of a Docker time such as ``2026-11-23T15:39:52.512345678Z`` (nanoseconds cut to µs)."""
    match = _DOCKER_TIME.match(text.strip())
    if not match:
        raise ValueError(f"not a Docker time: {text!r}")
    stamp, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{stamp}.{micro}{'+00:00' if zone == 'Z' else zone}").timestamp()


@dataclass
class HubEvents:
    """What one hub's log says about one user's spawn (epoch seconds; None: not in the log)."""

    begins: float | None = None
    created: float | None = None
    starting: float | None = None
    answers: float | None = None
    up: float | None = None
    proxy: float | None = None


def _owner(container: str, users: Iterable[str]) -> str | None:
    """The user whose server ``container`` is: spawners name containers ``<prefix>-<username>``."""
    return next((user for user in users if container.endswith(f"-{user}")), None)


def hub_events(lines: Iterable[tuple[float, str]], users: Sequence[str], since: float) -> dict[str, HubEvents]:
    """Each of ``users``' spawn events in a hub's log, the first of each kind at or after ``since``."""
    found = {user: HubEvents() for user in users}

    def note(user: str | None, kind: str, at: float) -> None:
        if user in found and getattr(found[user], kind) is None:
            setattr(found[user], kind, at)

    for at, line in lines:
        if at < since:
            continue
        for pattern, kind in ((_SPAWN_BEGINS, "begins"), (_ANSWERS, "answers"), (_UP, "up"), (_PROXY, "proxy")):
            match = pattern.search(line)
            if match:
                note(match.group("user"), kind, at)
        for pattern, kind in ((_CREATED, "created"), (_STARTING, "starting")):
            match = pattern.search(line)
            if match:
                note(_owner(match.group("container"), users), kind, at)
    return found


@dataclass(frozen=True)
class ServerEvents:
    """What a user's container says about its server's start (epoch seconds; None: not seen)."""

    started: float | None
    first_log: float | None
    listening: float | None


def server_events(started_at: str, lines: Sequence[tuple[float, str]]) -> ServerEvents:
    """From the container's ``State.StartedAt`` and its timestamped log lines."""
    started = docker_time(started_at) if started_at and not started_at.startswith("0001-") else None
    first = lines[0][0] if lines else None
    listening = next((at for at, line in lines if LISTENING_TEXT in line), None)
    return ServerEvents(started, first, listening)


#: The phases of a spawn, in order: name, and what ends it (each begins where the one before ends).
PHASES: tuple[tuple[str, str], ...] = (
    ("api", "request sent -> the hub begins the spawn (its API, the spawn queue)"),
    ("create", "-> container created (user folder, image check, docker create)"),
    ("start", "-> container running (docker start: State.StartedAt)"),
    ("process", "-> the server's first log line (Python start-up and imports)"),
    ("listen", "-> the server listens ('is running at')"),
    ("probe", "-> the hub counts it up (the spawner's poll, then the hub's own check)"),
    ("route", "-> ready at the client (proxy route added, the event or answer sent)"),
)


def spawn_phases(request: float, ready: float, hub: HubEvents, server: ServerEvents) -> dict[str, float | None]:
    """Seconds of each of ``PHASES``; a phase whose end or start is unknown is None."""
    marks = [request, hub.begins, hub.created, server.started, server.first_log, server.listening, hub.up, ready]
    phases: dict[str, float | None] = {}
    for (name, _), start, end in zip(PHASES, marks, marks[1:], strict=False):
        phases[name] = end - start if start is not None and end is not None else None
    return phases


def median_phases(rows: Iterable[Mapping[str, float | None]]) -> dict[str, float | None]:
    """The median of each of ``PHASES`` over the spawns where it is known."""
    return median_of(rows, [name for name, _ in PHASES])


_STOPPING = re.compile(r"Stopping container (?P<container>\S+) \(id")
_REMOVING = re.compile(r"Removing container (?P<id>[0-9a-f]{12,})")


@dataclass
class StopEvents:
    """One server's stop: the hub's log (stopping, removing) and Docker's events (epoch seconds)."""

    stopping: float | None = None
    kill: float | None = None
    die: float | None = None
    removing: float | None = None
    destroy: float | None = None


def stop_events(
    hub_lines: Iterable[tuple[float, str]],
    docker_events: Iterable[Mapping],
    containers: Mapping[str, tuple[str, str]],
    since: float,
) -> dict[str, StopEvents]:
    """Each user's stop from the hub's log and Docker's container events (the first of each kind).

    ``containers``: user -> (container name, container id).
    """
    found = {user: StopEvents() for user in containers}
    by_name = {name: user for user, (name, _) in containers.items()}
    by_id = {cid: user for user, (_, cid) in containers.items()}

    def note(user: str | None, kind: str, at: float) -> None:
        if user in found and getattr(found[user], kind) is None:
            setattr(found[user], kind, at)

    for at, line in hub_lines:
        if at < since:
            continue
        match = _STOPPING.search(line)
        if match:
            note(by_name.get(match.group("container")), "stopping", at)
        match = _REMOVING.search(line)
        if match:
            note(next((user for cid, user in by_id.items() if cid.startswith(match.group("id"))), None), "removing", at)
    for event in docker_events:
        action = event.get("Action") or event.get("status")
        at = int(event.get("timeNano") or 0) / 1e9 or float(event.get("time") or 0)
        if action in ("kill", "die", "destroy") and at >= since:
            note(by_id.get(str(event.get("id") or event.get("Actor", {}).get("ID"))), action, at)
    return found


#: The phases of a server's stop, as PHASES for a spawn.
STOP_PHASES: tuple[tuple[str, str], ...] = (
    ("hub", "DELETE sent -> the hub stops the container ('Stopping container': its API, the spawner)"),
    ("signal", "-> SIGTERM sent (Docker's kill event: the hub's Docker call, waiting for a thread included)"),
    ("exit", "-> the server process has exited (die: the server's own shutdown)"),
    ("remove", "-> the container is gone (destroy: the hub's remove call, network and files released)"),
)


def stop_phases(delete: float, events: StopEvents) -> dict[str, float | None]:
    """Seconds of each of ``STOP_PHASES``; unknown ones are None."""
    marks = [delete, events.stopping, events.kill, events.die, events.destroy]
    return {
        name: end - start if start is not None and end is not None else None
        for (name, _), start, end in zip(STOP_PHASES, marks, marks[1:], strict=False)
    }


def median_of(rows: Iterable[Mapping[str, float | None]], names: Iterable[str]) -> dict[str, float | None]:
    """The median of each of ``names`` over ``rows`` where it is known."""
    rows = list(rows)
    result: dict[str, float | None] = {}
    for name in names:
        known = [value for row in rows if (value := row.get(name)) is not None]
        result[name] = statistics.median(known) if known else None
    return result


def memory_in_use(stats: Mapping) -> int:
    """A container's memory in use from Docker's stats API, as ``docker stats`` computes it.

    The usage less the inactive page cache (cgroup v1: ``total_inactive_file``, v2:
    ``inactive_file``), which the kernel reclaims first and which is not the server's.
    """
    memory = stats.get("memory_stats") or {}
    usage = int(memory.get("usage") or 0)
    detail = memory.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        if key in detail and int(detail[key]) < usage:
            return usage - int(detail[key])
    return usage


# --- CPU -----------------------------------------------------------------------------------------

_CGROUP_CPU = (
    "/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage",  # v1, cgroupfs driver (nanoseconds)
    "/sys/fs/cgroup/cpu,cpuacct/docker/{id}/cpuacct.usage",
    "/sys/fs/cgroup/docker/{id}/cpu.stat",  # v2, cgroupfs driver (usage_usec)
    "/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat",  # v2, systemd driver
)
#: Host processes whose CPU is shown apart: the Docker engine.
ENGINE_PROCESSES = ("dockerd", "containerd")


def container_cpu_seconds(container_id: str, root: str = "") -> float | None:
    """CPU seconds a container has used (its cgroup), or None when no known cgroup file is there."""
    for template in _CGROUP_CPU:
        path = Path(root + template.format(id=container_id))
        try:
            text = path.read_text(encoding="ascii")
        except OSError:
            continue
        if path.name == "cpuacct.usage":
            return int(text.strip()) / 1e9
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
    return None


def _host_jiffies(proc: str) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat (iowait counts as idle)."""
    first = Path(proc, "stat").read_text(encoding="ascii").splitlines()[0].split()
    values = [int(value) for value in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    # guest time is already in user/nice.
    total = sum(values[:8])
    return total - idle, total


def process_cpu_seconds(names: Sequence[str], proc: str = "/proc") -> float:
    """CPU seconds (user + system) used so far by the processes whose command is one of ``names``."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path(proc).iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text(encoding="utf-8").strip() not in names:
                continue
            fields = (entry / "stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        total += int(fields[11]) + int(fields[12])
    return total / ticks


@dataclass(frozen=True)
class CpuSample:
    """CPU counters at one moment: the host's, the engine's, this process's, some containers'."""

    at: float
    busy_jiffies: int
    total_jiffies: int
    engine_seconds: float
    client_seconds: float
    containers: dict[str, float] = field(default_factory=dict)

    @classmethod
    def take(cls, at: float, containers: Mapping[str, str], proc: str = "/proc") -> CpuSample:
        """``containers``: role -> container id, e.g. {"hub": ..., "proxy": ...}."""
        busy, total = _host_jiffies(proc)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        seconds = {role: container_cpu_seconds(cid) for role, cid in containers.items()}
        return cls(
            at=at,
            busy_jiffies=busy,
            total_jiffies=total,
            engine_seconds=process_cpu_seconds(ENGINE_PROCESSES, proc),
            client_seconds=usage.ru_utime + usage.ru_stime,
            containers={role: value for role, value in seconds.items() if value is not None},
        )


@dataclass(frozen=True)
class CpuUse:
    """How busy the host was between two samples, and the CPU seconds of who was measured."""

    wall_seconds: float
    #: Of all CPUs: 1.0 is every core busy the whole time.
    busy_fraction: float
    engine_seconds: float
    client_seconds: float
    containers: dict[str, float]


def cpu_between(before: CpuSample, after: CpuSample) -> CpuUse:
    total = after.total_jiffies - before.total_jiffies
    return CpuUse(
        wall_seconds=after.at - before.at,
        busy_fraction=(after.busy_jiffies - before.busy_jiffies) / total if total > 0 else 0.0,
        engine_seconds=after.engine_seconds - before.engine_seconds,
        client_seconds=after.client_seconds - before.client_seconds,
        containers={
            role: after.containers[role] - before.containers[role]
            for role in after.containers
            if role in before.containers
        },
    )
