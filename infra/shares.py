"""Windows (CIFS) team shares as Docker volumes that users' servers mount.

A team share is mounted with a service account; its volume is a stack resource whose
options (holding the account's password) are a secret in the stack's state. Per-user
shares are mounted with each user's own credentials, so the hub makes their volumes at
spawn (juvini_hub.spawner) and removes them when the server stops.
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from infra.naming import Naming
from infra.settings import CifsShare, Settings

TYPE = "juvini:index:Shares"


def cifs_options(share: CifsShare, uid: int, gid: int, username: str, password: str) -> str:
    """The ``o=`` mount options of a CIFS volume (Docker's local driver passes them to the kernel)."""
    options = [
        f"addr={share.server_address}",
        f"username={username}",
        f"password={password}",
        f"vers={share.version}",
        f"uid={uid}",
        f"gid={gid}",
        "file_mode=0660",
        "dir_mode=0770",
    ]
    if share.domain:
        options.append(f"domain={share.domain}")
    if share.read_only:
        options.append("ro")
    return ",".join(options)


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
