"""The options jupyterhub_config.py must set.

The lab's facts (its uid/gid, the hub's state paths, Kerberos, shares, Spark ports) have
one source: the stack's settings, which infra/hub_config.py renders into
jupyterhub_config.py. The classes here keep no default of their own for them: such an
option is declared with :func:`required`, and :func:`check_required` (called when the
object is made, i.e. when the hub starts or a server is spawned) refuses to go on with
one unset, naming each missing ``c.<Class>.<option>`` line, instead of running with a
guessed value.
"""

from __future__ import annotations

from typing import TypeVar

from traitlets import HasTraits, TraitError, TraitType

Trait = TypeVar("Trait", bound=TraitType)


class MissingConfig(TraitError):
    """jupyterhub_config.py does not set options the lab cannot run without."""


def required(trait: Trait) -> Trait:
    """``trait`` as an option jupyterhub_config.py must set: no default (None until set)."""
    trait.default_value = None
    trait.allow_none = True
    return trait.tag(config=True, required=True)


def check_required(configured: HasTraits) -> None:
    """Raise :class:`MissingConfig` naming every required option of ``configured`` left unset."""
    missing = [
        f"c.{_declared_by(type(configured), name)}.{name}"
        for name in sorted(configured.trait_names(required=True))
        if getattr(configured, name) is None
    ]
    if missing:
        raise MissingConfig(
            f"jupyterhub_config.py does not set {', '.join(missing)}; "
            "it is rendered from the stack's settings (infra/hub_config.py): run `pulumi up`"
        )


def _declared_by(cls: type, name: str) -> str:
    """The class whose ``c.<Class>.<name>`` section the rendered config sets."""
    return next(klass.__name__ for klass in cls.mro() if name in vars(klass))
