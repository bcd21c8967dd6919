"""Docker API calls of all users' spawners, several at once.

DockerSpawner runs every Docker call of every user on one shared thread
(``DockerSpawner.executor`` is a class-wide ``ThreadPoolExecutor(1)``), so one user's
create, start, stop or remove waits for everybody else's: stopping 20 servers takes 20
times one stop. The lab's spawners run them on a bounded pool instead.

docker-py's ``APIClient`` is a ``requests.Session``, which is not safe to share between
threads (docker/docker-py#3229, psf/requests#2766), and DockerSpawner shares one client
class-wide: here each thread of the pool, and the hub's event-loop thread (DockerSpawner
builds its host config there), gets a client of its own. The engine's API version is asked
once; clients made later are told it, so making one costs no round trip.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: Makes a client for the engine: given the API version when it is known, else None ("auto").
ClientFactory = Callable[[str | None], Any]


class DockerCalls:
    """A bounded pool of threads for Docker calls, and one docker-py client per thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._clients = threading.local()
        self.api_version: str | None = None

    def executor(self, threads: int) -> ThreadPoolExecutor:
        """The pool, made with ``threads`` threads the first time it is asked for."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="juvini-docker")
            return self._pool

    def client(self, make: ClientFactory) -> Any:
        """The calling thread's own client, made by ``make`` on first use."""
        client = getattr(self._clients, "client", None)
        if client is None:
            client = make(self.api_version)
            self.api_version = self.api_version or client.api_version
            self._clients.client = client
        return client

    def shutdown(self) -> None:
        """Wait for the calls under way and stop the threads (tests; the hub keeps its pool)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._clients = threading.local()
