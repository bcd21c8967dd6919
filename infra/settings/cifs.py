"""The ``cifs`` section: Windows (SMB/CIFS) shares mounted in users' servers."""

from __future__ import annotations

import ipaddress
import re
from pathlib import PurePosixPath
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from infra.settings.base import Problem, Section, nesting, refuse

#: The folder of the user's home where the shared folder (``paths.sharedDir``) appears.
SHARED_MOUNT = "shared"


class CifsShare(Section):
    """A Windows (SMB/CIFS) share mounted into users' servers through a Docker volume."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="Short name (volume and default folder name).")
    unc: str = Field(description="Share as //server/share.")
    address: str | None = Field(
        default=None,
        description="IP address of the server (the kernel's CIFS client needs one); from unc when that is an IP.",
    )
    mount_path: str | None = Field(
        default=None,
        description="Folder under the user's home it appears at; name when unset. Not 'shared' (the shared "
        "folder) and not inside another share's folder.",
    )
    per_user: bool = Field(
        default=False,
        description="Mount with each user's own login and password at spawn (auth.type ldap), not a service account.",
    )
    username: str | None = Field(
        default=None,
        # A comma would end the option and start another (the kernel un-doubles commas in passwords only).
        pattern=r"^[^,\s]{1,256}$",
        description="Service account for a team share (no commas or spaces).",
    )
    password: SecretStr | None = Field(default=None, description="Service account password. Secret.")
    domain: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9.-]{1,64}$", description="Windows domain of the accounts."
    )
    version: Literal["2.0", "2.1", "3.0", "3.1.1"] = Field(default="3.0", description="SMB protocol version (vers=).")
    read_only: bool = Field(default=False, description="Mount read-only.")

    @field_validator("unc")
    @classmethod
    def _unc(cls, value: str) -> str:
        if not re.fullmatch(r"//[A-Za-z0-9.-]+/[A-Za-z0-9$_. -]+(/[A-Za-z0-9$_. /-]*)?", value):
            raise ValueError("must be //server/share (forward slashes)")
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)
        return value

    @field_validator("mount_path")
    @classmethod
    def _mount_path(cls, value: str | None) -> str | None:
        if value is not None and (
            value.startswith("/") or ".." in value.split("/") or not re.fullmatch(r"[A-Za-z0-9._/-]+", value)
        ):
            raise ValueError("must be a relative folder under the user's home, e.g. team or shares/finance")
        if value is not None and str(PurePosixPath(value)) == ".":
            raise ValueError("must name a folder under the user's home, not the home itself")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> CifsShare:
        problems = []
        host = self.unc_server
        if self.address is None:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                problems.append(Problem("address", None, f"required when the unc server {host!r} is not an IP address"))
        if self.per_user:
            problems += [
                Problem(key, value, "a perUser share mounts with each user's own login; remove username/password")
                for key, value in (("username", self.username), ("password", self.password))
                if value
            ]
        else:
            problems += [
                Problem(key, None, "a team share needs username and password (or set perUser)")
                for key, value in (("username", self.username), ("password", self.password))
                if not value
            ]
        refuse(problems)
        return self

    @property
    def unc_server(self) -> str:
        return self.unc.split("/")[2]

    @property
    def server_address(self) -> str:
        return self.address or self.unc_server

    @property
    def folder(self) -> str:
        return str(PurePosixPath(self.mount_path or self.name))

    @property
    def folder_key(self) -> str:
        """The key the folder comes from: ``mountPath``, or ``name`` when it is unset."""
        return "mountPath" if self.mount_path is not None else "name"


class CifsSettings(Section):
    """Windows shares in users' servers."""

    shares: list[CifsShare] = Field(default=[], description="Shares to mount; see the CIFS section of the README.")

    @model_validator(mode="after")
    def _apart(self) -> CifsSettings:
        problems = []
        shared = PurePosixPath(SHARED_MOUNT)
        for index, share in enumerate(self.shares):
            folder = PurePosixPath(share.folder)
            key = f"shares[{index}].{share.folder_key}"
            value = share.mount_path if share.mount_path is not None else share.name
            relation = nesting(folder, shared)
            if relation:
                problems.append(
                    Problem(
                        key, value, f"{relation} the shared folder's mount point ~/{SHARED_MOUNT}; pick another folder"
                    )
                )
                continue
            for before, other in enumerate(self.shares[:index]):
                if share.name == other.name:
                    problems.append(
                        Problem(f"shares[{index}].name", share.name, f"must differ from cifs.shares[{before}].name")
                    )
                    break
                relation = nesting(folder, PurePosixPath(other.folder))
                if relation:
                    problems.append(
                        Problem(
                            key,
                            value,
                            f"{relation} the folder {other.folder!r} of cifs.shares[{before}]; "
                            "shares need separate folders, neither inside another",
                        )
                    )
                    break
        refuse(problems)
        return self
