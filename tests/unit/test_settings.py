"""The ``juvini:`` stack settings: defaults, overrides, and every way a stack can be wrong.

The messages are part of the contract: each problem names the full key, the bad value
and what is allowed, so the invalid cases below match on all three.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeGuard

import pulumi
import pytest
import yaml
from pydantic import BaseModel, SecretStr
from pydantic.alias_generators import to_camel

from infra.flavours import BY_NAME as FLAVOURS
from infra.settings import (
    LAB_ENVIRONMENT,
    LAB_ENVIRONMENT_PREFIXES,
    MAX_CA_BUNDLE_BYTES,
    SECRET_KEYS,
    SHARED_MOUNT,
    AuthType,
    ConfigError,
    GithubAuthSettings,
    KerberosSettings,
    LdapSettings,
    LdapTls,
    NativeAuthSettings,
    OidcSettings,
    PortRange,
    Section,
    Settings,
    TlsMode,
    load_settings,
    parse_settings,
)

pytestmark = pytest.mark.unit

CERT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUXYZ\n-----END CERTIFICATE-----\n"
OTHER_CERT = "-----BEGIN CERTIFICATE-----\nMIIBtDCCAVqgAwIBAgIUABC\n-----END CERTIFICATE-----\n"
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKEY\n-----END PRIVATE KEY-----\n"
PROVIDED_TLS = {"mode": "provided", "certificate": CERT, "privateKey": PRIVATE_KEY, "caCertificate": OTHER_CERT}
ROOT = Path(__file__).resolve().parents[2]


def _is_section(annotation: Any) -> TypeGuard[type[Section]]:
    return isinstance(annotation, type) and issubclass(annotation, Section)


def _section(annotation: Any) -> type[Section]:
    assert _is_section(annotation), annotation
    return annotation


#: Every top-level section, from the model: a new section cannot be forgotten here.
SECTIONS = [to_camel(name) for name, field in Settings.model_fields.items() if _is_section(field.annotation)]
#: Sections inside sections (``auth.ldap``), by the section holding them.
NESTED_SECTIONS = {
    to_camel(name): [
        to_camel(inner)
        for inner, nested in _section(field.annotation).model_fields.items()
        if _is_section(nested.annotation)
    ]
    for name, field in Settings.model_fields.items()
    if _is_section(field.annotation)
    and any(_is_section(nested.annotation) for nested in _section(field.annotation).model_fields.values())
}


#: A valid profile, for variations.
#: What swarm.enabled needs: the registry every node pulls the lab's images from.
SWARM_REGISTRY = {"registry": "registry.example.org/lab", "push": True}
#: A swarm of the Docker host and two workers.
SWARM_WORKERS: list[dict[str, Any]] = [
    {"name": "worker-1", "address": "10.0.0.11"},
    {"name": "worker-2", "address": "10.0.0.12", "sshUser": "ops", "useSudo": True, "labels": {"gpu": "none"}},
]
SWARM: dict[str, Any] = {
    "enabled": True,
    "manager": {"advertiseAddress": "10.0.0.10", "labels": {"site": "dc1"}},
    "workers": SWARM_WORKERS,
}
PROFILE: dict[str, Any] = {
    "slug": "large",
    "displayName": "Data science, large",
    "description": "More CPU and memory.",
    "image": "datascience",
    "cpuLimit": 4,
    "memLimit": "8g",
}


def bad(key: str, shown: str, allowed: str) -> str:
    """A problem: ``juvini:<key>: <bad value> is not allowed: ...<allowed>...``.

    Every problem has this shape, a field's own or one between keys or sections: the key is
    the one to change, down to the list item (``cifs.shares[1].mountPath``).
    """
    return rf"^juvini:{re.escape(key)}: {re.escape(shown)} is not allowed: .*{re.escape(allowed)}"


def unknown(key: str, *allowed: str) -> str:
    """An unknown key, with (some of) the keys allowed where it stands."""
    return rf"^juvini:{re.escape(key)}: unknown key; allowed keys here: .*" + ".*".join(re.escape(a) for a in allowed)


def matching(problems: list[str], pattern: str) -> list[str]:
    return [problem for problem in problems if re.search(pattern, problem)]


def rejected(raw: dict[str, Any], secret_keys: set[str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, secret_keys)
    return caught.value


# --- defaults -------------------------------------------------------------------------


def test_empty_stack_gives_the_documented_defaults() -> None:
    settings = parse_settings({})

    assert settings.docker_host == "unix:///var/run/docker.sock"
    assert settings.docker_socket == "/var/run/docker.sock"
    assert (settings.lab_user.name, settings.lab_user.uid, settings.lab_user.gid) == ("labuser", 2100, 2100)
    assert settings.lab_user.docker_group == "docker"
    assert settings.paths.shared_dir == "/shared/jupyterhub"
    assert settings.paths.tls_dir == "/etc/jupyterhub/ssl"
    assert settings.paths.users_dir == "/srv/juvini/users"
    assert settings.paths.hub_state_dir == "/srv/juvini/hub"
    assert settings.allow_data_removal is False
    assert settings.host.address == "127.0.0.1"
    assert (settings.host.ssh_port, settings.host.ssh_user, settings.host.use_sudo) == (22, "root", False)
    assert settings.host.private_key() is None
    assert settings.tls.mode is TlsMode.SELF_SIGNED
    assert settings.tls.dns_names == ["localhost"]
    assert settings.tls.ip_addresses == ["127.0.0.1"]
    assert (settings.tls.validity_days, settings.tls.ca_validity_days) == (365, 3650)
    assert settings.network.hub_subnet is None and settings.network.users_subnet == "172.16.16.0/22"
    assert settings.network.egress == ["0.0.0.0/0"] and settings.network_isolation is True
    assert settings.images.base_image == "debian:bookworm-slim"
    assert settings.images.tag == "0.1.0"
    assert settings.images.registry is None and settings.images.push is False
    assert settings.images.extra_ca_bundle is None
    assert settings.hub.https_port == 8443
    assert settings.hub.http_redirect_port is None
    assert settings.hub.log_level == "INFO"
    assert settings.hub_url == "https://localhost:8443/"
    assert settings.admin_users == []
    assert settings.auth.type == "native"
    assert settings.auth.native.open_signup is False
    assert settings.auth.ldap.tls_strategy is LdapTls.STARTTLS
    assert settings.spawner.allowed_images == ["datascience", "pyspark", "base"]
    assert (settings.spawner.mem_limit, settings.spawner.cpu_limit) == ("4g", 2.0)
    assert (settings.spawner.idle_timeout, settings.spawner.cull_every) == (3600, 300)
    assert settings.spark.driver_memory == "1g"
    assert str(settings.spark.driver_ports) == "12000-12010"
    assert str(settings.spark.block_manager_ports) == "11100-11110"
    assert settings.spark.driver_ports == PortRange(first=12000, last=12010)
    assert settings.swarm.enabled is False and settings.swarm.placement_constraints == []


def test_defaults_equal_the_model_built_without_any_input() -> None:
    assert parse_settings({}) == Settings()


def test_every_section_given_empty_is_the_same_as_not_given() -> None:
    # Pulumi.yaml declares each section with the default {}; the stack then hands over "{}".
    assert SECTIONS, "the model has no sections"
    assert parse_settings({key: {} for key in SECTIONS}) == parse_settings({})


def test_every_nested_section_given_empty_sets_nothing() -> None:
    # An empty object is not a setting: {"auth": {"ldap": {}}} is no ldap key set under type native.
    raw: dict[str, Any] = {key: {name: {} for name in nested} for key, nested in NESTED_SECTIONS.items()}
    assert NESTED_SECTIONS, "the model has no nested sections"
    assert parse_settings(raw) == parse_settings({})


# --- default/override pairs -----------------------------------------------------------


def test_lab_user_uid_and_gid_override() -> None:
    settings = parse_settings({"labUser": {"uid": 3000, "gid": 3001}})
    assert (settings.lab_user.uid, settings.lab_user.gid) == (3000, 3001)
    assert settings.lab_user.name == "labuser"


def test_lab_user_name_override() -> None:
    assert parse_settings({"labUser": {"name": "datalab"}}).lab_user.name == "datalab"


def test_ints_given_as_strings_are_coerced() -> None:
    # Values reaching the program from the stack are text: "8443", "3000", "1.5", "true".
    settings = parse_settings(
        {
            "hub": {"httpsPort": "9443", "httpRedirectPort": "8080"},
            "labUser": {"uid": "3000"},
            "spawner": {"cpuLimit": "1.5", "idleTimeout": "7200"},
            "allowDataRemoval": "true",
        }
    )
    assert (settings.hub.https_port, settings.hub.http_redirect_port) == (9443, 8080)
    assert settings.lab_user.uid == 3000
    assert (settings.spawner.cpu_limit, settings.spawner.idle_timeout) == (1.5, 7200)
    assert settings.allow_data_removal is True


def test_https_port_override_changes_the_hub_url() -> None:
    assert parse_settings({"hub": {"httpsPort": 9443}}).hub_url == "https://localhost:9443/"


def test_port_443_is_left_out_of_the_hub_url() -> None:
    settings = parse_settings(
        {"hub": {"httpsPort": 443, "publicHostname": "lab.example.org"}, "tls": {"dnsNames": ["lab.example.org"]}}
    )
    assert settings.hub_url == "https://lab.example.org/"


def test_ipv6_public_hostname_is_bracketed_in_the_hub_url() -> None:
    settings = parse_settings({"hub": {"publicHostname": "::1"}, "tls": {"ipAddresses": ["::1"]}})
    assert settings.hub_url == "https://[::1]:8443/"


def test_admin_users_are_normalised_to_jupyterhub_usernames() -> None:
    settings = parse_settings({"hub": {"adminUsers": [" Alice ", "bob@example.org"]}})
    assert settings.admin_users == ["alice", "bob@example.org"]


def test_paths_override() -> None:
    settings = parse_settings({"paths": {"sharedDir": "/data/shared", "usersDir": "/data/users"}})
    assert (settings.paths.shared_dir, settings.paths.users_dir) == ("/data/shared", "/data/users")
    assert settings.paths.tls_dir == "/etc/jupyterhub/ssl"


def test_docker_host_over_ssh() -> None:
    settings = parse_settings({"dockerHost": "ssh://admin@lab1.example.org:2222"})
    assert settings.docker_host == "ssh://admin@lab1.example.org:2222"


def test_non_root_ssh_user_with_sudo() -> None:
    settings = parse_settings({"host": {"address": "lab1.example.org", "sshUser": "deploy", "useSudo": True}})
    assert (settings.host.address, settings.host.ssh_user, settings.host.use_sudo) == (
        "lab1.example.org",
        "deploy",
        True,
    )


def test_ssh_private_key_file_is_read_as_a_secret(tmp_path: Path) -> None:
    key_file = tmp_path / "id_ed25519"
    key_file.write_text(PRIVATE_KEY, encoding="utf-8")
    settings = parse_settings({"host": {"sshPrivateKeyFile": str(key_file)}})
    key = settings.host.private_key()
    assert isinstance(key, SecretStr) and key.get_secret_value() == PRIVATE_KEY


def test_tls_names_override() -> None:
    settings = parse_settings(
        {
            "tls": {"dnsNames": ["lab.example.org", "*.lab.example.org"], "ipAddresses": []},
            "hub": {"publicHostname": "lab.example.org"},
        }
    )
    assert settings.tls.dns_names == ["lab.example.org", "*.lab.example.org"]
    assert settings.tls.ip_addresses == []


def test_tls_provided_mode() -> None:
    settings = parse_settings({"tls": PROVIDED_TLS}, {"tls"})
    assert settings.tls.mode is TlsMode.PROVIDED
    assert settings.tls.private_key is not None and settings.tls.private_key.get_secret_value() == PRIVATE_KEY.strip()


def test_private_subnets_override() -> None:
    settings = parse_settings({"network": {"hubSubnet": "172.30.0.0/24", "usersSubnet": "172.30.1.0/24"}})
    assert (settings.network.hub_subnet, settings.network.users_subnet) == ("172.30.0.0/24", "172.30.1.0/24")


def test_images_registry_push_and_pinned_base() -> None:
    digest = "sha256:" + "a" * 64
    settings = parse_settings(
        {
            "images": {
                "baseImage": f"registry.example.com:5000/team/debian@{digest}",
                "registry": "registry.example.com:5000/lab",
                "tag": "2024.06.1",
                "push": True,
            }
        }
    )
    assert settings.images.base_image.endswith(digest)
    assert (settings.images.registry, settings.images.tag, settings.images.push) == (
        "registry.example.com:5000/lab",
        "2024.06.1",
        True,
    )


def test_extra_ca_bundle_as_pem_text_keeps_only_the_certificates() -> None:
    bundle = parse_settings({"images": {"extraCaBundle": "# corporate proxy\n" + CERT}}).images.extra_ca_bundle
    assert bundle is not None and bundle.startswith("-----BEGIN CERTIFICATE-----") and "corporate" not in bundle


def test_extra_ca_bundle_from_a_file(tmp_path: Path) -> None:
    pem = tmp_path / "proxy-ca.pem"
    pem.write_text(CERT, encoding="utf-8")
    bundle = parse_settings({"images": {"extraCaBundle": str(pem)}}).images.extra_ca_bundle
    assert bundle is not None and "MIIBszCCAVmgAwIBAgIUXYZ" in bundle


def test_extra_ca_bundle_from_a_folder_of_crt_files(tmp_path: Path) -> None:
    (tmp_path / "a.crt").write_text(CERT, encoding="utf-8")
    (tmp_path / "b.crt").write_text(OTHER_CERT, encoding="utf-8")
    (tmp_path / "README").write_text("not a certificate", encoding="utf-8")
    bundle = parse_settings({"images": {"extraCaBundle": str(tmp_path)}}).images.extra_ca_bundle
    assert bundle is not None and bundle.count("-----BEGIN CERTIFICATE-----") == 2


def test_registry_ca_from_a_file_keeps_only_the_certificates(tmp_path: Path) -> None:
    pem = tmp_path / "registry-ca.pem"
    pem.write_text("# the lab registry's CA\n" + CERT, encoding="utf-8")
    images = parse_settings({"images": {"registry": "registry.example.com:5000/lab", "registryCa": str(pem)}}).images
    assert images.registry_ca is not None and images.registry_ca.startswith("-----BEGIN CERTIFICATE-----")
    assert "MIIBszCCAVmgAwIBAgIUXYZ" in images.registry_ca and "lab registry" not in images.registry_ca


def test_extra_ca_bundle_empty_folder_means_no_extra_cas(tmp_path: Path) -> None:
    assert parse_settings({"images": {"extraCaBundle": str(tmp_path)}}).images.extra_ca_bundle is None


def test_spawner_limits_override() -> None:
    settings = parse_settings(
        {"spawner": {"memLimit": "8g", "cpuLimit": 4, "allowedImages": ["pyspark"], "environment": {"TZ": "UTC"}}}
    )
    assert (settings.spawner.mem_limit, settings.spawner.cpu_limit) == ("8g", 4.0)
    assert settings.spawner.allowed_images == ["pyspark"]
    assert settings.spawner.environment == {"TZ": "UTC"}


def test_idle_timeout_zero_disables_culling_whatever_cull_every_is() -> None:
    settings = parse_settings({"spawner": {"idleTimeout": 0, "cullEvery": 86400}})
    assert (settings.spawner.idle_timeout, settings.spawner.cull_every) == (0, 86400)


def test_spark_port_ranges_and_memory_override() -> None:
    settings = parse_settings(
        {"spark": {"driverMemory": "2g", "driverPorts": "13000-13004", "blockManagerPorts": "13100-13104"}}
    )
    assert settings.spark.driver_memory == "2g"
    assert (settings.spark.driver_ports.first, settings.spark.driver_ports.last) == (13000, 13004)
    assert settings.spark.driver_ports.size == 5
    assert 13102 in settings.spark.block_manager_ports


def test_ldap_with_bind_dn_template() -> None:
    settings = parse_settings(
        {
            "auth": {
                "type": "ldap",
                "ldap": {
                    "serverAddress": "ldap.example.org",
                    "tlsStrategy": "on_connect",
                    "bindDnTemplate": ["uid={username},ou=people,dc=example,dc=org"],
                },
            }
        }
    )
    assert settings.auth.type == "ldap"
    assert settings.auth.ldap.tls_strategy is LdapTls.ON_CONNECT
    assert settings.auth.ldap.bind_dn_template == ["uid={username},ou=people,dc=example,dc=org"]


def test_ldap_with_lookup_dn() -> None:
    settings = parse_settings(
        {
            "auth": {
                "type": "ldap",
                "ldap": {
                    "serverAddress": "10.0.0.5",
                    "lookupDn": True,
                    "searchUser": "cn=reader,dc=example,dc=org",
                    "searchPassword": "reader-password",
                    "userSearchBase": "ou=people,dc=example,dc=org",
                },
            }
        },
        {"auth"},
    )
    assert settings.auth.ldap.lookup_dn is True
    assert settings.auth.ldap.search_password is not None


def test_github_auth() -> None:
    settings = parse_settings(
        {"auth": {"type": "github", "github": {"clientId": "Iv1.abc", "clientSecret": "s3cr3t"}}}, {"auth"}
    )
    assert settings.auth.github.client_id == "Iv1.abc"


def test_dummy_auth_with_a_long_enough_password() -> None:
    settings = parse_settings({"auth": {"type": "dummy", "dummyPassword": "long-enough"}}, {"auth"})
    assert settings.auth.dummy_password is not None
    assert settings.auth.dummy_password.get_secret_value() == "long-enough"


def test_swarm_placement_constraints_override() -> None:
    settings = parse_settings(
        {"swarm": {"enabled": True, "placementConstraints": ["node.role==worker"]}, "images": SWARM_REGISTRY}
    )
    assert settings.swarm.enabled is True and settings.swarm.placement_constraints == ["node.role==worker"]


def test_a_swarm_of_workers() -> None:
    settings = parse_settings({"swarm": SWARM, "images": SWARM_REGISTRY})
    first, second = settings.swarm.workers
    assert (first.name, first.address, first.ssh_port, first.ssh_user) == ("worker-1", "10.0.0.11", 22, "root")
    assert first.effective_advertise_address() == "10.0.0.11"
    assert second.use_sudo and second.labels == {"gpu": "none"}
    assert settings.swarm.manager.effective_advertise_address(settings.host.address) == "10.0.0.10"
    assert settings.swarm.existing is False


def test_a_manager_advertises_its_routable_host_address_by_default() -> None:
    settings = parse_settings(
        {"host": {"address": "10.0.0.10"}, "images": SWARM_REGISTRY, "swarm": {**SWARM, "manager": {}}}
    )
    assert settings.swarm.manager.effective_advertise_address(settings.host.address) == "10.0.0.10"


def test_a_worker_named_by_dns_lets_docker_pick_its_advertised_address() -> None:
    worker = {"name": "worker-1", "address": "w1.example.org"}
    settings = parse_settings({"images": SWARM_REGISTRY, "swarm": {**SWARM, "workers": [worker]}})
    assert settings.swarm.workers[0].effective_advertise_address() is None


def test_an_existing_swarm_needs_no_advertised_address() -> None:
    settings = parse_settings({"images": SWARM_REGISTRY, "swarm": {**SWARM, "existing": True, "manager": {}}})
    assert settings.swarm.existing and settings.swarm.manager.effective_advertise_address("127.0.0.1") is None


def test_advertise_address_may_be_an_interface() -> None:
    settings = parse_settings({"images": SWARM_REGISTRY, "swarm": {**SWARM, "manager": {"advertiseAddress": "eth0"}}})
    assert settings.swarm.manager.advertise_address == "eth0"


def test_surrounding_whitespace_is_stripped() -> None:
    assert parse_settings({"images": {"tag": " 1.2.3 \n"}}).images.tag == "1.2.3"


# --- invalid configurations -----------------------------------------------------------


def _big_ca_bundle(tmp_path: Path) -> dict[str, Any]:
    body = "\n".join(["A" * 64] * 20)
    cert = f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"
    bundle = tmp_path / "system-bundle.pem"
    bundle.write_text(cert * (MAX_CA_BUNDLE_BYTES // len(cert) + 2), encoding="utf-8")
    return {"images": {"extraCaBundle": str(bundle)}}


def _not_pem_file(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "ca.pem"
    path.write_text("this is not a certificate\n", encoding="utf-8")
    return {"images": {"extraCaBundle": str(path)}}


def _both_key_kinds(tmp_path: Path) -> dict[str, Any]:
    key_file = tmp_path / "id_ed25519"
    key_file.write_text(PRIVATE_KEY, encoding="utf-8")
    return {"host": {"sshPrivateKey": PRIVATE_KEY, "sshPrivateKeyFile": str(key_file)}}


LDAP_SERVER = {"serverAddress": "ldap.example.org"}
LDAP_LOGIN: dict[str, Any] = {
    "type": "ldap",
    "ldap": {"serverAddress": "ldap.example.org", "bindDnTemplate": ["uid={username},ou=people,dc=example,dc=org"]},
}
GITHUB = {"clientId": "Iv1.abc", "clientSecret": "s3cr3t"}
KERBEROS = {"enabled": True, "realm": "CORP.EXAMPLE.ORG", "kdcs": ["kdc.example.org"]}
TEAM_SHARE = {"name": "team", "unc": "//10.0.0.5/team", "username": "svc", "password": "team-pw"}
USER_SHARE = {"name": "home", "unc": "//10.0.0.5/homes", "perUser": True}

INVALID = [
    # unknown keys
    pytest.param(
        {"bogus": 1}, unknown("bogus", "allowDataRemoval, auth, cifs, dockerHost"), id="unknown-top-level-key"
    ),
    pytest.param(
        {"hub": {"httpPort": 80}}, unknown("hub.httpPort", "httpRedirectPort, httpsPort"), id="unknown-hub-key"
    ),
    pytest.param(
        {"auth": {"ldap": {"server": "ldap.example.org"}}},
        unknown("auth.ldap.server", "serverAddress, serverPort"),
        id="unknown-nested-ldap-key",
    ),
    pytest.param({"labuser": {"uid": 3000}}, unknown("labuser", "labUser"), id="unknown-key-wrong-case"),
    # lab user
    pytest.param({"labUser": {"uid": 999}}, bad("labUser.uid", "999", "greater than or equal to 1000"), id="uid-low"),
    pytest.param(
        {"labUser": {"gid": 70000}}, bad("labUser.gid", "70000", "less than or equal to 60000"), id="gid-high"
    ),
    pytest.param({"labUser": {"uid": "abc"}}, bad("labUser.uid", "'abc'", "valid integer"), id="uid-not-a-number"),
    pytest.param(
        {"labUser": {"name": "Lab User"}}, bad("labUser.name", "'Lab User'", "[a-z_][a-z0-9_-]"), id="bad-lab-user"
    ),
    pytest.param({"host": {"sshUser": "9bad"}}, bad("host.sshUser", "'9bad'", "[a-z_][a-z0-9_-]"), id="bad-ssh-user"),
    pytest.param(
        {"labUser": {"name": "docker"}},
        bad("labUser.name", "'docker'", "must differ from labUser.dockerGroup 'docker'"),
        id="lab-user-named-like-docker-group",
    ),
    # paths
    pytest.param(
        {"paths": {"sharedDir": "shared/x"}}, bad("paths.sharedDir", "'shared/x'", "absolute path"), id="relative-path"
    ),
    pytest.param({"paths": {"tlsDir": "/"}}, bad("paths.tlsDir", "'/'", "not be the filesystem root"), id="root-path"),
    pytest.param(
        {"paths": {"usersDir": "/srv/../etc"}}, bad("paths.usersDir", "'/srv/../etc'", "not contain '..'"), id="dotdot"
    ),
    pytest.param(
        {"paths": {"usersDir": "/srv/my users"}},
        bad("paths.usersDir", "'/srv/my users'", "letters, digits"),
        id="path-with-space",
    ),
    pytest.param(
        {"paths": {"usersDir": "/srv/juvini/hub/users"}},
        bad("paths.usersDir", "'/srv/juvini/hub/users'", "lies inside paths.hubStateDir /srv/juvini/hub"),
        id="nested-folders",
    ),
    pytest.param(
        {"paths": {"sharedDir": "/srv/lab", "usersDir": "/srv/lab"}},
        bad(
            "paths.usersDir",
            "'/srv/lab'",
            "is the same as paths.sharedDir /srv/lab; the lab's folders must be separate",
        ),
        id="duplicate-folders",
    ),
    pytest.param(
        {"dockerSocket": "docker.sock"}, bad("dockerSocket", "'docker.sock'", "absolute path"), id="relative-socket"
    ),
    # docker host and ssh
    pytest.param(
        {"dockerHost": "http://lab1:2375"},
        bad("dockerHost", "'http://lab1:2375'", "unix:///path/docker.sock, tcp://host:port or ssh://"),
        id="docker-host-scheme",
    ),
    pytest.param(
        {"dockerHost": "tcp://lab1"}, bad("dockerHost", "'tcp://lab1'", "tcp://host:port"), id="docker-tcp-without-port"
    ),
    pytest.param(
        {"host": {"sshPort": 70000}}, bad("host.sshPort", "70000", "less than or equal to 65535"), id="ssh-port"
    ),
    pytest.param({"host": {"sshPort": 0}}, bad("host.sshPort", "0", "greater than or equal to 1"), id="ssh-port-zero"),
    pytest.param(
        {"host": {"address": "lab_1!"}}, bad("host.address", "'lab_1!'", "DNS name or an IP address"), id="host-address"
    ),
    pytest.param(
        {"host": {"hostKey": "ssh-dss AAAA"}},
        bad("host.hostKey", "'ssh-dss AAAA'", "SSH public key line 'TYPE BASE64'"),
        id="host-key",
    ),
    pytest.param(
        {"host": {"useSudo": True}},
        bad("host.useSudo", "true", "only for a non-root host.sshUser; root needs no sudo"),
        id="use-sudo-with-root",
    ),
    pytest.param(
        {"host": {"sshPrivateKeyFile": "/nonexistent/id_ed25519"}},
        bad("host.sshPrivateKeyFile", "'/nonexistent/id_ed25519'", "readable SSH private key file"),
        id="missing-key-file",
    ),
    pytest.param(
        _both_key_kinds,
        r"^juvini:host\.sshPrivateKeyFile: '/\S+/id_ed25519' is not allowed: "
        r"set sshPrivateKey or sshPrivateKeyFile, not both",
        id="two-ssh-keys",
    ),
    # tls
    pytest.param(
        {"tls": {"mode": "letsencrypt"}}, bad("tls.mode", "'letsencrypt'", "'selfSigned' or 'provided'"), id="tls-mode"
    ),
    pytest.param(
        {"tls": {"mode": "provided"}},
        bad("tls.privateKey", "(unset)", "required with tls.mode provided (certificate, privateKey and caCertificate)"),
        id="provided-without-cert-key-ca",
    ),
    pytest.param(
        {"tls": {"mode": "provided", "certificate": CERT, "privateKey": PRIVATE_KEY}},
        bad("tls.caCertificate", "(unset)", "required with tls.mode provided"),
        id="provided-without-ca",
    ),
    pytest.param(
        {"tls": {"certificate": CERT}},
        r"^juvini:tls\.certificate: '-----BEGIN CERTIFICATE-----\\n.* is not allowed: "
        r"only with tls\.mode provided; tls\.mode is 'selfSigned'",
        id="self-signed-with-certificate",
    ),
    pytest.param(
        {"tls": {**PROVIDED_TLS, "certificate": "hello"}},
        bad("tls.certificate", "'hello'", "PEM certificate"),
        id="certificate-not-pem",
    ),
    pytest.param(
        {"tls": {**PROVIDED_TLS, "privateKey": "not a key"}},
        bad("tls.privateKey", "'**********'", "must be a PEM private key (-----BEGIN ... PRIVATE KEY-----)"),
        id="private-key-not-pem",
    ),
    pytest.param(
        {"tls": {"dnsNames": ["lab_1.example.org"]}},
        bad("tls.dnsNames", '["lab_1.example.org"]', "not DNS names (letters, digits"),
        id="bad-dns-name",
    ),
    pytest.param(
        {"tls": {"ipAddresses": ["300.1.1.1"]}},
        bad("tls.ipAddresses", '["300.1.1.1"]', "not IP addresses"),
        id="bad-ip-address",
    ),
    pytest.param(
        {"tls": {"dnsNames": [], "ipAddresses": []}},
        bad("tls.dnsNames", "[]", "dnsNames and ipAddresses are both empty; the certificate needs a name"),
        id="empty-san-lists",
    ),
    pytest.param(
        {"tls": {"validityDays": 0}}, bad("tls.validityDays", "0", "greater than or equal to 1"), id="validity"
    ),
    pytest.param(
        {"tls": {"caValidityDays": 8000}},
        bad("tls.caValidityDays", "8000", "less than or equal to 7300"),
        id="ca-validity",
    ),
    # network
    pytest.param(
        {"network": {"hubSubnet": "172.30.0.0/33"}},
        bad("network.hubSubnet", "'172.30.0.0/33'", "CIDR network"),
        id="subnet-not-cidr",
    ),
    pytest.param(
        {"network": {"hubSubnet": "172.30.0.1/24"}},
        bad("network.hubSubnet", "'172.30.0.1/24'", "has host bits set"),
        id="subnet-host-bits",
    ),
    pytest.param(
        {"network": {"hubSubnet": "8.8.8.0/24"}},
        bad("network.hubSubnet", "'8.8.8.0/24'", "private range (10/8, 172.16/12, 192.168/16"),
        id="public-subnet",
    ),
    pytest.param(
        {"network": {"usersSubnet": "10.1.0.0/29"}},
        bad("network.usersSubnet", "'10.1.0.0/29'", "/28 or shorter"),
        id="subnet-too-small",
    ),
    pytest.param(
        {"network": {"hubSubnet": "10.1.0.0/16", "usersSubnet": "10.1.2.0/24"}},
        bad("network.usersSubnet", "'10.1.2.0/24'", "must not overlap network.hubSubnet 10.1.0.0/16"),
        id="overlapping-subnets",
    ),
    # images
    pytest.param(
        {"images": {"baseImage": "debian"}},
        bad("images.baseImage", "'debian'", "pinned with a tag or a @sha256 digest"),
        id="untagged-base-image",
    ),
    pytest.param(
        {"images": {"baseImage": "debian:latest"}},
        bad("images.baseImage", "'debian:latest'", "not use the moving 'latest' tag"),
        id="latest-base-image",
    ),
    pytest.param(
        {"images": {"baseImage": "Debian:Bookworm"}},
        bad("images.baseImage", "'Debian:Bookworm'", "Docker image reference such as debian:bookworm-slim"),
        id="malformed-base-image",
    ),
    pytest.param({"images": {"tag": "-bad"}}, bad("images.tag", "'-bad'", "Docker tag: letters, digits"), id="bad-tag"),
    pytest.param({"images": {"tag": "latest"}}, bad("images.tag", "'latest'", "must not be 'latest'"), id="latest-tag"),
    pytest.param(
        {"images": {"registry": "https://registry.example.com"}},
        bad("images.registry", "'https://registry.example.com'", "registry host with an optional namespace"),
        id="registry-with-scheme",
    ),
    pytest.param(
        {"images": {"push": True}}, bad("images.push", "true", "needs images.registry"), id="push-no-registry"
    ),
    pytest.param(
        {"images": {"registry": "registry.example.com/lab", "registryUsername": "pusher"}},
        bad("images.registryUsername", "'(set)'", "needs both images.registryUsername and images.registryPassword"),
        id="registry-user-without-password",
    ),
    pytest.param(
        {"images": {"registry": "registry.example.com/lab", "pullPassword": "secret"}},
        bad("images.pullPassword", "'(set)'", "needs both images.pullUsername and images.pullPassword"),
        id="pull-password-without-user",
    ),
    pytest.param(
        {"images": {"registryCa": CERT}},
        bad("images.registryCa", "'(set)'", "needs images.registry, the registry it is for"),
        id="registry-ca-without-registry",
    ),
    pytest.param(
        {"images": {"registryCa": "/nonexistent/registry-ca.pem"}},
        bad("images.registryCa", "'/nonexistent/registry-ca.pem'", "PEM text, a PEM file or a folder"),
        id="registry-ca-missing-file",
    ),
    pytest.param(
        {"images": {"registry": "registry.example.com/lab", "registryCa": PRIVATE_KEY}},
        r"^juvini:images\.registryCa: '-----BEGIN PRIVATE KEY-----\\n.* is not allowed: .*no PEM certificate",
        id="registry-ca-not-a-certificate",
    ),
    pytest.param(
        {"images": {"registry": "registry.example.com/lab", "pullUsername": "puller", "pullPassword": "secret"}},
        bad("images.pullUsername", "'puller'", "only with swarm.enabled: on one Docker host the images are built"),
        id="pull-login-without-swarm",
    ),
    pytest.param(
        {"images": {"extraCaBundle": PRIVATE_KEY}},
        r"^juvini:images\.extraCaBundle: '-----BEGIN PRIVATE KEY-----\\n.* is not allowed: "
        r".*no PEM certificate \(-----BEGIN CERTIFICATE-----\)",
        id="ca-bundle-text-not-a-certificate",
    ),
    pytest.param(
        _not_pem_file,
        r"^juvini:images\.extraCaBundle: '/\S+ is not allowed: .*no PEM certificate",
        id="ca-bundle-file-not-pem",
    ),
    pytest.param(
        {"images": {"extraCaBundle": "/nonexistent/ca.pem"}},
        bad("images.extraCaBundle", "'/nonexistent/ca.pem'", "PEM text, a PEM file or a folder"),
        id="ca-bundle-missing-file",
    ),
    pytest.param(
        _big_ca_bundle,
        # a long path is shown cut to its start
        rf"^juvini:images\.extraCaBundle: '/\S+ is not allowed: holds \d+ bytes of certificates; "
        rf"at most {MAX_CA_BUNDLE_BYTES} are allowed",
        id="ca-bundle-too-large",
    ),
    # hub
    pytest.param(
        {"hub": {"httpRedirectPort": 8443}},
        bad("hub.httpRedirectPort", "8443", "must differ from hub.httpsPort 8443"),
        id="redirect-port-is-https-port",
    ),
    pytest.param({"hub": {"httpsPort": "abc"}}, bad("hub.httpsPort", "'abc'", "valid integer"), id="https-port-text"),
    pytest.param(
        {"hub": {"adminUsers": ["bad user"]}},
        bad("hub.adminUsers[0]", "'bad user'", "JupyterHub username"),
        id="bad-admin-user",
    ),
    pytest.param(
        {"hub": {"adminUsers": ["alice", "-bob"]}},
        bad("hub.adminUsers[1]", "'-bob'", "JupyterHub username"),
        id="bad-second-admin-user",
    ),
    pytest.param(
        {"hub": {"logLevel": "TRACE"}},
        bad("hub.logLevel", "'TRACE'", "'DEBUG', 'INFO', 'WARN' or 'ERROR'"),
        id="bad-log-level",
    ),
    pytest.param(
        {"hub": {"publicHostname": "lab host"}},
        bad("hub.publicHostname", "'lab host'", "DNS name or an IP address"),
        id="bad-public-hostname",
    ),
    # spawner
    pytest.param(
        {"spawner": {"allowedImages": []}},
        bad("spawner.allowedImages", "[]", "at least 1 item"),
        id="no-allowed-images",
    ),
    pytest.param(
        {"spawner": {"allowedImages": ["base", "base"]}},
        bad("spawner.allowedImages", '["base", "base"]', "lists an image twice"),
        id="duplicate-allowed-images",
    ),
    pytest.param(
        {"spawner": {"allowedImages": ["gpu"]}},
        bad("spawner.allowedImages[0]", "'gpu'", "'base', 'datascience' or 'pyspark'"),
        id="unknown-allowed-image",
    ),
    pytest.param(
        {"spawner": {"memLimit": "4GB"}},
        bad("spawner.memLimit", "'4GB'", "memory size: a positive number with an optional unit b, k, m or g"),
        id="bad-mem-limit",
    ),
    pytest.param(
        {"spawner": {"memLimit": "32m"}}, bad("spawner.memLimit", "'32m'", "at least 64m"), id="mem-limit-too-small"
    ),
    pytest.param({"spawner": {"cpuLimit": 0}}, bad("spawner.cpuLimit", "0", "greater than 0"), id="cpu-limit-zero"),
    pytest.param(
        {"spawner": {"cpuLimit": -1.5}}, bad("spawner.cpuLimit", "-1.5", "greater than 0"), id="cpu-limit-negative"
    ),
    pytest.param(
        {"spawner": {"startTimeout": 10}},
        bad("spawner.startTimeout", "10", "greater than or equal to 30"),
        id="start-timeout-short",
    ),
    pytest.param(
        {"spawner": {"httpTimeout": 4000}},
        bad("spawner.httpTimeout", "4000", "less than or equal to 3600"),
        id="http-timeout-long",
    ),
    pytest.param(
        {"spawner": {"idleTimeout": -1}},
        bad("spawner.idleTimeout", "-1", "greater than or equal to 0"),
        id="idle-timeout-negative",
    ),
    pytest.param(
        {"spawner": {"idleTimeout": 600, "cullEvery": 900}},
        bad("spawner.cullEvery", "900", "must not be longer than spawner.idleTimeout 600"),
        id="cull-every-above-idle-timeout",
    ),
    pytest.param(
        {"spawner": {"environment": {"1BAD": "x", "GOOD": "y"}}},
        r"^juvini:spawner\.environment: .*'1BAD'.*not environment variable names \(\[A-Za-z_\]",
        id="bad-env-var-name",
    ),
    # spark
    pytest.param(
        {"spark": {"driverMemory": "2"}},
        bad("spark.driverMemory", "'2'", "Spark memory size: a positive number with a unit k, m, g or t"),
        id="bad-driver-memory",
    ),
    pytest.param(
        {"spark": {"driverMemory": "0g"}}, bad("spark.driverMemory", "'0g'", "positive number"), id="zero-driver-memory"
    ),
    pytest.param(
        {"spark": {"driverMemory": "4g"}, "spawner": {"memLimit": "2g"}},
        bad("spark.driverMemory", "'4g'", "must be below spawner.memLimit 2g"),
        id="driver-memory-above-mem-limit",
    ),
    pytest.param(
        {"spark": {"driverMemory": "4096m"}, "spawner": {"memLimit": "4g"}},
        bad("spark.driverMemory", "'4096m'", "must be below spawner.memLimit 4g"),
        id="driver-memory-equal-to-mem-limit",
    ),
    pytest.param(
        {"spark": {"driverPorts": "12000:12010"}},
        bad("spark.driverPorts", "'12000:12010'", "port range written first-last"),
        id="bad-port-range",
    ),
    pytest.param(
        {"spark": {"driverPorts": "12010-12000"}},
        bad("spark.driverPorts", "'12010-12000'", "1024-65535 with first <= last"),
        id="inverted-port-range",
    ),
    pytest.param(
        {"spark": {"blockManagerPorts": "80-90"}},
        bad("spark.blockManagerPorts", "'80-90'", "1024-65535"),
        id="privileged-port-range",
    ),
    pytest.param(
        {"spark": {"blockManagerPorts": "65530-70000"}},
        bad("spark.blockManagerPorts", "'65530-70000'", "1024-65535"),
        id="port-range-beyond-65535",
    ),
    pytest.param(
        {"spark": {"driverPorts": "11105-11120"}},
        bad("spark.blockManagerPorts", "'11100-11110'", "must not overlap spark.driverPorts 11105-11120"),
        id="overlapping-spark-ranges",
    ),
    pytest.param(
        {"hub": {"httpsPort": 12005}},
        bad("hub.httpsPort", "12005", "must lie outside spark.driverPorts 12000-12010"),
        id="https-port-inside-driver-ports",
    ),
    pytest.param(
        {"hub": {"httpRedirectPort": 11100}},
        bad("hub.httpRedirectPort", "11100", "must lie outside spark.blockManagerPorts 11100-11110"),
        id="redirect-port-inside-block-manager-ports",
    ),
    pytest.param(
        {"spark": {"driverHost": "not a host"}},
        bad("spark.driverHost", "'not a host'", "DNS name or an IP address"),
        id="bad-driver-host",
    ),
    # auth
    pytest.param(
        {"auth": {"type": "saml"}},
        bad("auth.type", "'saml'", "'native', 'ldap', 'github', 'oidc' or 'dummy'"),
        id="unknown-auth-type",
    ),
    pytest.param(
        {"auth": {"type": "ldap", "ldap": {"bindDnTemplate": ["uid={username},dc=org"]}}},
        bad("auth.ldap.serverAddress", "(unset)", "required with auth.type ldap"),
        id="ldap-without-server",
    ),
    pytest.param(
        {"auth": {"type": "ldap", "ldap": LDAP_SERVER}},
        bad(
            "auth.ldap.bindDnTemplate",
            "[]",
            "ldap needs bindDnTemplate, or lookupDn with searchUser/searchPassword/userSearchBase",
        ),
        id="ldap-without-bind-template-or-lookup",
    ),
    pytest.param(
        {"auth": {"type": "ldap", "ldap": {**LDAP_SERVER, "lookupDn": True, "searchUser": "cn=reader"}}},
        bad("auth.ldap.userSearchBase", "(unset)", "required with auth.ldap.lookupDn true"),
        id="ldap-lookup-without-search-settings",
    ),
    pytest.param(
        {"auth": {"type": "ldap", "ldap": {**LDAP_SERVER, "bindDnTemplate": ["uid=x,dc=org"]}}},
        bad("auth.ldap.bindDnTemplate", '["uid=x,dc=org"]', "lack the {username} placeholder"),
        id="bind-template-without-username",
    ),
    pytest.param(
        {"auth": {"ldap": {"tlsStrategy": "ssl"}}},
        bad("auth.ldap.tlsStrategy", "'ssl'", "'insecure', 'before_bind' or 'on_connect'"),
        id="bad-ldap-tls-strategy",
    ),
    pytest.param(
        {"auth": {"type": "github", "github": {"clientId": "Iv1.abc"}}},
        bad("auth.github.clientSecret", "(unset)", "required with auth.type github"),
        id="github-without-secret",
    ),
    pytest.param(
        {"auth": {"type": "github"}},
        bad("auth.github.clientId", "(unset)", "required with auth.type github"),
        id="github-without-client",
    ),
    pytest.param(
        {"auth": {"type": "dummy"}},
        bad("auth.dummyPassword", "(unset)", "type dummy needs at least 8 characters"),
        id="dummy-without-password",
    ),
    pytest.param(
        {"auth": {"type": "dummy", "dummyPassword": "short"}},
        bad("auth.dummyPassword", "'**********'", "type dummy needs at least 8 characters"),
        id="dummy-short-password",
    ),
    pytest.param(
        {"auth": {"allowedUsers": ["-x"]}},
        bad("auth.allowedUsers[0]", "'-x'", "JupyterHub username"),
        id="bad-allowed-user",
    ),
    pytest.param(
        {"auth": {"native": {"minimumPasswordLength": 4}}},
        bad("auth.native.minimumPasswordLength", "4", "greater than or equal to 8"),
        id="native-password-length",
    ),
    # swarm
    pytest.param(
        {"swarm": {"placementConstraints": ["node.role=worker"]}},
        bad("swarm.placementConstraints", '["node.role=worker"]', "not placement constraints like node.role==worker"),
        id="bad-placement-constraint",
    ),
    # --- contradictions between keys and sections, each reported at the key to change ---
    # host ports: SSH, the proxy and (on one host) Spark share the Docker host's ports
    pytest.param(
        {"hub": {"httpsPort": 22}},
        bad("hub.httpsPort", "22", "must differ from host.sshPort 22: both are ports of the same Docker host"),
        id="https-port-is-ssh-port",
    ),
    pytest.param(
        {"host": {"sshPort": 2222}, "hub": {"httpRedirectPort": 2222}},
        bad("hub.httpRedirectPort", "2222", "must differ from host.sshPort 2222"),
        id="redirect-port-is-ssh-port",
    ),
    pytest.param(
        {"host": {"sshPort": 12003}},
        bad("host.sshPort", "12003", "must lie outside spark.driverPorts 12000-12010: those host ports go to Spark"),
        id="ssh-port-inside-driver-ports",
    ),
    # swarm: what only the single-host spawner implements
    pytest.param(
        {"auth": LDAP_LOGIN, "swarm": {"enabled": True}, "cifs": {"shares": [TEAM_SHARE, USER_SHARE]}},
        bad("cifs.shares[1].perUser", "true", "not with swarm.enabled: only the single-host spawner mounts per-user"),
        id="swarm-with-per-user-share",
    ),
    pytest.param(
        {"swarm": {"enabled": True}, "spark": {"driverPorts": "13000-13010"}},
        bad("spark.driverPorts", "'13000-13010'", "not with swarm.enabled: only the single-host spawner hands out"),
        id="swarm-with-driver-ports",
    ),
    pytest.param(
        {"swarm": {"enabled": True}, "spark": {"blockManagerPorts": "11100-11110"}},
        bad("spark.blockManagerPorts", "'11100-11110'", "not with swarm.enabled"),
        id="swarm-with-block-manager-ports-even-the-default",
    ),
    pytest.param(
        {"swarm": {"enabled": True}, "spark": {"driverHost": "10.20.30.40"}},
        bad("spark.driverHost", "'10.20.30.40'", "not with swarm.enabled"),
        id="swarm-with-driver-host",
    ),
    pytest.param(
        {"swarm": {"placementConstraints": ["node.role==worker"]}},
        bad("swarm.placementConstraints", '["node.role==worker"]', "only with swarm.enabled true"),
        id="placement-constraints-without-swarm",
    ),
    pytest.param(
        {"swarm": {"workers": SWARM_WORKERS}},
        bad("swarm.workers", '["worker-1", "worker-2"]', "only with swarm.enabled true: they are nodes of the swarm"),
        id="workers-without-swarm",
    ),
    pytest.param(
        {"swarm": {"existing": True}},
        bad("swarm.existing", "true", "only with swarm.enabled true"),
        id="existing-swarm-without-swarm",
    ),
    pytest.param(
        {"swarm": {"manager": {"advertiseAddress": "10.0.0.10"}}},
        bad("swarm.manager.advertiseAddress", "'10.0.0.10'", "only with swarm.enabled true"),
        id="manager-settings-without-swarm",
    ),
    pytest.param(
        {"swarm": {"enabled": True}},
        bad("images.registry", "(unset)", "required with swarm.enabled: every swarm node pulls the lab's images"),
        id="swarm-without-registry",
    ),
    pytest.param(
        {"swarm": {"enabled": True}, "images": {"registry": "registry.example.org/lab"}},
        bad("images.push", "false", "must be true with swarm.enabled"),
        id="swarm-without-push",
    ),
    pytest.param(
        {"images": SWARM_REGISTRY, "swarm": {**SWARM, "workers": [*SWARM_WORKERS, SWARM_WORKERS[0]]}},
        bad("swarm.workers[2].name", "'worker-1'", "must differ from swarm.workers[0].name"),
        id="worker-listed-twice-by-name",
    ),
    pytest.param(
        {
            "images": SWARM_REGISTRY,
            "swarm": {**SWARM, "workers": [*SWARM_WORKERS, {"name": "worker-3", "address": "10.0.0.11"}]},
        },
        bad(
            "swarm.workers[2].address", "'10.0.0.11'", "must differ from swarm.workers[0].address with the same sshPort"
        ),
        id="worker-listed-twice-by-address",
    ),
    pytest.param(
        {
            "images": SWARM_REGISTRY,
            "swarm": {
                **SWARM,
                "workers": [
                    {"name": "worker-1", "address": "w1.example.org", "advertiseAddress": "10.0.0.21"},
                    {"name": "worker-2", "address": "w2.example.org", "advertiseAddress": "10.0.0.21"},
                ],
            },
        },
        bad("swarm.workers[1].advertiseAddress", "'10.0.0.21'", "the address swarm.workers[0] advertises"),
        id="two-workers-advertise-one-address",
    ),
    pytest.param(
        {
            "images": SWARM_REGISTRY,
            "host": {"address": "10.0.0.10"},
            "swarm": {**SWARM, "workers": [{"name": "worker-1", "address": "10.0.0.10"}]},
        },
        bad("swarm.workers[0].address", "'10.0.0.10'", "must differ from host.address '10.0.0.10'"),
        id="worker-is-the-manager",
    ),
    pytest.param(
        {
            "images": SWARM_REGISTRY,
            "swarm": {
                **SWARM,
                "workers": [{"name": "worker-1", "address": "w1.example.org", "advertiseAddress": "10.0.0.10"}],
            },
        },
        bad("swarm.workers[0].advertiseAddress", "'10.0.0.10'", "must differ from the manager's advertised address"),
        id="worker-advertises-the-managers-address",
    ),
    pytest.param(
        {"images": SWARM_REGISTRY, "swarm": {**SWARM, "manager": {}}},
        bad("swarm.manager.advertiseAddress", "(unset)", "required with swarm.workers when host.address '127.0.0.1'"),
        id="workers-cannot-reach-a-loopback-manager",
    ),
    pytest.param(
        {"images": SWARM_REGISTRY, "swarm": {**SWARM, "manager": {"advertiseAddress": "127.0.0.1"}}},
        bad("swarm.manager.advertiseAddress", "'127.0.0.1'", "not a loopback, unspecified or multicast one"),
        id="loopback-advertise-address",
    ),
    pytest.param(
        {"images": SWARM_REGISTRY, "swarm": {**SWARM, "manager": {"advertiseAddress": "10.0.0.10:2377"}}},
        bad("swarm.manager.advertiseAddress", "'10.0.0.10:2377'", "an IP address or a network interface name"),
        id="advertise-address-with-a-port",
    ),
    pytest.param(
        {"images": SWARM_REGISTRY, "swarm": {**SWARM, "workers": [{"name": "Worker_1", "address": "10.0.0.11"}]}},
        bad("swarm.workers[0].name", "'Worker_1'", "must be a DNS label"),
        id="worker-name-not-a-dns-label",
    ),
    pytest.param(
        {"images": SWARM_REGISTRY, "swarm": {**SWARM, "workers": [{"name": "worker-1", "address": "w1_.example.org"}]}},
        bad("swarm.workers[0].address", "'w1_.example.org'", "must be a DNS name or an IP address"),
        id="worker-bad-address",
    ),
    pytest.param(
        {"images": SWARM_REGISTRY, "swarm": {**SWARM, "workers": [{"name": "worker-1"}]}},
        bad("swarm.workers[0].address", "(unset)", "Field required"),
        id="worker-without-address",
    ),
    pytest.param(
        {
            "images": SWARM_REGISTRY,
            "swarm": {**SWARM, "workers": [{"name": "worker-1", "address": "10.0.0.11", "useSudo": True}]},
        },
        bad("swarm.workers[0].useSudo", "true", "only for a non-root sshUser"),
        id="worker-sudo-for-root",
    ),
    pytest.param(
        {
            "images": SWARM_REGISTRY,
            "swarm": {**SWARM, "workers": [{"name": "worker-1", "address": "10.0.0.11", "hostKey": "AAAA"}]},
        },
        bad("swarm.workers[0].hostKey", "'AAAA'", "must be an SSH public key line"),
        id="worker-bad-host-key",
    ),
    pytest.param(
        {"images": SWARM_REGISTRY, "swarm": {**SWARM, "manager": {"labels": {"juvini.stack": "other"}}}},
        bad("swarm.manager.labels", '{"juvini.stack": "other"}', "keys starting with 'juvini.' are the program's own"),
        id="reserved-node-label",
    ),
    pytest.param(
        {
            "images": SWARM_REGISTRY,
            "swarm": {**SWARM, "workers": [{"name": "worker-1", "address": "10.0.0.11", "labels": {"a b": "x"}}]},
        },
        bad("swarm.workers[0].labels", '{"a b": "x"}', "has label keys ['a b']"),
        id="bad-node-label-key",
    ),
    pytest.param(
        {"images": SWARM_REGISTRY, "swarm": SWARM, "network": {"usersSubnet": "10.0.0.0/24"}},
        bad("swarm.workers[1].address", "'10.0.0.12'", "lies inside network.usersSubnet 10.0.0.0/24"),
        id="worker-inside-the-users-network",
    ),
    # login: one authenticator's settings while another is chosen
    pytest.param(
        {"auth": {"ldap": {"serverAddress": "ldap.example.org"}}},
        bad("auth.ldap.serverAddress", "'ldap.example.org'", "only with auth.type ldap; auth.type is 'native'"),
        id="ldap-setting-with-native-login",
    ),
    pytest.param(
        {"auth": {"ldap": {"tlsStrategy": "before_bind"}}},
        bad("auth.ldap.tlsStrategy", "'before_bind'", "only with auth.type ldap"),
        id="ldap-setting-given-its-default-with-native-login",
    ),
    pytest.param(
        {"auth": {**LDAP_LOGIN, "github": {"allowedOrganizations": ["lab"]}}},
        bad("auth.github.allowedOrganizations", '["lab"]', "only with auth.type github; auth.type is 'ldap'"),
        id="github-setting-with-ldap-login",
    ),
    pytest.param(
        {"auth": {"type": "github", "github": GITHUB, "native": {"openSignup": True}}},
        bad("auth.native.openSignup", "true", "only with auth.type native; auth.type is 'github'"),
        id="native-setting-with-github-login",
    ),
    pytest.param(
        {"auth": {"dummyPassword": "long-enough"}},
        bad("auth.dummyPassword", "'**********'", "only with auth.type dummy; auth.type is 'native'"),
        id="dummy-password-with-native-login",
    ),
    pytest.param(
        {"auth": {"type": "ldap", "ldap": {**LDAP_LOGIN["ldap"], "searchUser": "cn=reader,dc=example,dc=org"}}},
        bad("auth.ldap.searchUser", "'cn=reader,dc=example,dc=org'", "only with auth.ldap.lookupDn true"),
        id="ldap-search-user-without-lookup-dn",
    ),
    pytest.param(
        {"auth": {"type": "ldap", "ldap": {**LDAP_LOGIN["ldap"], "tlsStrategy": "insecure", "caCertificate": CERT}}},
        r"^juvini:auth\.ldap\.caCertificate: '-----BEGIN CERTIFICATE-----.* is not allowed: "
        r"only with auth\.ldap\.tlsStrategy before_bind or on_connect",
        id="ldap-ca-certificate-without-tls",
    ),
    # kerberos
    pytest.param(
        {"kerberos": {"realm": "CORP.EXAMPLE.ORG"}},
        bad("kerberos.realm", "'CORP.EXAMPLE.ORG'", "only with kerberos.enabled true; kerberos.enabled is false"),
        id="kerberos-realm-while-disabled",
    ),
    pytest.param(
        {"kerberos": {"enabled": False, "onFailure": "refuse"}},
        bad("kerberos.onFailure", "'refuse'", "only with kerberos.enabled true"),
        id="kerberos-on-failure-while-disabled",
    ),
    pytest.param(
        {"kerberos": KERBEROS},
        bad("kerberos.enabled", "true", "needs the user's login password, which only auth.type ldap keeps"),
        id="kerberos-without-ldap",
    ),
    pytest.param(
        {"kerberos": {"enabled": True, "kdcs": ["kdc.example.org"]}, "auth": LDAP_LOGIN},
        bad("kerberos.realm", "(unset)", "required with kerberos.enabled true"),
        id="kerberos-without-realm",
    ),
    pytest.param(
        {"kerberos": {"enabled": True, "realm": "CORP"}, "auth": LDAP_LOGIN},
        bad("kerberos.kdcs", "[]", "at least one KDC is required"),
        id="kerberos-without-kdcs",
    ),
    # certificates made by the stack must name what users type
    pytest.param(
        {"hub": {"publicHostname": "lab.example.org"}},
        bad(
            "tls.dnsNames",
            '["localhost"]',
            "must include hub.publicHostname 'lab.example.org' with tls.mode selfSigned",
        ),
        id="self-signed-without-the-public-hostname",
    ),
    pytest.param(
        {"hub": {"publicHostname": "a.lab.example.org"}, "tls": {"dnsNames": ["*.example.org"]}},
        bad("tls.dnsNames", '["*.example.org"]', "must include hub.publicHostname 'a.lab.example.org'"),
        id="wildcard-covers-one-label-only",
    ),
    pytest.param(
        {"hub": {"publicHostname": "10.20.30.40"}, "tls": {"dnsNames": ["10.20.30.40"]}},
        bad("tls.ipAddresses", '["127.0.0.1"]', "must include hub.publicHostname '10.20.30.40'"),
        id="self-signed-without-the-public-ip",
    ),
    pytest.param(
        {"tls": {**PROVIDED_TLS, "dnsNames": ["lab.example.org"]}},
        bad("tls.dnsNames", '["lab.example.org"]', "only with tls.mode selfSigned; a provided certificate carries"),
        id="provided-certificate-with-dns-names",
    ),
    pytest.param(
        {"tls": {**PROVIDED_TLS, "validityDays": 90}},
        bad("tls.validityDays", "90", "only with tls.mode selfSigned"),
        id="provided-certificate-with-validity",
    ),
    # users' environment: names the lab sets itself
    *[
        pytest.param(
            {"spawner": {"environment": {name: "x"}}},
            bad(f"spawner.environment.{name}", "'x'", f"the lab sets {name} in users' servers itself"),
            id=f"environment-{name}",
        )
        for name in [*LAB_ENVIRONMENT, *(f"{prefix}SOMETHING" for prefix in LAB_ENVIRONMENT_PREFIXES)]
    ],
    pytest.param(
        {"spawner": {"environment": {"SPARK_DRIVER_MEMORY": "2g"}}},
        bad("spawner.environment.SPARK_DRIVER_MEMORY", "'2g'", "set spark.driverMemory instead"),
        id="environment-spark-driver-memory-says-what-to-use",
    ),
    # shares' folders in the user's home
    pytest.param(
        {"cifs": {"shares": [{**TEAM_SHARE, "name": SHARED_MOUNT}]}},
        bad(
            "cifs.shares[0].name",
            f"'{SHARED_MOUNT}'",
            f"is the same as the shared folder's mount point ~/{SHARED_MOUNT}",
        ),
        id="share-named-like-the-shared-folder",
    ),
    pytest.param(
        {"cifs": {"shares": [TEAM_SHARE, {**TEAM_SHARE, "name": "x", "mountPath": f"{SHARED_MOUNT}/team"}]}},
        bad("cifs.shares[1].mountPath", f"'{SHARED_MOUNT}/team'", "lies inside the shared folder's mount point"),
        id="share-inside-the-shared-folder",
    ),
    pytest.param(
        {"cifs": {"shares": [TEAM_SHARE, {**TEAM_SHARE, "name": "finance", "mountPath": "team/finance"}]}},
        bad("cifs.shares[1].mountPath", "'team/finance'", "lies inside the folder 'team' of cifs.shares[0]"),
        id="share-inside-another-share",
    ),
    pytest.param(
        {"cifs": {"shares": [{**TEAM_SHARE, "mountPath": "data/team"}, {**TEAM_SHARE, "name": "data"}]}},
        bad("cifs.shares[1].name", "'data'", "contains the folder 'data/team' of cifs.shares[0]"),
        id="share-containing-another-share",
    ),
    pytest.param(
        {"cifs": {"shares": [TEAM_SHARE, {**TEAM_SHARE, "name": "other", "mountPath": "./team/"}]}},
        bad("cifs.shares[1].mountPath", "'./team/'", "is the same as the folder 'team' of cifs.shares[0]"),
        id="share-in-the-same-folder",
    ),
    pytest.param(
        {"cifs": {"shares": [TEAM_SHARE, {**TEAM_SHARE, "mountPath": "team2"}]}},
        bad("cifs.shares[1].name", "'team'", "must differ from cifs.shares[0].name"),
        id="share-names-twice",
    ),
    pytest.param(
        {"cifs": {"shares": [{**TEAM_SHARE, "mountPath": "."}]}},
        bad("cifs.shares[0].mountPath", "'.'", "not the home itself"),
        id="share-over-the-home",
    ),
    pytest.param(
        {"cifs": {"shares": [USER_SHARE]}},
        bad("cifs.shares[0].perUser", "true", "needs the user's login password, which only auth.type ldap keeps"),
        id="per-user-share-without-ldap",
    ),
    # the Docker socket is not the lab's to manage
    pytest.param(
        {"dockerSocket": "/srv/juvini/hub/docker.sock"},
        bad("dockerSocket", "'/srv/juvini/hub/docker.sock'", "lies inside paths.hubStateDir /srv/juvini/hub"),
        id="docker-socket-inside-hub-state",
    ),
    pytest.param(
        {"paths": {"sharedDir": "/var/run"}},
        bad("dockerSocket", "'/var/run/docker.sock'", "lies inside paths.sharedDir /var/run"),
        id="shared-folder-holding-the-docker-socket",
    ),
    pytest.param(
        {"paths": {"hubStateDir": "/srv/juvini"}},
        bad("paths.hubStateDir", "'/srv/juvini'", "contains paths.usersDir /srv/juvini/users"),
        id="folder-containing-another-reported-where-set",
    ),
    # Spark drivers must be reachable where their ports are published
    pytest.param(
        {"hub": {"bindAddress": "127.0.0.1"}, "spark": {"driverHost": "10.20.30.40"}},
        bad("spark.driverHost", "'10.20.30.40'", "unreachable: Spark ports are published on hub.bindAddress 127.0.0.1"),
        id="driver-host-behind-loopback",
    ),
    # addresses inside the lab's own Docker networks
    pytest.param(
        {"network": {"usersSubnet": "10.20.0.0/16"}, "host": {"address": "10.20.30.40"}},
        bad("host.address", "'10.20.30.40'", "lies inside network.usersSubnet 10.20.0.0/16"),
        id="host-inside-users-subnet",
    ),
    pytest.param(
        {
            "network": {"hubSubnet": "10.9.0.0/24"},
            "auth": {**LDAP_LOGIN, "ldap": {**LDAP_LOGIN["ldap"], "serverAddress": "10.9.0.7"}},
        },
        bad("auth.ldap.serverAddress", "'10.9.0.7'", "lies inside network.hubSubnet 10.9.0.0/24"),
        id="ldap-server-inside-hub-subnet",
    ),
    pytest.param(
        {"network": {"usersSubnet": "10.0.0.0/24"}, "cifs": {"shares": [TEAM_SHARE]}},
        bad("cifs.shares[0].unc", "'//10.0.0.5/team'", "lies inside network.usersSubnet 10.0.0.0/24"),
        id="share-server-inside-users-subnet",
    ),
    pytest.param(
        {
            "network": {"usersSubnet": "10.1.0.0/24"},
            "auth": LDAP_LOGIN,
            "kerberos": {**KERBEROS, "kdcs": ["kdc.example.org", "10.1.0.5:88"]},
        },
        bad("kerberos.kdcs[1]", "'10.1.0.5:88'", "lies inside network.usersSubnet 10.1.0.0/24"),
        id="kdc-inside-users-subnet",
    ),
    # a section that is not an object
    pytest.param({"hub": "8443"}, bad("hub", "'8443'", "valid dictionary"), id="section-not-an-object"),
    # profiles
    pytest.param(
        {"profiles": [{**PROFILE, "slug": "Large_One"}]},
        bad("profiles[0].slug", "'Large_One'", "lower-case letters, digits and '-' (not first or last), at most 32"),
        id="profile-slug-not-short-and-lower-case",
    ),
    pytest.param(
        {"profiles": [PROFILE, {**PROFILE, "displayName": "Again"}]},
        bad("profiles[1].slug", "'large'", "must differ from profiles[0].slug"),
        id="profile-slug-twice",
    ),
    pytest.param(
        {"profiles": [{**PROFILE, "image": "tensorflow"}]},
        bad("profiles[0].image", "'tensorflow'", "Input should be 'base', 'datascience' or 'pyspark'"),
        id="profile-image-not-a-flavour",
    ),
    pytest.param(
        {"spawner": {"allowedImages": ["base"]}, "profiles": [PROFILE]},
        bad(
            "profiles[0].image", "'datascience'", "must be one of spawner.allowedImages ['base']: the images the stack"
        ),
        id="profile-image-not-built",
    ),
    pytest.param(
        {"profiles": [{**PROFILE, "memLimit": "4x"}]},
        bad("profiles[0].memLimit", "'4x'", "must be a memory size"),
        id="profile-memory-not-a-size",
    ),
    pytest.param(
        {"profiles": [{**PROFILE, "cpuLimit": 0}]},
        bad("profiles[0].cpuLimit", "0", "greater than 0"),
        id="profile-without-cpu",
    ),
    pytest.param(
        {"profiles": [{**PROFILE, "image": "pyspark", "memLimit": "1g"}]},
        bad("profiles[0].memLimit", "'1g'", "must be above spark.driverMemory 1g: the driver runs in the server"),
        id="profile-spark-server-without-room-for-the-driver",
    ),
    pytest.param(
        {"profiles": [{**PROFILE, "environment": {"PIP_USER": "0"}}]},
        bad("profiles[0].environment.PIP_USER", "'0'", "the lab sets PIP_USER in users' servers itself"),
        id="profile-environment-the-lab-sets",
    ),
    pytest.param(
        {"profiles": [{**PROFILE, "environment": {"JUVINI_PROFILE": "x"}}]},
        bad("profiles[0].environment.JUVINI_PROFILE", "'x'", "names starting with JUPYTERHUB_, JPY_, JUVINI_"),
        id="profile-environment-lab-prefix",
    ),
    pytest.param(
        {"profiles": [{**PROFILE, "gpu": {"count": 1, "deviceIds": ["0"]}}]},
        bad("profiles[0].gpu.deviceIds", '["0"]', "set count or deviceIds, not both (count is 1)"),
        id="profile-gpu-count-and-ids",
    ),
    pytest.param(
        {"profiles": [{**PROFILE, "gpu": {"deviceIds": ["GPU 0"]}}]},
        bad("profiles[0].gpu.deviceIds", '["GPU 0"]', "are not GPU ids: an index (0) or a UUID"),
        id="profile-gpu-id-malformed",
    ),
    pytest.param(
        {"swarm": {"enabled": True}, "spark": {}, "profiles": [{**PROFILE, "gpu": {"count": 2}}]},
        bad("profiles[0].gpu", '{"count": 2, "deviceIds": []}', "not with swarm.enabled: Swarm services take no"),
        id="profile-gpu-with-swarm",
    ),
    pytest.param(
        {"profiles": [{**PROFILE, "users": ["not a user!"]}]},
        bad("profiles[0].users[0]", "'not a user!'", "must be a JupyterHub username"),
        id="profile-user-not-a-username",
    ),
    pytest.param(
        {"profiles": [{**PROFILE, "groups": [""]}]},
        bad("profiles[0].groups[0]", "''", "at least 1 character"),
        id="profile-group-empty",
    ),
    pytest.param(
        {"profiles": [{key: value for key, value in PROFILE.items() if key != "displayName"}]},
        bad("profiles[0].displayName", "(unset)", "Field required"),
        id="profile-without-a-display-name",
    ),
    # group folders and the data folder
    pytest.param(
        {"folders": {"groups": ["modellers"]}},
        bad("paths.groupsDir", "(unset)", "required with folders.groups ['modellers']: the group folders' root"),
        id="group-folders-without-their-root",
    ),
    pytest.param(
        {"paths": {"groupsDir": "/srv/juvini/groups"}},
        bad("paths.groupsDir", "'/srv/juvini/groups'", "only with folders.groups"),
        id="group-folders-root-without-groups",
    ),
    pytest.param(
        {"paths": {"groupsDir": "/srv/groups"}, "folders": {"groups": ["../etc"]}},
        bad("folders.groups[0]", "'../etc'", "must be a group name that can name a folder"),
        id="group-folder-name-escaping-its-root",
    ),
    pytest.param(
        {"paths": {"groupsDir": "/srv/groups"}, "folders": {"groups": ["a", "a"]}},
        bad("folders.groups", '["a", "a"]', "lists ['a'] more than once"),
        id="group-folder-twice",
    ),
    pytest.param(
        {"paths": {"groupsDir": "/srv/juvini/users/groups"}, "folders": {"groups": ["a"]}},
        bad("paths.groupsDir", "'/srv/juvini/users/groups'", "lies inside paths.usersDir /srv/juvini/users"),
        id="group-folders-inside-users-folders",
    ),
    pytest.param(
        {"paths": {"dataDir": "/shared/jupyterhub/data"}},
        bad("paths.dataDir", "'/shared/jupyterhub/data'", "lies inside paths.sharedDir /shared/jupyterhub"),
        id="data-folder-inside-the-shared-folder",
    ),
    pytest.param(
        {"paths": {"dataDir": "data"}},
        bad("paths.dataDir", "'data'", "must be an absolute path"),
        id="data-folder-relative",
    ),
    pytest.param(
        {"paths": {"dataDir": "/srv/data"}, "cifs": {"shares": [{**TEAM_SHARE, "name": "data"}]}},
        bad("cifs.shares[0].name", "'data'", "is the same as the data folder's mount point ~/data"),
        id="share-over-the-data-folder",
    ),
    pytest.param(
        {
            "paths": {"groupsDir": "/srv/groups"},
            "folders": {"groups": ["a"]},
            "cifs": {"shares": [{**TEAM_SHARE, "mountPath": "shared-groups/team"}]},
        },
        bad("cifs.shares[0].mountPath", "'shared-groups/team'", "lies inside the group folders' mount point"),
        id="share-inside-the-group-folders",
    ),
    pytest.param(
        {"auth": {**LDAP_LOGIN, "ldap": {**LDAP_LOGIN["ldap"], "groupNameAttribute": "cn=x"}}},
        bad("auth.ldap.groupNameAttribute", "'cn=x'", "String should match pattern"),
        id="ldap-group-name-attribute-not-an-attribute",
    ),
]


@pytest.mark.parametrize(("raw", "pattern"), INVALID)
def test_invalid_configuration_names_key_value_and_what_is_allowed(
    raw: dict[str, Any] | Callable[[Path], dict[str, Any]], pattern: str, tmp_path: Path
) -> None:
    config = raw(tmp_path) if callable(raw) else raw
    error = rejected(config)
    assert matching(error.problems, pattern), f"no problem matches {pattern!r} in {error.problems}"


def test_there_are_enough_invalid_cases() -> None:
    assert len(INVALID) >= 40


def test_port_range_given_as_an_object_is_range_checked() -> None:
    error = rejected({"spark": {"driverPorts": {"first": 12010, "last": 12000}}})
    pattern = r"^juvini:spark\.driverPorts: .*12010.*12000.* is not allowed: .*1024-65535 with first <= last"
    assert matching(error.problems, pattern), error.problems


def test_port_range_object_with_unknown_key_is_rejected() -> None:
    error = rejected({"spark": {"driverPorts": {"first": 12000, "last": 12010, "size": 11}}})
    assert matching(error.problems, unknown("spark.driverPorts.size", "first, last")), error.problems


# --- contradictions: built from the model, valid combinations, reported together -------

#: A value for every key of each authenticator's own settings (checked against the model).
AUTHENTICATOR_SETTINGS: dict[AuthType, tuple[str, type[BaseModel], dict[str, Any]]] = {
    AuthType.NATIVE: (
        "native",
        NativeAuthSettings,
        {
            "openSignup": True,
            "minimumPasswordLength": 12,
            "checkCommonPassword": False,
            "allowedFailedLogins": 3,
            "lockoutSeconds": 60,
        },
    ),
    AuthType.LDAP: (
        "ldap",
        LdapSettings,
        {
            "serverAddress": "ldap.example.org",
            "serverPort": 636,
            "tlsStrategy": "on_connect",
            "caCertificate": CERT,
            "bindDnTemplate": ["uid={username},dc=example,dc=org"],
            "lookupDn": True,
            "searchUser": "cn=reader,dc=example,dc=org",
            "searchPassword": "ldap-password-1",
            "userSearchBase": "ou=people,dc=example,dc=org",
            "userAttribute": "sAMAccountName",
            "allowedGroups": ["cn=lab,dc=example,dc=org"],
            "adminGroups": ["cn=admins,dc=example,dc=org"],
            "groupSearchBase": "ou=groups,dc=example,dc=org",
            "groupNameAttribute": "cn",
        },
    ),
    AuthType.GITHUB: (
        "github",
        GithubAuthSettings,
        {"clientId": "Iv1.abc", "clientSecret": "github-secret-1", "allowedOrganizations": ["lab"]},
    ),
    AuthType.OIDC: (
        "oidc",
        OidcSettings,
        {
            "issuer": "https://login.example.org/realms/lab",
            "clientId": "juvini-lab",
            "clientSecret": "oidc-secret-1",
            "scopes": ["openid", "groups"],
            "usernameClaim": "email",
            "groupsClaim": "groups",
            "allowedGroups": ["lab"],
            "adminGroups": ["admins"],
            "caCertificate": CERT,
            "loginService": "Example SSO",
        },
    ),
}
#: The smallest valid ``auth`` section of each type.
LOGIN: dict[AuthType, dict[str, Any]] = {
    AuthType.NATIVE: {"type": "native"},
    AuthType.LDAP: LDAP_LOGIN,
    AuthType.GITHUB: {"type": "github", "github": GITHUB},
    AuthType.OIDC: {
        "type": "oidc",
        "oidc": {"issuer": "https://login.example.org", "clientId": "juvini-lab", "clientSecret": "oidc-secret-1"},
    },
    AuthType.DUMMY: {"type": "dummy", "dummyPassword": "long-enough"},
}


def _key_pattern(key: str, allowed: str) -> str:
    return rf"^juvini:{re.escape(key)}: .+ is not allowed: {re.escape(allowed)}"


@pytest.mark.parametrize("owner", sorted(AUTHENTICATOR_SETTINGS))
def test_every_authenticator_setting_has_an_example(owner: AuthType) -> None:
    _, model, example = AUTHENTICATOR_SETTINGS[owner]
    assert set(example) == {to_camel(name) for name in model.model_fields}


def test_every_login_type_has_a_valid_example() -> None:
    assert set(LOGIN) == set(AuthType)
    for kind, auth in LOGIN.items():
        assert parse_settings({"auth": auth}).auth.type is kind


@pytest.mark.parametrize(
    ("owner", "chosen"), [(owner, chosen) for owner in AUTHENTICATOR_SETTINGS for chosen in AuthType if chosen != owner]
)
def test_every_setting_of_another_authenticator_is_refused(owner: AuthType, chosen: AuthType) -> None:
    name, _, example = AUTHENTICATOR_SETTINGS[owner]
    problems = rejected({"auth": {**LOGIN[chosen], name: example}}).problems
    allowed = f"only with auth.type {owner.value}; auth.type is '{chosen.value}'"
    for key in example:
        assert matching(problems, _key_pattern(f"auth.{name}.{key}", allowed)), (key, problems)
    assert len(problems) == len(example), problems


@pytest.mark.parametrize("chosen", [kind for kind in AuthType if kind is not AuthType.DUMMY])
def test_the_dummy_password_is_refused_with_another_login(chosen: AuthType) -> None:
    problems = rejected({"auth": {**LOGIN[chosen], "dummyPassword": "long-enough"}}).problems
    allowed = f"only with auth.type dummy; auth.type is '{chosen.value}'"
    assert len(problems) == 1 and problems[0].startswith(
        f"juvini:auth.dummyPassword: '**********' is not allowed: {allowed}"
    )


#: A value for every Kerberos key (checked against the model).
KERBEROS_SETTINGS = {
    "enabled": True,
    "realm": "CORP.EXAMPLE.ORG",
    "kdcs": ["kdc1.example.org", "kdc2.example.org:88"],
    "adminServer": "kdc1.example.org",
    "onFailure": "refuse",
    "ticketLifetime": "8h",
    "renewLifetime": "5d",
}


def test_every_kerberos_setting_has_an_example() -> None:
    assert set(KERBEROS_SETTINGS) == {to_camel(name) for name in KerberosSettings.model_fields}
    assert parse_settings({"kerberos": KERBEROS_SETTINGS, "auth": LDAP_LOGIN}).kerberos.enabled


def test_every_kerberos_setting_is_refused_while_kerberos_is_disabled() -> None:
    problems = rejected({"kerberos": {**KERBEROS_SETTINGS, "enabled": False}}).problems
    keys = [key for key in KERBEROS_SETTINGS if key != "enabled"]
    for key in keys:
        assert matching(problems, _key_pattern(f"kerberos.{key}", "only with kerberos.enabled true")), (key, problems)
    assert len(problems) == len(keys), problems


def test_contradictions_across_sections_are_reported_together_each_at_its_key() -> None:
    raw = {
        "hub": {"httpsPort": 22, "publicHostname": "lab.example.org"},
        "kerberos": KERBEROS,
        "dockerSocket": "/srv/juvini/hub/docker.sock",
        "spark": {"driverMemory": "8g"},
        "cifs": {"shares": [USER_SHARE]},
    }
    problems = rejected(raw).problems
    for key in (
        "hub.httpsPort",
        "tls.dnsNames",
        "kerberos.enabled",
        "dockerSocket",
        "spark.driverMemory",
        "cifs.shares[0].perUser",
    ):
        assert matching(problems, rf"^juvini:{re.escape(key)}: .+ is not allowed: "), (key, problems)
    assert len(problems) == 6, problems
    assert not [problem for problem in problems if problem.startswith("juvini: ")], problems


VALID_COMBINATIONS = [
    pytest.param(
        {"hub": {"publicHostname": "lab.example.org"}, "tls": {"dnsNames": ["*.example.org"]}}, id="wildcard-one-label"
    ),
    pytest.param(
        {"hub": {"publicHostname": "LAB.Example.org."}, "tls": {"dnsNames": ["lab.example.org"]}},
        id="hostname-case-and-trailing-dot",
    ),
    pytest.param(
        {"hub": {"publicHostname": "fd00::5"}, "tls": {"ipAddresses": ["fd00:0::5"]}}, id="ipv6-written-differently"
    ),
    pytest.param({"tls": PROVIDED_TLS, "hub": {"publicHostname": "lab.example.org"}}, id="provided-certificate"),
    pytest.param({"kerberos": {"enabled": False}}, id="kerberos-disabled-explicitly"),
    pytest.param({"swarm": {"enabled": False, "placementConstraints": []}}, id="swarm-off-explicitly"),
    pytest.param(
        {
            "swarm": {"enabled": True, "placementConstraints": ["node.role==worker"]},
            "images": SWARM_REGISTRY,
            "spark": {"driverMemory": "2g"},
            "hub": {"httpsPort": 12005},
            "cifs": {"shares": [TEAM_SHARE]},
        },
        id="swarm-with-team-shares-and-spark-memory",
    ),
    pytest.param(
        {"auth": LDAP_LOGIN, "kerberos": KERBEROS, "cifs": {"shares": [TEAM_SHARE, USER_SHARE]}},
        id="ldap-with-kerberos-and-per-user-share",
    ),
    pytest.param(
        {"cifs": {"shares": [TEAM_SHARE, {**TEAM_SHARE, "name": "finance", "mountPath": "teams/finance"}]}},
        id="shares-side-by-side",
    ),
    pytest.param({"spawner": {"environment": {"TZ": "UTC", "SPARK_HOME_EXTRA": "x"}}}, id="own-environment"),
    pytest.param({"dockerSocket": "/run/docker.sock", "paths": {"sharedDir": "/run/juvini"}}, id="socket-beside"),
    pytest.param(
        {"hub": {"bindAddress": "127.0.0.1"}, "spark": {"driverHost": "127.0.0.1"}}, id="spark-on-loopback-only"
    ),
    pytest.param(
        {"network": {"usersSubnet": "10.1.0.0/24"}, "host": {"address": "lab1.example.org"}},
        id="host-by-name-beside-subnet",
    ),
]


@pytest.mark.parametrize("raw", VALID_COMBINATIONS)
def test_valid_combinations_are_accepted(raw: dict[str, Any]) -> None:
    assert isinstance(parse_settings(raw, secret_keys=set(raw)), Settings)


def _stack(name: str, tmp_path: Path) -> dict[str, Any]:
    document = yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text(encoding="utf-8"))
    config = {key.removeprefix("juvini:"): value for key, value in document["config"].items()}
    if "sshPrivateKeyFile" in config.get("host", {}):
        key_file = tmp_path / "id_ed25519"
        key_file.write_text(PRIVATE_KEY, encoding="utf-8")
        config["host"]["sshPrivateKeyFile"] = str(key_file)
    if config.get("auth", {}).get("ldap", {}).get("lookupDn"):
        config["auth"]["ldap"]["searchPassword"] = "set with --secret"
    return config


@pytest.mark.parametrize("stack", sorted(path.name.split(".")[1] for path in ROOT.glob("Pulumi.*.yaml")))
def test_the_repositorys_stacks_are_valid(stack: str, tmp_path: Path) -> None:
    config = _stack(stack, tmp_path)
    assert isinstance(parse_settings(config, secret_keys=set(config)), Settings)


# --- the loading step reads files; validators do not --------------------------------------


def test_a_key_file_that_holds_no_private_key_is_refused(tmp_path: Path) -> None:
    public = tmp_path / "id_ed25519.pub"
    public.write_text("ssh-ed25519 AAAAC3Nz lab\n", encoding="utf-8")
    error = rejected({"host": {"sshPrivateKeyFile": str(public)}})
    assert error.problems == [
        f"juvini:host.sshPrivateKeyFile: '{public}' is not allowed: "
        "must hold an SSH private key (-----BEGIN ... PRIVATE KEY-----)"
    ]


def test_file_problems_are_reported_with_the_others() -> None:
    error = rejected(
        {
            "host": {"sshPrivateKeyFile": "/nonexistent/id_ed25519"},
            "images": {"extraCaBundle": "/nonexistent/ca"},
            "labUser": {"uid": 1},
        }
    )
    for pattern in (
        bad("host.sshPrivateKeyFile", "'/nonexistent/id_ed25519'", "readable SSH private key file"),
        bad("images.extraCaBundle", "'/nonexistent/ca'", "no such path"),
        bad("labUser.uid", "1", "greater than or equal to 1000"),
    ):
        assert matching(error.problems, pattern), (pattern, error.problems)
    assert len(error.problems) == 3, error.problems


def test_validating_the_model_reads_no_files(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text(CERT, encoding="utf-8")
    with pytest.raises(ValueError, match="contains no PEM certificate"):
        Settings.model_validate({"images": {"extraCaBundle": str(pem)}})
    settings = Settings.model_validate({"host": {"sshPrivateKeyFile": "/nonexistent/id_ed25519"}})
    with pytest.raises(RuntimeError, match="sshPrivateKeyFile has not been read"):
        settings.host.private_key()


def test_the_extra_ca_bundle_holds_the_pem_text_after_loading(tmp_path: Path) -> None:
    (tmp_path / "proxy.crt").write_text("# the proxy\n" + CERT, encoding="utf-8")
    settings = parse_settings({"images": {"extraCaBundle": str(tmp_path)}})
    assert settings.images.extra_ca_bundle == CERT.strip() + "\n"


# --- secrets in plain text ------------------------------------------------------------

#: A configuration that is valid apart from where each secret is stored.
SECRET_EXAMPLES: dict[str, dict[str, Any]] = {
    "host.sshPrivateKey": {"host": {"sshPrivateKey": PRIVATE_KEY}},
    "host.sshPassword": {"host": {"sshPassword": "ssh-password-1"}},
    "tls.privateKey": {"tls": PROVIDED_TLS},
    "auth.ldap.searchPassword": {
        "auth": {
            "type": "ldap",
            "ldap": {
                "serverAddress": "ldap.example.org",
                "lookupDn": True,
                "searchUser": "cn=reader,dc=example,dc=org",
                "searchPassword": "ldap-password-1",
                "userSearchBase": "ou=people,dc=example,dc=org",
            },
        }
    },
    "auth.github.clientSecret": {
        "auth": {"type": "github", "github": {"clientId": "Iv1.abc", "clientSecret": "github-secret-1"}}
    },
    "auth.oidc.clientSecret": {
        "auth": {
            "type": "oidc",
            "oidc": {"issuer": "https://login.example.org", "clientId": "lab", "clientSecret": "oidc-secret-1"},
        }
    },
    "auth.dummyPassword": {"auth": {"type": "dummy", "dummyPassword": "dummy-password-1"}},
    "cifs.shares[].password": {
        "cifs": {"shares": [{"name": "team", "unc": "//10.0.0.5/team", "username": "svc", "password": "cifs-pw-1"}]}
    },
    "images.registryPassword": {
        "images": {"registry": "registry.example.org/lab", "registryUsername": "pusher", "registryPassword": "reg-pw-1"}
    },
    "images.pullPassword": {
        "images": {**SWARM_REGISTRY, "pullUsername": "puller", "pullPassword": "pull-pw-1"},
        "swarm": SWARM,
    },
    "swarm.workers[].sshPrivateKey": {
        "images": SWARM_REGISTRY,
        "swarm": {**SWARM, "workers": [{"name": "worker-1", "address": "10.0.0.11", "sshPrivateKey": "worker-key-1"}]},
    },
}


def _secret_value(raw: dict[str, Any], dotted: str) -> str:
    value: Any = raw
    for part in dotted.split("."):
        value = value[part.removesuffix("[]")]
        if part.endswith("[]"):
            value = value[0]
    return value


def test_every_secret_field_has_an_example() -> None:
    assert set(SECRET_EXAMPLES) == set(SECRET_KEYS)


@pytest.mark.parametrize("dotted", sorted(SECRET_EXAMPLES))
def test_secret_in_plain_text_is_rejected(dotted: str) -> None:
    raw = SECRET_EXAMPLES[dotted]
    error = rejected(raw, secret_keys={"hub"})
    command_path = re.escape(dotted.replace("[]", "[0]"))
    pattern = rf"^juvini:{re.escape(dotted)}: is stored in plain text; .*--secret --path juvini:{command_path}"
    assert matching(error.problems, pattern), error.problems
    assert _secret_value(raw, dotted) not in str(error)


@pytest.mark.parametrize("dotted", sorted(SECRET_EXAMPLES))
def test_secret_is_accepted_when_its_top_level_key_is_secret(dotted: str) -> None:
    settings = parse_settings(SECRET_EXAMPLES[dotted], secret_keys={dotted.split(".")[0]})
    assert isinstance(settings, Settings)


@pytest.mark.parametrize("dotted", sorted(SECRET_EXAMPLES))
def test_plain_text_check_is_skipped_without_secret_key_information(dotted: str) -> None:
    assert isinstance(parse_settings(SECRET_EXAMPLES[dotted]), Settings)


# --- all problems at once -------------------------------------------------------------


def test_all_problems_are_reported_together() -> None:
    raw = {
        "bogus": True,
        "labUser": {"uid": 12},
        "paths": {"sharedDir": "relative"},
        "hub": {"logLevel": "LOUD"},
        "spawner": {"memLimit": "lots"},
        "images": {"tag": "latest"},
        "auth": {"dummyPassword": "plain-text-pw"},
    }
    error = rejected(raw, secret_keys=set())
    expected = [
        unknown("bogus"),
        bad("labUser.uid", "12", "1000"),
        bad("paths.sharedDir", "'relative'", "absolute path"),
        bad("hub.logLevel", "'LOUD'", "'INFO'"),
        bad("spawner.memLimit", "'lots'", "memory size"),
        bad("images.tag", "'latest'", "must not be 'latest'"),
        r"^juvini:auth\.dummyPassword: is stored in plain text",
    ]
    assert len(error.problems) >= len(expected)
    for pattern in expected:
        assert matching(error.problems, pattern), f"{pattern!r} missing from {error.problems}"
    text = str(error)
    assert f"({len(error.problems)} problem(s))" in text
    for problem in error.problems:
        assert f"  - {problem}" in text
    assert "plain-text-pw" not in text


def test_each_problem_is_one_line() -> None:
    error = rejected({"images": {"extraCaBundle": PRIVATE_KEY}, "tls": {"dnsNames": ["a\nb"]}})
    assert all("\n" not in problem for problem in error.problems), error.problems


# --- secrets stay secret --------------------------------------------------------------


@pytest.mark.parametrize("dotted", sorted(SECRET_EXAMPLES))
def test_secrets_do_not_appear_in_repr_or_json(dotted: str) -> None:
    raw = SECRET_EXAMPLES[dotted]
    settings = parse_settings(raw, secret_keys={dotted.split(".")[0]})
    shown = repr(settings) + str(settings) + settings.model_dump_json() + settings.model_dump_json(by_alias=True)
    value = _secret_value(raw, dotted)
    marker = value.splitlines()[1] if value.startswith("-----") else value  # a PEM key: its body
    assert marker not in shown


def test_a_secret_is_kept_for_the_program() -> None:
    settings = parse_settings(SECRET_EXAMPLES["auth.dummyPassword"], secret_keys={"auth"})
    assert settings.auth.dummy_password is not None
    assert settings.auth.dummy_password.get_secret_value() == "dummy-password-1"


#: Each secret refused at its own key: (the key, the secret, the configuration).
REFUSED_SECRETS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "host.sshPrivateKey": ("host.sshPrivateKey", "ssh-key-1", {"host": {"sshPrivateKey": ["ssh-key-1"]}}),
    "host.sshPassword": ("host.sshPassword", "ssh-pw-1", {"host": {"sshPassword": {"value": "ssh-pw-1"}}}),
    "tls.privateKey": ("tls.privateKey", "tls-key-1", {"tls": {"privateKey": "tls-key-1"}}),
    "auth.ldap.searchPassword": (
        "auth.ldap.searchPassword",
        "ldap-pw-1",
        {"auth": {"ldap": {"searchPassword": "ldap-pw-1"}}},
    ),
    "auth.github.clientSecret": (
        "auth.github.clientSecret",
        "gh-secret-1",
        {"auth": {"github": {"clientSecret": "gh-secret-1"}}},
    ),
    "auth.oidc.clientSecret": (
        "auth.oidc.clientSecret",
        "oidc-secret-1",
        {"auth": {"oidc": {"clientSecret": "oidc-secret-1"}}},
    ),
    "auth.dummyPassword": ("auth.dummyPassword", "dummy-pw-1", {"auth": {"dummyPassword": "dummy-pw-1"}}),
    "cifs.shares[].password": (
        "cifs.shares[0].password",
        "cifs-pw-1",
        {"cifs": {"shares": [{"name": "home", "unc": "//10.0.0.5/homes", "perUser": True, "password": "cifs-pw-1"}]}},
    ),
    "images.registryPassword": (
        "images.registryPassword",
        "reg-pw-1",
        {"images": {"registryPassword": ["reg-pw-1"]}},
    ),
    "images.pullPassword": ("images.pullPassword", "pull-pw-1", {"images": {"pullPassword": ["pull-pw-1"]}}),
    "swarm.workers[].sshPrivateKey": (
        "swarm.workers[0].sshPrivateKey",
        "worker-key-1",
        {"swarm": {"workers": [{"name": "worker-1", "address": "10.0.0.11", "sshPrivateKey": ["worker-key-1"]}]}},
    ),
}


def test_every_secret_field_has_a_refused_example() -> None:
    assert set(REFUSED_SECRETS) == set(SECRET_KEYS)


@pytest.mark.parametrize("dotted", sorted(REFUSED_SECRETS))
def test_a_refused_secret_is_not_shown(dotted: str) -> None:
    key, secret, raw = REFUSED_SECRETS[dotted]
    error = rejected(raw)
    assert matching(error.problems, rf"^juvini:{re.escape(key)}: '\*+' is not allowed: "), error.problems
    assert secret not in str(error)


@pytest.mark.parametrize("dotted", sorted(key for key in SECRET_KEYS if "[]" not in key))
def test_empty_secret_counts_as_unset(dotted: str) -> None:
    raw: dict[str, Any] = {}
    holder = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        holder = holder.setdefault(part, {})
    holder[leaf] = ""
    settings = parse_settings(raw, secret_keys=set())  # "" in plain text is no leak
    value: Any = settings
    for part in dotted.split("."):
        value = getattr(value, re.sub(r"(?<!^)([A-Z])", r"_\1", part).lower())
    assert value is None


def test_empty_share_password_is_missing() -> None:
    share = {"name": "team", "unc": "//10.0.0.5/team", "username": "svc", "password": ""}
    error = rejected({"cifs": {"shares": [share]}}, secret_keys=set())
    pattern = bad("cifs.shares[0].password", "(unset)", "a team share needs username and password")
    assert matching(error.problems, pattern), error.problems


def test_empty_dummy_password_is_missing_not_short() -> None:
    error = rejected({"auth": {"type": "dummy", "dummyPassword": ""}}, secret_keys=set())
    assert error.problems == [
        "juvini:auth.dummyPassword: (unset) is not allowed: type dummy needs at least 8 characters"
    ]


def test_parse_does_not_mutate_its_input() -> None:
    raw = {"auth": {"dummyPassword": ""}, "hub": {"adminUsers": [" Alice "]}}
    snapshot = json.loads(json.dumps(raw))
    parse_settings(raw)
    assert raw == snapshot


# --- load_settings through Pulumi's config machinery ----------------------------------


@pytest.fixture
def stack_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set the stack's config the way the engine hands it to the program; reset afterwards."""
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)

    def apply(values: dict[str, str], secret_keys: list[str] | None = None) -> None:
        pulumi.runtime.set_all_config(values, secret_keys or [])

    yield apply
    pulumi.runtime.set_all_config({}, [])


def test_load_settings_without_config_gives_defaults(stack_config: Callable[..., None]) -> None:
    stack_config({})
    assert load_settings() == parse_settings({})


def test_load_settings_reads_strings_and_json_objects(stack_config: Callable[..., None]) -> None:
    stack_config(
        {
            "juvini:hub": json.dumps({"httpsPort": "9443", "adminUsers": ["alice"]}),
            "juvini:labUser": json.dumps({"uid": 3000}),
            "juvini:dockerHost": "unix:///run/docker.sock",
            "juvini:allowDataRemoval": "true",
            "juvini:spark": json.dumps({"driverPorts": "13000-13004"}),
        }
    )
    settings = load_settings()
    assert settings.docker_host == "unix:///run/docker.sock"
    assert settings.hub.https_port == 9443
    assert settings.admin_users == ["alice"]
    assert settings.lab_user.uid == 3000
    assert settings.allow_data_removal is True
    assert str(settings.spark.driver_ports) == "13000-13004"
    assert settings.hub_url == "https://localhost:9443/"


def test_load_settings_ignores_other_namespaces(stack_config: Callable[..., None]) -> None:
    stack_config({"docker:host": "tcp://elsewhere:2376", "aws:region": "eu-west-1", "juvini:hub": "{}"})
    assert load_settings().docker_host == "unix:///var/run/docker.sock"


def test_load_settings_reports_unknown_top_level_keys(stack_config: Callable[..., None]) -> None:
    stack_config({"juvini:bogus": "1", "juvini:hub": json.dumps({"httpsPort": 8443})})
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert matching(caught.value.problems, unknown("bogus", "dockerHost")), caught.value.problems


def test_load_settings_reports_bad_values_with_their_key(stack_config: Callable[..., None]) -> None:
    stack_config({"juvini:labUser": json.dumps({"uid": 12}), "juvini:hub": "{not json"})
    with pytest.raises(ConfigError) as caught:
        load_settings()
    problems = caught.value.problems
    assert matching(problems, bad("labUser.uid", "12", "greater than or equal to 1000")), problems
    assert matching(problems, bad("hub", "'{not json'", "valid dictionary")), problems


def test_load_settings_rejects_a_secret_in_plain_text(stack_config: Callable[..., None]) -> None:
    stack_config({"juvini:auth": json.dumps({"type": "dummy", "dummyPassword": "dummy-password-1"})})
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert matching(caught.value.problems, r"^juvini:auth\.dummyPassword: is stored in plain text"), caught.value
    assert "dummy-password-1" not in str(caught.value)


def test_load_settings_accepts_a_secret_stored_as_secret(stack_config: Callable[..., None]) -> None:
    stack_config(
        {"juvini:auth": json.dumps({"type": "dummy", "dummyPassword": "dummy-password-1"})},
        secret_keys=["juvini:auth"],
    )
    password = load_settings().auth.dummy_password
    assert password is not None and password.get_secret_value() == "dummy-password-1"


def test_load_settings_reads_the_process_wide_config_env(
    stack_config: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack_config({})
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"juvini:labUser": json.dumps({"uid": 4000}), "docker:host": "x"}))
    assert load_settings().lab_user.uid == 4000


# --- OpenID Connect login -------------------------------------------------------------

OIDC = {"issuer": "https://login.example.org/realms/lab", "clientId": "juvini-lab", "clientSecret": "oidc-s3cr3t"}
OIDC_LOGIN: dict[str, Any] = {"type": "oidc", "oidc": OIDC}


def test_oidc_login_defaults() -> None:
    settings = parse_settings({"auth": OIDC_LOGIN}, {"auth"})
    oidc = settings.auth.oidc
    assert settings.auth.type is AuthType.OIDC
    assert (oidc.issuer, oidc.client_id) == ("https://login.example.org/realms/lab", "juvini-lab")
    assert oidc.client_secret is not None and oidc.client_secret.get_secret_value() == "oidc-s3cr3t"
    assert oidc.scopes == ["openid", "profile", "email"]
    assert oidc.username_claim == "preferred_username"
    assert oidc.groups_claim is None
    assert (oidc.allowed_groups, oidc.admin_groups) == ([], [])
    assert oidc.ca_certificate is None
    assert oidc.login_service == "OpenID Connect"


def test_oidc_login_with_groups_and_a_ca() -> None:
    raw = {
        "auth": {
            "type": "oidc",
            "oidc": {
                **OIDC,
                "scopes": ["openid", "profile", "groups", "openid"],
                "usernameClaim": "upn",
                "groupsClaim": "https://example.org/claims/groups",
                "allowedGroups": ["datalab-users"],
                "adminGroups": ["datalab-admins"],
                "caCertificate": CERT,
                "loginService": "Example SSO",
            },
        }
    }
    oidc = parse_settings(raw, {"auth"}).auth.oidc
    assert oidc.scopes == ["openid", "profile", "groups"], "a scope asked twice is asked once"
    assert oidc.username_claim == "upn"
    assert oidc.groups_claim == "https://example.org/claims/groups"
    assert (oidc.allowed_groups, oidc.admin_groups) == (["datalab-users"], ["datalab-admins"])
    assert oidc.ca_certificate == CERT.strip()
    assert oidc.login_service == "Example SSO"


def test_oidc_issuer_keeps_its_path_and_port() -> None:
    issuer = "https://[2001:db8::5]:8443/adfs"
    settings = parse_settings({"auth": {**OIDC_LOGIN, "oidc": {**OIDC, "issuer": issuer}}})
    assert settings.auth.oidc.issuer == issuer


def test_oidc_section_is_nested_under_auth() -> None:
    assert "oidc" in NESTED_SECTIONS["auth"]
    assert _section(Settings.model_fields["auth"].annotation).model_fields["oidc"].annotation is OidcSettings


OIDC_INVALID = [
    pytest.param(
        {"auth": {"type": "oidc"}}, bad("auth.oidc.issuer", "(unset)", "required with auth.type oidc"), id="no-issuer"
    ),
    pytest.param(
        {"auth": {"type": "oidc", "oidc": {"issuer": OIDC["issuer"]}}},
        bad("auth.oidc.clientId", "(unset)", "required with auth.type oidc"),
        id="no-client-id",
    ),
    pytest.param(
        {"auth": {"type": "oidc", "oidc": {"issuer": OIDC["issuer"], "clientId": "lab"}}},
        bad("auth.oidc.clientSecret", "(unset)", "required with auth.type oidc"),
        id="no-client-secret",
    ),
    pytest.param(
        {"auth": {**OIDC_LOGIN, "oidc": {**OIDC, "issuer": "http://login.example.org"}}},
        bad("auth.oidc.issuer", "'http://login.example.org'", "must be an https:// URL"),
        id="plain-http-issuer",
    ),
    pytest.param(
        {"auth": {**OIDC_LOGIN, "oidc": {**OIDC, "issuer": "login.example.org"}}},
        bad("auth.oidc.issuer", "'login.example.org'", "must be an https:// URL"),
        id="issuer-without-scheme",
    ),
    pytest.param(
        {"auth": {**OIDC_LOGIN, "oidc": {**OIDC, "issuer": "https://login.example.org/?tenant=lab"}}},
        bad("auth.oidc.issuer", "'https://login.example.org/?tenant=lab'", "without query, fragment or login"),
        id="issuer-with-query",
    ),
    pytest.param(
        {"auth": {**OIDC_LOGIN, "oidc": {**OIDC, "issuer": "https://admin:pw@login.example.org"}}},
        bad("auth.oidc.issuer", "'https://admin:pw@login.example.org'", "without query, fragment or login"),
        id="issuer-with-login",
    ),
    pytest.param(
        {"auth": {**OIDC_LOGIN, "oidc": {**OIDC, "issuer": "https://login_example/"}}},
        bad("auth.oidc.issuer", "'https://login_example/'", "has no valid host and port"),
        id="issuer-with-a-bad-host",
    ),
    pytest.param(
        {"auth": {**OIDC_LOGIN, "oidc": {**OIDC, "issuer": "https://login.example.org:99999"}}},
        bad("auth.oidc.issuer", "'https://login.example.org:99999'", "has no valid host and port"),
        id="issuer-with-a-bad-port",
    ),
    pytest.param(
        {"auth": {**OIDC_LOGIN, "oidc": {**OIDC, "scopes": ["profile", "email"]}}},
        bad("auth.oidc.scopes", '["profile", "email"]', "must hold openid"),
        id="scopes-without-openid",
    ),
    pytest.param(
        {"auth": {**OIDC_LOGIN, "oidc": {**OIDC, "scopes": ["openid", "read write"]}}},
        bad("auth.oidc.scopes", '["openid", "read write"]', "are not scope values"),
        id="scope-with-a-space",
    ),
    pytest.param(
        {"auth": {**OIDC_LOGIN, "oidc": {**OIDC, "allowedGroups": ["datalab-users"]}}},
        bad("auth.oidc.allowedGroups", '["datalab-users"]', "needs auth.oidc.groupsClaim"),
        id="allowed-groups-without-groups-claim",
    ),
    pytest.param(
        {"auth": {**OIDC_LOGIN, "oidc": {**OIDC, "adminGroups": ["datalab-admins"]}}},
        bad("auth.oidc.adminGroups", '["datalab-admins"]', "needs auth.oidc.groupsClaim"),
        id="admin-groups-without-groups-claim",
    ),
    pytest.param(
        {"auth": {**OIDC_LOGIN, "oidc": {**OIDC, "caCertificate": "not a certificate"}}},
        bad("auth.oidc.caCertificate", "'not a certificate'", "must be a PEM certificate"),
        id="ca-not-pem",
    ),
    pytest.param(
        {"auth": {**OIDC_LOGIN, "oidc": {**OIDC, "loginService": " "}}},
        bad("auth.oidc.loginService", "' '", "at least 1 character"),
        id="empty-login-service",
    ),
    # one authenticator's settings while another is chosen
    pytest.param(
        {"auth": {**LDAP_LOGIN, "oidc": {"issuer": OIDC["issuer"]}}},
        bad("auth.oidc.issuer", repr(OIDC["issuer"]), "only with auth.type oidc; auth.type is 'ldap'"),
        id="oidc-issuer-with-ldap-login",
    ),
    pytest.param(
        {"auth": {"oidc": {"clientSecret": "oidc-s3cr3t"}}},
        bad("auth.oidc.clientSecret", "'**********'", "only with auth.type oidc; auth.type is 'native'"),
        id="oidc-secret-with-native-login",
    ),
    pytest.param(
        {"auth": {**OIDC_LOGIN, "ldap": LDAP_SERVER}},
        bad("auth.ldap.serverAddress", "'ldap.example.org'", "only with auth.type ldap; auth.type is 'oidc'"),
        id="ldap-setting-with-oidc-login",
    ),
    pytest.param(
        {"auth": {**OIDC_LOGIN, "github": {"clientId": "Iv1.abc"}}},
        bad("auth.github.clientId", "'Iv1.abc'", "only with auth.type github; auth.type is 'oidc'"),
        id="github-setting-with-oidc-login",
    ),
    # across sections
    pytest.param(
        {"auth": OIDC_LOGIN, "kerberos": KERBEROS},
        bad("kerberos.enabled", "true", "which only auth.type ldap keeps; auth.type is 'oidc'"),
        id="kerberos-with-oidc-login",
    ),
    pytest.param(
        {
            "network": {"hubSubnet": "10.9.0.0/24"},
            "auth": {**OIDC_LOGIN, "oidc": {**OIDC, "issuer": "https://10.9.0.7"}},
        },
        bad("auth.oidc.issuer", "'https://10.9.0.7'", "lies inside network.hubSubnet 10.9.0.0/24"),
        id="issuer-inside-hub-subnet",
    ),
]


@pytest.mark.parametrize(("raw", "pattern"), OIDC_INVALID)
def test_invalid_oidc_configuration_names_key_value_and_what_is_allowed(raw: dict[str, Any], pattern: str) -> None:
    error = rejected(raw)
    assert matching(error.problems, pattern), f"no problem matches {pattern!r} in {error.problems}"
    assert "oidc-s3cr3t" not in str(error)


def test_each_missing_oidc_key_is_named() -> None:
    error = rejected({"auth": {"type": "oidc", "oidc": {"issuer": OIDC["issuer"]}}})
    assert [problem.split(":")[1] for problem in error.problems] == ["auth.oidc.clientId", "auth.oidc.clientSecret"]


# --- profiles and folders --------------------------------------------------------------------


def test_without_profiles_each_allowed_image_is_a_profile_with_the_global_limits() -> None:
    settings = parse_settings({"spawner": {"allowedImages": ["pyspark", "base"], "cpuLimit": 3, "memLimit": "6g"}})
    assert settings.profiles == []
    assert [(p.slug, p.image, p.cpu_limit, p.mem_limit) for p in settings.spawn_profiles] == [
        ("pyspark", "pyspark", 3.0, "6g"),
        ("base", "base", 3.0, "6g"),
    ]
    assert [p.display_name for p in settings.spawn_profiles] == [
        FLAVOURS[name].display_name for name in ("pyspark", "base")
    ]
    assert all(p.open_to_everyone and not p.gpu.requested and not p.environment for p in settings.spawn_profiles)


def test_profiles_replace_the_implicit_ones_and_take_the_global_limits_they_do_not_set() -> None:
    small = {"slug": "small", "displayName": "Small", "image": "base"}
    gpu = {**PROFILE, "slug": "gpu", "gpu": {"deviceIds": ["0", "GPU-8f6c2d1e"]}, "groups": ["DataLab Users"]}
    settings = parse_settings({"spawner": {"cpuLimit": 1.5, "memLimit": "3g"}, "profiles": [small, gpu]})
    assert [(p.slug, p.cpu_limit, p.mem_limit) for p in settings.spawn_profiles] == [
        ("small", 1.5, "3g"),
        ("gpu", 4.0, "8g"),
    ]
    assert settings.profiles[0].cpu_limit is None, "the stack's own values stay as given"
    assert settings.spawn_profiles[1].gpu.device_ids == ["0", "GPU-8f6c2d1e"]
    assert settings.spawn_profiles[1].groups == ["DataLab Users"]


def test_group_folders_and_the_data_folder() -> None:
    settings = parse_settings(
        {"paths": {"groupsDir": "/srv/groups", "dataDir": "/srv/data"}, "folders": {"groups": ["modellers", "a.b"]}}
    )
    assert settings.folders.groups == ["modellers", "a.b"]
    assert set(settings.paths.folders()) >= {"paths.groupsDir", "paths.dataDir"}
    assert "paths.dataDir" not in parse_settings({}).paths.folders()


# --- culling inside users' servers (spawner.kernelIdleTimeout, terminalIdleTimeout, kernelCullEvery)


def test_servers_cull_idle_kernels_and_terminals_after_12_hours_by_default() -> None:
    spawner = parse_settings({}).spawner
    assert (spawner.kernel_idle_timeout, spawner.terminal_idle_timeout, spawner.kernel_cull_every) == (
        43200,
        43200,
        300,
    )


def test_server_culling_override() -> None:
    spawner = parse_settings(
        {"spawner": {"kernelIdleTimeout": "3600", "terminalIdleTimeout": 7200, "kernelCullEvery": 60}}
    ).spawner
    assert (spawner.kernel_idle_timeout, spawner.terminal_idle_timeout, spawner.kernel_cull_every) == (3600, 7200, 60)


def test_zero_turns_server_culling_off_whatever_the_interval() -> None:
    spawner = parse_settings(
        {"spawner": {"kernelIdleTimeout": 0, "terminalIdleTimeout": 0, "kernelCullEvery": 86400}}
    ).spawner
    assert (spawner.kernel_idle_timeout, spawner.terminal_idle_timeout, spawner.kernel_cull_every) == (0, 0, 86400)


SERVER_CULLING_INVALID = [
    pytest.param(
        {"spawner": {"kernelIdleTimeout": -1}},
        bad("spawner.kernelIdleTimeout", "-1", "greater than or equal to 0"),
        id="kernel-timeout-negative",
    ),
    pytest.param(
        {"spawner": {"kernelIdleTimeout": 31 * 86400}},
        bad("spawner.kernelIdleTimeout", "2678400", "less than or equal to 2592000"),
        id="kernel-timeout-over-30-days",
    ),
    pytest.param(
        {"spawner": {"kernelIdleTimeout": "12h"}},
        bad("spawner.kernelIdleTimeout", "'12h'", "valid integer"),
        id="kernel-timeout-with-unit",
    ),
    pytest.param(
        {"spawner": {"terminalIdleTimeout": -5}},
        bad("spawner.terminalIdleTimeout", "-5", "greater than or equal to 0"),
        id="terminal-timeout-negative",
    ),
    pytest.param(
        {"spawner": {"kernelCullEvery": 1}},
        bad("spawner.kernelCullEvery", "1", "greater than or equal to 5"),
        id="kernel-cull-every-too-short",
    ),
    pytest.param(
        {"spawner": {"kernelCullEvery": 0}},
        bad("spawner.kernelCullEvery", "0", "greater than or equal to 5"),
        id="kernel-cull-every-zero",
    ),
    pytest.param(
        {"spawner": {"kernelIdleTimeout": 600, "kernelCullEvery": 900}},
        bad("spawner.kernelCullEvery", "900", "must not be longer than spawner.kernelIdleTimeout 600"),
        id="kernel-cull-every-longer-than-kernel-timeout",
    ),
    pytest.param(
        {"spawner": {"terminalIdleTimeout": 120, "kernelCullEvery": 300}},
        bad("spawner.kernelCullEvery", "300", "must not be longer than spawner.terminalIdleTimeout 120"),
        id="kernel-cull-every-longer-than-terminal-timeout",
    ),
]


@pytest.mark.parametrize(("raw", "pattern"), SERVER_CULLING_INVALID)
def test_bad_server_culling_names_key_value_and_what_is_allowed(raw: dict[str, Any], pattern: str) -> None:
    error = rejected(raw)
    assert matching(error.problems, pattern), f"no problem matches {pattern!r} in {error.problems}"


def test_both_culling_timeouts_shorter_than_the_interval_are_reported_together() -> None:
    error = rejected({"spawner": {"kernelIdleTimeout": 60, "terminalIdleTimeout": 30, "kernelCullEvery": 120}})
    for key, timeout in (("kernelIdleTimeout", 60), ("terminalIdleTimeout", 30)):
        pattern = bad("spawner.kernelCullEvery", "120", f"must not be longer than spawner.{key} {timeout}")
        assert matching(error.problems, pattern), error.problems
