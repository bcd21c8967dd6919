"""Image builds from ``images/``: the hub image and the notebook images users pick from.

Notebook images stack: ``notebook-base`` <- ``notebook-datascience`` <- ``notebook-pyspark``;
each later one is built FROM the one before, so it is passed as that build's base.
"""

from __future__ import annotations

import os
from pathlib import Path

import pulumi
import pulumi_docker as docker

from infra import flavours
from infra.naming import Naming
from infra.settings import Settings

TYPE = "juvini:index:Images"

IMAGES_DIR = Path(__file__).resolve().parent.parent / "images"

#: Build context (folder of ``images/``) of the hub image.
HUB_FOLDER = "hub"


def context_path(folder: str) -> str:
    """The build context ``images/<folder>``, relative to the working directory Pulumi runs in."""
    return os.path.relpath(IMAGES_DIR / folder)


def build_args(settings: Settings, role: str, base: pulumi.Input[str]) -> dict[str, pulumi.Input[str]]:
    """Build arguments of ``role``'s Dockerfile."""
    args: dict[str, pulumi.Input[str]] = {
        "BASE_IMAGE": base,
        "EXTRA_CA_CERTS": settings.images.extra_ca_bundle or "",
        "JUVINI_VERSION": settings.images.tag,
    }
    if role == "base":
        args |= {
            "LAB_USER": settings.lab_user.name,
            "LAB_UID": str(settings.lab_user.uid),
            "LAB_GID": str(settings.lab_user.gid),
        }
    return args


class Images(pulumi.ComponentResource):
    """The hub image and the notebook images, built with BuildKit (pushed only if asked)."""

    hub: docker.Image
    notebooks: dict[str, docker.Image]

    def __init__(
        self, name: str, settings: Settings, naming: Naming, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self._settings = settings
        self._naming = naming
        self.hub_image_name = self._image_name("hub")
        self.hub = self._build(name, "hub", HUB_FOLDER, self.hub_image_name, settings.images.base_image)
        self.notebooks = {}
        #: Flavour -> image reference, known at declaration time (the rendered hub config needs them).
        self.notebook_image_names: dict[str, str] = {}
        for flavour in flavours.lineage(settings.spawner.allowed_images):
            parent = flavour.parent
            base = settings.images.base_image if parent is None else self.notebooks[parent].image_name
            self.notebook_image_names[flavour.name] = self._image_name(flavour.role)
            self.notebooks[flavour.name] = self._build(
                name, flavour.name, flavour.folder, self.notebook_image_names[flavour.name], base
            )

        self.references: dict[str, pulumi.Output[str]] = {"hub": self.hub.image_name} | {
            flavour: image.image_name for flavour, image in self.notebooks.items()
        }
        self.register_outputs({"references": self.references})

    def _image_name(self, role: str) -> str:
        images = self._settings.images
        return self._naming.image(role, images.tag, images.registry)

    def _build(self, name: str, role: str, folder: str, image_name: str, base: pulumi.Input[str]) -> docker.Image:
        settings = self._settings
        context = context_path(folder)
        return docker.Image(
            f"{name}-{role}",
            image_name=image_name,
            build=docker.DockerBuildArgs(
                context=context,
                dockerfile=str(Path(context) / "Dockerfile"),
                args=build_args(settings, role, base),
                builder_version=docker.BuilderVersion.BUILDER_BUILD_KIT,
            ),
            skip_push=not settings.images.push,
            build_on_preview=settings.images.build_on_preview,
            opts=pulumi.ResourceOptions(parent=self),
        )
