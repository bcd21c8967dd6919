"""The whole lab on one Docker host: host setup, TLS, networks, images, shares, secrets, proxy, the Docker
API filter, hub."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from infra import hub, outputs
from infra.aliases import FormerParent
from infra.host import Host
from infra.hub import Hub
from infra.images import Images
from infra.lab_secrets import Secrets
from infra.naming import Naming
from infra.network import Networks
from infra.proxy import Proxy
from infra.settings import Settings
from infra.shares import Shares
from infra.socket_filter import SocketFilter
from infra.swarm import SwarmCluster
from infra.tls import Tls

TYPE = "juvini:index:Lab"


class Lab(pulumi.ComponentResource):
    """Composes the lab's components; one explicit Docker provider for its Docker host."""

    def __init__(
        self, name: str, settings: Settings, naming: Naming, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.docker_provider = docker.Provider(
            f"{name}-docker", host=settings.docker_host, opts=pulumi.ResourceOptions(parent=self)
        )
        child = pulumi.ResourceOptions(parent=self)
        # Children inherit the provider, so every Docker object lands on this stack's host.
        on_host = pulumi.ResourceOptions(parent=self, providers={"docker": self.docker_provider})

        self.host = Host(f"{name}-host", settings, opts=child)
        # Before any of the lab's containers run, and turned off (if at all) after they are gone.
        self.live_restore = self.host.engine_live_restore(naming)
        # Users' servers are firewalled before the lab's containers run, and until they are gone.
        self.network_isolation = self.host.network_isolation(naming)
        engine_ready = [step for step in (self.live_restore, self.network_isolation) if step]
        self.tls = Tls(f"{name}-tls", settings, self.host, opts=child)
        # Under Swarm: the swarm first (the users' network is one of its overlays).
        self.swarm = (
            SwarmCluster(f"{name}-swarm", settings, naming, self.host, opts=child) if settings.swarm.enabled else None
        )
        # Its subnets are checked on the Docker host (over the host's SSH) before the engine makes them.
        self.networks = Networks(
            f"{name}-networks",
            settings,
            naming,
            self.host,
            opts=on_host,
            after=self.swarm.ready if self.swarm else (),
        )
        # The Docker host builds and pushes the images: it trusts the registry's CA first.
        self.registry_trust = self.host.registry_trust(naming)
        self.images = Images(
            f"{name}-images",
            settings,
            naming,
            opts=on_host,
            after=[self.registry_trust] if self.registry_trust else [],
        )
        # Under Swarm: no user's server is placed before every node has proved it can pull the images.
        registry_checks = self.swarm.check_registry(self.images, self.registry_trust) if self.swarm else []
        self.shares = Shares(f"{name}-shares", settings, naming, opts=on_host)

        # The hub's only way to Docker (security.dockerApiFilter): up before the hub, gone after it.
        self.socket_filter: SocketFilter | None = None
        if self.images.socket_filter is not None:
            self.socket_filter = SocketFilter(
                f"{name}-socket-filter",
                settings,
                naming,
                image=self.images.socket_filter.repo_digest,
                notebook_images=self.images.notebook_image_names,
                after=[self.images, *engine_ready],
                opts=on_host,
            )
        docker_access = [self.socket_filter.container] if self.socket_filter else []

        hub_name = f"{name}-hub"
        # The Hub component held the secrets, the proxy and the clean-up command until they moved
        # out (issue 7): their aliases keep existing stacks' resources instead of replacing them.
        in_hub = FormerParent.of(hub_name, hub.TYPE, parent=self)
        self.secrets = Secrets(f"{name}-secrets", formerly=in_hub, opts=child)
        self.proxy = Proxy(
            f"{name}-proxy",
            settings,
            naming,
            proxy_token=self.secrets.proxy_token.hex,
            images=self.images,
            networks=self.networks,
            after=[*self.host.ready, *self.tls.files, *engine_ready],
            formerly=in_hub,
            opts=on_host,
        )
        self.user_servers_cleanup = self.host.user_servers_cleanup(
            naming, after=[self.networks.users_network, *engine_ready], formerly=in_hub
        )
        self.hub = Hub(
            hub_name,
            settings,
            naming,
            host=self.host,
            secrets=self.secrets,
            images=self.images,
            networks=self.networks,
            # Destroy runs in reverse: the hub, then users' servers, then the users' network.
            after=[self.proxy.container, self.user_servers_cleanup, self.shares, *docker_access, *registry_checks],
            opts=on_host,
        )

        self.hub_url = settings.hub_url
        self.ca_certificate = self.tls.ca_certificate
        self.image_references = pulumi.Output.all(**self.images.references)
        self.admin_users = sorted(settings.hub.admin_users)
        self.register_outputs(
            {
                outputs.HUB_URL: self.hub_url,
                outputs.CA_CERTIFICATE: self.ca_certificate,
                outputs.IMAGES: self.image_references,
                outputs.ADMIN_USERS: self.admin_users,
            }
        )


def export_outputs(lab: Lab) -> None:
    """Stack outputs: where the lab is and what to trust. No secret is exported."""
    pulumi.export(outputs.HUB_URL, lab.hub_url)
    pulumi.export(outputs.CA_CERTIFICATE, lab.ca_certificate)
    pulumi.export(outputs.IMAGES, lab.image_references)
    pulumi.export(outputs.ADMIN_USERS, lab.admin_users)
    pulumi.export(outputs.HUB_CONTAINER, lab.hub.container.name)
    pulumi.export(outputs.PROXY_CONTAINER, lab.proxy.container.name)
    pulumi.export(outputs.NETWORKS, {"hub": lab.networks.hub_network.name, "users": lab.networks.users_network.name})
