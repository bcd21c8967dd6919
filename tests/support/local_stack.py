"""This machine as a stack's Docker host, as the integration, e2e and benchmark labs use it.

tests/setup.sh makes the dev SSH key and authorizes it for root@127.0.0.1, so host commands reach
this machine over SSH as they would a remote host; each lab keeps its folders under its own root.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

#: The dev SSH key tests/setup.sh makes (infra/bootstrap/dev-host.sh), authorized for root@127.0.0.1.
SSH_KEY = Path.home() / ".ssh" / "juvini_dev_ed25519"


def local_host() -> dict[str, Any]:
    """The stack's ``host`` section: this machine, as root over SSH with the dev key."""
    return {"address": "127.0.0.1", "sshUser": "root", "sshPrivateKeyFile": str(SSH_KEY)}


def lab_paths(root: Path, **folders: Path) -> dict[str, str]:
    """The stack's ``paths`` section: the lab's four folders under ``root``; ``folders`` (key -> path)
    adds others or moves one of the four."""
    paths = {
        "sharedDir": root / "shared",
        "tlsDir": root / "ssl",
        "usersDir": root / "users",
        "hubStateDir": root / "hub",
    } | folders
    return {key: str(path) for key, path in paths.items()}


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now (for a lab's hub.httpsPort)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
