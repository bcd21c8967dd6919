"""The lab's settings: every ``juvini:`` stack key, typed and validated in one place.

This package is the only reader of ``pulumi.Config``. Everything else receives a
:class:`Settings` object. Validation happens once, before any resource is registered,
and every problem is reported together: each message names the key, the bad value and
what is allowed.

- ``base``: the section base, constrained types, problems and how they are reported;
- ``host``, ``tls``, ``images``, ``hub``, ``auth``, ``cifs``, ``profiles``: the sections, by group;
- ``model``: the root :class:`Settings`; ``checks``: contradictions across its sections;
- ``loading``: reading the stack and the files it names (``load_settings``, ``parse_settings``).

Defaults live here and nowhere else: ``Pulumi.yaml``'s ``config:`` block and the README's
configuration reference are generated from this model (``python -m infra.reference``)
and a unit test keeps them in step.
"""

from __future__ import annotations

from infra import flavours
from infra.settings.auth import (
    AuthSettings,
    AuthType,
    GithubAuthSettings,
    KerberosSettings,
    LdapSettings,
    LdapTls,
    NativeAuthSettings,
    OidcSettings,
)
from infra.settings.base import (
    NAMESPACE,
    AbsolutePath,
    ConfigError,
    DockerMemory,
    HostnameOrIp,
    Port,
    PortRange,
    Problem,
    Section,
    Username,
    memory_bytes,
)
from infra.settings.cifs import SHARED_MOUNT, CifsSettings, CifsShare
from infra.settings.host import (
    DATA_MOUNT,
    GROUPS_MOUNT,
    FolderSettings,
    HostSettings,
    LabUserSettings,
    NetworkSettings,
    PathSettings,
    SwarmManagerSettings,
    SwarmSettings,
    SwarmWorkerSettings,
)
from infra.settings.hub import LAB_ENVIRONMENT, LAB_ENVIRONMENT_PREFIXES, HubSettings, SparkSettings, SpawnerSettings
from infra.settings.images import MAX_CA_BUNDLE_BYTES, ImageReference, ImageSettings
from infra.settings.loading import SECRET_KEYS, load_settings, parse_settings
from infra.settings.model import Settings
from infra.settings.profiles import GpuRequest, ProfileSettings
from infra.settings.tls import TlsMode, TlsSettings

#: Notebook image flavours built from ``images/``; users pick among the allowed ones at spawn.
NOTEBOOK_FLAVOURS: tuple[str, ...] = flavours.NAMES

__all__ = [
    "DATA_MOUNT",
    "GROUPS_MOUNT",
    "LAB_ENVIRONMENT",
    "LAB_ENVIRONMENT_PREFIXES",
    "MAX_CA_BUNDLE_BYTES",
    "NAMESPACE",
    "NOTEBOOK_FLAVOURS",
    "SECRET_KEYS",
    "SHARED_MOUNT",
    "AbsolutePath",
    "AuthSettings",
    "AuthType",
    "CifsSettings",
    "CifsShare",
    "ConfigError",
    "DockerMemory",
    "FolderSettings",
    "GithubAuthSettings",
    "GpuRequest",
    "HostSettings",
    "HostnameOrIp",
    "HubSettings",
    "ImageReference",
    "ImageSettings",
    "KerberosSettings",
    "LabUserSettings",
    "LdapSettings",
    "LdapTls",
    "NativeAuthSettings",
    "NetworkSettings",
    "OidcSettings",
    "PathSettings",
    "Port",
    "PortRange",
    "Problem",
    "ProfileSettings",
    "Section",
    "Settings",
    "SparkSettings",
    "SpawnerSettings",
    "SwarmManagerSettings",
    "SwarmSettings",
    "SwarmWorkerSettings",
    "TlsMode",
    "TlsSettings",
    "Username",
    "load_settings",
    "memory_bytes",
    "parse_settings",
]
