"""The ``profiles`` list: named choices of image and resources users pick at spawn, and who may
pick each.

A stack without profiles gets one implicit profile per image of ``spawner.allowedImages``, with
the global limits, open to everyone (:func:`effective_profiles`): such stacks keep working as
before. Checks against other sections (the images the stack builds, Spark's driver memory,
Swarm) are in ``checks``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, field_validator, model_validator

from infra import flavours
from infra.settings.base import DockerMemory, Problem, Section, Username, refuse
from infra.settings.hub import ServerEnvironment, lab_environment_problems

if TYPE_CHECKING:
    from infra.settings.hub import SpawnerSettings

#: A profile's slug: what API clients send (``{"profile": "datascience-large"}``).
SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$")


class GpuRequest(Section):
    """GPUs handed to the server through a Docker device request (capabilities [["gpu"]])."""

    count: int = Field(default=0, ge=0, le=64, description="GPUs the server gets (any of the host's); 0: none.")
    device_ids: list[str] = Field(
        default=[],
        description="GPUs by index or UUID as the host's runtime names them (nvidia-smi -L), instead of count.",
    )

    @field_validator("device_ids")
    @classmethod
    def _ids(cls, ids: list[str]) -> list[str]:
        bad = [device for device in ids if not _DEVICE_ID.fullmatch(device)]
        if bad:
            raise ValueError(f"{bad} are not GPU ids: an index (0) or a UUID (GPU-8f6c...)")
        return ids

    @model_validator(mode="after")
    def _count_or_ids(self) -> GpuRequest:
        if self.count and self.device_ids:
            refuse([Problem("deviceIds", self.device_ids, f"set count or deviceIds, not both (count is {self.count})")])
        return self

    @property
    def requested(self) -> bool:
        return bool(self.count or self.device_ids)


class ProfileSettings(Section):
    """One choice on the spawn page: an image with its resources, and who may pick it."""

    slug: str = Field(
        description="Short name API clients send ({\"profile\": slug}): lower-case letters, digits and '-', "
        "at most 32 characters.",
    )
    display_name: str = Field(min_length=1, max_length=80, description="Title on the spawn page.")
    description: str = Field(default="", max_length=400, description="What the profile is for, on the spawn page.")
    image: Literal[flavours.NAMES] = Field(  # type: ignore[valid-type]
        description="Notebook image (one of spawner.allowedImages, the images the stack builds)."
    )
    cpu_limit: float | None = Field(
        default=None, gt=0, le=256, description="CPUs the server may use; spawner.cpuLimit when unset."
    )
    mem_limit: DockerMemory | None = Field(
        default=None, description="Memory the server may use (Docker units: 512m, 4g); spawner.memLimit when unset."
    )
    environment: ServerEnvironment = Field(
        default={},
        description="Extra environment variables, over spawner.environment; not those the lab sets itself.",
    )
    gpu: GpuRequest = Field(default_factory=GpuRequest, description="GPUs for the server (a Docker device request).")
    groups: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        default=[], description="Hub groups whose members may pick it; with users empty too: everyone."
    )
    users: list[Username] = Field(default=[], description="Usernames that may pick it, besides the groups' members.")

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.fullmatch(value):
            raise ValueError(
                "must be a short name: lower-case letters, digits and '-' (not first or last), at most 32 characters"
            )
        return value

    @model_validator(mode="after")
    def _environment(self) -> ProfileSettings:
        refuse(lab_environment_problems(self.environment, "environment"))
        return self

    @property
    def open_to_everyone(self) -> bool:
        return not self.groups and not self.users


def implicit_profiles(spawner: SpawnerSettings) -> list[ProfileSettings]:
    """What a stack without profiles offers: each allowed image with the global limits, to everyone."""
    return [
        ProfileSettings(
            slug=name,
            display_name=flavours.BY_NAME[name].display_name,
            description=flavours.BY_NAME[name].description,
            image=name,
        )
        for name in spawner.allowed_images
    ]


def effective_profiles(profiles: list[ProfileSettings], spawner: SpawnerSettings) -> list[ProfileSettings]:
    """The profiles users choose from, limits filled in from ``spawner`` where a profile sets none."""
    chosen = profiles or implicit_profiles(spawner)
    return [
        profile.model_copy(
            update={
                "cpu_limit": profile.cpu_limit or spawner.cpu_limit,
                "mem_limit": profile.mem_limit or spawner.mem_limit,
            }
        )
        for profile in chosen
    ]
