"""The ``security`` section: how users' containers are locked down.

Users get a shell in their servers, and every user's server runs as the same uid, next to the
other users' servers on the same Docker host. The defaults take from a user's container what a
notebook server never needs: every Linux capability, gaining privileges through setuid binaries
(``su``, ``mount``, ``passwd`` … are in the images), an unbounded number of processes (one fork
bomb would exhaust the host's process table) and core dumps (written into the persistent home).
A lab that needs one of them back says so here. The network isolation of users' servers
(``networkIsolation``, infra/isolation.py) and the engine's live-restore are turned on here too.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from infra.settings.base import Problem, Section, explicit, refuse

#: Linux capabilities as Docker names them (capabilities(7) without the CAP_ prefix).
CAPABILITIES = frozenset(
    {
        "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE", "CHOWN",
        "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
        "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE", "NET_BROADCAST",
        "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYSLOG", "SYS_ADMIN", "SYS_BOOT",
        "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME",
        "SYS_TTY_CONFIG", "WAKE_ALARM",
    }
)  # fmt: skip
#: ``capDrop``'s word for every capability.
ALL_CAPABILITIES = "ALL"
#: Keys of ``security.userContainers`` that Swarm services do not carry yet.
SWARM_UNSUPPORTED = ("noNewPrivileges", "pidsLimit", "openFiles", "coreDumps")
#: Fewer open files than this break Jupyter servers (each kernel holds several sockets).
MIN_OPEN_FILES = 1024


def _capability(value: str) -> str:
    name = value.upper().removeprefix("CAP_")
    if name != ALL_CAPABILITIES and name not in CAPABILITIES:
        raise ValueError(f"is not a Linux capability; one of {ALL_CAPABILITIES}, {', '.join(sorted(CAPABILITIES))}")
    return name


#: A capability name (``NET_ADMIN``, ``cap_net_admin`` …, stored as Docker writes it) or ``ALL``.
Capability = Annotated[str, AfterValidator(_capability)]


class UserContainerSecurity(Section):
    """Limits and privileges of users' containers."""

    cap_drop: list[Capability] = Field(
        default=[ALL_CAPABILITIES],
        description="Linux capabilities taken from users' containers (ALL: every one; [] keeps Docker's defaults).",
    )
    cap_add: list[Capability] = Field(
        default=[],
        description="Capabilities given back after capDrop (e.g. SYS_PTRACE for debuggers); not ALL.",
    )
    no_new_privileges: bool = Field(
        default=True,
        description="Processes cannot gain privileges (setuid binaries such as su run without them).",
    )
    # A cgroup limit per container: the "nproc" ulimit would count the processes of the uid,
    # which every user's container shares, so one user's processes would starve the others'.
    pids_limit: int = Field(
        default=2048,
        ge=0,
        le=4_194_304,
        description="Most processes and threads in one user's container (a JVM counts each thread); 0: no limit.",
    )
    # 0 by default: a limit above the engine's own hard limit fails every container start
    # ("error setting rlimit type 7"), and engines differ (systemd's docker.service has
    # 1048576; a dockerd started by hand has its shell's).
    open_files: int = Field(
        default=0,
        ge=0,
        le=1_048_576,
        description="Most open files per process in users' containers (ulimit -n, soft and hard); "
        "0: the engine's; at most the engine's own hard limit.",
    )
    core_dumps: bool = Field(
        default=False,
        description="Let crashing processes write core files (into the user's persistent folder).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> UserContainerSecurity:
        problems = []
        for key, names in (("capDrop", self.cap_drop), ("capAdd", self.cap_add)):
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:
                problems.append(Problem(key, names, f"lists {', '.join(twice)} twice"))
        if 0 < self.open_files < MIN_OPEN_FILES:
            problems.append(
                Problem("openFiles", self.open_files, f"0 (Docker's) or at least {MIN_OPEN_FILES}: kernels hold many")
            )
        if ALL_CAPABILITIES in self.cap_add:
            problems.append(
                Problem("capAdd", self.cap_add, "must name the capabilities the lab needs, not ALL (a root-equal user)")
            )
        both = sorted(set(self.cap_add) & set(self.cap_drop) - {ALL_CAPABILITIES})
        if both:
            problems.append(Problem("capAdd", self.cap_add, f"{', '.join(both)} is also in capDrop: keep it in one"))
        refuse(problems)
        return self

    def swarm_only_problems(self) -> list[Problem]:
        """Keys the stack set that the Swarm spawner does not carry yet (its services take the
        capabilities only: Docker 20.10's service API has no pids limit, ulimits or
        no-new-privileges); the README's Swarm notes say so for the defaults."""
        return [
            Problem(key, value, "not with swarm.enabled yet: Swarm services do not carry it (capDrop/capAdd do)")
            for key, value in explicit(self).items()
            if key in SWARM_UNSUPPORTED
        ]

    def docker_host_config(self) -> dict[str, Any]:
        """The options for the Docker SDK's ``create_host_config`` (DockerSpawner's ``extra_host_config``)."""
        config: dict[str, Any] = {
            "cap_drop": list(self.cap_drop),
            "cap_add": list(self.cap_add),
            "security_opt": ["no-new-privileges:true"] if self.no_new_privileges else [],
            "ulimits": [
                *([{"name": "nofile", "soft": self.open_files, "hard": self.open_files}] if self.open_files else []),
                *([] if self.core_dumps else [{"name": "core", "soft": 0, "hard": 0}]),
            ],
        }
        if self.pids_limit:
            config["pids_limit"] = self.pids_limit
        return config


class SecuritySettings(Section):
    """How the lab protects its users from each other and the host from its users and its hub."""

    user_containers: UserContainerSecurity = Field(
        default_factory=UserContainerSecurity, description="Limits and privileges of users' containers."
    )
    docker_api_filter: bool = Field(
        default=True,
        description="The hub reaches Docker only through a filter (HAProxy with the lab's policy) that allows "
        "what the spawner needs and refuses the rest (host folders, privileges, exec ...); off: the hub mounts "
        "the Docker socket itself, and so can take over the Docker host.",
    )
    live_restore: bool | None = Field(
        default=None,
        description="Turn on the engine's live-restore (a reload, not a restart) so users' servers survive an "
        "engine restart; unset: on for one Docker host, off under Swarm (Docker does not support it there).",
    )

    network_isolation: bool | None = Field(
        default=None,
        description="Firewall users' servers (iptables rules in DOCKER-USER and INPUT, applied by the host setup): "
        "among the lab's parts they reach the hub API only, not each other, the proxy or the Docker host; "
        "outside the lab, network.egress. Unset: on for one Docker host, off under Swarm (the rules do not see "
        "overlay traffic; README: Network isolation).",
    )

    def live_restore_wanted(self, swarm: bool) -> bool:
        """Whether the host setup turns live-restore on (unset: on unless the engine runs Swarm)."""
        return (not swarm) if self.live_restore is None else self.live_restore

    def network_isolation_wanted(self, swarm: bool) -> bool:
        """Whether users' servers are firewalled (unset: on unless users' servers are Swarm services)."""
        return (not swarm) if self.network_isolation is None else self.network_isolation
