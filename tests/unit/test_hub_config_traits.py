"""Every option the rendered jupyterhub_config.py sets is a real configurable trait.

JupyterHub only warns about an unknown option (a misspelt or removed trait) and goes on
without it, so a typo would silently drop a setting. This test loads the rendered file
with JupyterHub's loader and checks each option against the class that owns it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from traitlets.config.loader import PyFileConfigLoader

from infra.hub_config import render_hub_config
from infra.naming import Naming
from infra.settings import parse_settings

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
    "JuviniDockerSpawner": "juvini_hub.spawner:JuviniDockerSpawner",
    "JuviniSwarmSpawner": "juvini_hub.spawner:JuviniSwarmSpawner",
}
IMAGES = {"base": "b:1", "datascience": "d:1", "pyspark": "p:1"}
VARIANTS = {
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
    "dummy": {"auth": {"type": "dummy", "dummyPassword": "long-enough"}},
    "swarm": {"swarm": {"enabled": True, "placementConstraints": ["node.role==worker"]}},
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


def _owner(section: str) -> type:
    module, _, name = OWNERS[section].partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_option_is_a_configurable_trait(variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JUVINI_LDAP_SEARCH_PASSWORD", "JUVINI_GITHUB_CLIENT_SECRET", "JUVINI_DUMMY_PASSWORD"):
        monkeypatch.setenv(name, "from-env")
    text = render_hub_config(parse_settings(VARIANTS[variant]), Naming("juvini", "t"), IMAGES)
    (tmp_path / "jupyterhub_config.py").write_text(text, encoding="utf-8")
    config = PyFileConfigLoader("jupyterhub_config.py", path=str(tmp_path)).load_config()
    unknown = []
    for section in config:
        if section not in OWNERS:
            unknown.append(f"{section} (no known owner)")
            continue
        traits = _owner(section).class_traits(config=True)
        unknown += [f"{section}.{option}" for option in config[section] if option not in traits]
    assert not unknown, f"options that JupyterHub would ignore: {unknown}"
