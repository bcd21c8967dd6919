"""Spark driver ports for users' servers.

An external Spark cluster in client mode calls back to the driver inside a user's
container, so each running server of a Spark image gets its own ``spark.driver.port`` and
``spark.blockManager.port`` from fixed host ranges, published on the host with the
same number (Spark advertises the port it binds). The running containers themselves,
through their labels, are the record of which ports are taken: a restarted hub
rebuilds its view from them and never hands out a port twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

DRIVER_PORT_LABEL = "org.juvini.spark-driver-port"
BLOCK_MANAGER_PORT_LABEL = "org.juvini.spark-block-manager-port"


class PortsExhausted(Exception):
    """Every port pair is in use by a running server."""

    def __init__(self, message: str, capacity: int) -> None:
        super().__init__(message)
        #: How many servers the ranges hold at once.
        self.capacity = capacity


@dataclass(frozen=True)
class PortRange:
    first: int
    last: int

    @classmethod
    def parse(cls, text: str) -> PortRange:
        first, _, last = text.partition("-")
        return cls(int(first), int(last))

    def __iter__(self):  # noqa: ANN204 - an iterator of ints
        return iter(range(self.first, self.last + 1))

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


@dataclass(frozen=True)
class SparkPorts:
    driver: int
    block_manager: int

    def labels(self) -> dict[str, str]:
        return {DRIVER_PORT_LABEL: str(self.driver), BLOCK_MANAGER_PORT_LABEL: str(self.block_manager)}


def ports_in_use(labels_of_running: Iterable[dict[str, str]]) -> tuple[set[int], set[int]]:
    """Driver and block-manager ports recorded on running containers' labels."""
    drivers, block_managers = set(), set()
    for labels in labels_of_running:
        if DRIVER_PORT_LABEL in labels:
            drivers.add(int(labels[DRIVER_PORT_LABEL]))
        if BLOCK_MANAGER_PORT_LABEL in labels:
            block_managers.add(int(labels[BLOCK_MANAGER_PORT_LABEL]))
    return drivers, block_managers


def allocate(
    driver_range: PortRange,
    block_manager_range: PortRange,
    labels_of_running: Iterable[dict[str, str]],
    reserved: Iterable[SparkPorts] = (),
) -> SparkPorts:
    """The lowest free driver and block-manager ports, or :class:`PortsExhausted`.

    ``reserved`` holds pairs handed out to servers that are starting but whose
    containers do not exist yet.
    """
    drivers, block_managers = ports_in_use(labels_of_running)
    for pair in reserved:
        drivers.add(pair.driver)
        block_managers.add(pair.block_manager)
    driver = next((port for port in driver_range if port not in drivers), None)
    block_manager = next((port for port in block_manager_range if port not in block_managers), None)
    if driver is None or block_manager is None:
        capacity = min(len(driver_range), len(block_manager_range))
        raise PortsExhausted(
            f"All Spark ports are in use by running servers (driver ports {driver_range}, "
            f"block manager ports {block_manager_range}: {capacity} servers at once). "
            "Stop a server you no longer need, or ask an admin, then start again.",
            capacity,
        )
    return SparkPorts(driver, block_manager)
