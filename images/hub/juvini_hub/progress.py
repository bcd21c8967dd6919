"""What users see while their server starts: the steps of one start as JupyterHub progress events.

JupyterHub shows a spawner's ``progress()`` events on the spawn page and streams them at
``/hub/api/users/<name>/server/progress``; it adds the first ("Server requested") and the
last (ready, or failed with the exception ``start()`` raised) itself. A start records its
steps in a :class:`SpawnProgress` as it goes; any number of readers follow it, each from
the first step, until the start is over.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from tornado import web


class SpawnProgress:
    """The steps of one server start, in order, for readers that may join at any time."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.done = False
        self._changed = asyncio.Event()

    def step(self, progress: int, message: str) -> None:
        """A step done, ``progress`` out of 100."""
        self._add({"progress": progress, "message": message})

    def warn(self, progress: int, message: str) -> None:
        """A step done with less than the user asked for: the server starts, and says what is missing."""
        self._add({"progress": progress, "message": f"Warning: {message}"})

    def finish(self) -> None:
        """The start is over (up or failed): readers stop after the last step."""
        self.done = True
        self._wake()

    def _add(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self._wake()

    def _wake(self) -> None:
        # Every reader waits on the event of its moment; a fresh one serves the next change.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def follow(self) -> AsyncIterator[dict[str, Any]]:
        """Every step from the first, then each new one as it comes, until the start is over."""
        seen = 0
        while True:
            changed = self._changed
            while seen < len(self.events):
                yield dict(self.events[seen])
                seen += 1
            if self.done:
                return
            await changed.wait()


class UserFacingError(web.HTTPError):
    """A failed start whose message is what the user reads: on the spawn page, in the progress
    stream's failure event ("Spawn failed: <message>") and in the REST API's answer."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        # A literal log message: tornado formats log_message with its (empty) args.
        super().__init__(status, message.replace("%", "%%"), reason=reason)
        #: What JupyterHub shows instead of the exception's str() (jupyterhub.utils.format_exception).
        self.jupyterhub_message = message
