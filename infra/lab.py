"""The whole lab on one Docker host: host setup, TLS, networks, images, hub."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from infra import outputs
from infra.host import Host
from infra.hub import Hub
from infra.images import Images
from infra.naming import Naming
from infra.network import Networks
from infra.settings import Settings
from infra.shares import Shares
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
        # Children inherit the provider, so every Docker object lands on this stack's host.
        on_host = pulumi.ResourceOptions(parent=self, providers={"docker": self.docker_provider})

        self.host = Host(f"{name}-host", settings, opts=pulumi.ResourceOptions(parent=self))
        self.tls = Tls(f"{name}-tls", settings, self.host, opts=pulumi.ResourceOptions(parent=self))
        self.networks = Networks(f"{name}-networks", settings, naming, opts=on_host)
        self.images = Images(f"{name}-images", settings, naming, opts=on_host)
        self.shares = Shares(f"{name}-shares", settings, naming, opts=on_host)
        self.hub = Hub(
            f"{name}-hub",
            settings,
            naming,
            self.host,
            self.tls,
            self.networks,
            self.images,
            self.shares,
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
    pulumi.export(outputs.HUB_CONTAINER, lab.hub.hub_container.name)
    pulumi.export(outputs.PROXY_CONTAINER, lab.hub.proxy_container.name)
    pulumi.export(outputs.NETWORKS, {"hub": lab.networks.hub_network.name, "users": lab.networks.users_network.name})
