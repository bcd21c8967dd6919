"""Kerberos tickets for lab users, obtained with the password they log in with.

``kinit`` writes the user's ticket cache into a per-user folder of the hub's state;
the spawner mounts that folder into the user's container and points ``KRB5CCNAME`` at
it, so Spark and Hadoop clients there hold a ticket without a second login. The
password reaches ``kinit`` on its standard input, never on a command line.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

CCACHE_NAME = "krb5cc"


@dataclass(frozen=True)
class KinitResult:
    ok: bool
    message: str

    def as_state(self) -> dict[str, object]:
        return {"ok": self.ok, "message": self.message}


def ccache_dir(root: str, username: str) -> Path:
    """The folder holding ``username``'s ticket cache under ``root``."""
    if "/" in username or username in ("", ".", ".."):
        raise ValueError(f"unusable username for a ticket folder: {username!r}")
    return Path(root) / username


async def kinit(
    principal: str,
    password: str,
    folder: Path,
    uid: int,
    gid: int,
    krb5_config: str,
    timeout: float = 20,
) -> KinitResult:
    """Get a TGT for ``principal`` into ``folder/krb5cc`` owned by ``uid:gid``."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    os.chown(folder, uid, gid)
    target = folder / CCACHE_NAME
    pending = folder / f".{CCACHE_NAME}.new"
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KRB5_CONFIG": krb5_config}
    try:
        process = await asyncio.create_subprocess_exec(
            "kinit",
            "-c",
            f"FILE:{pending}",
            principal,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment,
        )
    except FileNotFoundError:
        return KinitResult(False, "kinit is not installed in the hub image")
    try:
        _, stderr = await asyncio.wait_for(process.communicate(password.encode() + b"\n"), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        pending.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        return KinitResult(False, f"kinit for {principal} timed out after {timeout:.0f} s (is the KDC reachable?)")
    if process.returncode != 0:
        pending.unlink(missing_ok=True)
        # No stale ticket from an earlier login: the server starts without one, as the
        # warning then says.
        target.unlink(missing_ok=True)
        # kinit's own message names the cause (unknown principal, KDC unreachable, ...);
        # it never contains the password.
        reason = stderr.decode(errors="replace").strip().splitlines()
        return KinitResult(False, f"kinit for {principal} failed: {reason[-1] if reason else process.returncode}")
    os.chown(pending, uid, gid)
    pending.chmod(0o600)
    pending.replace(target)
    return KinitResult(True, f"ticket for {principal} in {target}")
