"""Sections about the hub and users' servers: ``hub``, ``spawner`` and ``spark``."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from infra import flavours
from infra.settings.base import (
    SPARK_MEMORY,
    DockerMemory,
    HostnameOrIp,
    Port,
    PortRange,
    Problem,
    Section,
    Username,
    memory_bytes,
    port_range,
    refuse,
)

#: Environment variables the lab sets in users' servers itself, with what to use instead.
LAB_ENVIRONMENT: dict[str, str] = {
    "SPARK_DRIVER_MEMORY": "set spark.driverMemory instead",
    "PIP_USER": "pip installs land in the persistent home through it",
    "KRB5CCNAME": "it points at the Kerberos ticket (kerberos.*)",
    "KRB5_CONFIG": "the realm's krb5.conf comes from kerberos.*",
    "SPARK_DRIVER_PORT": "handed out from spark.driverPorts",
    "SPARK_BLOCKMANAGER_PORT": "handed out from spark.blockManagerPorts",
    "SPARK_DRIVER_HOST": "set spark.driverHost instead",
    "JUPYTER_IMAGE": "DockerSpawner sets it to the picked image",
    "JUPYTER_IMAGE_SPEC": "DockerSpawner sets it to the picked image",
}
#: Prefixes of variables JupyterHub (JUPYTERHUB_*, JPY_*) and the lab (JUVINI_*) set.
LAB_ENVIRONMENT_PREFIXES = ("JUPYTERHUB_", "JPY_", "JUVINI_")


def lab_environment_problems(environment: dict[str, str], key: str) -> list[Problem]:
    """Variables of ``environment`` (set at ``key``) that the lab sets in users' servers itself."""
    problems = []
    for name, value in environment.items():
        why = LAB_ENVIRONMENT.get(name)
        if why is None and name.startswith(LAB_ENVIRONMENT_PREFIXES):
            why = f"names starting with {', '.join(LAB_ENVIRONMENT_PREFIXES)} belong to JupyterHub and the lab"
        if why is not None:
            problems.append(Problem(f"{key}.{name}", value, f"the lab sets {name} in users' servers itself: {why}"))
    return problems


def _environment_names(env: dict[str, str]) -> dict[str, str]:
    bad = [name for name in env if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)]
    if bad:
        raise ValueError(f"{bad} are not environment variable names ([A-Za-z_][A-Za-z0-9_]*)")
    return env


#: Extra environment variables for users' servers (spawner.environment, a profile's): each name a
#: variable name. Which names the lab sets itself is checked by the section (lab_environment_problems),
#: with its other keys, so that every problem is reported together.
ServerEnvironment = Annotated[dict[str, str], AfterValidator(_environment_names)]


class HubSettings(Section):
    """The hub and its proxy."""

    https_port: Port = Field(default=8443, description="Host port where the lab is served over HTTPS.")
    http_redirect_port: Port | None = Field(
        default=None,
        description="Optional host port that redirects plain HTTP to HTTPS; unset means HTTP is refused.",
    )
    bind_address: HostnameOrIp = Field(default="0.0.0.0", description="Host address the HTTPS port is published on.")
    public_hostname: HostnameOrIp = Field(
        default="localhost", description="Name users type in the browser; used in the hub URL."
    )
    admin_users: list[Username] = Field(default=[], description="Usernames that are hub admins.")
    concurrent_spawn_limit: int = Field(
        default=25, ge=0, le=1000, description="Most servers starting at once (0 = unlimited)."
    )
    log_level: Literal["DEBUG", "INFO", "WARN", "ERROR"] = Field(default="INFO", description="Hub log level.")

    @model_validator(mode="after")
    def _ports_differ(self) -> HubSettings:
        if self.http_redirect_port is not None and self.http_redirect_port == self.https_port:
            refuse(
                [
                    Problem(
                        "httpRedirectPort", self.http_redirect_port, f"must differ from hub.httpsPort {self.https_port}"
                    )
                ]
            )
        return self

    def ports(self) -> dict[str, int]:
        """The host ports the proxy publishes, by key."""
        ports = {"hub.httpsPort": self.https_port}
        if self.http_redirect_port is not None:
            ports["hub.httpRedirectPort"] = self.http_redirect_port
        return ports


class SpawnerSettings(Section):
    """Users' servers: images offered, limits, timeouts, culling."""

    allowed_images: list[Literal[flavours.NAMES]] = Field(  # type: ignore[valid-type]
        default=["datascience", "pyspark", "base"],
        min_length=1,
        description="Notebook images users may pick at spawn; the first is the default.",
    )
    cpu_limit: float = Field(default=2.0, gt=0, le=256, description="CPUs one user's server may use.")
    mem_limit: DockerMemory = Field(
        default="4g", description="Memory one user's server may use (Docker units: 512m, 4g)."
    )
    start_timeout: int = Field(
        default=300, ge=30, le=3600, description="Seconds a server may take to start (image pull included)."
    )
    http_timeout: int = Field(
        default=120,
        ge=30,
        le=3600,
        description="Seconds a started server may take to answer; many concurrent starts need more than 30.",
    )
    idle_timeout: int = Field(
        default=3600,
        ge=0,
        le=7 * 86400,
        description="Seconds of inactivity before a server is culled; 0 disables culling.",
    )
    cull_every: int = Field(default=300, ge=10, le=86400, description="Seconds between idle-culler passes.")
    environment: ServerEnvironment = Field(
        default={},
        description="Extra environment variables for users' servers; not those the lab sets itself "
        "(e.g. SPARK_DRIVER_MEMORY, PIP_USER, KRB5CCNAME, JUPYTERHUB_*, JPY_*, JUVINI_*).",
    )
    # Culling inside each server (the server's own kernel and terminal managers), so that a
    # forgotten kernel does not hold memory for the rest of the server's life.
    kernel_idle_timeout: int = Field(
        default=12 * 3600,
        ge=0,
        le=30 * 86400,
        description="Seconds a kernel may sit idle before its server shuts it down; busy kernels and kernels "
        "an open notebook is connected to are kept; 0 keeps idle kernels.",
    )
    terminal_idle_timeout: int = Field(
        default=12 * 3600,
        ge=0,
        le=30 * 86400,
        description="Seconds a terminal may go without input or output before its server closes it, with "
        "whatever runs in it; 0 keeps idle terminals.",
    )
    kernel_cull_every: int = Field(
        default=300,
        ge=5,
        le=86400,
        description="Seconds between a server's checks for idle kernels and terminals.",
    )

    @field_validator("allowed_images")
    @classmethod
    def _unique(cls, images: list[str]) -> list[str]:
        if len(set(images)) != len(images):
            raise ValueError(f"{images} lists an image twice")
        return images

    @model_validator(mode="after")
    def _consistent(self) -> SpawnerSettings:
        problems = []
        if self.idle_timeout and self.cull_every > self.idle_timeout:
            problems.append(
                Problem(
                    "cullEvery", self.cull_every, f"must not be longer than spawner.idleTimeout {self.idle_timeout}"
                )
            )
        problems += lab_environment_problems(self.environment, "environment")
        refuse(problems)
        return self

    @model_validator(mode="after")
    def _culling_consistent(self) -> SpawnerSettings:
        refuse(
            [
                Problem("kernelCullEvery", self.kernel_cull_every, f"must not be longer than spawner.{key} {timeout}")
                for key, timeout in (
                    ("kernelIdleTimeout", self.kernel_idle_timeout),
                    ("terminalIdleTimeout", self.terminal_idle_timeout),
                )
                if timeout and self.kernel_cull_every > timeout
            ]
        )
        return self


class SparkSettings(Section):
    """Spark in users' servers."""

    driver_memory: str = Field(
        default="1g", description="spark.driver.memory of the PySpark kernel (Spark units: 512m, 2g)."
    )
    driver_ports: PortRange = Field(
        default=PortRange(first=12000, last=12010),
        description="Host ports handed out as spark.driver.port, one per running server of a Spark image "
        "(pyspark; single Docker host, not with swarm.enabled).",
    )
    block_manager_ports: PortRange = Field(
        default=PortRange(first=11100, last=11110),
        description="Host ports handed out as spark.blockManager.port, one per running server of a Spark image.",
    )
    require_ports: bool = Field(
        default=False,
        description="Refuse to start a Spark image's server when every port pair is taken. By default it starts "
        "for local Spark only and says so (JUVINI_SPARK_WARNING, the PySpark kernel, the spawn page).",
    )
    driver_host: HostnameOrIp | None = Field(
        default=None,
        description="Address an external cluster uses to reach drivers (spark.driver.host); "
        "the host address when unset.",
    )

    @field_validator("driver_ports", "block_manager_ports", mode="before")
    @classmethod
    def _ranges(cls, value: Any) -> Any:
        return port_range(value)

    @field_validator("driver_memory")
    @classmethod
    def _spark_memory(cls, value: str) -> str:
        if not SPARK_MEMORY.match(value) or memory_bytes(value) == 0:
            raise ValueError("must be a Spark memory size: a positive number with a unit k, m, g or t (e.g. 512m, 2g)")
        return value

    @model_validator(mode="after")
    def _ranges_apart(self) -> SparkSettings:
        if self.driver_ports.overlaps(self.block_manager_ports):
            refuse(
                [
                    Problem(
                        "blockManagerPorts",
                        self.block_manager_ports,
                        f"must not overlap spark.driverPorts {self.driver_ports}",
                    )
                ]
            )
        return self

    def port_ranges(self) -> dict[str, PortRange]:
        """The host port ranges handed to drivers, by key."""
        return {"spark.driverPorts": self.driver_ports, "spark.blockManagerPorts": self.block_manager_ports}
