"""Host setup over SSH: the lab user and group, the lab's folders, the engine's live-restore and the
network isolation of users' servers.

Each step is a pulumi-command ``remote.Command`` whose create script is idempotent and
whose delete script undoes it on ``pulumi destroy`` (keeping user data unless the stack
allows removing it). Privileged steps run through ``sudo -n`` for a non-root SSH user.
Every node of the lab gets the same setup over its own SSH connection: the Docker host
(the swarm manager) and, under Swarm, each worker.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
from pulumi_command import remote
from pydantic import SecretStr

from infra.aliases import FormerParent, former
from infra.isolation import isolation_scripts
from infra.naming import Naming
from infra.rendering import render
from infra.settings import Settings, SwarmWorkerSettings

TYPE = "juvini:index:Host"
#: How messages name the Docker host (``host.*``) among the nodes of a swarm.
MANAGER = "manager"


@dataclass(frozen=True)
class Node:
    """A Docker host of the lab reached over SSH: the Docker host of ``host.*`` (the swarm
    manager) or a swarm worker, which takes the host's credentials unless it has its own key."""

    name: str
    address: str
    ssh_port: int
    ssh_user: str
    use_sudo: bool
    host_key: str | None
    private_key: SecretStr | None
    password: SecretStr | None
    worker: bool = False

    @classmethod
    def manager(cls, settings: Settings) -> Node:
        host = settings.host
        return cls(
            MANAGER,
            host.address,
            host.ssh_port,
            host.ssh_user,
            host.use_sudo,
            host.host_key,
            host.private_key(),
            host.ssh_password,
        )

    @classmethod
    def of_worker(cls, settings: Settings, worker: SwarmWorkerSettings) -> Node:
        own_key = worker.ssh_private_key
        host = settings.host
        return cls(
            worker.name,
            worker.address,
            worker.ssh_port,
            worker.ssh_user,
            worker.use_sudo,
            worker.host_key,
            own_key if own_key is not None else host.private_key(),
            None if own_key is not None else host.ssh_password,
            worker=True,
        )

    def __str__(self) -> str:
        return f"{self.name} ({self.address})"


def connection_args(settings: Settings, node: Node | None = None) -> remote.ConnectionArgs:
    """SSH connection to ``node`` (the Docker host when None); key and password stay secrets."""
    node = node or Node.manager(settings)
    return remote.ConnectionArgs(
        host=node.address,
        port=node.ssh_port,
        user=node.ssh_user,
        private_key=pulumi.Output.secret(node.private_key.get_secret_value()) if node.private_key else None,
        password=pulumi.Output.secret(node.password.get_secret_value()) if node.password else None,
        host_key=node.host_key,
        dial_error_limit=5,
        per_dial_timeout=15,
    )


def privileged(settings: Settings, script: str, node: Node | None = None) -> str:
    """A command line that runs ``script`` as root on ``node`` (the Docker host when None)."""
    use_sudo = node.use_sudo if node is not None else settings.host.use_sudo
    sudo = "sudo -n " if use_sudo else ""
    return f"{sudo}sh -c {shlex.quote(script)}"


def lab_user_scripts(settings: Settings) -> tuple[str, str]:
    """The (create, delete) scripts for the lab's user and group."""
    values = {
        "name": settings.lab_user.name,
        "uid": settings.lab_user.uid,
        "gid": settings.lab_user.gid,
        "docker_group": settings.lab_user.docker_group,
        "allow_data_removal": settings.allow_data_removal,
    }
    return render("host-lab-user.sh.j2", **values), render("host-lab-user-delete.sh.j2", **values)


def group_folders(settings: Settings) -> list[str]:
    """The host path of each group folder (folders.groups under paths.groupsDir)."""
    root = settings.paths.groups_dir
    return [f"{root}/{group}" for group in settings.folders.groups] if root else []


def mounted_folders(settings: Settings) -> list[str]:
    """The folders users' servers mount: on every node of a swarm they must be one shared filesystem."""
    paths = settings.paths
    return [
        paths.users_dir,
        paths.shared_dir,
        *([paths.groups_dir] if paths.groups_dir else []),
        *([paths.data_dir] if paths.data_dir else []),
    ]


def folder_scripts(settings: Settings, worker: bool = False) -> tuple[str, str]:
    """The (create, delete) scripts for the lab's folders.

    A worker gets only the folders users' servers mount (the TLS and hub state folders are the
    manager's), and its destroy keeps them all: they are the shared storage, the manager's data.
    """
    paths = settings.paths
    tls_dir = None if worker else paths.tls_dir
    hub_state_dir = None if worker else paths.hub_state_dir
    # Users' data: kept on destroy unless the stack allows removing it.
    user_data = [
        paths.shared_dir,
        paths.users_dir,
        *([paths.groups_dir] if paths.groups_dir else []),
        *([hub_state_dir] if hub_state_dir else []),
    ]
    listed = [paths.shared_dir, tls_dir, paths.users_dir, hub_state_dir, *group_folders(settings), paths.data_dir]
    values = {
        "uid": settings.lab_user.uid,
        "gid": settings.lab_user.gid,
        "shared_dir": paths.shared_dir,
        "tls_dir": tls_dir,
        "users_dir": paths.users_dir,
        "hub_state_dir": hub_state_dir,
        "groups_dir": paths.groups_dir,
        "group_folders": group_folders(settings),
        "data_dir": paths.data_dir,
        "listed": [folder for folder in listed if folder],
        "user_data": user_data,
        "allow_data_removal": settings.allow_data_removal and not worker,
        "worker": worker,
    }
    return render("host-folders.sh.j2", **values), render("host-folders-delete.sh.j2", **values)


#: The engine's configuration file, and where stacks mark that they rely on live-restore.
DAEMON_JSON = "/etc/docker/daemon.json"
LIVE_RESTORE_MARKERS = "/etc/docker/juvini-live-restore"
#: Where dockerd writes its pid (its default, also under systemd).
DOCKERD_PIDFILE = "/var/run/docker.pid"


def live_restore_scripts(naming: Naming) -> tuple[str, str]:
    """The (create, delete) scripts turning the engine's live-restore on for this stack."""
    values = {
        "daemon_json": DAEMON_JSON,
        "marker_dir": LIVE_RESTORE_MARKERS,
        "engine_pidfile": DOCKERD_PIDFILE,
        "stack": naming.prefix,
    }
    return render("host-live-restore.sh.j2", **values), render("host-live-restore-delete.sh.j2", **values)


#: Where a Docker engine looks for the CA of a registry (``<registry host:port>/*.crt``).
REGISTRY_CERTS_DIR = "/etc/docker/certs.d"


def registry_ca_scripts(settings: Settings, naming: Naming, node: Node) -> tuple[str, str]:
    """The (create, delete) scripts making ``node``'s engine trust images.registryCa for images.registry."""
    server = settings.images.registry_server()
    if server is None:
        raise ValueError("images.registryCa needs images.registry")
    folder = f"{REGISTRY_CERTS_DIR}/{server}"
    values = {"server": server, "folder": folder, "file": f"{folder}/{naming.prefix}.crt", "node": str(node)}
    return render("host-registry-ca.sh.j2", **values), render("host-registry-ca-delete.sh.j2", **values)


def user_servers_delete_script(naming: Naming) -> str:
    """Script removing the stack's users' servers (the hub's containers, not the stack's resources)."""
    return render("host-user-servers-delete.sh.j2", stack=naming.stack, project=naming.project)


def file_script(settings: Settings, path: str, mode: str) -> str:
    """Script writing stdin to ``path`` owned by the lab user."""
    return render("host-file.sh.j2", path=path, mode=mode, uid=settings.lab_user.uid, gid=settings.lab_user.gid)


class Host(pulumi.ComponentResource):
    """A node made ready for the lab: user, group and folders. The Docker host unless ``node``
    names another node (a swarm worker), reached over its own SSH connection."""

    lab_user: remote.Command
    folders: remote.Command

    def __init__(
        self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None, node: Node | None = None
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self._settings = settings
        self.node = node or Node.manager(settings)
        self.connection = connection_args(settings, self.node)
        child = pulumi.ResourceOptions(parent=self)

        create, delete = lab_user_scripts(settings)
        self.lab_user = remote.Command(
            f"{name}-lab-user",
            connection=self.connection,
            create=self.privileged(create),
            delete=self.privileged(delete),
            opts=child,
        )
        create, delete = folder_scripts(settings, worker=self.node.worker)
        self.folders = remote.Command(
            f"{name}-folders",
            connection=self.connection,
            create=self.privileged(create),
            delete=self.privileged(delete),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.lab_user]),
        )
        self.ready: list[pulumi.Resource] = [self.lab_user, self.folders]
        self.register_outputs({"labUser": self.lab_user.stdout, "folders": self.folders.stdout})

    def privileged(self, script: str) -> str:
        """A command line that runs ``script`` as root on this node."""
        return privileged(self._settings, script, self.node)

    def file(
        self,
        name: str,
        path: str,
        content: pulumi.Input[str],
        mode: str = "0600",
        opts: pulumi.ResourceOptions | None = None,
    ) -> remote.Command:
        """A file on the host, written from ``content`` over stdin (so secrets stay off command lines)."""
        return remote.Command(
            name,
            connection=self.connection,
            create=self.privileged(file_script(self._settings, path, mode)),
            delete=self.privileged(f"rm -f {shlex.quote(path)}"),
            stdin=content,
            logging=remote.Logging.STDERR,
            opts=pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self, depends_on=self.ready), opts),
        )

    def engine_live_restore(self, naming: Naming) -> remote.Command | None:
        """Turns the engine's live-restore on (when the stack wants it): users' servers outlive an
        engine restart. Make the hub and users' servers depend on it."""
        settings = self._settings
        if not settings.security.live_restore_wanted(settings.swarm.enabled):
            return None
        create, delete = live_restore_scripts(naming)
        return remote.Command(
            f"{self.pulumi_resource_name}-live-restore",
            connection=self.connection,
            create=self.privileged(create),
            delete=self.privileged(delete),
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.ready),
        )

    def registry_trust(self, naming: Naming) -> remote.Command | None:
        """The engine trusting the registry's CA (images.registryCa), if the stack gives one: its
        pushes (the Docker host builds the images) and its pulls (every swarm node runs users'
        servers) then verify the registry's certificate."""
        settings = self._settings
        if settings.images.registry_ca is None:
            return None
        create, delete = registry_ca_scripts(settings, naming, self.node)
        return remote.Command(
            f"{self.pulumi_resource_name}-registry-ca",
            connection=self.connection,
            create=self.privileged(create),
            delete=self.privileged(delete),
            stdin=settings.images.registry_ca,
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.ready),
        )

    def network_isolation(self, naming: Naming) -> remote.Command | None:
        """Firewalls users' servers (security.networkIsolation, infra/isolation.py): the stack's iptables
        chains, applied before the lab's containers run and removed (on destroy) once they are gone.
        A changed setting runs the create script again, which replaces the chains' rules in place."""
        settings = self._settings
        if not settings.network_isolation:
            return None
        create, delete = isolation_scripts(settings, naming)
        return remote.Command(
            f"{self.pulumi_resource_name}-network-isolation",
            connection=self.connection,
            create=self.privileged(create),
            delete=self.privileged(delete),
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.ready),
        )

    def user_servers_cleanup(
        self, naming: Naming, after: Sequence[pulumi.Resource], formerly: FormerParent | None = None
    ) -> remote.Command:
        """Removes users' servers on destroy: they are the hub's containers, not the stack's.

        ``after``: what must outlive users' servers (the users' network: Docker refuses to remove
        a network with containers attached). Make the hub container depend on the command:
        destroy, in reverse order, then removes the hub, then users' servers, then the network.
        ``formerly``: the component that held the command before (the alias keeps it).
        """
        return remote.Command(
            f"{self.pulumi_resource_name}-user-servers-cleanup",
            connection=self.connection,
            create=self.privileged("true"),  # proves early that privileged steps work
            delete=self.privileged(user_servers_delete_script(naming)),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*after, *self.ready], aliases=former(formerly, "user-servers-cleanup")
            ),
        )
