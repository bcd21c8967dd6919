"""configurable-http-proxy in its own container, in front of the hub.

As in Zero-to-JupyterHub, the proxy runs apart from the hub: it terminates TLS with the
certificate in the host's TLS folder and keeps routing users to their servers while the
hub restarts. The hub drives its routes through the proxy's API, with the proxy token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import pulumi
import pulumi_docker as docker

from infra.aliases import FormerParent, former
from infra.containers import healthcheck, lab_networks, labels, secret_env
from infra.hub_config import HUB_API_PORT, PROXY_API_PORT, PROXY_PUBLIC_PORT, PROXY_REDIRECT_PORT
from infra.images import Images
from infra.naming import Naming
from infra.network import Networks
from infra.settings import Settings

TYPE = "juvini:index:Proxy"

#: Where the host's TLS folder appears inside the proxy container.
PROXY_TLS_DIR = "/etc/juvini/tls"

#: The variable configurable-http-proxy (and the hub, its client) read the proxy token from.
PROXY_TOKEN_ENV = "CONFIGPROXY_AUTH_TOKEN"  # noqa: S105 - a variable name, not its value

V = TypeVar("V")


def proxy_command(settings: Settings, hub_name: str) -> list[str]:
    """configurable-http-proxy's command line: HTTPS in front, the hub behind."""
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


def proxy_ports(settings: Settings) -> list[docker.ContainerPortArgs]:
    """The HTTPS port, and the plain HTTP port that redirects to it when one is set."""
    hub = settings.hub
    ports = [docker.ContainerPortArgs(internal=PROXY_PUBLIC_PORT, external=hub.https_port, ip=hub.bind_address)]
    if hub.http_redirect_port is not None:
        ports.append(
            docker.ContainerPortArgs(internal=PROXY_REDIRECT_PORT, external=hub.http_redirect_port, ip=hub.bind_address)
        )
    return ports


def proxy_mounts(settings: Settings) -> list[docker.ContainerMountArgs]:
    """The host's TLS folder, read-only."""
    return [docker.ContainerMountArgs(type="bind", source=settings.paths.tls_dir, target=PROXY_TLS_DIR, read_only=True)]


def proxy_environment(proxy_token: V) -> dict[str, V]:
    """The proxy's environment: the proxy token alone (a secret)."""
    return {PROXY_TOKEN_ENV: proxy_token}


class Proxy(pulumi.ComponentResource):
    """The configurable-http-proxy container."""

    container: docker.Container

    def __init__(
        self,
        name: str,
        settings: Settings,
        naming: Naming,
        *,
        proxy_token: pulumi.Input[str],
        images: Images,
        networks: Networks,
        after: Sequence[pulumi.Resource] = (),
        formerly: FormerParent | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``after``: what the proxy needs besides its image and networks (host steps, TLS files);
        ``formerly``: the component that held its container before (the alias keeps the container)."""
        super().__init__(TYPE, name, None, opts)
        self.container = docker.Container(
            f"{name}-proxy",
            name=naming.physical("proxy"),
            image=images.hub_image_digest,  # the hub image ships configurable-http-proxy
            command=proxy_command(settings, naming.physical("hub")),
            user=f"{settings.lab_user.uid}:{settings.lab_user.gid}",
            envs=secret_env(proxy_environment(proxy_token)),
            mounts=proxy_mounts(settings),
            ports=proxy_ports(settings),
            networks_advanced=lab_networks(networks, "proxy"),
            restart="unless-stopped",
            healthcheck=healthcheck(f"https://127.0.0.1:{PROXY_PUBLIC_PORT}/hub/health", insecure_tls=True),
            labels=labels(naming, "proxy"),
            must_run=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*after, images, networks.hub_network, networks.users_network],
                aliases=former(formerly, "proxy"),
            ),
        )
        self.register_outputs({"container": self.container.name})
