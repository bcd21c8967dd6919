"""jupyterhub_config.py as JupyterHub itself loads it.

Each test renders the config for a settings variant, writes it to a temporary folder and
loads it with traitlets' ``PyFileConfigLoader`` (what ``jupyterhub -f`` does), with the
secret environment the hub container gets. Assertions are on the loaded values, and
where it matters on what JupyterHub, DockerSpawner or the authenticator make of them.
"""

from __future__ import annotations

import inspect
import json
import ssl
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker.api.service
import docker.types
import pytest
from dockerspawner import DockerSpawner, SwarmSpawner
from jupyterhub.app import JupyterHub
from jupyterhub.auth import DummyAuthenticator
from ldapauthenticator import LDAPAuthenticator
from nativeauthenticator import NativeAuthenticator
from oauthenticator.github import GitHubOAuthenticator
from traitlets.config import Config
from traitlets.config.loader import KVArgParseConfigLoader, PyFileConfigLoader

import juvini_hub
from infra.flavours import BY_NAME as FLAVOURS
from infra.hub_config import (
    HUB_API_PORT,
    HUB_HOME,
    LDAP_CA_PATH,
    OIDC_CA_PATH,
    PINNED_IMAGES_ENV,
    STATE_DIR,
    krb5_conf_host_path,
    render_hub_config,
)
from infra.naming import Naming
from infra.settings import NOTEBOOK_FLAVOURS, LabUserSettings, Settings, memory_bytes, parse_settings
from infra.shares import volume_name
from juvini_hub.auth import JuviniLDAPAuthenticator
from juvini_hub.oidc import JuviniOIDCAuthenticator
from juvini_hub.spawner import JuviniDockerSpawner, JuviniSwarmSpawner

pytestmark = pytest.mark.unit

PROJECT = "juvini"

# Secrets as the stack holds them, and as the hub container's environment holds them. The
# two differ so that a test can tell which one the config used.
STACK_SEARCH_PASSWORD = "stack-ldap-search-password"
STACK_GITHUB_SECRET = "stack-github-client-secret"
STACK_DUMMY_PASSWORD = "stack-dummy-password"
STACK_OIDC_SECRET = "stack-oidc-client-secret"
STACK_SHARE_PASSWORD = "stack-share-password"
SECRET_ENV = {
    "JUVINI_LDAP_SEARCH_PASSWORD": "env-ldap-search-password",
    "JUVINI_GITHUB_CLIENT_SECRET": "env-github-client-secret",
    "JUVINI_DUMMY_PASSWORD": "env-dummy-password",
    "JUVINI_OIDC_CLIENT_SECRET": "env-oidc-client-secret",
    "JUVINI_REGISTRY_PULL_USERNAME": "env-registry-puller",
    "JUVINI_REGISTRY_PULL_PASSWORD": "env-registry-pull-password",
}
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ29uZmlnVGVzdA==\n-----END CERTIFICATE-----\n"

VARIANTS: dict[str, dict[str, Any]] = {
    "native": {},
    "native-open-signup": {"auth": {"native": {"openSignup": True, "minimumPasswordLength": 14}}},
    "native-allowed-users": {"auth": {"allowedUsers": ["Carol", "dave"]}},
    "ldap-bind": {
        "auth": {
            "type": "ldap",
            "ldap": {
                "serverAddress": "ldap.example.org",
                "serverPort": 636,
                "tlsStrategy": "on_connect",
                "caCertificate": CA_PEM,
                "bindDnTemplate": [
                    "uid={username},ou=people,dc=example,dc=org",
                    "uid={username},ou=staff,dc=example,dc=org",
                ],
                "allowedGroups": ["cn=lab,ou=groups,dc=example,dc=org"],
            },
        }
    },
    "ldap-lookup": {
        "auth": {
            "type": "ldap",
            "ldap": {
                "serverAddress": "10.0.0.5",
                "lookupDn": True,
                "searchUser": "cn=search,dc=example,dc=org",
                "searchPassword": STACK_SEARCH_PASSWORD,
                "userSearchBase": "ou=people,dc=example,dc=org",
                "userAttribute": "sAMAccountName",
            },
        }
    },
    "github": {
        "auth": {
            "type": "github",
            "github": {"clientId": "Iv1.0123abcd", "clientSecret": STACK_GITHUB_SECRET},
        }
    },
    "github-orgs": {
        "auth": {
            "type": "github",
            "github": {
                "clientId": "Iv1.0123abcd",
                "clientSecret": STACK_GITHUB_SECRET,
                "allowedOrganizations": ["juvini-lab"],
            },
        }
    },
    "oidc": {
        "auth": {
            "type": "oidc",
            "oidc": {
                "issuer": "https://login.example.org/realms/lab",
                "clientId": "juvini-lab",
                "clientSecret": STACK_OIDC_SECRET,
            },
        }
    },
    "oidc-groups": {
        "auth": {
            "type": "oidc",
            "oidc": {
                "issuer": "https://login.example.org/realms/lab",
                "clientId": "juvini-lab",
                "clientSecret": STACK_OIDC_SECRET,
                "scopes": ["openid", "profile", "groups"],
                "usernameClaim": "email",
                "groupsClaim": "groups",
                "allowedGroups": ["datalab-users"],
                "adminGroups": ["datalab-admins"],
                "caCertificate": CA_PEM,
                "loginService": "Example SSO",
            },
        }
    },
    "dummy": {"auth": {"type": "dummy", "dummyPassword": STACK_DUMMY_PASSWORD}},
    "swarm": {
        "swarm": {"enabled": True, "placementConstraints": ["node.role==worker"]},
        "images": {"registry": "registry.example.org/lab", "push": True},
    },
    "swarm-ldap-private-registry": {
        "swarm": {"enabled": True},
        "images": {
            "registry": "registry.example.org:5000/lab",
            "push": True,
            "pullUsername": "puller",
            "pullPassword": "stack-pull-password",
        },
        "auth": {
            "type": "ldap",
            "ldap": {
                "serverAddress": "ldap.example.org",
                "lookupDn": True,
                "searchUser": "cn=svc",
                "searchPassword": "stack-search-password",
                "userSearchBase": "ou=people,dc=example,dc=org",
            },
        },
    },
    "enterprise": {
        "labUser": {"uid": 3001, "gid": 3002},
        "paths": {"hubStateDir": "/var/lib/juvini-hub"},
        "hub": {"bindAddress": "10.20.30.40"},
        "auth": {
            "type": "ldap",
            "ldap": {"serverAddress": "ldap.example.org", "bindDnTemplate": ["uid={username},dc=example,dc=org"]},
        },
        "kerberos": {"enabled": True, "realm": "CORP.EXAMPLE.ORG", "kdcs": ["kdc.example.org"], "onFailure": "refuse"},
        "cifs": {
            "shares": [
                {"name": "team", "unc": "//10.9.8.7/team", "username": "svc", "password": STACK_SHARE_PASSWORD},
                {"name": "home", "unc": "//10.9.8.7/homes", "perUser": True, "domain": "CORP", "readOnly": True},
            ]
        },
        "spark": {"driverHost": "spark-callback.example.org"},
    },
    "no-culling": {"spawner": {"idleTimeout": 0}},
    "profiles": {
        "paths": {"groupsDir": "/srv/juvini/groups", "dataDir": "/srv/datasets"},
        "folders": {"groups": ["modellers", "analysts"]},
        "auth": {
            "type": "ldap",
            "ldap": {
                "serverAddress": "ldap.example.org",
                "bindDnTemplate": ["uid={username},ou=people,dc=example,dc=org"],
                "groupSearchBase": "ou=groups,dc=example,dc=org",
            },
        },
        "spawner": {"cpuLimit": 1, "memLimit": "2g"},
        "profiles": [
            {"slug": "small", "displayName": "Small", "description": "For a start.", "image": "base"},
            {
                "slug": "large",
                "displayName": "Large",
                "image": "datascience",
                "cpuLimit": 8,
                "memLimit": "32g",
                "environment": {"OMP_NUM_THREADS": "8"},
                "gpu": {"deviceIds": ["0"]},
                "groups": ["modellers"],
                "users": ["Carol"],
            },
        ],
    },
    "custom": {
        "labUser": {"name": "scientist", "uid": 3001, "gid": 3002},
        "paths": {
            "sharedDir": "/data/lab.shared",
            "tlsDir": "/etc/juvini-tls",
            "usersDir": "/data/lab-users.d",
            "hubStateDir": "/var/lib/juvini_hub",
        },
        "tls": {"dnsNames": ["lab.example.org"]},
        "hub": {"publicHostname": "lab.example.org", "httpsPort": 443, "adminUsers": ["Bob", "alice"]},
        "spawner": {
            "allowedImages": ["pyspark", "base"],
            "cpuLimit": 4.5,
            "memLimit": "8G",
            "startTimeout": 600,
            "httpTimeout": 90,
            "idleTimeout": 7200,
            "cullEvery": 600,
            "environment": {"TZ": "Europe/Paris"},
        },
        "spark": {"driverMemory": "3g"},
    },
}


@dataclass(frozen=True)
class Loaded:
    """A rendered config and what JupyterHub's loader made of it."""

    settings: Settings
    naming: Naming
    notebook_images: dict[str, str]
    text: str
    path: Path
    config: Config


Load = Callable[..., Loaded]


@pytest.fixture(autouse=True)
def secret_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets the hub container gets in its environment (see ``Hub._auth_env``)."""
    for key, value in SECRET_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def load(tmp_path: Path) -> Load:
    """Render the config for raw stack settings and load it as ``jupyterhub -f`` would."""
    counter = iter(range(1000))

    def _load(raw: dict[str, Any] | None = None, *, variant: str | None = None, stack: str = "dev") -> Loaded:
        raw = VARIANTS[variant] if variant is not None else (raw or {})
        # Secrets arrive from an encrypted top-level key, as `pulumi config set --secret` leaves them.
        settings = parse_settings(raw, secret_keys=set(raw))
        naming = Naming(PROJECT, stack)
        notebook_images = {
            flavour: naming.image(f"notebook-{flavour}", settings.images.tag, settings.images.registry)
            for flavour in NOTEBOOK_FLAVOURS
        }
        text = render_hub_config(settings, naming, notebook_images)
        folder = tmp_path / f"config-{stack}-{next(counter)}"
        folder.mkdir()
        path = folder / "jupyterhub_config.py"
        path.write_text(text, encoding="utf-8")
        config = PyFileConfigLoader(path.name, path=str(folder)).load_config()
        return Loaded(settings, naming, notebook_images, text, path, config)

    return _load


_UNSET = object()


def option(config: Config, cls: type, name: str, default: Any = _UNSET) -> Any:
    """The value ``cls`` gets for ``name``: the most specific section that sets it wins, as in traitlets."""
    for klass in cls.mro():
        section = klass.__name__
        if section in config and name in config[section]:
            return config[section][name]
    if default is not _UNSET:
        return default
    raise KeyError(f"{cls.__name__}.{name} is not configured")


def hub(loaded: Loaded) -> JupyterHub:
    """The JupyterHub application configured by the loaded file (nothing started)."""
    return JupyterHub(config=loaded.config)


# --- login ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("native", NativeAuthenticator),
        ("ldap-bind", JuviniLDAPAuthenticator),
        ("ldap-lookup", JuviniLDAPAuthenticator),
        ("github", GitHubOAuthenticator),
        ("oidc", JuviniOIDCAuthenticator),
        ("dummy", DummyAuthenticator),
    ],
)
def test_authenticator_class_per_auth_type(load: Load, variant: str, expected: type) -> None:
    assert hub(load(variant=variant)).authenticator_class is expected


def test_no_admin_users_by_default(load: Load) -> None:
    assert load().config.Authenticator.admin_users == set()


def test_admin_users_are_the_normalised_setting(load: Load) -> None:
    assert load(variant="custom").config.Authenticator.admin_users == {"alice", "bob"}


@pytest.mark.parametrize(
    ("variant", "section", "allow_all"),
    [
        ("native", "Authenticator", True),
        ("native-allowed-users", "Authenticator", False),
        ("ldap-lookup", "Authenticator", True),
        ("ldap-bind", "Authenticator", False),  # allowedGroups restricts
        ("github", "GitHubOAuthenticator", True),
        ("github-orgs", "GitHubOAuthenticator", False),
        ("dummy", "Authenticator", True),
    ],
)
def test_allow_all_only_without_any_restriction(load: Load, variant: str, section: str, allow_all: bool) -> None:
    assert load(variant=variant).config[section].allow_all is allow_all


def test_allowed_users_restrict_login(load: Load) -> None:
    config = load(variant="native-allowed-users").config
    assert config.Authenticator.allowed_users == {"carol", "dave"}


def test_no_allowed_users_list_by_default(load: Load) -> None:
    assert "allowed_users" not in load().config.Authenticator


def test_native_template_paths_exist_on_disk(load: Load) -> None:
    paths = [Path(path) for path in load().config.JupyterHub.template_paths]
    assert paths
    for path in paths:
        assert (path / "signup.html").is_file(), f"{path} holds no NativeAuthenticator templates"


def test_native_signup_needs_admin_approval_by_default(load: Load) -> None:
    native = load().config.NativeAuthenticator
    assert native.open_signup is False
    assert native.minimum_password_length == 10
    assert native.check_common_password is True


def test_native_open_signup_setting(load: Load) -> None:
    native = load(variant="native-open-signup").config.NativeAuthenticator
    assert native.open_signup is True
    assert native.minimum_password_length == 14


def test_ldap_direct_bind_settings(load: Load) -> None:
    loaded = load(variant="ldap-bind")
    ldap = LDAPAuthenticator(config=loaded.config)
    assert ldap.server_address == "ldap.example.org"
    assert ldap.server_port == 636
    assert ldap.tls_strategy.name == "on_connect"
    assert ldap.bind_dn_template == [
        "uid={username},ou=people,dc=example,dc=org",
        "uid={username},ou=staff,dc=example,dc=org",
    ]
    assert ldap.lookup_dn is False
    assert ldap.allowed_groups == ["cn=lab,ou=groups,dc=example,dc=org"]
    assert "lookup_dn_search_password" not in loaded.config.LDAPAuthenticator


def test_ldap_lookup_dn_settings(load: Load) -> None:
    ldap = LDAPAuthenticator(config=load(variant="ldap-lookup").config)
    assert ldap.server_address == "10.0.0.5"
    assert ldap.server_port == 389  # StartTLS on the plain port when unset
    assert ldap.tls_strategy.name == "before_bind"
    assert ldap.bind_dn_template == []
    assert ldap.lookup_dn is True
    assert ldap.lookup_dn_search_user == "cn=search,dc=example,dc=org"
    assert ldap.user_search_base == "ou=people,dc=example,dc=org"
    assert ldap.user_attribute == "sAMAccountName"


def test_ldap_ca_file_is_where_the_hub_uploads_it(load: Load) -> None:
    assert load(variant="ldap-bind").config.LDAPAuthenticator.tls_kwargs["ca_certs_file"] == LDAP_CA_PATH


def test_ldap_without_ca_still_validates_against_the_system_cas(load: Load) -> None:
    assert load(variant="ldap-lookup").config.LDAPAuthenticator.tls_kwargs == {"validate": ssl.CERT_REQUIRED}


def test_insecure_ldap_sets_no_tls_kwargs(load: Load) -> None:
    loaded = load(
        {
            "auth": {
                "type": "ldap",
                "ldap": {
                    "serverAddress": "ldap.test",
                    "tlsStrategy": "insecure",
                    "bindDnTemplate": ["uid={username},dc=test"],
                },
            }
        }
    )
    assert "tls_kwargs" not in loaded.config.LDAPAuthenticator


def test_ldap_ca_certificate_is_enforced(load: Load) -> None:
    tls_kwargs = load(variant="ldap-bind").config.LDAPAuthenticator.tls_kwargs
    assert tls_kwargs.get("validate") == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("variant", "section", "name", "env", "stack_value"),
    [
        (
            "ldap-lookup",
            "LDAPAuthenticator",
            "lookup_dn_search_password",
            "JUVINI_LDAP_SEARCH_PASSWORD",
            STACK_SEARCH_PASSWORD,
        ),
        ("github", "GitHubOAuthenticator", "client_secret", "JUVINI_GITHUB_CLIENT_SECRET", STACK_GITHUB_SECRET),
        ("dummy", "DummyAuthenticator", "password", "JUVINI_DUMMY_PASSWORD", STACK_DUMMY_PASSWORD),
        ("oidc", "JuviniOIDCAuthenticator", "client_secret", "JUVINI_OIDC_CLIENT_SECRET", STACK_OIDC_SECRET),
        ("oidc-groups", "JuviniOIDCAuthenticator", "client_secret", "JUVINI_OIDC_CLIENT_SECRET", STACK_OIDC_SECRET),
    ],
)
def test_secret_comes_from_the_environment_not_the_file(
    load: Load, variant: str, section: str, name: str, env: str, stack_value: str
) -> None:
    loaded = load(variant=variant)
    assert loaded.config[section][name] == SECRET_ENV[env]
    assert stack_value not in loaded.text
    assert SECRET_ENV[env] not in loaded.text


def test_missing_secret_environment_fails_loudly(load: Load, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUVINI_LDAP_SEARCH_PASSWORD")
    with pytest.raises(KeyError, match="JUVINI_LDAP_SEARCH_PASSWORD"):
        load(variant="ldap-lookup")


def test_github_callback_is_under_the_public_url(load: Load) -> None:
    loaded = load(variant="github")
    github = loaded.config.GitHubOAuthenticator
    assert github.client_id == "Iv1.0123abcd"
    assert github.oauth_callback_url == f"{loaded.settings.hub_url}hub/oauth_callback"


def test_github_allowed_organizations(load: Load) -> None:
    assert load(variant="github-orgs").config.GitHubOAuthenticator.allowed_organizations == {"juvini-lab"}


def oidc_authenticator(loaded: Loaded) -> JuviniOIDCAuthenticator:
    """The authenticator as the hub makes it from the loaded file (nothing fetched yet)."""
    return JuviniOIDCAuthenticator(config=loaded.config)


def test_oidc_settings_reach_the_authenticator(load: Load) -> None:
    loaded = load(variant="oidc")
    made = oidc_authenticator(loaded)
    assert made.issuer == "https://login.example.org/realms/lab"
    assert made.client_id == "juvini-lab"
    assert made.client_secret == SECRET_ENV["JUVINI_OIDC_CLIENT_SECRET"]
    assert made.oauth_callback_url == f"{loaded.settings.hub_url}hub/oauth_callback"
    assert made.scope == ["openid", "profile", "email"]
    assert made.username_claim == "preferred_username"
    assert made.login_service == "OpenID Connect"
    assert made.login_url("/hub/") == "/hub/oauth_login"
    assert made.enable_auth_state is True
    assert made.manage_groups is False
    assert made.allow_all is True
    assert made.http_request_kwargs == {}, "without a CA the provider is checked against the system trust store"
    assert made.validate_server_cert is True


def test_oidc_groups_allowed_and_admin_groups_and_ca(load: Load) -> None:
    made = oidc_authenticator(load(variant="oidc-groups"))
    assert made.manage_groups is True
    assert made.groups_claim == "groups"
    assert made.allowed_groups == {"datalab-users"}
    assert made.admin_groups == {"datalab-admins"}
    assert made.allow_all is False
    assert made.scope == ["openid", "profile", "groups"]
    assert made.username_claim == "email"
    assert made.login_service == "Example SSO"
    assert made.http_request_kwargs == {"ca_certs": OIDC_CA_PATH}


def test_oidc_allowed_users_restrict_login(load: Load) -> None:
    raw = {"auth": {**VARIANTS["oidc"]["auth"], "allowedUsers": ["carol"]}}
    made = oidc_authenticator(load(raw))
    assert made.allowed_users == {"carol"}
    assert made.allow_all is False


# --- users' servers ------------------------------------------------------------------------


def test_docker_spawner_by_default(load: Load) -> None:
    spawner_class = hub(load()).spawner_class
    assert issubclass(spawner_class, DockerSpawner)
    assert not issubclass(spawner_class, SwarmSpawner)


def test_swarm_spawner_when_swarm_enabled(load: Load) -> None:
    assert issubclass(hub(load(variant="swarm")).spawner_class, SwarmSpawner)


def test_swarm_services_use_dns_round_robin_and_placement(load: Load) -> None:
    config = load(variant="swarm").config
    assert option(config, SwarmSpawner, "extra_endpoint_spec") == {"mode": "dnsrr"}
    assert option(config, SwarmSpawner, "extra_placement_spec") == {"constraints": ["node.role==worker"]}


def test_no_swarm_options_without_swarm(load: Load) -> None:
    assert "SwarmSpawner" not in load().config


def test_swarm_servers_run_as_the_lab_user(load: Load) -> None:
    container_spec = option(load(variant="swarm").config, SwarmSpawner, "extra_container_spec", {})
    assert container_spec.get("user") == "2100:2100"


def test_swarm_nodes_pull_the_images_themselves_and_servers_are_not_restarted(load: Load) -> None:
    loaded = load(variant="swarm")
    swarm = hub(loaded).spawner_class(config=loaded.config, user=SimpleNamespace(name="alice"))
    # The manager's engine is not asked for the image: the node that runs the task pulls it.
    assert swarm.pull_policy == "skip"
    # As on one host, a server whose node died is not started again behind the hub's back.
    assert swarm.extra_task_spec == {"restart_policy": {"Condition": "none"}}
    assert docker.types.TaskTemplate(container_spec={}, **swarm.extra_task_spec)["RestartPolicy"] == {
        "Condition": "none"
    }
    assert hub(load()).spawner_class(config=load().config, user=SimpleNamespace(name="a")).pull_policy == "never"


def test_swarm_containers_carry_the_stack_labels(load: Load) -> None:
    loaded = load(variant="swarm")
    spec = option(loaded.config, SwarmSpawner, "extra_container_spec")
    assert spec["labels"] == option(loaded.config, SwarmSpawner, "extra_create_kwargs")["labels"]
    assert spec["labels"]["org.juvini.role"] == "user"
    docker.types.ContainerSpec(image="x", **spec)  # what SwarmSpawner makes of it


def test_swarm_kerberos_tickets_and_krb5_conf_are_on_the_shared_storage(load: Load) -> None:
    raw = VARIANTS["enterprise"] | VARIANTS["swarm"]
    # Per-user shares and Spark ports: single host only.
    raw = {key: value for key, value in raw.items() if key not in ("cifs", "spark")}
    loaded = load(raw)
    users_dir = loaded.settings.paths.users_dir
    tickets = hub(loaded).spawner_class(config=loaded.config, user=SimpleNamespace(name="alice")).kerberos
    # The hub mounts the users' folder at its own path, as every node sees it.
    assert tickets.ccache_root == tickets.ccache_host_root == f"{users_dir}/.juvini-kerberos"
    assert tickets.krb5_conf == tickets.krb5_conf_host_path == f"{users_dir}/.juvini-krb5.conf"
    assert krb5_conf_host_path(loaded.settings) == tickets.krb5_conf_host_path


def test_swarm_create_kwargs_are_accepted_by_create_service(load: Load) -> None:
    accepted = set(inspect.signature(docker.api.service.ServiceApiMixin.create_service).parameters)
    create_kwargs = option(load(variant="swarm").config, SwarmSpawner, "extra_create_kwargs")
    assert set(create_kwargs) <= accepted, f"create_service() rejects {sorted(set(create_kwargs) - accepted)}"


def test_allowed_images_default_order(load: Load) -> None:
    loaded = load()
    images = loaded.notebook_images
    assert list(loaded.config.DockerSpawner.allowed_images.items()) == [
        (FLAVOURS["datascience"].display_name, images["datascience"]),
        (FLAVOURS["pyspark"].display_name, images["pyspark"]),
        (FLAVOURS["base"].display_name, images["base"]),
    ]
    assert loaded.config.DockerSpawner.image == images["datascience"]


def test_allowed_images_follow_the_setting_and_first_is_default(load: Load) -> None:
    loaded = load(variant="custom")
    images = loaded.notebook_images
    assert list(loaded.config.DockerSpawner.allowed_images.items()) == [
        (FLAVOURS["pyspark"].display_name, images["pyspark"]),
        (FLAVOURS["base"].display_name, images["base"]),
    ]
    assert loaded.config.DockerSpawner.image == images["pyspark"]


def test_images_are_never_pulled(load: Load) -> None:
    assert load().config.DockerSpawner.pull_policy == "never"


def test_name_template_carries_the_stack_prefix(load: Load) -> None:
    dev, prod = load(stack="dev"), load(stack="prod")
    dev_template = dev.config.DockerSpawner.name_template
    prod_template = prod.config.DockerSpawner.name_template
    assert dev_template.startswith(f"{dev.naming.prefix}-")
    assert prod_template.startswith(f"{prod.naming.prefix}-")
    assert "{username}" in dev_template
    assert dev_template != prod_template


def test_network_is_the_stacks_users_network(load: Load) -> None:
    dev, prod = load(stack="dev"), load(stack="prod")
    assert dev.config.DockerSpawner.network_name == dev.naming.physical("users-net")
    assert prod.config.DockerSpawner.network_name == prod.naming.physical("users-net")
    assert dev.config.DockerSpawner.use_internal_ip is True


def test_volumes_default(load: Load) -> None:
    assert load().config.DockerSpawner.volumes == {
        "/srv/juvini/users/{username}": "/home/labuser",
        "/shared/jupyterhub": "/home/labuser/shared",
    }


def test_volumes_follow_custom_paths_and_user(load: Load) -> None:
    config = load(variant="custom").config
    assert config.DockerSpawner.volumes == {
        "/data/lab-users.d/{username}": "/home/scientist",
        "/data/lab.shared": "/home/scientist/shared",
    }
    assert config.DockerSpawner.notebook_dir == "/home/scientist"


def test_limits_default(load: Load) -> None:
    config = load().config
    assert config.DockerSpawner.mem_limit == 4 * 1024**3
    assert config.DockerSpawner.cpu_limit == 2.0


def test_limits_custom(load: Load) -> None:
    config = load(variant="custom").config
    assert config.DockerSpawner.mem_limit == 8 * 1024**3
    assert config.DockerSpawner.cpu_limit == 4.5


@pytest.mark.parametrize(
    "mem_limit",
    [
        "4g",
        "1073741824",
        "4G",
        "512M",
    ],
)
def test_mem_limit_is_accepted_by_dockerspawner(load: Load, mem_limit: str) -> None:
    loaded = load({"spawner": {"memLimit": mem_limit}, "spark": {"driverMemory": "32m"}})
    spawner = DockerSpawner(config=loaded.config, user=SimpleNamespace(name="alice"))
    assert spawner.mem_limit == memory_bytes(mem_limit)
    assert spawner.cpu_limit == 2.0


def test_spark_driver_memory_in_environment_default(load: Load) -> None:
    loaded = load()
    assert loaded.config.DockerSpawner.environment["SPARK_DRIVER_MEMORY"] == loaded.settings.spark.driver_memory


def test_spark_driver_memory_in_environment_custom(load: Load) -> None:
    environment = load(variant="custom").config.DockerSpawner.environment
    assert environment["SPARK_DRIVER_MEMORY"] == "3g"
    assert environment["TZ"] == "Europe/Paris"


def test_container_runs_as_lab_uid_gid_default(load: Load) -> None:
    assert option(load().config, DockerSpawner, "extra_create_kwargs")["user"] == "2100:2100"


def test_container_runs_as_lab_uid_gid_custom(load: Load) -> None:
    assert option(load(variant="custom").config, DockerSpawner, "extra_create_kwargs")["user"] == "3001:3002"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_containers_carry_the_stacks_labels(load: Load, stack: str) -> None:
    loaded = load(stack=stack)
    labels = option(loaded.config, DockerSpawner, "extra_create_kwargs")["labels"]
    assert labels == loaded.naming.labels("user")
    assert labels["org.juvini.stack"] == stack


def test_timeouts_default(load: Load) -> None:
    spawner = load().config.Spawner
    assert (spawner.start_timeout, spawner.http_timeout) == (300, 120)


def test_timeouts_custom(load: Load) -> None:
    spawner = load(variant="custom").config.Spawner
    assert (spawner.start_timeout, spawner.http_timeout) == (600, 90)


# --- hub and proxy -------------------------------------------------------------------------


def test_servers_survive_a_hub_restart(load: Load) -> None:
    assert load().config.JupyterHub.cleanup_servers is False


def test_proxy_is_not_started_by_the_hub(load: Load) -> None:
    assert load().config.ConfigurableHTTPProxy.should_start is False


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_proxy_api_url_names_the_stacks_proxy(load: Load, stack: str) -> None:
    loaded = load(stack=stack)
    assert loaded.config.ConfigurableHTTPProxy.api_url == f"http://{loaded.naming.physical('proxy')}:8001"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_hub_connect_url_names_the_stacks_hub(load: Load, stack: str) -> None:
    loaded = load(stack=stack)
    assert loaded.config.JupyterHub.hub_connect_url == f"http://{loaded.naming.physical('hub')}:8081"


@pytest.mark.parametrize(
    ("variant", "url"), [("native", "https://localhost:8443/"), ("custom", "https://lab.example.org/")]
)
def test_public_url_is_the_hub_url(load: Load, variant: str, url: str) -> None:
    loaded = load(variant=variant)
    assert loaded.config.JupyterHub.public_url == loaded.settings.hub_url == url


def test_hub_listens_on_the_hub_api_port(load: Load) -> None:
    assert load().config.JupyterHub.hub_bind_url == f"http://0.0.0.0:{HUB_API_PORT}"


def test_database_lives_in_the_state_folder(load: Load) -> None:
    config = load().config
    assert config.JupyterHub.db_url == f"sqlite:///{STATE_DIR}/jupyterhub.sqlite"
    assert config.JupyterHub.pid_file.startswith(f"{STATE_DIR}/")


# --- one contract between infra and juvini_hub -------------------------------------------
# The lab's facts come from the settings; the hub's classes, made from the loaded file as the
# hub makes them, get them from there (they keep no defaults of their own).


def spawner(loaded: Loaded, name: str = "alice") -> JuviniDockerSpawner:
    return JuviniDockerSpawner(config=loaded.config, user=SimpleNamespace(name=name))


@pytest.mark.parametrize("variant", ["native", "custom", "enterprise"])
def test_the_lab_ids_and_users_folder_reach_the_spawner_from_the_settings(load: Load, variant: str) -> None:
    loaded = load(variant=variant)
    made = spawner(loaded)
    assert (made.lab_uid, made.lab_gid) == (loaded.settings.lab_user.uid, loaded.settings.lab_user.gid)
    # The folder the hub makes is the one DockerSpawner mounts as the user's home.
    assert made.user_folder == f"{loaded.settings.paths.users_dir}/{{username}}"
    assert loaded.config.DockerSpawner.volumes[made.user_folder] == loaded.config.DockerSpawner.notebook_dir


def test_kerberos_is_configured_once_for_login_and_spawn(load: Load) -> None:
    loaded = load(variant="enterprise")
    settings = loaded.settings
    login, spawn = JuviniLDAPAuthenticator(config=loaded.config).kerberos, spawner(loaded).kerberos
    for tickets in (login, spawn):
        assert tickets.enabled is True
        assert (tickets.realm, tickets.on_failure) == ("CORP.EXAMPLE.ORG", "refuse")
        assert (tickets.uid, tickets.gid) == (3001, 3002)
        # Inside the hub: under STATE_DIR, where Hub mounts hubStateDir.
        assert tickets.ccache_root == f"{STATE_DIR}/krb5cc"
        assert tickets.krb5_conf == f"{STATE_DIR}/krb5.conf"
        # On the Docker host: the same folder, which the spawner bind-mounts into servers,
        # and the krb5.conf the stack writes (Hub: krb5_conf_host_path).
        assert tickets.ccache_host_root == "/var/lib/juvini-hub/krb5cc"
        assert tickets.krb5_conf_host_path == krb5_conf_host_path(settings) == "/var/lib/juvini-hub/krb5.conf"
    assert [key for key in loaded.config if key == "KerberosTickets"] == ["KerberosTickets"]
    assert "kerberos" not in loaded.config.JuviniLDAPAuthenticator
    assert "kerberos" not in loaded.config.get("JuviniSpawnerMixin", {})


@pytest.mark.parametrize("variant", ["native", "ldap-bind", "swarm"])
def test_no_kerberos_configuration_without_kerberos(load: Load, variant: str) -> None:
    loaded = load(variant=variant)
    assert "KerberosTickets" not in loaded.config
    assert hub(loaded).spawner_class(config=loaded.config, user=SimpleNamespace(name="a")).kerberos.enabled is False


def test_team_shares_are_mounted_by_volume_name(load: Load) -> None:
    loaded = load(variant="enterprise")
    (team, _) = loaded.settings.cifs.shares
    assert loaded.config.DockerSpawner.volumes[volume_name(loaded.naming, team)] == {
        "bind": "/home/labuser/team",
        "mode": "rw",
    }


def test_per_user_shares_reach_the_spawner_with_their_options_and_no_password(load: Load) -> None:
    loaded = load(variant="enterprise")
    (share,) = spawner(loaded).cifs_user_shares
    assert share == {
        "name": "home",
        "device": "//10.9.8.7/homes",
        "options": [
            "addr=10.9.8.7",
            "username={username}",
            "password={password}",
            "vers=3.0",
            "uid=3001",
            "gid=3002",
            "file_mode=0660",
            "dir_mode=0770",
            "domain=CORP",
            "ro",
        ],
        "bind": "/home/labuser/home",
        "mode": "ro",
    }
    assert STACK_SHARE_PASSWORD not in loaded.text


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_per_user_share_volumes_carry_the_stacks_labels(load: Load, stack: str) -> None:
    loaded = load(variant="enterprise", stack=stack)
    assert spawner(loaded).user_share_labels == loaded.naming.labels("user-share")


@pytest.mark.parametrize(("variant", "kept"), [("enterprise", True), ("ldap-bind", False)])
def test_the_password_is_kept_only_for_per_user_shares(load: Load, variant: str, kept: bool) -> None:
    assert JuviniLDAPAuthenticator(config=load(variant=variant).config).keep_password is kept


@pytest.mark.parametrize(("variant", "address"), [("native", "0.0.0.0"), ("enterprise", "10.20.30.40")])
def test_spark_ports_are_published_on_the_hubs_bind_address(load: Load, variant: str, address: str) -> None:
    assert spawner(load(variant=variant)).spark_publish_ip == address


@pytest.mark.parametrize(("variant", "host"), [("native", "127.0.0.1"), ("enterprise", "spark-callback.example.org")])
def test_spark_driver_host_is_the_setting_or_the_host_address(load: Load, variant: str, host: str) -> None:
    made = spawner(load(variant=variant))
    assert made.spark_driver_host == host
    assert (made.spark_driver_ports, made.spark_block_manager_ports) == ("12000-12010", "11100-11110")


def test_only_the_spark_flavours_images_take_spark_ports(load: Load) -> None:
    """One source: the flavours table's spark column, resolved to the images the stack built."""
    assert [flavour.name for flavour in FLAVOURS.values() if flavour.spark] == ["pyspark"]
    loaded = load()
    assert spawner(loaded).spark_images == [loaded.notebook_images["pyspark"]]
    # The images users pick from are the same strings DockerSpawner starts.
    assert loaded.notebook_images["pyspark"] in loaded.config.DockerSpawner.allowed_images.values()


def test_without_the_pyspark_image_no_server_takes_spark_ports(load: Load) -> None:
    assert spawner(load({"spawner": {"allowedImages": ["base", "datascience"]}})).spark_images == []


@pytest.mark.parametrize(("raw", "required"), [({}, False), ({"spark": {"requirePorts": True}}, True)])
def test_a_spark_port_pair_is_required_only_when_the_stack_says_so(
    load: Load, raw: dict[str, Any], required: bool
) -> None:
    assert spawner(load(raw)).spark_require_ports is required


def test_the_hub_package_repeats_no_default_of_the_settings() -> None:
    """uid/gid defaults and in-hub paths live in infra; juvini_hub gets them from the config."""
    sources = {path.name: path.read_text() for path in Path(juvini_hub.__file__).parent.glob("*.py")}
    assert sources
    defaults = {
        str(LabUserSettings.model_fields["uid"].default),
        str(LabUserSettings.model_fields["gid"].default),
        HUB_HOME,
    }
    repeated = {(name, default) for name, text in sources.items() for default in defaults if default in text}
    assert not repeated


# --- idle culler ---------------------------------------------------------------------------


@pytest.mark.parametrize(("variant", "timeout", "every"), [("native", 3600, 300), ("custom", 7200, 600)])
def test_idle_culler_service_and_role(load: Load, variant: str, timeout: int, every: int) -> None:
    config = load(variant=variant).config
    (service,) = config.JupyterHub.services
    assert service["name"] == "idle-culler"
    assert service["command"][:3] == [sys.executable, "-m", "jupyterhub_idle_culler"]
    assert f"--timeout={timeout}" in service["command"]
    assert f"--cull-every={every}" in service["command"]
    (role,) = config.JupyterHub.load_roles
    assert role["services"] == ["idle-culler"]
    assert {"list:users", "read:users:activity", "read:servers", "delete:servers"} <= set(role["scopes"])


def test_no_idle_culler_when_idle_timeout_is_zero(load: Load) -> None:
    hub_config = load(variant="no-culling").config.JupyterHub
    assert "services" not in hub_config
    assert "load_roles" not in hub_config


# --- the file as Python --------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_rendered_file_compiles(load: Load, variant: str) -> None:
    path = load(variant=variant).path
    result = subprocess.run(
        [sys.executable, "-m", "py_compile", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_rendered_file_has_no_undefined_or_unused_names(load: Load, variant: str) -> None:
    path = load(variant=variant).path
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", "--select", "F,E9", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_pinned_images_come_from_the_hubs_environment(load: Load, monkeypatch: pytest.MonkeyPatch) -> None:
    assert option(load(variant="swarm").config, JuviniSwarmSpawner, "pinned_images") == {}
    pinned = {"r/lab/base:1": f"r/lab/base:1@sha256:{'ab' * 32}"}
    monkeypatch.setenv(PINNED_IMAGES_ENV, json.dumps(pinned))
    assert option(load(variant="swarm").config, JuviniSwarmSpawner, "pinned_images") == pinned
    assert "pinned_images" not in load(variant="native").text


def test_the_pull_login_comes_from_the_hubs_environment_never_from_the_file(load: Load) -> None:
    loaded = load(variant="swarm-ldap-private-registry")
    assert loaded.config.JuviniSwarmSpawner.pull_login == {
        "registry": "registry.example.org:5000",
        "username": "env-registry-puller",
        "password": "env-registry-pull-password",
    }
    assert "stack-pull-password" not in loaded.text and "puller" not in loaded.text.replace("env-registry-", "")
    assert "pull_login" not in load(variant="swarm").text


# --- profiles, group folders, the data folder, directory groups ------------------------------


def test_without_profiles_each_allowed_image_is_a_profile_for_everyone_with_the_global_limits(load: Load) -> None:
    loaded = load(variant="custom")
    images = loaded.notebook_images
    assert loaded.config.JuviniSpawnerMixin.profiles == [
        {
            "slug": name,
            "display_name": FLAVOURS[name].display_name,
            "description": FLAVOURS[name].description,
            "image": images[name],
            "image_name": FLAVOURS[name].display_name,
            "cpu_limit": 4.5,
            "mem_limit": 8 * 1024**3,
            "environment": {},
            "gpu": None,
            "groups": [],
            "users": [],
        }
        for name in ("pyspark", "base")
    ]
    assert loaded.config.JuviniSpawnerMixin.group_folders == []


def test_the_stacks_profiles_reach_the_spawner(load: Load) -> None:
    loaded = load(variant="profiles")
    small, large = spawner(loaded).profile_table()
    assert (small.slug, small.image, small.cpu_limit, small.mem_limit) == (
        "small",
        loaded.notebook_images["base"],
        1.0,
        2 * 1024**3,
    )
    assert (large.cpu_limit, large.mem_limit, dict(large.environment)) == (8.0, 32 * 1024**3, {"OMP_NUM_THREADS": "8"})
    assert large.gpu is not None and large.gpu.device_request()["device_ids"] == ["0"]
    assert (large.groups, large.users) == (frozenset({"modellers"}), frozenset({"carol"}))
    # {"image": ...} picks name the images of DockerSpawner.allowed_images, as before profiles.
    assert spawner(loaded).image_choices()[large.image_name] == large.image


def test_group_folders_reach_the_spawner_and_the_data_folder_is_mounted_read_only(load: Load) -> None:
    config = load(variant="profiles").config
    assert config.JuviniSpawnerMixin.group_folders == [
        {
            "group": group,
            "path": f"/srv/juvini/groups/{group}",
            "bind": f"/home/labuser/shared-groups/{group}",
        }
        for group in ("modellers", "analysts")
    ]
    assert config.DockerSpawner.volumes["/srv/datasets"] == {"bind": "/home/labuser/data", "mode": "ro"}
    made = DockerSpawner(config=config, user=SimpleNamespace(name="alice"))
    assert made.volume_binds["/srv/datasets"] == {"bind": "/home/labuser/data", "mode": "ro"}
    assert "/srv/datasets" not in load().config.DockerSpawner.volumes


def test_directory_groups_become_hub_groups_only_with_a_group_search_base(load: Load) -> None:
    config = load(variant="profiles").config
    assert config.Authenticator.manage_groups is True
    authenticator = JuviniLDAPAuthenticator(config=config)
    assert (authenticator.group_search_base, authenticator.group_name_attribute) == (
        "ou=groups,dc=example,dc=org",
        "cn",
    )
    for variant in ("ldap-bind", "native"):
        assert "manage_groups" not in load(variant=variant).config.Authenticator


# --- users' containers locked down -------------------------------------------------------


def test_users_containers_are_locked_down_by_default(load: Load) -> None:
    extra = option(load().config, DockerSpawner, "extra_host_config")
    sent = docker.types.HostConfig(version="1.41", **extra)
    assert sent["CapDrop"] == ["ALL"] and sent["SecurityOpt"] == ["no-new-privileges:true"]
    assert sent["PidsLimit"] == 2048 and {u["Name"] for u in sent["Ulimits"]} == {"core"}


def test_users_containers_outlive_an_engine_restart_and_the_spawner_removes_them(load: Load) -> None:
    """Docker drops auto-remove containers when the engine restarts, even with live-restore."""
    config = load().config
    extra = option(config, DockerSpawner, "extra_host_config")
    assert extra["auto_remove"] is False
    assert option(config, DockerSpawner, "remove") is True, "the spawner removes a server's container when it stops"


def test_swarm_services_drop_the_capabilities(load: Load) -> None:
    spec = option(load(variant="swarm").config, SwarmSpawner, "extra_container_spec")
    container_spec = docker.types.ContainerSpec(image="x", **spec)
    assert container_spec["CapabilityDrop"] == ["ALL"] and container_spec["User"] == "2100:2100"


def test_native_accounts_lock_after_failed_logins(load: Load) -> None:
    native = load().config.NativeAuthenticator
    assert native.allowed_failed_logins == 5 and native.seconds_before_next_try == 600
    custom = load({"auth": {"native": {"allowedFailedLogins": 0, "lockoutSeconds": 60}}}).config.NativeAuthenticator
    assert custom.allowed_failed_logins == 0 and custom.seconds_before_next_try == 60


# --- culling inside users' servers ---------------------------------------------------------


def _server_culling(args: list[str]) -> dict[str, dict[str, int]]:
    """What a single-user server's command line parser makes of ``args``: {class: {trait: value}}."""
    parsed = KVArgParseConfigLoader(args).load_config()
    return {
        section: {name: int(str(value)) for name, value in parsed[section].items()}
        for section in ("MappingKernelManager", "TerminalManager")
        if section in parsed
    }


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"spawner": {"kernelIdleTimeout": 3600, "terminalIdleTimeout": 86400, "kernelCullEvery": 60}},
        {"spawner": {"kernelIdleTimeout": 0, "terminalIdleTimeout": 0}},
    ],
    ids=["defaults", "custom", "off"],
)
def test_servers_get_the_culling_settings_on_their_command_line(load: Load, raw: dict[str, Any]) -> None:
    loaded = load(raw)
    stack = loaded.settings.spawner
    args = spawner(loaded).get_args()
    assert _server_culling(args) == {
        "MappingKernelManager": {
            "cull_idle_timeout": stack.kernel_idle_timeout,
            "cull_interval": stack.kernel_cull_every,
        },
        "TerminalManager": {
            "cull_inactive_timeout": stack.terminal_idle_timeout,
            "cull_interval": stack.kernel_cull_every,
        },
    }, args


def test_swarm_servers_get_the_same_culling_arguments(load: Load) -> None:
    raw = {
        "swarm": {"enabled": True},
        "images": {"registry": "registry.example.org/lab", "push": True},
        "spawner": {"kernelIdleTimeout": 1800, "kernelCullEvery": 120},
    }
    loaded, single_host = load(raw), load({"spawner": raw["spawner"]})
    swarm = SwarmSpawner(config=loaded.config, user=SimpleNamespace(name="alice"))
    assert swarm.get_args() == spawner(single_host).get_args()
    assert _server_culling(swarm.get_args())["MappingKernelManager"] == {
        "cull_idle_timeout": 1800,
        "cull_interval": 120,
    }


def test_server_culling_keeps_busy_and_connected_kernels(load: Load) -> None:
    """jupyter_server's defaults (cull_busy, cull_connected False) are left alone: no argument turns them on."""
    args = spawner(load()).get_args()
    assert not [arg for arg in args if "cull_busy" in arg or "cull_connected" in arg], args
