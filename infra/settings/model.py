"""The root model: every ``juvini:`` key of a stack, and the checks across its sections."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from infra.settings.auth import AuthSettings, KerberosSettings
from infra.settings.base import AbsolutePath, Section, refuse
from infra.settings.checks import contradictions
from infra.settings.cifs import CifsSettings
from infra.settings.host import (
    FolderSettings,
    HostSettings,
    LabUserSettings,
    NetworkSettings,
    PathSettings,
    SwarmSettings,
)
from infra.settings.hub import HubSettings, SparkSettings, SpawnerSettings
from infra.settings.images import ImageSettings
from infra.settings.profiles import ProfileSettings, effective_profiles
from infra.settings.security import SecuritySettings
from infra.settings.tls import TlsSettings


class Settings(Section):
    """Every ``juvini:`` key of a stack."""

    docker_host: str = Field(
        default="unix:///var/run/docker.sock",
        description="Docker engine endpoint: unix:///var/run/docker.sock, ssh://user@host or tcp://host:2376.",
    )
    docker_socket: AbsolutePath = Field(
        default="/var/run/docker.sock",
        description="Path of the Docker socket on the Docker host, mounted into the Docker API filter (into the "
        "hub with security.dockerApiFilter off).",
    )
    host: HostSettings = Field(
        default_factory=HostSettings, description="SSH access to the Docker host for host commands."
    )
    lab_user: LabUserSettings = Field(default_factory=LabUserSettings, description="The lab's host user and group.")
    paths: PathSettings = Field(default_factory=PathSettings, description="Lab folders on the Docker host.")
    allow_data_removal: bool = Field(
        default=False,
        description="Let 'pulumi destroy' delete user data (shared, users' and hub state folders, the lab user).",
    )
    tls: TlsSettings = Field(default_factory=TlsSettings, description="HTTPS certificates.")
    network: NetworkSettings = Field(default_factory=NetworkSettings, description="Docker networks.")
    images: ImageSettings = Field(default_factory=ImageSettings, description="Image builds.")
    hub: HubSettings = Field(default_factory=HubSettings, description="The hub and its proxy.")
    auth: AuthSettings = Field(default_factory=AuthSettings, description="Login.")
    spawner: SpawnerSettings = Field(default_factory=SpawnerSettings, description="Users' servers.")
    profiles: list[ProfileSettings] = Field(
        default=[],
        description="Profiles users pick at spawn (image, CPU, memory, environment, GPU; who may pick each); "
        "a user's first allowed profile is their default. Unset: one per spawner.allowedImages with the "
        "spawner's limits, open to everyone. See the Profiles section of the README.",
    )
    folders: FolderSettings = Field(
        default_factory=FolderSettings, description="Group folders beside users' own and the shared one."
    )
    spark: SparkSettings = Field(default_factory=SparkSettings, description="Spark in users' servers.")
    kerberos: KerberosSettings = Field(default_factory=KerberosSettings, description="Kerberos ticket at login.")
    cifs: CifsSettings = Field(default_factory=CifsSettings, description="Windows (CIFS) shares in users' servers.")
    swarm: SwarmSettings = Field(default_factory=SwarmSettings, description="Docker Swarm scale-out.")
    security: SecuritySettings = Field(
        default_factory=SecuritySettings, description="How users' containers are locked down."
    )

    @field_validator("docker_host")
    @classmethod
    def _docker_host(cls, value: str) -> str:
        if not re.fullmatch(
            r"(unix://(/[^\s]+)|tcp://[A-Za-z0-9.\-]+:[0-9]{1,5}|ssh://([a-z_][a-z0-9_-]*@)?[A-Za-z0-9.\-]+(:[0-9]{1,5})?)",
            value,
        ):
            raise ValueError("must be unix:///path/docker.sock, tcp://host:port or ssh://[user@]host[:port]")
        return value

    @model_validator(mode="after")
    def _cross_section(self) -> Settings:
        """Settings of different sections that contradict each other, each at its own key."""
        refuse(contradictions(self))
        return self

    # --- derived values -----------------------------------------------------------------

    @property
    def hub_url(self) -> str:
        host = self.hub.public_hostname
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        port = "" if self.hub.https_port == 443 else f":{self.hub.https_port}"
        return f"https://{host}{port}/"

    @property
    def network_isolation(self) -> bool:
        """Whether users' servers are firewalled (``security.networkIsolation``, its default resolved)."""
        return self.security.network_isolation_wanted(self.swarm.enabled)

    @property
    def admin_users(self) -> list[str]:
        return list(self.hub.admin_users)

    @property
    def spawn_profiles(self) -> list[ProfileSettings]:
        """The profiles users choose from: the stack's, or one per allowed image; limits filled in."""
        return effective_profiles(self.profiles, self.spawner)
