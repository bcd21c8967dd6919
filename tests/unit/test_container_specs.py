"""What the proxy and hub containers get, from the pure functions that build it (no Pulumi runtime)."""

from __future__ import annotations

from typing import Any

import pytest

from infra.host import user_servers_delete_script
from infra.hub import auth_environment, hub_environment, hub_mounts, hub_uploads
from infra.naming import Naming
from infra.proxy import PROXY_TLS_DIR, proxy_command, proxy_environment, proxy_mounts, proxy_ports
from infra.settings import Settings, parse_settings

pytestmark = pytest.mark.unit

LDAP: dict[str, Any] = {
    "type": "ldap",
    "ldap": {"serverAddress": "ldap.example.org", "bindDnTemplate": ["uid={username},dc=x"]},
}


NAMING = Naming(project="juvini", stack="dev")


def settings(**raw: Any) -> Settings:
    return parse_settings(raw)


def test_proxy_command_serves_tls_in_front_of_the_hub() -> None:
    command = proxy_command(settings(), "juvini-dev-hub")
    assert command[0] == "configurable-http-proxy"
    assert "--default-target=http://juvini-dev-hub:8081" in command
    assert "--error-target=http://juvini-dev-hub:8081/hub/error" in command
    assert f"--ssl-key={PROXY_TLS_DIR}/server.key" in command
    assert f"--ssl-cert={PROXY_TLS_DIR}/server.crt" in command
    assert not any(part.startswith("--redirect") for part in command)


def test_proxy_redirects_plain_http_only_when_a_port_is_set() -> None:
    command = proxy_command(settings(hub={"httpsPort": 443, "httpRedirectPort": 80}), "hub")
    assert command[-2:] == ["--redirect-port=8080", "--redirect-to=443"]
    ports = proxy_ports(settings(hub={"httpsPort": 443, "httpRedirectPort": 80, "bindAddress": "10.0.0.5"}))
    assert [(p.internal, p.external, p.ip) for p in ports] == [(8000, 443, "10.0.0.5"), (8080, 80, "10.0.0.5")]
    assert [(p.internal, p.external) for p in proxy_ports(settings(hub={"httpsPort": 9443}))] == [(8000, 9443)]


def test_proxy_mounts_the_tls_folder_read_only() -> None:
    (mount,) = proxy_mounts(settings(paths={"tlsDir": "/etc/lab-tls"}))
    assert (mount.type, mount.source, mount.target, mount.read_only) == ("bind", "/etc/lab-tls", PROXY_TLS_DIR, True)


def test_proxy_environment_is_the_proxy_token_alone() -> None:
    assert proxy_environment("token") == {"CONFIGPROXY_AUTH_TOKEN": "token"}


def test_hub_mounts_the_filters_socket_volume_state_and_users_folders_at_their_host_paths() -> None:
    mounts = hub_mounts(settings(dockerSocket="/run/docker.sock", paths={"usersDir": "/data/users"}), NAMING)
    assert [(m.type, m.source, m.target) for m in mounts] == [
        ("volume", "juvini-dev-docker-api", "/run/juvini/docker-api"),
        ("bind", "/srv/juvini/hub", "/srv/jupyterhub/state"),
        ("bind", "/data/users", "/data/users"),
    ]
    assert not any(m.read_only for m in mounts)


def test_without_the_filter_the_hub_mounts_the_docker_socket_itself() -> None:
    mounts = hub_mounts(settings(dockerSocket="/run/docker.sock", security={"dockerApiFilter": False}), NAMING)
    # The socket's folder, not the socket file: an engine restart makes a new socket file.
    assert (mounts[0].type, mounts[0].source, mounts[0].target) == ("bind", "/run", "/run/juvini/engine")
    assert not any(m.target == "/run/juvini/docker-api" for m in mounts)


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ({"type": "native"}, {}),
        (
            {
                "type": "ldap",
                "ldap": {
                    "serverAddress": "ldap.example.org",
                    "lookupDn": True,
                    "searchUser": "cn=svc,dc=x",
                    "searchPassword": "pw",
                    "userSearchBase": "dc=x",
                },
            },
            {"JUVINI_LDAP_SEARCH_PASSWORD": "pw"},
        ),
        ({"type": "github", "github": {"clientId": "id", "clientSecret": "cs"}}, {"JUVINI_GITHUB_CLIENT_SECRET": "cs"}),
        ({"type": "dummy", "dummyPassword": "shared-pw"}, {"JUVINI_DUMMY_PASSWORD": "shared-pw"}),
        (
            {"type": "oidc", "oidc": {"issuer": "https://login.example.org", "clientId": "id", "clientSecret": "ocs"}},
            {"JUVINI_OIDC_CLIENT_SECRET": "ocs"},
        ),
    ],
)
def test_hub_environment_holds_the_generated_secrets_and_the_authenticators(
    auth: dict[str, Any], expected: dict[str, str]
) -> None:
    environment = hub_environment(settings(auth=auth), proxy_token="t", cookie_secret="c", crypt_key="k")
    generated = {"CONFIGPROXY_AUTH_TOKEN": "t", "JPY_COOKIE_SECRET": "c", "JUPYTERHUB_CRYPT_KEY": "k"}
    assert environment == generated | expected
    assert auth_environment(settings(auth=auth)) == expected


def test_hub_uploads_the_config_and_the_ldap_ca_when_given() -> None:
    (config,) = hub_uploads(settings(), "c = get_config()\n")
    assert (config.file, config.content) == ("/srv/jupyterhub/jupyterhub_config.py", "c = get_config()\n")
    ca = "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----"
    uploads = hub_uploads(settings(auth={**LDAP, "ldap": {**LDAP["ldap"], "caCertificate": ca}}), "cfg")
    assert [(u.file, u.content) for u in uploads] == [
        ("/srv/jupyterhub/jupyterhub_config.py", "cfg"),
        ("/srv/jupyterhub/ldap-ca.crt", ca),
    ]


def test_user_servers_delete_script_removes_only_this_stacks_servers() -> None:
    script = user_servers_delete_script(Naming(project="juvini", stack="prod"))
    assert "--filter 'label=org.juvini.stack=prod'" in script
    assert "--filter 'label=org.juvini.project=juvini'" in script
    assert "--filter 'label=org.juvini.role=user'" in script
    assert "docker rm --force" in script


def test_hub_uploads_the_openid_providers_ca_when_given() -> None:
    ca = "-----BEGIN CERTIFICATE-----\nOIDC\n-----END CERTIFICATE-----"
    oidc = {"issuer": "https://login.example.org", "clientId": "id", "clientSecret": "ocs"}
    assert [u.file for u in hub_uploads(settings(auth={"type": "oidc", "oidc": oidc}), "cfg")] == [
        "/srv/jupyterhub/jupyterhub_config.py"
    ]
    uploads = hub_uploads(settings(auth={"type": "oidc", "oidc": {**oidc, "caCertificate": ca}}), "cfg")
    assert [(u.file, u.content) for u in uploads] == [
        ("/srv/jupyterhub/jupyterhub_config.py", "cfg"),
        ("/srv/jupyterhub/oidc-ca.crt", ca),
    ]
