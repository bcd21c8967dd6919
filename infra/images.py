"""Image builds from ``images/``: the foundation, the hub image and the notebook images users pick from.

The foundation (``images/foundation``) is built first, from the stack's OS base image: it owns
the trust store (the extra CAs) and the OS layer every image shares. The hub, the Docker API filter
(``images/socket-filter``) and the first notebook flavour are built ``FROM`` it; each later flavour
``FROM`` its parent flavour (``infra/flavours.py``). Only the foundation takes ``EXTRA_CA_CERTS``;
the others inherit its trust store.

A docker.Image is rebuilt only when its own inputs change, so each image gets its base's
``repoDigest`` (the image id for a local image) as ``BASE_IMAGE_DIGEST``: when a base is rebuilt
(a new CA, a new package in the foundation, ...), the images built on it are rebuilt too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker

from infra import flavours
from infra.naming import Naming
from infra.settings import Settings

TYPE = "juvini:index:Images"

IMAGES_DIR = Path(__file__).resolve().parent.parent / "images"

#: Build context (folder of ``images/``) and role of the foundation image.
FOUNDATION = FOUNDATION_FOLDER = "foundation"
#: Build context (folder of ``images/``) of the hub image.
HUB = HUB_FOLDER = "hub"
#: Build context (folder of ``images/``) and role of the Docker API filter's image (infra/socket_filter.py).
SOCKET_FILTER = SOCKET_FILTER_FOLDER = "socket-filter"


def context_path(folder: str) -> str:
    """The build context ``images/<folder>``, relative to the working directory Pulumi runs in."""
    return os.path.relpath(IMAGES_DIR / folder)


@dataclass(frozen=True)
class ImageBuild:
    """One image of the chain."""

    #: ``foundation``, ``hub`` or a flavour's name: the resource's name suffix.
    key: str
    #: Role in the image's physical name (``juvini-dev-<role>:<tag>``).
    role: str
    #: Build context, a folder of ``images/``.
    folder: str
    #: Key of the image it is built ``FROM``; ``None``: the stack's OS base image.
    parent: str | None


def build_order(
    flavour_names: list[str] | tuple[str, ...] = flavours.NAMES, *, socket_filter: bool = True
) -> list[ImageBuild]:
    """The images to build for ``flavour_names`` (and their ancestors), each after its parent; the
    Docker API filter's too unless ``socket_filter`` is False."""
    chain = [
        ImageBuild(FOUNDATION, FOUNDATION, FOUNDATION_FOLDER, None),
        ImageBuild(HUB, HUB, HUB_FOLDER, FOUNDATION),
    ]
    if socket_filter:
        chain.append(ImageBuild(SOCKET_FILTER, SOCKET_FILTER, SOCKET_FILTER_FOLDER, FOUNDATION))
    for flavour in flavours.lineage(flavour_names):
        chain.append(ImageBuild(flavour.name, flavour.role, flavour.folder, flavour.parent or FOUNDATION))
    return chain


def build_args(
    settings: Settings, build: ImageBuild, base: pulumi.Input[str], base_digest: pulumi.Input[str]
) -> dict[str, pulumi.Input[str]]:
    """Build arguments of ``build``'s Dockerfile, on ``base`` (an image reference) whose digest is ``base_digest``."""
    args: dict[str, pulumi.Input[str]] = {"BASE_IMAGE": base, "JUVINI_VERSION": settings.images.tag}
    if build.parent is None:
        args["EXTRA_CA_CERTS"] = settings.images.extra_ca_bundle or ""
    else:
        args["BASE_IMAGE_DIGEST"] = base_digest
    if build.key in flavours.BY_NAME and build.parent == FOUNDATION:
        # The notebook image on the foundation creates the lab user.
        args |= {
            "LAB_USER": settings.lab_user.name,
            "LAB_UID": str(settings.lab_user.uid),
            "LAB_GID": str(settings.lab_user.gid),
        }
    return args


def pinned_references(repo_digests: dict[str, str | None]) -> dict[str, str]:
    """Image name -> the name pinned to its pushed digest, for each image whose repoDigest is a
    registry's (``<repository>[:tag]@sha256:...``); a local image's (its id) pins nothing."""
    pinned = {}
    for name, repo_digest in repo_digests.items():
        _, at, digest = (repo_digest or "").rpartition("@")
        if at and digest.startswith("sha256:"):
            pinned[name] = f"{name}@{digest}"
    return pinned


class Images(pulumi.ComponentResource):
    """The foundation, hub, Docker API filter and notebook images, built with BuildKit in order (pushed
    only if asked)."""

    foundation: docker.Image
    hub: docker.Image
    socket_filter: docker.Image | None
    notebooks: dict[str, docker.Image]

    def __init__(
        self,
        name: str,
        settings: Settings,
        naming: Naming,
        opts: pulumi.ResourceOptions | None = None,
        after: Sequence[pulumi.Resource] = (),
    ) -> None:
        """``after``: what every build needs first (the Docker host trusting the registry it pushes to)."""
        super().__init__(TYPE, name, None, opts)
        self._settings = settings
        self._after = list(after)
        self._naming = naming
        built: dict[str, docker.Image] = {}
        #: Image reference of each key, known at declaration time (the rendered hub config needs them).
        names: dict[str, str] = {}
        for build in build_order(settings.spawner.allowed_images, socket_filter=settings.security.docker_api_filter):
            names[build.key] = self._image_name(build.role)
            parent = built[build.parent] if build.parent else None
            built[build.key] = self._build(name, build, names[build.key], parent)
        self.foundation = built.pop(FOUNDATION)
        self.foundation_image_name: str = names.pop(FOUNDATION)
        self.hub = built.pop(HUB)
        self.hub_image_name: str = names.pop(HUB)
        #: None when the stack turns the filter off (security.dockerApiFilter).
        self.socket_filter = built.pop(SOCKET_FILTER, None)
        names.pop(SOCKET_FILTER, None)
        #: What the hub and proxy containers run: the built image's id (its digest once pushed), so a
        #: rebuilt hub image (new juvini_hub code, a new CA) replaces them even under the same tag.
        self.hub_image_digest: pulumi.Output[str] = self.hub.repo_digest
        self.notebooks = built
        self.notebook_image_names: dict[str, str] = names
        #: Once pushed: each notebook image's name -> that name pinned to the digest pushed
        #: (``<name>@sha256:...``), what swarm services run; empty for images kept local.
        self.pinned_notebook_images: pulumi.Output[dict[str, str]] = pulumi.Output.all(
            **{names[key]: image.repo_digest for key, image in built.items()}
        ).apply(pinned_references)

        # The stack output: what the lab runs (the foundation is only built on, so it is not in it).
        self.references: dict[str, pulumi.Output[str]] = (
            {HUB: self.hub.image_name}
            | ({SOCKET_FILTER: self.socket_filter.image_name} if self.socket_filter else {})
            | {flavour: image.image_name for flavour, image in self.notebooks.items()}
        )
        self.register_outputs({"references": self.references})

    def _image_name(self, role: str) -> str:
        images = self._settings.images
        return self._naming.image(role, images.tag, images.registry)

    def _registry_login(self) -> docker.RegistryArgs | None:
        """The login the pushes use, the password a secret (never a plain input); None without one."""
        images = self._settings.images
        if not images.push or images.registry_username is None or images.registry_password is None:
            return None
        return docker.RegistryArgs(
            server=images.registry_server(),
            username=images.registry_username,
            password=pulumi.Output.secret(images.registry_password.get_secret_value()),
        )

    def _build(self, name: str, build: ImageBuild, image_name: str, parent: docker.Image | None) -> docker.Image:
        settings = self._settings
        context = context_path(build.folder)
        if parent is None:
            base: pulumi.Input[str] = settings.images.base_image
            base_digest: pulumi.Input[str] = ""
        else:
            base = parent.image_name
            base_digest = parent.repo_digest.apply(lambda digest: digest or "")
        return docker.Image(
            f"{name}-{build.key}",
            image_name=image_name,
            build=docker.DockerBuildArgs(
                context=context,
                dockerfile=str(Path(context) / "Dockerfile"),
                args=build_args(settings, build, base, base_digest),
                builder_version=docker.BuilderVersion.BUILDER_BUILD_KIT,
            ),
            skip_push=not settings.images.push,
            registry=self._registry_login(),
            build_on_preview=settings.images.build_on_preview,
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._after),
        )
