#!/usr/bin/env python3
"""``juvini-singleuser``, the lab's server command: ``jupyterhub-singleuser`` with less CPU.

A server start is CPU-bound when a class logs in together (images/README.md, "Server start"),
and so is a stop when the whole class leaves. This runs the same ``jupyterhub.singleuser.main``
as the ``jupyterhub-singleuser`` command, with the same arguments and configuration, and cuts
two costs that buy a single-user server nothing:

- **The hub's own code at import.** ``jupyterhub.log`` imports ``HealthCheckHandler`` from
  the hub's request handlers, which import the hub's whole web application, and
  ``jupyterhub.scopes`` imports the hub's database model (``jupyterhub.orm``: SQLAlchemy's ORM
  and Alembic). A single-user server uses neither: about a third of its start-up CPU. While
  ``jupyterhub.singleuser`` is imported, ``jupyterhub.handlers.pages`` is a stand-in whose
  ``HealthCheckHandler`` nothing instantiates (``log_request`` only asks whether a request
  went to one: in a single-user server it never does, so its answers are the same), and
  ``jupyterhub.orm`` is loaded lazily, on its first use (importlib's ``LazyLoader``), so code
  that does use it still gets the real module. Afterwards both are back to normal: any later
  import of the hub's handlers loads the real ones.
- **The interpreter's teardown at exit.** When the server has stopped (its kernels and
  terminals shut down, its files removed: all of that happens before ``main`` returns), the
  exit handlers run (logging is flushed), then the process ends with ``os._exit``: freeing
  every loaded module one by one costs about 0.2 s of CPU per server and keeps nothing safe.
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from types import ModuleType

#: The hub's module that ``jupyterhub.log`` imports ``HealthCheckHandler`` from.
HUB_PAGES_MODULE = "jupyterhub.handlers.pages"
#: The hub's database model, loaded on first use instead of at import.
LAZY_MODULES = frozenset({"jupyterhub.orm"})


class _LazyModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the modules in ``names`` as usual, then defers running them to their first use."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


@contextmanager
def _hub_application_left_out() -> Iterator[None]:
    """While the ``with`` runs: the hub's pages are a stand-in and its ORM loads on first use."""
    pages = ModuleType(HUB_PAGES_MODULE, "Stand-in for the hub's pages while a single-user server imports.")
    pages.HealthCheckHandler = type(  # type: ignore[attr-defined]
        "HealthCheckHandler", (), {"__doc__": "The hub's health check; a single-user server never serves it."}
    )
    finder = _LazyModuleFinder(LAZY_MODULES)
    installed_pages = sys.modules.setdefault(HUB_PAGES_MODULE, pages) is pages
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        if installed_pages and sys.modules.get(HUB_PAGES_MODULE) is pages:
            del sys.modules[HUB_PAGES_MODULE]


def _exit_status(code: object) -> int:
    """The process status ``SystemExit(code)`` stands for, as the interpreter would compute it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def main() -> None:
    with _hub_application_left_out():
        from jupyterhub.singleuser import main as singleuser_main
    try:
        singleuser_main()
        status = 0
    except SystemExit as exit_:
        status = _exit_status(exit_.code)
    atexit._run_exitfuncs()  # what the interpreter's exit would run first
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
