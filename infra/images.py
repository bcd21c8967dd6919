"""Image builds from ``images/``: the hub image and the notebook images users pick from.

Notebook images stack: ``notebook-base`` <- ``notebook-datascience`` <- ``notebook-pyspark``;
each later one is built FROM the one before, so it is passed as that build's base.
"""

from __future__ import annotations

import os
from pathlib import Path

import pulumi
import pulumi_docker as docker

from infra.naming import Naming
from infra.settings import NOTEBOOK_FLAVOURS, Settings

TYPE = "juvini:index:Images"

IMAGES_DIR = Path(__file__).resolve().parent.parent / "images"

#: Build context (folder of ``images/``) of each role.
CONTEXTS: dict[str, str] = {
    "hub": "hub",
    "base": "notebook-base",
    "datascience": "notebook-datascience",
    "pyspark": "notebook-pyspark",
}
#: The notebook image each flavour is built on (``None``: built on the OS base image).
PARENTS: dict[str, str | None] = {"base": None, "datascience": "base", "pyspark": "datascience"}

#: What users see in the spawn form for each flavour.
DISPLAY_NAMES: dict[str, str] = {
    "base": "Base: JupyterLab, Python, build tools",
    "datascience": "Data science: the Anaconda-style stack",
    "pyspark": "PySpark: data science + Spark (Python 3 and PySpark kernels)",
}


def context_path(role: str) -> str:
    """The build context of ``role``, relative to the working directory Pulumi runs in."""
    return os.path.relpath(IMAGES_DIR / CONTEXTS[role])


def flavours_to_build(settings: Settings) -> list[str]:
    """Allowed notebook flavours plus the ones they are built on, in build order."""
    needed: set[str] = set()
    for flavour in settings.spawner.allowed_images:
        current: str | None = flavour
        while current is not None:
            needed.add(current)
            current = PARENTS[current]
    return [flavour for flavour in NOTEBOOK_FLAVOURS if flavour in needed]


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
        self.hub = self._build(name, "hub", settings.images.base_image)
        self.notebooks = {}
        for flavour in flavours_to_build(settings):
            parent = PARENTS[flavour]
            base = settings.images.base_image if parent is None else self.notebooks[parent].image_name
            self.notebooks[flavour] = self._build(name, flavour, base)

        self.references: dict[str, pulumi.Output[str]] = {"hub": self.hub.image_name} | {
            flavour: image.image_name for flavour, image in self.notebooks.items()
        }
        self.register_outputs({"references": self.references})

    def _build(self, name: str, role: str, base: pulumi.Input[str]) -> docker.Image:
        settings = self._settings
        physical_role = role if role == "hub" else f"notebook-{role}"
        context = context_path(role)
        return docker.Image(
            f"{name}-{role}",
            image_name=self._naming.image(physical_role, settings.images.tag, settings.images.registry),
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
