"""The lab's spawners: DockerSpawner (one host) and SwarmSpawner (scale-out) with what the
lab adds before a user's server starts:

- the user's persistent folder, created owned by the lab uid/gid (it becomes their home);
- on a single Docker host, a Spark driver / block-manager port pair published on the
  host, so an external cluster can reach the driver in client mode.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from dockerspawner import DockerSpawner, SwarmSpawner
from tornado import web
from traitlets import Dict, Int, Unicode
from traitlets.config import Configurable

from juvini_hub.spark_ports import PortRange, PortsExhausted, SparkPorts, allocate

# Pairs handed out to servers whose containers are being created: the hub is one
# process, so a module-level lock and table serialise allocation across spawners.
_ALLOCATION_LOCK = asyncio.Lock()
_RESERVED: dict[str, SparkPorts] = {}


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``extra`` merged into a copy of ``base`` (config values are never mutated)."""
    result = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result


class JuviniSpawnerMixin(Configurable):
    """What every lab spawner does before the server starts."""

    users_dir = Unicode(
        help="Host folder holding one persistent folder per user (mounted in the hub at the same path)."
    ).tag(config=True)
    lab_uid = Int(2100, help="uid owning users' folders; containers run as it.").tag(config=True)
    lab_gid = Int(2100, help="gid owning users' folders.").tag(config=True)

    def ensure_user_folder(self) -> Path:
        """Create the user's persistent folder if it does not exist yet."""
        folder = Path(self.format_volume_name(self.users_dir.rstrip("/") + "/{username}", self))
        if not folder.exists():
            folder.mkdir()
            folder.chmod(0o750)  # whatever the hub's umask
            os.chown(folder, self.lab_uid, self.lab_gid)
            self.log.info("created persistent folder %s for %s", folder, self.user.name)
        return folder


class JuviniDockerSpawner(JuviniSpawnerMixin, DockerSpawner):
    """DockerSpawner for one Docker host, with the lab's folders and Spark ports."""

    spark_driver_ports = Unicode("", help="first-last range of spark.driver.port values; empty disables.").tag(
        config=True
    )
    spark_block_manager_ports = Unicode("", help="first-last range of spark.blockManager.port values.").tag(config=True)
    spark_driver_host = Unicode("", help="Address external clusters use to reach drivers (spark.driver.host).").tag(
        config=True
    )
    spark_publish_ip = Unicode("0.0.0.0", help="Host address Spark ports are published on.").tag(config=True)
    stack_labels = Dict(help="Labels of this stack's containers: the running ones hold the taken ports.").tag(
        config=True
    )

    spark_ports: SparkPorts | None = None

    async def start(self) -> Any:
        self.ensure_user_folder()
        if not self.spark_driver_ports:
            return await super().start()
        async with _ALLOCATION_LOCK:
            running = await self._running_labels()
            try:
                self.spark_ports = allocate(
                    PortRange.parse(self.spark_driver_ports),
                    PortRange.parse(self.spark_block_manager_ports),
                    running,
                    reserved=[pair for name, pair in _RESERVED.items() if name != self.container_name],
                )
            except PortsExhausted as error:
                self.log.warning("refusing to start %s: %s", self.user.name, error)
                raise web.HTTPError(503, str(error), reason="Spark ports exhausted") from None
            _RESERVED[self.container_name] = self.spark_ports
        try:
            self._publish(self.spark_ports)
            return await super().start()
        finally:
            _RESERVED.pop(self.container_name, None)

    async def _running_labels(self) -> list[dict[str, str]]:
        filters = {"label": [f"{key}={value}" for key, value in self.stack_labels.items()]}
        containers = await self.docker("containers", filters=filters)
        return [container.get("Labels") or {} for container in containers if container["Id"] != self.object_id]

    def _publish(self, ports: SparkPorts) -> None:
        """Expose and publish the pair with the same number on the host; tell the kernel about it."""
        published = (ports.driver, ports.block_manager)
        self.extra_create_kwargs = _merged(
            self.extra_create_kwargs,
            {"ports": {f"{port}/tcp": None for port in published}, "labels": ports.labels()},
        )
        self.extra_host_config = _merged(
            self.extra_host_config, {"port_bindings": {port: (self.spark_publish_ip, port) for port in published}}
        )
        self.environment = _merged(
            self.environment,
            {
                "SPARK_DRIVER_PORT": str(ports.driver),
                "SPARK_BLOCKMANAGER_PORT": str(ports.block_manager),
                "SPARK_DRIVER_HOST": self.spark_driver_host,
            },
        )


class JuviniSwarmSpawner(JuviniSpawnerMixin, SwarmSpawner):
    """SwarmSpawner for scale-out across a Docker Swarm, with the lab's folders."""

    async def start(self) -> Any:
        self.ensure_user_folder()
        return await super().start()
