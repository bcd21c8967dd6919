"""Host setup over SSH: the lab user and group, the lab's folders, the engine's live-restore and the
network isolation of users' servers.

Each step is a pulumi-command ``remote.Command`` whose create script is idempotent and
whose delete script undoes it on ``pulumi destroy`` (keeping user data unless the stack
allows removing it). Privileged steps run through ``sudo -n`` for a non-root SSH user.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

import pulumi
from pulumi_command import remote

from infra.aliases import FormerParent, former
from infra.isolation import isolation_scripts
from infra.naming import Naming
from infra.rendering import render
from infra.settings import Settings

TYPE = "juvini:index:Host"


def connection_args(settings: Settings) -> remote.ConnectionArgs:
    """SSH connection to the Docker host; key and password stay secrets."""
    host = settings.host
    private_key = host.private_key()
    return remote.ConnectionArgs(
        host=host.address,
        port=host.ssh_port,
        user=host.ssh_user,
        private_key=pulumi.Output.secret(private_key.get_secret_value()) if private_key else None,
        password=pulumi.Output.secret(host.ssh_password.get_secret_value()) if host.ssh_password else None,
        host_key=host.host_key,
        dial_error_limit=5,
        per_dial_timeout=15,
    )


def privileged(settings: Settings, script: str) -> str:
    """A command line that runs ``script`` as root on the host."""
    sudo = "sudo -n " if settings.host.use_sudo else ""
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


def folder_scripts(settings: Settings) -> tuple[str, str]:
    """The (create, delete) scripts for the lab's folders."""
    paths = settings.paths
    # Users' data: kept on destroy unless the stack allows removing it.
    user_data = [
        paths.shared_dir,
        paths.users_dir,
        *([paths.groups_dir] if paths.groups_dir else []),
        paths.hub_state_dir,
    ]
    values = {
        "uid": settings.lab_user.uid,
        "gid": settings.lab_user.gid,
        "shared_dir": paths.shared_dir,
        "tls_dir": paths.tls_dir,
        "users_dir": paths.users_dir,
        "hub_state_dir": paths.hub_state_dir,
        "groups_dir": paths.groups_dir,
        "group_folders": group_folders(settings),
        "data_dir": paths.data_dir,
        "listed": [paths.shared_dir, paths.tls_dir, paths.users_dir, paths.hub_state_dir, *group_folders(settings)]
        + ([paths.data_dir] if paths.data_dir else []),
        "user_data": user_data,
        "allow_data_removal": settings.allow_data_removal,
    }
    return render("host-folders.sh.j2", **values), render("host-folders-delete.sh.j2", **values)


#: The engine's configuration file, and where stacks mark that they rely on live-restore.
DAEMON_JSON = "/etc/docker/daemon.json"
LIVE_RESTORE_MARKERS = "/etc/docker/juvini-live-restore"


def live_restore_scripts(naming: Naming) -> tuple[str, str]:
    """The (create, delete) scripts turning the engine's live-restore on for this stack."""
    values = {"daemon_json": DAEMON_JSON, "marker_dir": LIVE_RESTORE_MARKERS, "stack": naming.prefix}
    return render("host-live-restore.sh.j2", **values), render("host-live-restore-delete.sh.j2", **values)


def user_servers_delete_script(naming: Naming) -> str:
    """Script removing the stack's users' servers (the hub's containers, not the stack's resources)."""
    return render("host-user-servers-delete.sh.j2", stack=naming.stack, project=naming.project)


def file_script(settings: Settings, path: str, mode: str) -> str:
    """Script writing stdin to ``path`` owned by the lab user."""
    return render("host-file.sh.j2", path=path, mode=mode, uid=settings.lab_user.uid, gid=settings.lab_user.gid)


class Host(pulumi.ComponentResource):
    """The Docker host made ready for the lab: user, group and folders."""

    lab_user: remote.Command
    folders: remote.Command

    def __init__(self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        self._settings = settings
        self.connection = connection_args(settings)
        child = pulumi.ResourceOptions(parent=self)

        create, delete = lab_user_scripts(settings)
        self.lab_user = remote.Command(
            f"{name}-lab-user",
            connection=self.connection,
            create=privileged(settings, create),
            delete=privileged(settings, delete),
            opts=child,
        )
        create, delete = folder_scripts(settings)
        self.folders = remote.Command(
            f"{name}-folders",
            connection=self.connection,
            create=privileged(settings, create),
            delete=privileged(settings, delete),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.lab_user]),
        )
        self.ready: list[pulumi.Resource] = [self.lab_user, self.folders]
        self.register_outputs({"labUser": self.lab_user.stdout, "folders": self.folders.stdout})

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
            create=privileged(self._settings, file_script(self._settings, path, mode)),
            delete=privileged(self._settings, f"rm -f {shlex.quote(path)}"),
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
            create=privileged(settings, create),
            delete=privileged(settings, delete),
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
            create=privileged(settings, create),
            delete=privileged(settings, delete),
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
            create=privileged(self._settings, "true"),  # proves early that privileged steps work
            delete=privileged(self._settings, user_servers_delete_script(naming)),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*after, *self.ready], aliases=former(formerly, "user-servers-cleanup")
            ),
        )
