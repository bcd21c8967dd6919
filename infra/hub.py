"""The hub container: JupyterHub with DockerSpawner (or SwarmSpawner), behind the proxy.

Its ``jupyterhub_config.py`` is rendered from the settings (infra/hub_config.py) and uploaded
into the container. Its secrets (the stack's generated ones, the authenticator's) reach it
through its environment, never through images, files or command lines.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TypeVar

import pulumi
import pulumi_docker as docker

from infra.containers import healthcheck, lab_networks, labels, secret_env
from infra.host import Host
from infra.hub_config import (
    CONFIG_PATH,
    HUB_API_PORT,
    LDAP_CA_PATH,
    OIDC_CA_PATH,
    PINNED_IMAGES_ENV,
    STATE_DIR,
    krb5_conf_host_path,
    render_hub_config,
    render_krb5_conf,
)
from infra.images import Images
from infra.lab_secrets import Secrets
from infra.naming import Naming
from infra.network import Networks
from infra.proxy import PROXY_TOKEN_ENV
from infra.settings import AuthType, Settings
from infra.socket_filter import hub_docker_environment, hub_docker_mount

TYPE = "juvini:index:Hub"

V = TypeVar("V")


def auth_environment(settings: Settings) -> dict[str, str]:
    """The secret the rendered config reads for the chosen authenticator, if it has one."""
    auth = settings.auth
    secrets = {
        "JUVINI_LDAP_SEARCH_PASSWORD": auth.ldap.search_password if auth.type is AuthType.LDAP else None,
        "JUVINI_GITHUB_CLIENT_SECRET": auth.github.client_secret if auth.type is AuthType.GITHUB else None,
        "JUVINI_OIDC_CLIENT_SECRET": auth.oidc.client_secret if auth.type is AuthType.OIDC else None,
        "JUVINI_DUMMY_PASSWORD": auth.dummy_password if auth.type is AuthType.DUMMY else None,
    }
    return {key: value.get_secret_value() for key, value in secrets.items() if value}


def registry_environment(settings: Settings) -> dict[str, str]:
    """The pull login (images.pullUsername, Swarm only) the hub hands the swarm with each user's server."""
    images = settings.images
    if images.pull_username is None or images.pull_password is None:
        return {}
    return {
        "JUVINI_REGISTRY_PULL_USERNAME": images.pull_username,
        "JUVINI_REGISTRY_PULL_PASSWORD": images.pull_password.get_secret_value(),
    }


def hub_environment(settings: Settings, *, proxy_token: V, cookie_secret: V, crypt_key: V) -> dict[str, V | str]:
    """The hub's environment, every value a secret: the stack's generated secrets, the authenticator's
    and the registry's pull login."""
    return (
        {
            PROXY_TOKEN_ENV: proxy_token,
            "JPY_COOKIE_SECRET": cookie_secret,
            "JUPYTERHUB_CRYPT_KEY": crypt_key,
        }
        | auth_environment(settings)
        | registry_environment(settings)
    )


def pinned_images_env(images: Images) -> pulumi.Output[str]:
    """Under Swarm: the notebook images pinned to the digests pushed. A new push changes it, which
    replaces the hub, so new servers run the new images and every node runs the same."""
    return images.pinned_notebook_images.apply(
        lambda pinned: f"{PINNED_IMAGES_ENV}={json.dumps(pinned, sort_keys=True)}"
    )


def hub_mounts(settings: Settings, naming: Naming) -> list[docker.ContainerMountArgs]:
    """Docker (the filter's socket, infra/socket_filter.py), the hub's state folder and the users' folders."""
    return [
        # DockerSpawner drives the host's engine, through the filter unless the stack turns it off.
        hub_docker_mount(settings, naming),
        docker.ContainerMountArgs(type="bind", source=settings.paths.hub_state_dir, target=STATE_DIR),
        # Same path as on the host: the hub creates users' folders that DockerSpawner then
        # bind-mounts by their host path.
        docker.ContainerMountArgs(type="bind", source=settings.paths.users_dir, target=settings.paths.users_dir),
    ]


def hub_uploads(settings: Settings, config_text: str) -> list[docker.ContainerUploadArgs]:
    """The rendered configuration, and the directory's or the OpenID provider's CA when login is given one."""
    uploads = [docker.ContainerUploadArgs(file=CONFIG_PATH, content=config_text)]
    if settings.auth.type is AuthType.LDAP and settings.auth.ldap.ca_certificate:
        uploads.append(docker.ContainerUploadArgs(file=LDAP_CA_PATH, content=settings.auth.ldap.ca_certificate))
    if settings.auth.type is AuthType.OIDC and settings.auth.oidc.ca_certificate:
        uploads.append(docker.ContainerUploadArgs(file=OIDC_CA_PATH, content=settings.auth.oidc.ca_certificate))
    return uploads


class Hub(pulumi.ComponentResource):
    """The JupyterHub container, its configuration, and the realm's krb5.conf on the host."""

    container: docker.Container
    config_text: str

    def __init__(
        self,
        name: str,
        settings: Settings,
        naming: Naming,
        *,
        host: Host,
        secrets: Secrets,
        images: Images,
        networks: Networks,
        after: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``after``: what the hub needs besides the host, images and networks: the proxy, the users'
        servers clean-up (so destroy removes the hub before users' servers), the shares."""
        super().__init__(TYPE, name, None, opts)
        self.config_text = render_hub_config(settings, naming, images.notebook_image_names)
        ready: list[pulumi.Resource] = [*host.ready, images, networks.hub_network, networks.users_network, *after]
        if settings.kerberos.enabled:
            self.krb5_conf = host.file(
                f"{name}-krb5-conf",
                krb5_conf_host_path(settings),
                render_krb5_conf(settings, naming),
                "0644",
                pulumi.ResourceOptions(parent=self),
            )
            ready.append(self.krb5_conf)

        environment = hub_environment(
            settings,
            proxy_token=secrets.proxy_token.hex,
            cookie_secret=secrets.cookie_secret.hex,
            crypt_key=secrets.crypt_key.hex,
        )
        self.container = docker.Container(
            f"{name}-hub",
            name=naming.physical("hub"),
            image=images.hub_image_digest,
            envs=[
                *secret_env(environment),
                *(f"{key}={value}" for key, value in hub_docker_environment(settings).items()),
                *([pinned_images_env(images)] if settings.swarm.enabled else []),
            ],
            uploads=hub_uploads(settings, self.config_text),
            mounts=hub_mounts(settings, naming),
            networks_advanced=lab_networks(networks, "hub"),
            restart="unless-stopped",
            healthcheck=healthcheck(f"http://127.0.0.1:{HUB_API_PORT}/hub/health"),
            labels=labels(naming, "hub"),
            must_run=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=ready),
        )
        self.register_outputs({"container": self.container.name})
