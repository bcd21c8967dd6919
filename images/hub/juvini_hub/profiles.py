"""Profiles: which image and resources a user's server gets, chosen at spawn among those the
user may pick.

The rendered jupyterhub_config.py lists the profiles (``c.JuviniSpawnerMixin.profiles``, from
the stack's ``profiles`` or one per allowed image); this module holds what the spawner asks of
them, as pure functions: who may pick which, the user's choice from the spawn form or the REST
API (``{"profile": slug}``, or the older ``{"image": <display name>}``), refusals with the
HTTP status and a message for the user, the spawn form and a Docker device request for GPUs.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Gpu:
    """GPUs for a server: a number of any, or the host's GPUs by id."""

    count: int
    device_ids: tuple[str, ...]

    def device_request(self) -> dict[str, Any]:
        """docker-py's DeviceRequest fields (``docker run --gpus``): the default driver, capability gpu."""
        request: dict[str, Any] = {"driver": "", "capabilities": [["gpu"]]}
        if self.device_ids:
            request["device_ids"] = list(self.device_ids)
        else:
            request["count"] = self.count
        return request

    def describe(self) -> str:
        if self.device_ids:
            return f"GPU {', '.join(self.device_ids)}"
        return "1 GPU" if self.count == 1 else f"{self.count} GPUs"


@dataclass(frozen=True)
class Profile:
    """One choice of image and resources, and who may pick it (nobody named: everyone)."""

    slug: str
    display_name: str
    description: str
    image: str
    image_name: str
    cpu_limit: float
    mem_limit: int
    environment: Mapping[str, str]
    gpu: Gpu | None
    groups: frozenset[str]
    users: frozenset[str]

    @classmethod
    def from_config(cls, item: Mapping[str, Any]) -> Profile:
        """A profile from its entry in ``c.JuviniSpawnerMixin.profiles`` (infra/hub_config.py)."""
        gpu = item.get("gpu")
        return cls(
            slug=item["slug"],
            display_name=item["display_name"],
            description=item["description"],
            image=item["image"],
            image_name=item["image_name"],
            cpu_limit=float(item["cpu_limit"]),
            mem_limit=int(item["mem_limit"]),
            environment=dict(item["environment"]),
            gpu=Gpu(int(gpu.get("count") or 0), tuple(gpu.get("device_ids") or ())) if gpu else None,
            groups=frozenset(item["groups"]),
            users=frozenset(item["users"]),
        )

    def open_to(self, username: str, groups: Iterable[str]) -> bool:
        if not self.groups and not self.users:
            return True
        return username in self.users or bool(self.groups.intersection(groups))

    def who(self) -> str:
        """Who may pick it, for a refusal."""
        parts = []
        if self.groups:
            parts.append(f"members of {', '.join(sorted(self.groups))}")
        if self.users:
            parts.append(", ".join(sorted(self.users)))
        return " and ".join(parts) or "everyone"

    def resources(self) -> str:
        """``2 CPUs, 4 GiB memory, 1 GPU``."""
        cpus = f"{self.cpu_limit:g} CPU" + ("" if self.cpu_limit == 1 else "s")
        parts = [cpus, f"{_size(self.mem_limit)} memory"]
        if self.gpu is not None:
            parts.append(self.gpu.describe())
        return ", ".join(parts)


def _size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2)):
        if size >= factor:
            return f"{size / factor:g} {unit}"
    return f"{size} bytes"


class ProfileRefused(Exception):
    """The choice cannot be had: ``status`` (400 unknown, 403 not for this user) and the user's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def open_profiles(profiles: Iterable[Profile], username: str, groups: Iterable[str]) -> list[Profile]:
    """The profiles ``username`` (a member of ``groups``) may pick, in the stack's order."""
    groups = set(groups)
    return [profile for profile in profiles if profile.open_to(username, groups)]


def _slugs(profiles: Iterable[Profile]) -> str:
    return ", ".join(profile.slug for profile in profiles) or "none"


def choose(
    profiles: list[Profile],
    username: str,
    groups: Iterable[str],
    options: Mapping[str, Any],
    images: Mapping[str, str],
) -> Profile:
    """The profile a start runs with: ``options["profile"]`` (a slug), else the first allowed one whose
    image is ``options["image"]`` (an image's display name, as before profiles), else the user's default,
    the first they may pick. ``images``: display name -> image. Raises :class:`ProfileRefused`."""
    allowed = open_profiles(profiles, username, groups)
    slug, image_name = options.get("profile"), options.get("image")
    if slug is not None:
        known = {profile.slug: profile for profile in profiles}
        if not isinstance(slug, str) or slug not in known:
            raise ProfileRefused(400, f"There is no profile {slug!r}. Profiles you may use: {_slugs(allowed)}.")
        profile = known[slug]
        if profile not in allowed:
            raise ProfileRefused(
                403,
                f"You may not use the profile {slug!r} ({profile.display_name}): it is for {profile.who()}. "
                f"Profiles you may use: {_slugs(allowed)}.",
            )
        if image_name and images.get(image_name) != profile.image:
            raise ProfileRefused(
                400,
                f"The image {image_name!r} is not the profile {slug!r}'s ({profile.image_name}); send one of the two.",
            )
        return profile
    if image_name:
        if not isinstance(image_name, str) or image_name not in images:
            raise ProfileRefused(
                400, f"There is no image {image_name!r}. Images of this lab: {', '.join(images) or 'none'}."
            )
        matching = [profile for profile in allowed if profile.image == images[image_name]]
        if not matching:
            raise ProfileRefused(
                403,
                f"None of the profiles you may use runs the image {image_name!r}. "
                f"Profiles you may use: {_slugs(allowed)}.",
            )
        return matching[0]
    if not allowed:
        raise ProfileRefused(
            403, "No profile of this lab is open to you: ask an admin to add you to a group that has one."
        )
    return allowed[0]


def options_from_form(formdata: Mapping[str, list[str]]) -> dict[str, Any]:
    """The spawn form's answer as user options: ``{"profile": slug}`` (or the older image pick)."""
    options: dict[str, Any] = {}
    for key in ("profile", "image"):
        values = formdata.get(key)
        if values:
            options[key] = values[0]
    return options


def options_form(allowed: list[Profile], chosen: str | None = None) -> str:
    """The spawn form: one described choice per profile the user may pick, ``chosen`` (or the first)
    selected. Empty with fewer than two choices: the hub then starts the server at once."""
    if len(allowed) < 2:
        return ""
    selected = chosen if chosen in {profile.slug for profile in allowed} else allowed[0].slug
    cards = []
    for profile in allowed:
        slug = html.escape(profile.slug, quote=True)
        checked = " checked" if profile.slug == selected else ""
        description = (
            f'<div class="juvini-profile-description">{html.escape(profile.description)}</div>'
            if profile.description
            else ""
        )
        cards.append(
            f'<div class="card mb-2 juvini-profile">\n'
            f'  <div class="card-body d-flex gap-3 align-items-start">\n'
            f'    <input class="form-check-input mt-1 flex-shrink-0" type="radio" name="profile" id="profile-{slug}"'
            f' value="{slug}" aria-describedby="profile-{slug}-details"{checked}>\n'
            f'    <label class="form-check-label flex-grow-1" for="profile-{slug}">\n'
            f'      <strong class="juvini-profile-name">{html.escape(profile.display_name)}</strong>\n'
            f'      <span class="d-block" id="profile-{slug}-details">\n'
            f"        {description}\n"
            f'        <small class="text-muted juvini-profile-resources">{html.escape(profile.resources())}; '
            f"image: {html.escape(profile.image_name)}</small>\n"
            f"      </span>\n"
            f"    </label>\n"
            f"  </div>\n"
            f"</div>"
        )
    return (
        '<fieldset class="juvini-profiles">\n'
        '<legend class="fs-5">Choose a profile for your server</legend>\n' + "\n".join(cards) + "\n</fieldset>\n"
    )
