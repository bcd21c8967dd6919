"""Windows (CIFS) shares as Docker volumes that users' servers mount.

A team share is mounted with a service account; its volume is a stack resource whose
options (holding the account's password) are a secret in the stack's state. Per-user
shares are mounted with each user's own credentials, so the hub makes their volumes at
spawn (juvini_hub.spawner) and removes them when the server stops.

Both kinds are mounted with the options :func:`cifs_mount_options` builds, the login left
as placeholders: the team share's volume fills them in here with the service account, a
per-user share's list reaches the hub through the rendered jupyterhub_config.py
(:func:`user_share_config`) and the spawner fills them in with the user's own login.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_docker as docker

from infra.naming import Naming
from infra.settings import CifsShare, Settings

TYPE = "juvini:index:Shares"
#: Files and folders on a share, as users' servers see them (owned by the lab uid/gid).
FILE_MODE = "0660"
DIR_MODE = "0770"


def cifs_mount_options(share: CifsShare, uid: int, gid: int) -> list[str]:
    """The mount options of ``share`` (Docker's local driver passes them, joined, to the kernel as ``o=``).

    The login is left as ``{username}`` and ``{password}``, filled in with ``str.format``;
    no other option holds a brace (the settings' patterns allow none).
    """
    options = [
        f"addr={share.server_address}",
        "username={username}",
        "password={password}",
        f"vers={share.version}",
        f"uid={uid}",
        f"gid={gid}",
        f"file_mode={FILE_MODE}",
        f"dir_mode={DIR_MODE}",
    ]
    if share.domain:
        options.append(f"domain={share.domain}")
    if share.read_only:
        options.append("ro")
    return options


def cifs_options(share: CifsShare, uid: int, gid: int, username: str, password: str) -> str:
    """The ``o=`` option of a CIFS volume of ``share`` mounted with ``username``'s login.

    The kernel's CIFS option parser reads ``,,`` inside a password as one comma; a single
    comma would end the password and let the rest pass as further mount options.
    """
    if "," in username:
        raise ValueError(f"{share.name}: a CIFS username cannot hold a comma")
    login = {"username": username, "password": password.replace(",", ",,")}
    return ",".join(option.format_map(login) for option in cifs_mount_options(share, uid, gid))


def share_bind(share: CifsShare, home: str) -> dict[str, str]:
    """Where ``share`` appears in a user's server (under their ``home``), and how."""
    return {"bind": f"{home}/{share.folder}", "mode": "ro" if share.read_only else "rw"}


def user_share_config(share: CifsShare, uid: int, gid: int, home: str) -> dict[str, Any]:
    """A per-user share as ``JuviniDockerSpawner.cifs_user_shares`` takes it: the login left to fill in."""
    if not share.per_user:
        raise ValueError(f"{share.name} is a team share: its volume belongs to the stack")
    return {
        "name": share.name,
        "device": share.unc,
        "options": cifs_mount_options(share, uid, gid),
        **share_bind(share, home),
    }


def volume_name(naming: Naming, share: CifsShare) -> str:
    return naming.physical(f"cifs-{share.name}")


class Shares(pulumi.ComponentResource):
    """One Docker volume per team share."""

    volumes: dict[str, docker.Volume]

    def __init__(
        self, name: str, settings: Settings, naming: Naming, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.volumes = {}
        for share in settings.cifs.shares:
            if share.per_user:
                continue
            if share.username is None or share.password is None:
                raise ValueError(f"team share {share.name} without credentials")
            options = cifs_options(
                share, settings.lab_user.uid, settings.lab_user.gid, share.username, share.password.get_secret_value()
            )
            self.volumes[share.name] = docker.Volume(
                f"{name}-{share.name}",
                name=volume_name(naming, share),
                driver="local",
                # The options hold the service account's password: secret in the stack's state.
                driver_opts=pulumi.Output.secret({"type": "cifs", "device": share.unc, "o": options}),
                labels=[docker.VolumeLabelArgs(label=k, value=v) for k, v in naming.labels("share").items()],
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({"volumes": {key: volume.name for key, volume in self.volumes.items()}})
