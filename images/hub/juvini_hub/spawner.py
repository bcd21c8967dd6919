"""The lab's spawners: DockerSpawner (one host) and SwarmSpawner (scale-out) with what the
lab adds before a user's server starts:

- the user's persistent folder, created owned by the lab uid/gid (it becomes their home);
- on a single Docker host, a Spark driver / block-manager port pair published on the
  host, so an external cluster can reach the driver in client mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import docker.errors
from dockerspawner import DockerSpawner, SwarmSpawner
from tornado import web
from traitlets import Dict, Int, List, Unicode
from traitlets.config import Configurable

from juvini_hub.kerberos import CCACHE_NAME, ccache_dir, kinit
from juvini_hub.spark_ports import DRIVER_PORT_LABEL, PortRange, PortsExhausted, SparkPorts, allocate

#: Where a user's ticket folder appears in their container.
KERBEROS_MOUNT = "/run/juvini/krb5"

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

    kerberos_realm = Unicode("", help="Kerberos realm; empty: users' servers get no ticket.").tag(config=True)
    kerberos_ccache_root = Unicode("/srv/jupyterhub/state/krb5cc", help="Ticket folders, as the hub sees them.").tag(
        config=True
    )
    kerberos_ccache_host_root = Unicode("", help="The same ticket folders, as the Docker host sees them.").tag(
        config=True
    )
    kerberos_config = Unicode("/srv/jupyterhub/state/krb5.conf", help="krb5.conf, as the hub sees it.").tag(config=True)
    kerberos_config_host_path = Unicode("", help="krb5.conf, as the Docker host sees it.").tag(config=True)

    async def prepare_kerberos(self) -> None:
        """Renew the user's ticket from the encrypted auth state and hand it to the container."""
        if not self.kerberos_realm:
            return
        name = self.user.name
        auth_state = await self.user.get_auth_state() or {}
        status = auth_state.get("kerberos") or {"ok": False, "message": "no Kerberos login recorded for this user"}
        if auth_state.get("password"):
            outcome = await kinit(
                f"{name}@{self.kerberos_realm}",
                auth_state["password"],
                ccache_dir(self.kerberos_ccache_root, name),
                self.lab_uid,
                self.lab_gid,
                self.kerberos_config,
            )
            status = outcome.as_state()
        host_folder = str(ccache_dir(self.kerberos_ccache_host_root, name))
        # The folder must exist before Docker bind-mounts it, or Docker makes it as root.
        ccache_dir(self.kerberos_ccache_root, name).mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chown(ccache_dir(self.kerberos_ccache_root, name), self.lab_uid, self.lab_gid)
        self.volumes = {
            **self.volumes,
            host_folder: {"bind": KERBEROS_MOUNT, "mode": "rw"},
            self.kerberos_config_host_path: {"bind": "/etc/krb5.conf", "mode": "ro"},
        }
        environment = {"KRB5CCNAME": f"FILE:{KERBEROS_MOUNT}/{CCACHE_NAME}"}
        if not status.get("ok"):
            self.log.warning("%s's server starts without a Kerberos ticket: %s", name, status.get("message"))
            environment["JUVINI_KERBEROS_WARNING"] = str(status.get("message"))
        self.environment = {**self.environment, **environment}

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

    cifs_user_shares = List(
        Dict(),
        help="Windows shares mounted with the user's own login: dicts of name, device (//server/share), "
        "address, domain, version, mount (path in the container), read_only.",
    ).tag(config=True)

    spark_ports: SparkPorts | None = None

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
        volumes = {}
        for share in self.cifs_user_shares:
            name = self.user_share_volume(share["name"])
            options = [
                f"addr={share['address']}",
                f"username={self.user.name}",
                f"password={password}",
                f"vers={share['version']}",
                f"uid={self.lab_uid}",
                f"gid={self.lab_gid}",
                "file_mode=0660",
                "dir_mode=0770",
            ]
            if share.get("domain"):
                options.append(f"domain={share['domain']}")
            if share.get("read_only"):
                options.append("ro")
            # A volume left by a server that did not stop cleanly may hold an old password.
            with contextlib.suppress(docker.errors.NotFound):
                await self.docker("remove_volume", name)
            await self.docker(
                "create_volume",
                name=name,
                driver="local",
                driver_opts={"type": "cifs", "device": share["device"], "o": ",".join(options)},
                labels={**self.stack_labels, "org.juvini.role": "user-share"},
            )
            volumes[name] = {"bind": share["mount"], "mode": "ro" if share.get("read_only") else "rw"}
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
