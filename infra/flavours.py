"""The notebook flavours users pick from: one table read by the settings, the image builds
and the rendered hub config.

A flavour is a notebook image built from a folder of ``images/``, ``FROM`` its parent
flavour's image (or, for the first, from the lab's foundation image).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Flavour:
    """One notebook image users may pick at spawn."""

    #: Short name: the stack's ``spawner.allowedImages`` item and the image's role.
    name: str
    #: Build context, a folder of ``images/``.
    folder: str
    #: The flavour whose image this one is built ``FROM``; ``None``: built on the foundation.
    parent: str | None
    #: What users see in the spawn form.
    display_name: str
    #: One line saying what is in it.
    description: str
    #: Its servers can run Spark drivers: only they get a Spark driver / block-manager port pair
    #: (client mode against an external cluster); the others take none.
    spark: bool

    @property
    def role(self) -> str:
        """The image's role in physical names (``juvini-dev-notebook-base:0.1.0``)."""
        return f"notebook-{self.name}"


#: Every flavour, parents before children (the order images are built in).
FLAVOURS: tuple[Flavour, ...] = (
    Flavour(
        name="base",
        folder="notebook-base",
        parent=None,
        display_name="Base: JupyterLab, Python, build tools",
        description="JupyterLab and Notebook with Python 3, a compiler and everyday command-line tools.",
        spark=False,
    ),
    Flavour(
        name="datascience",
        folder="notebook-datascience",
        parent="base",
        display_name="Data science: the Anaconda-style stack",
        description="Base plus the Anaconda-style scientific stack: NumPy, pandas, SciPy, scikit-learn, plotting.",
        spark=False,
    ),
    Flavour(
        name="pyspark",
        folder="notebook-pyspark",
        parent="datascience",
        display_name="PySpark: data science + Spark (Python 3 and PySpark kernels)",
        description="Data science plus Java 17, PySpark and a PySpark kernel with the lab's driver-memory limit.",
        spark=True,
    ),
)

BY_NAME: dict[str, Flavour] = {flavour.name: flavour for flavour in FLAVOURS}

#: Flavour names, in build order.
NAMES: tuple[str, ...] = tuple(BY_NAME)


def lineage(names: list[str] | tuple[str, ...]) -> list[Flavour]:
    """The flavours ``names`` need built (themselves and their ancestors), in build order."""
    needed: set[str] = set()
    for name in names:
        current: str | None = name
        while current is not None:
            needed.add(current)
            current = BY_NAME[current].parent
    return [flavour for flavour in FLAVOURS if flavour.name in needed]
