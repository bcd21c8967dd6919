"""Users' containers no saved server records, removed when the hub starts.

A hub killed while servers start (an out-of-memory kill, a crash) leaves the containers of
starts it never finished: created, or started and not yet answering. JupyterHub saves a
server's spawner state, which names its container (DockerSpawner's ``object_id``), only once
its start has returned; until then the database holds the server without a container. The
restarted hub would check such a server at the URL it never learnt, keep the user waiting
for ``http_timeout`` and the container holding its Spark port pair; a container that was
only created would stay behind for good. So, before the hub checks or starts any server, the
stack's users' containers that no saved state names are removed: the hub then finds those
servers gone, clears them, and their users start afresh.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import docker.errors

from juvini_hub.spark_ports import BLOCK_MANAGER_PORT_LABEL, DRIVER_PORT_LABEL

#: ``docker(method, *args, **kwargs)``: a docker-py APIClient call, awaited (DockerSpawner.docker).
DockerCall = Callable[..., Awaitable[Any]]


def recorded_containers(states: Iterable[Mapping[str, Any] | None]) -> set[str]:
    """Ids of the containers that saved spawner states name (servers whose start finished)."""
    return {state["object_id"] for state in states if state and state.get("object_id")}


def describe(container: Mapping[str, Any]) -> str:
    names = ",".join(name.lstrip("/") for name in container.get("Names") or []) or container["Id"][:12]
    labels = container.get("Labels") or {}
    spark = (
        f", Spark ports {labels[DRIVER_PORT_LABEL]}/{labels.get(BLOCK_MANAGER_PORT_LABEL, '?')}"
        if DRIVER_PORT_LABEL in labels
        else ""
    )
    return f"{names} ({container['Id'][:12]}, {container.get('State', 'unknown state')}{spark})"


async def remove_unrecorded(
    docker_call: DockerCall, labels: Mapping[str, str], recorded: set[str], log: logging.Logger
) -> list[str]:
    """Remove the containers bearing all of ``labels`` whose id is not in ``recorded``; their ids.

    ``labels`` must name the stack's users' containers: without any, nothing is removed.
    """
    if not labels:
        log.error("not looking for users' containers of unfinished starts: no labels name them")
        return []
    filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
    containers = await docker_call("containers", all=True, filters=filters)
    removed = []
    for container in containers:
        if container["Id"] in recorded:
            continue
        log.warning(
            "removing %s: no server the hub saved runs in it (a start the hub never finished)", describe(container)
        )
        try:
            await docker_call("remove_container", container["Id"], force=True, v=True)
        except docker.errors.NotFound:
            pass  # gone meanwhile (auto-removed as it stopped)
        except docker.errors.APIError as error:
            if error.status_code != 409:  # 409: its removal is already under way
                raise
        removed.append(container["Id"])
    log.info(
        "users' containers at hub start: %d kept (saved servers), %d removed",
        len(containers) - len(removed),
        len(removed),
    )
    return removed
