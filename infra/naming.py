"""Physical names of everything the lab creates on a Docker host.

Two stacks may share a host, so every container, network, volume and image name is
derived from the project, the stack and the thing's role, and from nowhere else.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_NOT_ALLOWED = re.compile(r"[^a-z0-9_.-]+")


@dataclass(frozen=True)
class Naming:
    """Names for one stack: ``<project>-<stack>-<role>``, lower case and Docker-safe."""

    project: str
    stack: str

    @property
    def prefix(self) -> str:
        return _clean(f"{self.project}-{self.stack}")

    @property
    def digest(self) -> str:
        """Eight hex digits standing for the stack, in names the host keeps short (network interfaces:
        15 characters, iptables chains: 28) where the prefix itself does not fit."""
        return hashlib.sha256(self.prefix.encode()).hexdigest()[:8]

    def physical(self, role: str) -> str:
        """Name of a container, network or volume playing ``role`` in this stack."""
        return _clean(f"{self.prefix}-{role}")

    def image(self, role: str, tag: str, registry: str | None = None) -> str:
        """Reference of an image built for ``role``, e.g. ``juvini-dev-hub:0.1.0``."""
        repository = self.physical(role)
        if registry:
            repository = f"{registry.rstrip('/')}/{repository}"
        return f"{repository}:{tag}"

    def labels(self, role: str) -> dict[str, str]:
        """Labels put on every Docker object, so a stack's objects can be listed and cleaned up."""
        return {"org.juvini.project": self.project, "org.juvini.stack": self.stack, "org.juvini.role": role}


def _clean(name: str) -> str:
    cleaned = _NOT_ALLOWED.sub("-", name.lower()).strip("-._")
    if not cleaned:
        raise ValueError(f"{name!r} leaves no usable Docker name")
    return cleaned
