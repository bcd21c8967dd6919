"""Kerberos tickets for lab users, obtained with the password they log in with.

``kinit`` writes the user's ticket cache into a per-user folder of the hub's state;
the spawner mounts that folder into the user's container and points ``KRB5CCNAME`` at
it, so Spark and Hadoop clients there hold a ticket without a second login. The
password reaches ``kinit`` on its standard input, never on a command line.

:class:`KerberosTickets` is the one place kinit is configured: the rendered
jupyterhub_config.py sets ``c.KerberosTickets.*`` once, and both the authenticator (at
login) and the spawner (at each start, from the encrypted auth state) use it.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traitlets import Bool, CaselessStrEnum, Float, Instance, Int, Unicode, default
from traitlets.config import Configurable, LoggingConfigurable

from juvini_hub.contract import check_required, required

#: The ticket cache's file name in a user's ticket folder.
CCACHE_NAME = "krb5cc"
#: Where a user's ticket folder appears in their container.
TICKET_MOUNT = "/run/juvini/krb5"
#: Where the realm's krb5.conf appears in their container.
KRB5_CONF_MOUNT = "/etc/krb5.conf"


@dataclass(frozen=True)
class KinitResult:
    ok: bool
    message: str

    def as_state(self) -> dict[str, object]:
        return {"ok": self.ok, "message": self.message}


@dataclass(frozen=True)
class ServerTicket:
    """What a user's server gets: its ticket folder and krb5.conf mounted, and the environment."""

    volumes: dict[str, dict[str, str]]
    environment: dict[str, str]


def ccache_dir(root: str, username: str) -> Path:
    """The folder holding ``username``'s ticket cache under ``root``."""
    if "/" in username or username in ("", ".", ".."):
        raise ValueError(f"unusable username for a ticket folder: {username!r}")
    return Path(root) / username


def ensure_folder(folder: Path, uid: int, gid: int) -> Path:
    """``folder`` (0700, owned by ``uid:gid``), made if missing."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    os.chown(folder, uid, gid)
    return folder


async def kinit(
    principal: str, password: str, folder: Path, uid: int, gid: int, krb5_config: str, timeout: float
) -> KinitResult:
    """Get a TGT for ``principal`` into ``folder/krb5cc`` owned by ``uid:gid``."""
    ensure_folder(folder, uid, gid)
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


class KerberosTickets(LoggingConfigurable):
    """kinit for lab users: at login (the authenticator) and at each server start (the spawner).

    Off unless ``enabled``; when enabled, every other option but ``timeout`` comes from the
    rendered config (the stack's ``kerberos`` settings and the hub's state paths).
    """

    enabled = Bool(False, help="Get users' Kerberos tickets at login and hand them to their servers.").tag(config=True)
    realm = required(Unicode(help="Kerberos realm of the users' principals (<user>@<realm>)."))
    ccache_root = required(Unicode(help="Folder, as the hub sees it, holding one ticket folder per user."))
    ccache_host_root = required(Unicode(help="The same folder as the Docker host sees it (bind-mounted from there)."))
    krb5_conf = required(Unicode(help="The realm's krb5.conf, as the hub sees it (kinit's KRB5_CONFIG)."))
    krb5_conf_host_path = required(Unicode(help="The same krb5.conf as the Docker host sees it."))
    uid = required(Int(help="Owner of the ticket caches: the uid users' containers run as."))
    gid = required(Int(help="Group of the ticket caches."))
    on_failure = required(
        CaselessStrEnum(["warn", "refuse"], help="What a failed kinit at login does: warn (log in anyway) or refuse.")
    )
    timeout = Float(30, help="Seconds kinit may take (an unreachable KDC costs libkrb5 ~18 s).").tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.enabled:
            check_required(self)

    def folder(self, username: str) -> Path:
        """``username``'s ticket folder, as the hub sees it."""
        return ccache_dir(self.ccache_root, username)

    async def obtain(self, username: str, password: str) -> KinitResult:
        """kinit ``username@realm`` with ``password`` into the user's ticket folder."""
        return await kinit(
            f"{username}@{self.realm}",
            password,
            self.folder(username),
            self.uid,
            self.gid,
            self.krb5_conf,
            self.timeout,
        )

    async def at_login(self, username: str, password: str) -> KinitResult:
        """The ticket at login; a failure is logged as the ``on_failure`` policy has it."""
        outcome = await self.obtain(username, password)
        if not outcome.ok:
            if self.refuses(outcome):
                self.log.error("refusing login of %s: %s", username, outcome.message)
            else:
                self.log.warning("login of %s without a Kerberos ticket: %s", username, outcome.message)
        return outcome

    def refuses(self, outcome: KinitResult) -> bool:
        """Whether a login with this kinit outcome is refused."""
        return not outcome.ok and self.on_failure == "refuse"

    async def at_spawn(self, username: str, auth_state: dict[str, Any]) -> ServerTicket:
        """Renew the ticket from the encrypted auth state; what the user's server mounts and gets."""
        status = auth_state.get("kerberos") or {"ok": False, "message": "no Kerberos login recorded for this user"}
        if auth_state.get("password"):
            status = (await self.obtain(username, auth_state["password"])).as_state()
        else:
            # The folder must exist before Docker bind-mounts it, or Docker makes it as root.
            ensure_folder(self.folder(username), self.uid, self.gid)
        environment = {"KRB5CCNAME": f"FILE:{TICKET_MOUNT}/{CCACHE_NAME}"}
        if not status.get("ok"):
            self.log.warning("%s's server starts without a Kerberos ticket: %s", username, status.get("message"))
            environment["JUVINI_KERBEROS_WARNING"] = str(status.get("message"))
        volumes = {
            str(ccache_dir(self.ccache_host_root, username)): {"bind": TICKET_MOUNT, "mode": "rw"},
            self.krb5_conf_host_path: {"bind": KRB5_CONF_MOUNT, "mode": "ro"},
        }
        return ServerTicket(volumes, environment)


class WithKerberosTickets(Configurable):
    """Gives the authenticator and the spawners the one ``KerberosTickets`` the config sets up.

    Made when the object is, so an incomplete Kerberos configuration stops the hub at start.
    """

    kerberos = Instance(KerberosTickets, help="Users' Kerberos tickets, configured once as c.KerberosTickets.")

    @default("kerberos")
    def _kerberos_default(self) -> KerberosTickets:
        return KerberosTickets(parent=self)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _ = self.kerberos
