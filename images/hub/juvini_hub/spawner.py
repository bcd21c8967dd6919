"""The lab's spawners: DockerSpawner (one host) and SwarmSpawner (scale-out) with what the
lab adds before a user's server starts:

- the user's persistent folder, created owned by the lab uid/gid (it becomes their home);
- with Kerberos, the user's ticket renewed and mounted (``juvini_hub.kerberos``);
- on a single Docker host, the user's own Windows shares and a Spark driver /
  block-manager port pair published on the host, so an external cluster can reach the
  driver in client mode.

Every fact about the lab comes from the rendered jupyterhub_config.py: the options
declared with :func:`juvini_hub.contract.required` have no default here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker.errors
from dockerspawner import DockerSpawner, SwarmSpawner
from tornado import web
from traitlets import Dict, Int, List, TraitError, Unicode, validate

from juvini_hub.contract import check_required, required
from juvini_hub.kerberos import WithKerberosTickets
from juvini_hub.spark_ports import DRIVER_PORT_LABEL, PortRange, PortsExhausted, SparkPorts, allocate

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


class JuviniSpawnerMixin(WithKerberosTickets):
    """What every lab spawner does before the server starts."""

    if TYPE_CHECKING:
        # What the spawners the mixin is mixed into have (jupyterhub.spawner.Spawner, DockerSpawner).
        user: Any
        log: logging.Logger
        volumes: dict[str, Any]
        environment: dict[str, str]
        extra_create_kwargs: dict[str, Any]
        extra_host_config: dict[str, Any]

        def format_volume_name(self, template: str, spawner: Any) -> str: ...

    user_folder = required(
        Unicode(
            help="Host path of a user's persistent folder, with {username} (the hub sees it at the same path); "
            "the same path DockerSpawner.volumes mounts as their home."
        )
    )
    lab_uid = required(Int(help="uid owning users' folders; containers run as it."))
    lab_gid = required(Int(help="gid owning users' folders."))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_required(self)

    async def prepare_kerberos(self) -> None:
        """Renew the user's ticket from the encrypted auth state and hand it to the container."""
        if not self.kerberos.enabled:
            return
        ticket = await self.kerberos.at_spawn(self.user.name, await self.user.get_auth_state() or {})
        self.volumes = {**self.volumes, **ticket.volumes}
        self.environment = {**self.environment, **ticket.environment}

    def ensure_user_folder(self) -> Path:
        """Create the user's persistent folder if it does not exist yet."""
        folder = Path(self.format_volume_name(self.user_folder, self))
        if not folder.exists():
            folder.mkdir()
            folder.chmod(0o750)  # whatever the hub's umask
            os.chown(folder, self.lab_uid, self.lab_gid)
            self.log.info("created persistent folder %s for %s", folder, self.user.name)
        return folder


class JuviniDockerSpawner(JuviniSpawnerMixin, DockerSpawner):
    """DockerSpawner for one Docker host, with the lab's folders, shares and Spark ports."""

    spark_driver_ports = required(Unicode(help="first-last range of spark.driver.port values."))
    spark_block_manager_ports = required(Unicode(help="first-last range of spark.blockManager.port values."))
    spark_driver_host = required(Unicode(help="Address external clusters use to reach drivers (spark.driver.host)."))
    spark_publish_ip = required(Unicode(help="Host address Spark ports are published on."))
    cifs_user_shares = required(
        List(
            Dict(),
            help="Windows shares mounted with the user's own login: dicts of name, device (//server/share), "
            "options (mount options, the login as {username} and {password}), bind (path in the container) "
            "and mode (ro or rw).",
        )
    )
    user_share_labels = required(Dict(help="Labels of the per-user share volumes the hub makes at spawn."))

    spark_ports: SparkPorts | None = None

    @validate("spark_driver_ports", "spark_block_manager_ports")
    def _port_range(self, proposal: dict[str, Any]) -> str:
        try:
            PortRange.parse(proposal["value"])
        except ValueError:
            raise TraitError(f"{proposal['trait'].name} must be first-last, not {proposal['value']!r}") from None
        return proposal["value"]

    async def prepare_user_shares(self) -> None:
        """Make this user's CIFS volumes from the password in the encrypted auth state."""
        if not self.cifs_user_shares:
            return
        auth_state = await self.user.get_auth_state() or {}
        password = auth_state.get("password")
        if not password:
            message = "no password in the auth state (log out and in again) for shares " + ", ".join(
                share["name"] for share in self.cifs_user_shares
            )
            self.log.warning("%s's server starts without its Windows shares: %s", self.user.name, message)
            self.environment = {**self.environment, "JUVINI_CIFS_WARNING": message}
            return
        if "," in self.user.name:
            message = f"the username {self.user.name!r} holds a comma, which CIFS mount options cannot carry"
            self.log.warning("%s's server starts without its Windows shares: %s", self.user.name, message)
            self.environment = {**self.environment, "JUVINI_CIFS_WARNING": message}
            return
        # The kernel reads ",," inside a password as one comma (infra/shares.py escapes team shares' alike);
        # a single comma would end the password and pass the rest as mount options.
        login = {"username": self.user.name, "password": password.replace(",", ",,")}
        volumes = {}
        for share in self.cifs_user_shares:
            name = self.user_share_volume(share["name"])
            # Built by infra/shares.py as a team share's are; only the login is the user's.
            options = [option.format_map(login) for option in share["options"]]
            # A volume left by a server that did not stop cleanly may hold an old password.
            with contextlib.suppress(docker.errors.NotFound):
                await self.docker("remove_volume", name)
            await self.docker(
                "create_volume",
                name=name,
                driver="local",
                driver_opts={"type": "cifs", "device": share["device"], "o": ",".join(options)},
                labels=dict(self.user_share_labels),
            )
            volumes[name] = {"bind": share["bind"], "mode": share["mode"]}
        self.volumes = {**self.volumes, **volumes}

    def user_share_volume(self, share: str) -> str:
        return f"{self.container_name}-cifs-{share}"

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        for share in self.cifs_user_shares:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                await self.docker("remove_volume", self.user_share_volume(share["name"]))

    async def start(self) -> Any:
        self.ensure_user_folder()
        await self.prepare_kerberos()
        await self.prepare_user_shares()
        self.spark_ports = await self._allocate_spark_ports()
        try:
            self._publish(self.spark_ports)
            return await super().start()
        finally:
            # Released under the lock: an allocation never runs between this pair leaving
            # the table and a listing of running containers that missed its container.
            async with _ALLOCATION_LOCK:
                _RESERVED.pop(self.container_name, None)

    async def _allocate_spark_ports(self) -> SparkPorts:
        """The lowest free pair, reserved until this server's container exists."""
        async with _ALLOCATION_LOCK:
            running = await self._running_labels()
            try:
                ports = allocate(
                    PortRange.parse(self.spark_driver_ports),
                    PortRange.parse(self.spark_block_manager_ports),
                    running,
                    reserved=[pair for name, pair in _RESERVED.items() if name != self.container_name],
                )
            except PortsExhausted as error:
                self.log.warning("refusing to start %s: %s", self.user.name, error)
                raise web.HTTPError(503, str(error), reason="Spark ports exhausted") from None
            _RESERVED[self.container_name] = ports
            return ports

    async def _running_labels(self) -> list[dict[str, str]]:
        # Every lab on this Docker host, not only this stack: host ports are shared.
        filters = {"label": [DRIVER_PORT_LABEL]}
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
        await self.prepare_kerberos()
        return await super().start()
