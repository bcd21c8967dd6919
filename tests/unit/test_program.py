"""The program under Pulumi's mocks, for the dev stack and the production example.

Each test names the resource (its URN) in its failure message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from infra import outputs
from infra.flavours import BY_NAME as FLAVOURS
from infra.images import HUB_FOLDER, SOCKET_FILTER
from tests.support.pulumi_mocks import (
    MOCK_IMAGE_ID,
    MOCK_PRIVATE_KEY,
    ProgramFailed,
    ProgramRun,
    Registration,
    run_program,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/image:Image"
NETWORK = "docker:index/network:Network"
COMMAND = "command:remote:Command"
RANDOM_BYTES = "random:index/randomBytes:RandomBytes"
LAB = "juvini:index:Lab"
HUB = "juvini:index:Hub"
PROD_SECRETS = {
    "searchPassword": "service-account-password",
    "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n",
}


def stack_config(stack: str) -> dict[str, Any]:
    """The ``juvini:`` keys of ``Pulumi.<stack>.yaml``, as the CLI would pass them."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    return {
        key.removeprefix("juvini:"): value for key, value in document["config"].items() if key.startswith("juvini:")
    }


@pytest.fixture(scope="module")
def ssh_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    path.write_text(PROD_SECRETS["sshPrivateKey"], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def dev(ssh_key_file: Path) -> ProgramRun:
    config = stack_config("dev")
    config["host"] = config["host"] | {"sshPrivateKeyFile": str(ssh_key_file)}
    return run_program(config, stack="dev")


@pytest.fixture(scope="module")
def prod() -> ProgramRun:
    config = stack_config("prod")
    config["auth"]["ldap"]["searchPassword"] = PROD_SECRETS["searchPassword"]
    config["host"]["sshPrivateKey"] = PROD_SECRETS["sshPrivateKey"]
    return run_program(config, secret_keys=["auth", "host"], stack="prod")


def test_every_component_is_registered_once(dev: ProgramRun) -> None:
    types = [r.type for r in dev.registrations]
    for token in ("Lab", "Host", "Tls", "Networks", "Images", "Shares", "Secrets", "Proxy", "Hub"):
        assert types.count(f"juvini:index:{token}") == 1, token


def test_children_are_parented_and_named_from_their_component(dev: ProgramRun) -> None:
    for registration in dev.registrations:
        if registration.type == "juvini:index:Lab":
            continue
        parent = dev.by_urn.get(registration.parent)
        assert parent is not None, f"{registration} has no parent in the program"
        assert registration.name.startswith(parent.name), f"{registration} is not named from {parent}"


def test_docker_objects_use_the_stacks_explicit_provider(dev: ProgramRun) -> None:
    (provider,) = dev.of_type("pulumi:providers:docker")
    assert provider.inputs["host"] == "unix:///var/run/docker.sock"
    for registration in dev.registrations:
        if registration.type.startswith("docker:index/"):
            assert registration.provider.startswith(provider.urn), f"{registration} uses {registration.provider}"


def test_prod_docker_provider_targets_the_remote_host(prod: ProgramRun) -> None:
    (provider,) = prod.of_type("pulumi:providers:docker")
    assert provider.inputs["host"] == "ssh://labuser@lab1.corp.example.org"


def test_host_commands_create_user_and_folders_with_delete_scripts(dev: ProgramRun) -> None:
    user = dev.named("juvini-dev-host-lab-user")
    folders = dev.named("juvini-dev-host-folders")
    assert "groupadd --gid" in user.inputs["create"] and "2100" in user.inputs["create"], user
    assert "useradd --uid" in user.inputs["create"], user
    assert "allowDataRemoval" in user.inputs["delete"], user
    for path in ("/shared/jupyterhub", "/etc/jupyterhub/ssl", "/srv/juvini/users", "/srv/juvini/hub"):
        assert path in folders.inputs["create"], f"{folders} lacks {path}"
    assert "-m 2775" in folders.inputs["create"] and "-m 0700" in folders.inputs["create"], folders
    assert dev.depends_on(folders, user), f"{folders} must wait for {user}"


def test_host_connection_comes_from_settings_and_its_key_is_secret(dev: ProgramRun) -> None:
    user = dev.named("juvini-dev-host-lab-user")
    connection = user.inputs["connection"]
    assert (connection["host"], connection["user"], connection["port"]) == ("127.0.0.1", "root", 22), user
    assert connection["privateKey"] == PROD_SECRETS["sshPrivateKey"], user
    assert "connection" in user.secret_inputs, f"{user} sends its SSH key in plain state"


def test_prod_host_steps_run_through_sudo(prod: ProgramRun) -> None:
    for registration in prod.of_type(COMMAND):
        assert registration.inputs["create"].startswith("sudo -n sh -c "), registration
        if registration.name.endswith("-subnet-check"):
            assert "delete" not in registration.inputs, registration  # a check: nothing to undo
        else:
            assert registration.inputs["delete"].startswith("sudo -n sh -c "), registration
        assert registration.inputs["connection"]["user"] == "labadmin", registration


def test_self_signed_tls_has_a_ca_and_a_server_cert_with_the_sans(prod: ProgramRun) -> None:
    (ca,) = prod.of_type("tls:index/selfSignedCert:SelfSignedCert")
    (request,) = prod.of_type("tls:index/certRequest:CertRequest")
    (server,) = prod.of_type("tls:index/locallySignedCert:LocallySignedCert")
    assert ca.inputs["isCaCertificate"] is True, ca
    assert "cert_signing" in ca.inputs["allowedUses"], ca
    assert request.inputs["dnsNames"] == ["lab.corp.example.org", "lab1.corp.example.org"], request
    assert request.inputs["ipAddresses"] == ["10.20.30.40"], request
    assert "server_auth" in server.inputs["allowedUses"], server
    assert prod.depends_on(server, ca), f"{server} must be signed by {ca}"


def test_tls_files_land_in_the_tls_folder_and_the_key_travels_as_a_secret_on_stdin(dev: ProgramRun) -> None:
    key_file = dev.named("juvini-dev-tls-server-key-file")
    cert_file = dev.named("juvini-dev-tls-server-cert-file")
    assert "/etc/jupyterhub/ssl/server.key" in key_file.inputs["create"], key_file
    assert "chmod 0600" in key_file.inputs["create"], key_file
    assert "PRIVATE KEY" in key_file.inputs["stdin"], key_file
    assert "stdin" in key_file.secret_inputs, f"{key_file} stores the private key in plain state"
    assert "PRIVATE KEY" not in key_file.inputs["create"], key_file
    assert "BEGIN CERTIFICATE" in cert_file.inputs["stdin"], cert_file
    assert dev.depends_on(key_file, dev.named("juvini-dev-host-folders")), key_file


def test_networks_are_named_per_stack(dev: ProgramRun, prod: ProgramRun) -> None:
    dev_names = sorted(r.inputs["name"] for r in dev.of_type(NETWORK))
    prod_names = sorted(r.inputs["name"] for r in prod.of_type(NETWORK))
    assert dev_names == ["juvini-dev-hub-net", "juvini-dev-users-net"]
    assert prod_names == ["juvini-prod-hub-net", "juvini-prod-users-net"]
    subnets = {r.inputs["name"]: r.inputs["ipamConfigs"][0]["subnet"] for r in prod.of_type(NETWORK)}
    assert subnets == {"juvini-prod-hub-net": "172.30.10.0/24", "juvini-prod-users-net": "172.30.11.0/24"}


def test_images_are_built_from_images_folder_with_base_and_ca(dev: ProgramRun) -> None:
    images = {r.name.removeprefix("juvini-dev-images-"): r for r in dev.of_type(IMAGE)}
    assert set(images) == {"foundation", "hub", "socket-filter", "base", "datascience", "pyspark"}
    for role, image in images.items():
        build = image.inputs["build"]
        folder = {"foundation": "foundation", "hub": HUB_FOLDER, SOCKET_FILTER: SOCKET_FILTER}.get(role)
        folder = folder or FLAVOURS[role].folder
        assert build["context"].endswith(f"images/{folder}"), image
        assert (ROOT / "images" / folder / "Dockerfile").is_file(), image
        assert build["builderVersion"] == "BuilderBuildKit", image
        assert image.inputs["skipPush"] is True, image
        assert build["args"]["JUVINI_VERSION"] == "0.1.0", image
        # Only the foundation takes the extra CAs; the others inherit its trust store and
        # get their base's digest, so that a rebuilt base rebuilds them.
        assert ("EXTRA_CA_CERTS" in build["args"]) == (role == "foundation"), image
        assert ("BASE_IMAGE_DIGEST" in build["args"]) == (role != "foundation"), image

    def args_of(image: Any) -> dict[str, str]:
        return image.inputs["build"]["args"]

    def base_of(role: str) -> str:
        return args_of(images[role])["BASE_IMAGE"]

    assert images["foundation"].inputs["imageName"] == "juvini-dev-foundation:0.1.0"
    assert base_of("foundation") == "juvini-base:bookworm"
    assert base_of("hub") == base_of("base") == base_of(SOCKET_FILTER) == "juvini-dev-foundation:0.1.0"
    assert base_of("datascience") == "juvini-dev-notebook-base:0.1.0"
    assert base_of("pyspark") == "juvini-dev-notebook-datascience:0.1.0"
    assert images["base"].inputs["build"]["args"]["LAB_UID"] == "2100"
    # The dev stack trusts the host's local CAs (juvini:images.extraCaBundle).
    if list(Path("/usr/local/share/ca-certificates").glob("*.crt")):
        assert "-----BEGIN CERTIFICATE-----" in args_of(images["foundation"])["EXTRA_CA_CERTS"]
    # Built in order: the foundation first, then each image after the one it is built FROM.
    for child, parent in [
        ("hub", "foundation"),
        ("base", "foundation"),
        ("datascience", "base"),
        ("pyspark", "datascience"),
    ]:
        assert dev.depends_on(images[child], images[parent]), f"{images[child]} does not wait for {images[parent]}"


def test_prod_images_are_pushed_to_the_registry(prod: ProgramRun) -> None:
    for image in prod.of_type(IMAGE):
        assert image.inputs["imageName"].startswith("registry.corp.example.org/datalab/juvini-prod-"), image
        assert image.inputs["imageName"].endswith(":2026.11.0"), image
        assert image.inputs["skipPush"] is False, image


def test_proxy_waits_for_tls_files_networks_images_and_host(dev: ProgramRun) -> None:
    proxy = dev.named("juvini-dev-proxy-proxy")
    assert dev.by_urn[proxy.parent].type == "juvini:index:Proxy", proxy
    needed = [
        *(r for r in dev.registrations if r.type in (IMAGE, NETWORK)),
        *(r for r in dev.of_type(COMMAND) if r.name.startswith(("juvini-dev-tls-", "juvini-dev-host-"))),
    ]
    for registration in needed:
        if registration.name == "juvini-dev-host-user-servers-cleanup":
            continue  # the proxy has no users' servers to outlive
        assert dev.depends_on(proxy, registration), f"{proxy} does not wait for {registration}"
    assert {"juvini-dev-tls-server-key-file", "juvini-dev-tls-server-cert-file"} <= {r.name for r in needed}


def test_hub_waits_for_the_proxy_and_everything_it_waits_for(dev: ProgramRun) -> None:
    hub = dev.named("juvini-dev-hub-hub")
    needed = [r for r in dev.registrations if r.type in (COMMAND, IMAGE, NETWORK)]
    for registration in needed:
        assert dev.depends_on(hub, registration), f"{hub} does not wait for {registration}"
    assert dev.depends_on(hub, dev.named("juvini-dev-proxy-proxy")), hub


def test_users_servers_are_removed_after_the_hub_and_before_their_network(dev: ProgramRun) -> None:
    cleanup = dev.named("juvini-dev-host-user-servers-cleanup")
    assert dev.by_urn[cleanup.parent].type == "juvini:index:Host", cleanup
    assert "label=org.juvini.stack=dev" in cleanup.inputs["delete"], cleanup
    assert "docker rm --force" in cleanup.inputs["delete"], cleanup
    # Destroy runs in reverse dependency order: hub, then this, then the network.
    assert dev.depends_on(cleanup, dev.named("juvini-dev-networks-users")), cleanup
    assert dev.depends_on(dev.named("juvini-dev-hub-hub"), cleanup), cleanup
    assert not dev.depends_on(cleanup, dev.named("juvini-dev-hub-hub")), cleanup


def test_proxy_serves_https_on_the_configured_port_with_the_stacks_cert(dev: ProgramRun) -> None:
    proxy = dev.named("juvini-dev-proxy-proxy")
    assert proxy.inputs["name"] == "juvini-dev-proxy", proxy
    assert proxy.inputs["ports"] == [{"internal": 8000, "external": 8443, "ip": "0.0.0.0"}], proxy
    command = proxy.inputs["command"]
    assert command[0] == "configurable-http-proxy", proxy
    assert "--ssl-cert=/etc/juvini/tls/server.crt" in command and "--ssl-key=/etc/juvini/tls/server.key" in command
    assert "--default-target=http://juvini-dev-hub:8081" in command, proxy
    assert proxy.inputs["user"] == "2100:2100", proxy
    (mount,) = proxy.inputs["mounts"]
    assert (mount["source"], mount["readOnly"]) == ("/etc/jupyterhub/ssl", True), proxy
    assert proxy.inputs["restart"] == "unless-stopped", proxy
    assert "hub/health" in " ".join(proxy.inputs["healthcheck"]["tests"]), proxy
    # The hub image's id, not its tag: a rebuilt image replaces the container even under the same tag.
    assert proxy.inputs["image"] == MOCK_IMAGE_ID.format(name="juvini-dev-images-hub"), proxy
    networks = [n["name"] for n in proxy.inputs["networksAdvanced"]]
    assert networks == ["juvini-dev-hub-net", "juvini-dev-users-net"], proxy


def test_proxy_gets_the_proxy_token_alone_and_as_a_secret(dev: ProgramRun) -> None:
    proxy = dev.named("juvini-dev-proxy-proxy")
    (entry,) = proxy.inputs["envs"]
    assert entry == f"CONFIGPROXY_AUTH_TOKEN={_mock_hex(dev.named('juvini-dev-secrets-proxy-token'))}", proxy
    assert proxy.secret_inputs == {"envs"}, f"{proxy} secrets: {proxy.secret_inputs}"


def test_prod_proxy_redirects_plain_http(prod: ProgramRun) -> None:
    proxy = prod.named("juvini-prod-proxy-proxy")
    assert {port["external"] for port in proxy.inputs["ports"]} == {443, 80}, proxy
    assert "--redirect-to=443" in proxy.inputs["command"], proxy


def test_hub_container_gets_config_filtered_docker_state_and_secrets(dev: ProgramRun) -> None:
    hub = dev.named("juvini-dev-hub-hub")
    (upload,) = hub.inputs["uploads"]
    assert upload["file"] == "/srv/jupyterhub/jupyterhub_config.py", hub
    assert "juvini_hub.spawner.JuviniDockerSpawner" in upload["content"], hub
    mounts = {m["target"]: m["source"] for m in hub.inputs["mounts"]}
    assert mounts == {
        "/run/juvini/docker-api": "juvini-dev-docker-api",
        "/srv/jupyterhub/state": "/srv/juvini/hub",
        "/srv/juvini/users": "/srv/juvini/users",
    }, hub
    env_names = sorted(entry.split("=", 1)[0] for entry in hub.inputs["envs"])
    assert env_names == ["CONFIGPROXY_AUTH_TOKEN", "DOCKER_HOST", "JPY_COOKIE_SECRET", "JUPYTERHUB_CRYPT_KEY"], hub
    assert hub.secret_inputs == {"envs"}, f"{hub} secrets: {hub.secret_inputs}"
    # The hub image's id, not its tag: a rebuilt image replaces the container even under the same tag.
    assert hub.inputs["image"] == MOCK_IMAGE_ID.format(name="juvini-dev-images-hub"), hub
    networks = [n["name"] for n in hub.inputs["networksAdvanced"]]
    assert networks == ["juvini-dev-hub-net", "juvini-dev-users-net"], hub


def _mock_hex(generated: Registration) -> str:
    """The ``hex`` the mocks give a RandomBytes (distinct per resource name)."""
    return f"{generated.name}-hex".encode().hex()[:64].ljust(64, "0")


def test_secrets_are_generated_once_per_stack_in_their_component(dev: ProgramRun) -> None:
    generated = {r.name: r for r in dev.of_type(RANDOM_BYTES)}
    assert {name: r.inputs["length"] for name, r in generated.items()} == {
        "juvini-dev-secrets-cookie-secret": 32,
        "juvini-dev-secrets-proxy-token": 32,
        "juvini-dev-secrets-crypt-key": 32,
    }
    for registration in generated.values():
        assert dev.by_urn[registration.parent].type == "juvini:index:Secrets", registration
    hub_env = dict(entry.split("=", 1) for entry in dev.named("juvini-dev-hub-hub").inputs["envs"])
    assert hub_env == {
        "CONFIGPROXY_AUTH_TOKEN": _mock_hex(generated["juvini-dev-secrets-proxy-token"]),
        "JPY_COOKIE_SECRET": _mock_hex(generated["juvini-dev-secrets-cookie-secret"]),
        "JUPYTERHUB_CRYPT_KEY": _mock_hex(generated["juvini-dev-secrets-crypt-key"]),
        # Not a secret: the filter's socket (infra/socket_filter.py), which docker-py reads.
        "DOCKER_HOST": "unix:///run/juvini/docker-api/docker.sock",
    }


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_generated_secrets_appear_only_in_secret_inputs(stack: str, request: pytest.FixtureRequest) -> None:
    run: ProgramRun = request.getfixturevalue(stack)
    values = {_mock_hex(r) for r in run.of_type(RANDOM_BYTES)}
    assert len(values) == 3
    seen = 0
    for registration in run.registrations:
        inputs = registration.inputs
        plain = repr({key: value for key, value in inputs.items() if key not in registration.secret_inputs})
        secret = repr({key: value for key, value in inputs.items() if key in registration.secret_inputs})
        assert not any(value in plain for value in values), f"{registration} holds a generated secret in plain inputs"
        seen += sum(value in secret for value in values)
    assert seen == 4, "the hub gets the three secrets, the proxy the proxy token"
    assert not any(value in repr(run.outputs) for value in values)


def _engine_urn(stack: str, types: list[str], name: str) -> str:
    """The URN the engine records for ``name`` whose type and parents' types are ``types`` (outermost first)."""
    return f"urn:pulumi:{stack}::juvini::{'$'.join(types)}::{name}"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_resources_moved_out_of_the_hub_keep_their_urns_through_aliases(
    stack: str, request: pytest.FixtureRequest
) -> None:
    run: ProgramRun = request.getfixturevalue(stack)
    prefix = f"juvini-{stack}"
    # Unmoved resources keep their URNs, as the engine writes them (the mocks' are the engine's).
    registered = {r.urn for r in run.registrations}
    for unmoved in (
        _engine_urn(stack, [LAB, HUB], f"{prefix}-hub"),
        _engine_urn(stack, [LAB, HUB, CONTAINER], f"{prefix}-hub-hub"),
    ):
        assert unmoved in registered, f"{unmoved} is gone: the hub container would be replaced"
    # Before issue 7 these were children of the Hub component (git show 219a6a5:infra/hub.py).
    moved = {
        f"{prefix}-secrets-cookie-secret": _engine_urn(stack, [LAB, HUB, RANDOM_BYTES], f"{prefix}-hub-cookie-secret"),
        f"{prefix}-secrets-proxy-token": _engine_urn(stack, [LAB, HUB, RANDOM_BYTES], f"{prefix}-hub-proxy-token"),
        f"{prefix}-secrets-crypt-key": _engine_urn(stack, [LAB, HUB, RANDOM_BYTES], f"{prefix}-hub-crypt-key"),
        f"{prefix}-proxy-proxy": _engine_urn(stack, [LAB, HUB, CONTAINER], f"{prefix}-hub-proxy"),
        f"{prefix}-host-user-servers-cleanup": _engine_urn(
            stack, [LAB, HUB, COMMAND], f"{prefix}-hub-user-servers-cleanup"
        ),
    }
    for name, old_urn in moved.items():
        registration = run.named(name)
        assert registration.urn != old_urn, f"{registration} did not move"
        assert old_urn not in registered, f"{old_urn} is still declared"
        assert old_urn in registration.aliases, (
            f"{registration} has no alias for {old_urn}: existing stacks would replace it ({registration.aliases})"
        )


def test_prod_ldap_password_reaches_the_hub_only_as_a_secret_env(prod: ProgramRun) -> None:
    hub = prod.named("juvini-prod-hub-hub")
    entries = [entry for entry in hub.inputs["envs"] if entry.startswith("JUVINI_LDAP_SEARCH_PASSWORD=")]
    assert entries == [f"JUVINI_LDAP_SEARCH_PASSWORD={PROD_SECRETS['searchPassword']}"], hub
    assert "envs" in hub.secret_inputs, hub
    assert PROD_SECRETS["searchPassword"] not in hub.inputs["uploads"][0]["content"], hub


def test_no_secret_value_appears_outside_secret_inputs(prod: ProgramRun) -> None:
    secrets = [*PROD_SECRETS.values(), "MOCK-juvini-prod-tls-server-key"]
    for registration in prod.registrations:
        plain = {key: value for key, value in registration.inputs.items() if key not in registration.secret_inputs}
        text = repr(plain)
        for secret in secrets:
            assert secret not in text, f"{registration} holds a secret in plain inputs"


TEAM_SHARE = {
    "name": "team",
    "unc": "//10.9.8.7/team",
    "username": "svc-lab",
    "password": "team-share-pw",
    "readOnly": True,
}
USER_SHARE = {"name": "home", "unc": "//10.9.8.7/homes", "perUser": True, "domain": "CORP"}


@pytest.fixture(scope="module")
def with_shares(ssh_key_file: Path) -> ProgramRun:
    config = stack_config("prod")
    config["auth"]["ldap"]["searchPassword"] = PROD_SECRETS["searchPassword"]
    config["host"]["sshPrivateKey"] = PROD_SECRETS["sshPrivateKey"]
    config["cifs"] = {"shares": [TEAM_SHARE, USER_SHARE]}
    return run_program(config, secret_keys=["auth", "host", "cifs"], stack="prod")


def test_a_team_share_is_a_cifs_volume_with_secret_options(with_shares: ProgramRun) -> None:
    (volume,) = [r for r in with_shares.of_type("docker:index/volume:Volume") if "-shares-" in r.name]
    assert volume.inputs["name"] == "juvini-prod-cifs-team", volume
    assert volume.inputs["driver"] == "local", volume
    options = volume.inputs["driverOpts"]
    assert (options["type"], options["device"]) == ("cifs", "//10.9.8.7/team"), volume
    assert options["o"].split(",") == [
        "addr=10.9.8.7",
        "username=svc-lab",
        "password=team-share-pw",
        "vers=3.0",
        "uid=2100",
        "gid=2100",
        "file_mode=0660",
        "dir_mode=0770",
        "ro",
    ], volume
    assert "driverOpts" in volume.secret_inputs, f"{volume} keeps the share password in plain state"
    hub = with_shares.named("juvini-prod-hub-hub")
    assert with_shares.depends_on(hub, volume), hub


def test_shares_reach_the_spawner_without_their_passwords(with_shares: ProgramRun) -> None:
    config = with_shares.named("juvini-prod-hub-hub").inputs["uploads"][0]["content"]
    assert "'juvini-prod-cifs-team': {'bind': '/home/labuser/team', 'mode': 'ro'}" in config
    assert "c.JuviniDockerSpawner.cifs_user_shares" in config and "'//10.9.8.7/homes'" in config
    assert "c.JuviniLDAPAuthenticator.keep_password = True" in config
    assert "team-share-pw" not in config


def test_kerberos_config_is_the_hubs_host_file_and_the_hub_waits_for_it() -> None:
    config = stack_config("prod")
    config["auth"]["ldap"]["searchPassword"] = PROD_SECRETS["searchPassword"]
    config["host"]["sshPrivateKey"] = PROD_SECRETS["sshPrivateKey"]
    config["kerberos"] = {"enabled": True, "realm": "CORP.EXAMPLE.ORG", "kdcs": ["dc1.corp.example.org"]}
    run = run_program(config, secret_keys=["auth", "host"], stack="prod")
    krb5 = run.named("juvini-prod-hub-krb5-conf")
    # Not moved: still the Hub's, under the URN existing stacks hold.
    assert krb5.urn == _engine_urn("prod", [LAB, HUB, COMMAND], "juvini-prod-hub-krb5-conf"), krb5
    assert "CORP.EXAMPLE.ORG" in krb5.inputs["stdin"], krb5
    assert run.depends_on(run.named("juvini-prod-hub-hub"), krb5), krb5
    assert not run.depends_on(run.named("juvini-prod-proxy-proxy"), krb5), "the proxy does not need krb5.conf"


def test_stack_outputs(dev: ProgramRun) -> None:
    assert dev.outputs[outputs.HUB_URL] == "https://localhost:8443/"
    assert dev.outputs[outputs.CA_CERTIFICATE].startswith("-----BEGIN CERTIFICATE-----")
    assert dev.outputs[outputs.ADMIN_USERS] == ["admin"]
    assert dev.outputs[outputs.IMAGES] == {
        "hub": "juvini-dev-hub:0.1.0",
        "base": "juvini-dev-notebook-base:0.1.0",
        "datascience": "juvini-dev-notebook-datascience:0.1.0",
        "pyspark": "juvini-dev-notebook-pyspark:0.1.0",
        "socket-filter": "juvini-dev-socket-filter:0.1.0",
    }
    assert dev.outputs[outputs.NETWORKS] == {"hub": "juvini-dev-hub-net", "users": "juvini-dev-users-net"}
    assert dev.outputs[outputs.HUB_CONTAINER] == "juvini-dev-hub"
    assert dev.outputs[outputs.PROXY_CONTAINER] == "juvini-dev-proxy"
    assert set(dev.outputs) == {
        outputs.HUB_URL,
        outputs.CA_CERTIFICATE,
        outputs.IMAGES,
        outputs.ADMIN_USERS,
        outputs.HUB_CONTAINER,
        outputs.PROXY_CONTAINER,
        outputs.NETWORKS,
    }


def test_stack_outputs_hold_no_secret(dev: ProgramRun, prod: ProgramRun) -> None:
    for run in (dev, prod):
        assert run.secret_outputs == set()
        text = repr(run.outputs)
        assert "PRIVATE KEY" not in text and PROD_SECRETS["searchPassword"] not in text


def test_invalid_configuration_stops_before_any_resource() -> None:
    with pytest.raises(ProgramFailed) as caught:
        run_program({"labUser": {"uid": 0}, "hub": {"httpsPort": "99999"}})
    assert isinstance(caught.value.error, pulumi.RunError)
    message = str(caught.value)
    assert "juvini:labUser.uid: 0 is not allowed" in message
    assert "juvini:hub.httpsPort: '99999' is not allowed" in message
    assert caught.value.registrations == []


def test_private_key_mock_is_distinct_per_resource() -> None:
    # Guards the secret checks above: they would pass vacuously if every mock key were equal.
    assert MOCK_PRIVATE_KEY.format(name="a") != MOCK_PRIVATE_KEY.format(name="b")


OIDC_SECRET = "oidc-client-secret-value"
OIDC_CA = "-----BEGIN CERTIFICATE-----\nT0lEQy1DQQ==\n-----END CERTIFICATE-----"


@pytest.fixture(scope="module")
def with_oidc() -> ProgramRun:
    config = stack_config("prod")
    config["auth"] = {
        "type": "oidc",
        "oidc": {
            "issuer": "https://login.example.org/realms/lab",
            "clientId": "juvini-lab",
            "clientSecret": OIDC_SECRET,
            "groupsClaim": "groups",
            "caCertificate": OIDC_CA,
        },
    }
    config["host"]["sshPrivateKey"] = PROD_SECRETS["sshPrivateKey"]
    return run_program(config, secret_keys=["auth", "host"], stack="prod")


def test_oidc_client_secret_reaches_the_hub_only_as_a_secret_env(with_oidc: ProgramRun) -> None:
    hub = with_oidc.named("juvini-prod-hub-hub")
    entries = [entry for entry in hub.inputs["envs"] if entry.startswith("JUVINI_OIDC_CLIENT_SECRET=")]
    assert entries == [f"JUVINI_OIDC_CLIENT_SECRET={OIDC_SECRET}"], hub
    assert "envs" in hub.secret_inputs, hub
    config, ca = hub.inputs["uploads"]
    assert "juvini_hub.oidc.JuviniOIDCAuthenticator" in config["content"], hub
    assert OIDC_SECRET not in config["content"], hub
    assert (ca["file"], ca["content"]) == ("/srv/jupyterhub/oidc-ca.crt", OIDC_CA), hub
    for registration in with_oidc.registrations:
        plain = {key: value for key, value in registration.inputs.items() if key not in registration.secret_inputs}
        assert OIDC_SECRET not in repr(plain), f"{registration} holds the client secret in plain inputs"
    assert OIDC_SECRET not in repr(with_oidc.outputs)
