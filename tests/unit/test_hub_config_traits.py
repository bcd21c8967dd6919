"""Every option the rendered jupyterhub_config.py sets is a real configurable trait, and
every option juvini_hub requires is set.

JupyterHub only warns about an unknown option (a misspelt or removed trait) and goes on
without it, so a typo would silently drop a setting. These tests load the rendered file
with JupyterHub's loader and check each option against the class that owns it; and the
hub's own classes, which keep no defaults for the lab's facts, are made from it as the
hub makes them, so an option the config forgot fails here rather than at the hub's start.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from traitlets.config import Config, Configurable
from traitlets.config.loader import PyFileConfigLoader

from infra.hub_config import render_hub_config
from infra.naming import Naming
from infra.settings import parse_settings
from juvini_hub.auth import JuviniLDAPAuthenticator
from juvini_hub.contract import check_required
from juvini_hub.oidc import JuviniOIDCAuthenticator

pytestmark = pytest.mark.unit

OWNERS = {
    "JupyterHub": "jupyterhub.app:JupyterHub",
    "Authenticator": "jupyterhub.auth:Authenticator",
    "Spawner": "jupyterhub.spawner:Spawner",
    "ConfigurableHTTPProxy": "jupyterhub.proxy:ConfigurableHTTPProxy",
    "DockerSpawner": "dockerspawner:DockerSpawner",
    "SwarmSpawner": "dockerspawner:SwarmSpawner",
    "NativeAuthenticator": "nativeauthenticator:NativeAuthenticator",
    "LDAPAuthenticator": "ldapauthenticator:LDAPAuthenticator",
    "GitHubOAuthenticator": "oauthenticator.github:GitHubOAuthenticator",
    "DummyAuthenticator": "jupyterhub.auth:DummyAuthenticator",
    "JuviniSpawnerMixin": "juvini_hub.spawner:JuviniSpawnerMixin",
    "JuviniLDAPAuthenticator": "juvini_hub.auth:JuviniLDAPAuthenticator",
    "JuviniOIDCAuthenticator": "juvini_hub.oidc:JuviniOIDCAuthenticator",
    "JuviniDockerSpawner": "juvini_hub.spawner:JuviniDockerSpawner",
    "JuviniSwarmSpawner": "juvini_hub.spawner:JuviniSwarmSpawner",
    "KerberosTickets": "juvini_hub.kerberos:KerberosTickets",
}
IMAGES = {"base": "b:1", "datascience": "d:1", "pyspark": "p:1"}
VARIANTS: dict[str, dict[str, Any]] = {
    "native": {},
    "ldap": {
        "auth": {
            "type": "ldap",
            "ldap": {
                "serverAddress": "ldap.test",
                "lookupDn": True,
                "searchUser": "cn=svc",
                "searchPassword": "pw",
                "userSearchBase": "ou=people",
                "caCertificate": "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----",
            },
        }
    },
    "github": {"auth": {"type": "github", "github": {"clientId": "id", "clientSecret": "secret"}}},
    "oidc": {
        "auth": {
            "type": "oidc",
            "oidc": {
                "issuer": "https://login.example.org",
                "clientId": "lab",
                "clientSecret": "secret",
                "groupsClaim": "groups",
                "allowedGroups": ["lab"],
                "adminGroups": ["admins"],
                "caCertificate": "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----",
            },
        }
    },
    "dummy": {"auth": {"type": "dummy", "dummyPassword": "long-enough"}},
    "swarm": {
        "swarm": {"enabled": True, "placementConstraints": ["node.role==worker"]},
        "images": {"registry": "registry.example.org/lab", "push": True},
    },
    "swarm-private-registry": {
        "swarm": {"enabled": True},
        "images": {
            "registry": "registry.example.org:5000/lab",
            "push": True,
            "pullUsername": "puller",
            "pullPassword": "pull-secret",
        },
    },
    "ldap-kerberos": {
        "auth": {
            "type": "ldap",
            "ldap": {
                "serverAddress": "ldap.test",
                "bindDnTemplate": ["uid={username},dc=t"],
                "adminGroups": ["cn=admins,dc=t"],
            },
        },
        "kerberos": {"enabled": True, "realm": "LAB.TEST", "kdcs": ["kdc.test"]},
        "cifs": {"shares": [{"name": "home", "unc": "//10.0.0.9/homes", "perUser": True}]},
    },
}


def _owner(section: str) -> type[Configurable]:
    module, _, name = OWNERS[section].partition(":")
    return getattr(importlib.import_module(module), name)


def _loaded(variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    for name in (
        "JUVINI_LDAP_SEARCH_PASSWORD",
        "JUVINI_GITHUB_CLIENT_SECRET",
        "JUVINI_OIDC_CLIENT_SECRET",
        "JUVINI_DUMMY_PASSWORD",
        "JUVINI_REGISTRY_PULL_USERNAME",
        "JUVINI_REGISTRY_PULL_PASSWORD",
    ):
        monkeypatch.setenv(name, "from-env")
    text = render_hub_config(parse_settings(VARIANTS[variant]), Naming("juvini", "t"), IMAGES)
    (tmp_path / "jupyterhub_config.py").write_text(text, encoding="utf-8")
    return PyFileConfigLoader("jupyterhub_config.py", path=str(tmp_path)).load_config()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_option_is_a_configurable_trait(variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _loaded(variant, tmp_path, monkeypatch)
    unknown = []
    for section in config:
        if section not in OWNERS:
            unknown.append(f"{section} (no known owner)")
            continue
        traits = _owner(section).class_traits(config=True)
        unknown += [f"{section}.{option}" for option in config[section] if option not in traits]
    assert not unknown, f"options that JupyterHub would ignore: {unknown}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_required_option_is_set(variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spawner and authenticator the config names are made from it without MissingConfig."""
    config = _loaded(variant, tmp_path, monkeypatch)
    made: list[Any] = []
    spawner_class = _owner(config.JupyterHub.spawner_class.rpartition(".")[2])
    made.append(spawner_class(config=config, user=SimpleNamespace(name="alice")))
    if config.JupyterHub.authenticator_class == "juvini_hub.auth.JuviniLDAPAuthenticator":
        made.append(JuviniLDAPAuthenticator(config=config))
    if config.JupyterHub.authenticator_class == "juvini_hub.oidc.JuviniOIDCAuthenticator":
        check_required(JuviniOIDCAuthenticator(config=config))
    for instance in made:
        check_required(instance)  # (made already did, at construction)
        assert instance.kerberos.enabled is ("KerberosTickets" in config)
        if instance.kerberos.enabled:
            check_required(instance.kerberos)
