"""The hub container (JupyterHub + DockerSpawner) and its proxy container.

As in Zero-to-JupyterHub, configurable-http-proxy runs in its own container: it
terminates TLS and keeps routing users to their servers while the hub restarts.
Secrets (cookie secret, proxy token, auth-state crypt key) are generated once per
stack and reach the containers through their environment, never through files in
images or command lines.
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker
import pulumi_random as random
from pulumi_command import remote

from infra.host import Host, privileged
from infra.hub_config import (
    CONFIG_PATH,
    HUB_API_PORT,
    LDAP_CA_PATH,
    PROXY_API_PORT,
    PROXY_PUBLIC_PORT,
    PROXY_REDIRECT_PORT,
    STATE_DIR,
    krb5_conf_host_path,
    render_hub_config,
    render_krb5_conf,
)
from infra.images import Images
from infra.naming import Naming
from infra.network import Networks
from infra.rendering import render
from infra.settings import AuthType, Settings
from infra.shares import Shares
from infra.tls import Tls

TYPE = "juvini:index:Hub"

#: Where the host's TLS folder appears inside the proxy container.
PROXY_TLS_DIR = "/etc/juvini/tls"


def _healthcheck(url: str, insecure_tls: bool = False) -> docker.ContainerHealthcheckArgs:
    """A healthcheck that fetches ``url`` with the image's Python (no curl needed)."""
    context = "ssl._create_unverified_context()" if insecure_tls else "None"
    probe = f"import ssl,urllib.request; urllib.request.urlopen({url!r}, timeout=4, context={context})"
    return docker.ContainerHealthcheckArgs(
        tests=["CMD", "python3", "-c", probe],
        interval="10s",
        timeout="5s",
        retries=3,
        start_period="60s",
    )


def _secret_env(name: str, value: pulumi.Input[str]) -> pulumi.Output[str]:
    """``NAME=value`` for a container's environment, marked secret whatever its source."""
    return pulumi.Output.secret(pulumi.Output.concat(name, "=", value))


def _labels(naming: Naming, role: str) -> list[docker.ContainerLabelArgs]:
    return [docker.ContainerLabelArgs(label=key, value=value) for key, value in naming.labels(role).items()]


class Hub(pulumi.ComponentResource):
    """JupyterHub and configurable-http-proxy containers."""

    hub_container: docker.Container
    proxy_container: docker.Container
    config_text: str

    def __init__(
        self,
        name: str,
        settings: Settings,
        naming: Naming,
        host: Host,
        tls: Tls,
        networks: Networks,
        images: Images,
        shares: Shares,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # Generated once per stack and kept in its state, encrypted.
        self.cookie_secret = random.RandomBytes(f"{name}-cookie-secret", length=32, opts=child)
        self.proxy_token = random.RandomBytes(f"{name}-proxy-token", length=32, opts=child)
        self.crypt_key = random.RandomBytes(f"{name}-crypt-key", length=32, opts=child)

        notebook_images = {
            flavour: naming.image(f"notebook-{flavour}", settings.images.tag, settings.images.registry)
            for flavour in images.notebooks
        }
        self.config_text = render_hub_config(settings, naming, notebook_images)
        hub_name = naming.physical("hub")
        proxy_name = naming.physical("proxy")
        uid_gid = f"{settings.lab_user.uid}:{settings.lab_user.gid}"
        networks_advanced = [
            docker.ContainerNetworksAdvancedArgs(name=networks.hub_network.name),
            docker.ContainerNetworksAdvancedArgs(name=networks.users_network.name),
        ]
        ready: list[pulumi.Resource] = [
            *host.ready,
            *tls.files,
            networks.hub_network,
            networks.users_network,
            images.hub,
            *images.notebooks.values(),
            *shares.volumes.values(),
        ]
        if settings.kerberos.enabled:
            self.krb5_conf = host.file(
                f"{name}-krb5-conf", krb5_conf_host_path(settings), render_krb5_conf(settings, naming), "0644", child
            )
            ready.append(self.krb5_conf)

        proxy_env = [_secret_env("CONFIGPROXY_AUTH_TOKEN", self.proxy_token.hex)]
        hub_env = [
            *proxy_env,
            _secret_env("JPY_COOKIE_SECRET", self.cookie_secret.hex),
            _secret_env("JUPYTERHUB_CRYPT_KEY", self.crypt_key.hex),
            *self._auth_env(settings),
        ]

        # Users' servers are the hub's containers, not the stack's: on destroy this removes
        # them after the hub (which depends on it) and before the network (which it depends on).
        self.user_servers_cleanup = remote.Command(
            f"{name}-user-servers-cleanup",
            connection=host.connection,
            create=privileged(settings, "true"),  # proves early that privileged steps work
            delete=privileged(
                settings, render("host-user-servers-delete.sh.j2", stack=naming.stack, project=naming.project)
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[networks.users_network, *host.ready]),
        )
        ready.append(self.user_servers_cleanup)

        self.proxy_container = docker.Container(
            f"{name}-proxy",
            name=proxy_name,
            image=images.hub.image_name,
            command=self._proxy_command(settings, hub_name),
            user=uid_gid,
            envs=proxy_env,
            mounts=[
                docker.ContainerMountArgs(
                    type="bind", source=settings.paths.tls_dir, target=PROXY_TLS_DIR, read_only=True
                )
            ],
            ports=self._proxy_ports(settings),
            networks_advanced=networks_advanced,
            restart="unless-stopped",
            healthcheck=_healthcheck(f"https://127.0.0.1:{PROXY_PUBLIC_PORT}/hub/health", insecure_tls=True),
            labels=_labels(naming, "proxy"),
            must_run=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=ready),
        )

        uploads = [docker.ContainerUploadArgs(file=CONFIG_PATH, content=self.config_text)]
        if settings.auth.type is AuthType.LDAP and settings.auth.ldap.ca_certificate:
            uploads.append(docker.ContainerUploadArgs(file=LDAP_CA_PATH, content=settings.auth.ldap.ca_certificate))
        self.hub_container = docker.Container(
            f"{name}-hub",
            name=hub_name,
            image=images.hub.image_name,
            envs=hub_env,
            uploads=uploads,
            mounts=[
                # DockerSpawner drives the host's engine.
                docker.ContainerMountArgs(type="bind", source=settings.docker_socket, target="/var/run/docker.sock"),
                docker.ContainerMountArgs(type="bind", source=settings.paths.hub_state_dir, target=STATE_DIR),
                # Same path as on the host: the hub creates users' folders that DockerSpawner then
                # bind-mounts by their host path.
                docker.ContainerMountArgs(
                    type="bind", source=settings.paths.users_dir, target=settings.paths.users_dir
                ),
            ],
            networks_advanced=networks_advanced,
            restart="unless-stopped",
            healthcheck=_healthcheck(f"http://127.0.0.1:{HUB_API_PORT}/hub/health"),
            labels=_labels(naming, "hub"),
            must_run=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*ready, self.proxy_container]),
        )
        self.register_outputs({"hubContainer": self.hub_container.name, "proxyContainer": self.proxy_container.name})

    @staticmethod
    def _proxy_command(settings: Settings, hub_name: str) -> list[str]:
        command = [
            "configurable-http-proxy",
            "--ip=0.0.0.0",
            f"--port={PROXY_PUBLIC_PORT}",
            "--api-ip=0.0.0.0",
            f"--api-port={PROXY_API_PORT}",
            f"--default-target=http://{hub_name}:{HUB_API_PORT}",
            f"--error-target=http://{hub_name}:{HUB_API_PORT}/hub/error",
            f"--ssl-key={PROXY_TLS_DIR}/server.key",
            f"--ssl-cert={PROXY_TLS_DIR}/server.crt",
        ]
        if settings.hub.http_redirect_port is not None:
            command += [f"--redirect-port={PROXY_REDIRECT_PORT}", f"--redirect-to={settings.hub.https_port}"]
        return command

    @staticmethod
    def _proxy_ports(settings: Settings) -> list[docker.ContainerPortArgs]:
        hub = settings.hub
        ports = [docker.ContainerPortArgs(internal=PROXY_PUBLIC_PORT, external=hub.https_port, ip=hub.bind_address)]
        if hub.http_redirect_port is not None:
            ports.append(
                docker.ContainerPortArgs(
                    internal=PROXY_REDIRECT_PORT, external=hub.http_redirect_port, ip=hub.bind_address
                )
            )
        return ports

    @staticmethod
    def _auth_env(settings: Settings) -> list[pulumi.Output[str]]:
        """Secret environment the rendered config reads for the chosen authenticator."""
        auth = settings.auth
        secrets = {
            "JUVINI_LDAP_SEARCH_PASSWORD": auth.ldap.search_password if auth.type is AuthType.LDAP else None,
            "JUVINI_GITHUB_CLIENT_SECRET": auth.github.client_secret if auth.type is AuthType.GITHUB else None,
            "JUVINI_DUMMY_PASSWORD": auth.dummy_password if auth.type is AuthType.DUMMY else None,
        }
        return [_secret_env(key, value.get_secret_value()) for key, value in secrets.items() if value]
