"""Aliases for resources a refactor moved, so existing stacks update them in place.

Pulumi knows a resource by its URN: its name and the types of its parent chain. Moving a
resource under another component, or renaming it, changes the URN; without an alias naming
the old one, ``pulumi up`` creates the new resource and deletes the old: new containers,
new generated secrets (logging every user out), a clean-up command that runs on the way.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi


@dataclass(frozen=True)
class FormerParent:
    """A component that held resources, named ``<name>-<role>``, before a refactor moved them out."""

    name: str
    urn: pulumi.Input[str]

    @classmethod
    def of(cls, name: str, type_: str, parent: pulumi.Resource) -> FormerParent:
        """The component ``name`` of type ``type_`` under ``parent``; it need not be declared yet."""
        return cls(name, pulumi.create_urn(name, type_, parent=parent))

    def aliases(self, role: str) -> list[pulumi.Alias]:
        """The aliases of the resource that was this component's ``<name>-<role>``."""
        return [pulumi.Alias(name=f"{self.name}-{role}", parent=self.urn)]


def former(parent: FormerParent | None, role: str) -> list[pulumi.Alias] | None:
    """``parent.aliases(role)``, or no alias when nothing was moved."""
    return parent.aliases(role) if parent is not None else None
