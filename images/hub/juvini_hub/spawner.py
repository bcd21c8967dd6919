"""The lab's spawners: DockerSpawner (one host) and SwarmSpawner (scale-out) with what the
lab adds before a user's server starts:

- the profile the user picked (``juvini_hub.profiles``): its image, limits, environment and GPUs,
  refused with 403 when it is not for them; the shared folders of the user's groups;
- the user's persistent folder, created owned by the lab uid/gid (it becomes their home);
- with Kerberos, the user's ticket renewed and mounted (``juvini_hub.kerberos``);
- on a single Docker host, the user's own Windows shares and, for a server of a Spark image,
  a Spark driver / block-manager port pair published on the host, so an external cluster
  can reach the driver in client mode (when none is free: local Spark only, with a warning,
  unless the stack requires a pair);

and around it:

- each step as a progress event the spawn page shows (``juvini_hub.progress``), and a
  failure message written for the user;
- ``start()`` returns once the server answers (polled finely), so the hub's first check
  finds it up instead of backing off for seconds;
- Docker calls of different users run at once on a bounded pool of threads, each with its
  own docker-py client (``juvini_hub.docker_calls``), not on DockerSpawner's single thread.

Every fact about the lab comes from the rendered jupyterhub_config.py: the options
declared with :func:`juvini_hub.contract.required` have no default here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import docker.tls
from docker.errors import APIError
from docker.utils import kwargs_from_env
from dockerspawner import DockerSpawner, SwarmSpawner
from jupyterhub import orm
from jupyterhub.utils import url_path_join
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Bool, Dict, Float, Int, List, TraitError, Unicode, default, validate

from juvini_hub.contract import check_required, required
from juvini_hub.docker_calls import DockerCalls
from juvini_hub.kerberos import WithKerberosTickets
from juvini_hub.profiles import Profile, ProfileRefused, choose, open_profiles, options_form, options_from_form
from juvini_hub.progress import SpawnProgress, UserFacingError
from juvini_hub.reconcile import recorded_containers, remove_unrecorded
from juvini_hub.spark_ports import DRIVER_PORT_LABEL, PortRange, PortsExhausted, SparkPorts, allocate

# Pairs handed out to servers whose containers are being created: the hub is one
# process, so a module-level lock and table serialise allocation across spawners.
_ALLOCATION_LOCK = asyncio.Lock()
_RESERVED: dict[str, SparkPorts] = {}

# The Docker threads and their clients, shared by every spawner of the hub.
_DOCKER_CALLS = DockerCalls()

# Swarm nodes' hostnames by id (a node keeps its id for as long as it is in the swarm).
_NODE_NAMES: dict[str, str] = {}

# The removal of users' containers no saved server records (juvini_hub.reconcile): once per
# hub process, awaited by every check and start of a server on a single Docker host.
_SWEEP: asyncio.Task[None] | None = None

#: Progress (out of 100) of each step of a start; JupyterHub sends 0 (requested) and 100 (ready).
PROFILE_STEP = 5
FOLDER_STEP = 10
KERBEROS_STEP = 20
SHARES_STEP = 30
SPARK_STEP = 40
CREATED_STEP = 60
SCHEDULED_STEP = 62
PULLING_STEP = 65
STARTED_STEP = 70
ANSWERING_STEP = 90

#: Swarm task states: the task is on its way or runs; it will never run; its end was asked for.
TASK_ALIVE_STATES = frozenset({"new", "pending", "assigned", "accepted", "ready", "preparing", "starting", "running"})
TASK_FAILED_STATES = frozenset({"failed", "rejected", "complete", "shutdown", "orphaned", "remove"})
TASK_ENDED_STATES = frozenset({"shutdown", "remove", "complete"})

#: Seconds of Spawner.start_timeout kept back when start() waits for the server to answer.
START_TIMEOUT_MARGIN = 1.0
#: While waiting for the server to answer, how often to ask Docker whether it still runs.
EXITED_CHECK_INTERVAL = 1.0
#: Lines of a failed server's output copied into the hub's log (the container is removed after).
FAILED_SERVER_LOG_LINES = 40

#: Tells the PySpark kernel (images/notebook-pyspark/juvini-pyspark-kernel) and the user why
#: their server has no Spark port pair.
SPARK_WARNING_VARIABLE = "JUVINI_SPARK_WARNING"
#: Variables a start sets from what it found, not from the config: the next start of the same
#: spawner (JupyterHub keeps it for the user's every start) sets them afresh.
PER_START_VARIABLES = frozenset(
    {
        "JUVINI_KERBEROS_WARNING",
        "JUVINI_CIFS_WARNING",
        SPARK_WARNING_VARIABLE,
        "SPARK_DRIVER_PORT",
        "SPARK_BLOCKMANAGER_PORT",
        "SPARK_DRIVER_HOST",
    }
)


def _apply_profile(spawner: JuviniSpawnerMixin, user_options: dict[str, Any]) -> None:
    """JupyterHub's apply_user_options hook: runs before each start, from the form or the REST API."""
    spawner.apply_profile(user_options)


def _options_form(spawner: JuviniSpawnerMixin) -> str:
    return options_form(spawner.open_profiles(), spawner.user_options.get("profile"))


def gpu_refused(error: APIError) -> bool:
    """Whether Docker refused a container's device request (no GPU runtime for capability gpu)."""
    text = str(error.explanation or error).lower()
    return "device driver" in text or "capabilities: [[gpu]]" in text


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``extra`` merged into a copy of ``base`` (config values are never mutated)."""
    result = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result


async def answers(client: AsyncHTTPClient, url: str, timeout: float) -> bool:
    """Whether the server at ``url`` answers as the hub's check wants it to (any status below 500)."""
    try:
        await client.fetch(url, follow_redirects=False, connect_timeout=timeout, request_timeout=timeout)
    except HTTPClientError as error:
        # 599: no answer (refused, reset, timed out); 5xx: something answers for a server not up yet.
        return error.code < 500
    except Exception:  # refused, reset, unreachable: not up yet, as the hub's own check has it
        return False
    return True


class JuviniSpawnerMixin(WithKerberosTickets):
    """What every lab spawner does around DockerSpawner's or SwarmSpawner's start."""

    if TYPE_CHECKING:
        # What the spawners the mixin is mixed into have (jupyterhub.spawner.Spawner, DockerSpawner).
        user: Any
        server: Any
        name: str
        log: logging.Logger
        volumes: dict[str, Any]
        environment: dict[str, str]
        extra_create_kwargs: dict[str, Any]
        extra_host_config: dict[str, Any]
        http_timeout: int
        start_timeout: int
        internal_ssl: bool
        object_type: str
        object_name: str
        object_id: str
        image: str
        cpu_limit: float | None
        mem_limit: int | None
        user_options: dict[str, Any]
        tls_config: dict[str, Any]
        client_kwargs: dict[str, Any]

        def format_volume_name(self, template: str, spawner: Any) -> str: ...

        async def poll(self) -> Any: ...

        async def docker(self, method: str, *args: Any, **kwargs: Any) -> Any: ...

    user_folder = required(
        Unicode(
            help="Host path of a user's persistent folder, with {username} (the hub sees it at the same path); "
            "the same path DockerSpawner.volumes mounts as their home."
        )
    )
    lab_uid = required(Int(help="uid owning users' folders; containers run as it."))
    lab_gid = required(Int(help="gid owning users' folders."))
    docker_threads = Int(
        16,
        min=1,
        help="Docker API calls (all users' creates, starts, stops, removes) that may run at once; "
        "DockerSpawner alone runs them one at a time. Read when the first call is made.",
    ).tag(config=True)
    answer_poll_interval = Float(
        0.1,
        min=0.01,
        help="Seconds between two checks whether a started server answers; start() returns at the first "
        "answer, within Spawner.http_timeout.",
    ).tag(config=True)

    profiles = required(
        List(
            Dict(),
            help="Profiles users pick at spawn, in order (juvini_hub.profiles.Profile.from_config): slug, "
            "display_name, description, image, image_name, cpu_limit, mem_limit (bytes), environment, gpu, "
            "groups, users.",
        )
    )
    group_folders = required(
        List(
            Dict(),
            help="Shared folders of hub groups: dicts of group, path (on the host) and bind (in the server); "
            "each is mounted only into the servers of the group's members.",
        )
    )

    #: The profile of the start under way (or the last one); None until a profile applies.
    profile: Profile | None = None
    _progress: SpawnProgress | None = None
    # When the start under way began: JupyterHub gives start() start_timeout seconds from then.
    _start_began = 0.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_required(self)
        # What the config sets, which each start's profile goes over afresh.
        self._configured: dict[str, Any] = {
            name: getattr(self, name) for name in ("environment", "volumes", "extra_host_config")
        }

    # --- profiles --------------------------------------------------------------------------

    @default("options_form")
    def _profiles_form(self) -> Any:
        return _options_form

    @default("options_from_form")
    def _profile_from_form(self) -> Any:
        return options_from_form

    @default("apply_user_options")
    def _apply_profile_default(self) -> Any:
        return _apply_profile

    def profile_table(self) -> list[Profile]:
        return [Profile.from_config(item) for item in self.profiles]

    def user_groups(self) -> list[str]:
        """The hub groups the user is a member of (from the directory at login, or an admin's)."""
        return sorted(group.name for group in getattr(self.user, "groups", None) or [])

    def open_profiles(self) -> list[Profile]:
        return open_profiles(self.profile_table(), self.user.name, self.user_groups())

    def apply_profile(self, user_options: dict[str, Any]) -> Profile:
        """Give this start the profile the user chose (or their default), with their groups' folders."""
        groups = self.user_groups()
        try:
            chosen = choose(self.profile_table(), self.user.name, groups, user_options, self.image_choices())
        except ProfileRefused as refused:
            self.log.warning("refusing %s's start: %s", self.user.name, refused.message)
            reason = "Profile not allowed" if refused.status == 403 else "Unknown profile"
            raise UserFacingError(refused.status, refused.message, reason=reason) from None
        self.profile = chosen
        self.image = chosen.image
        self.cpu_limit = chosen.cpu_limit
        self.mem_limit = chosen.mem_limit
        self.environment = {**self._configured["environment"], **chosen.environment}
        folders = {
            folder["path"]: {"bind": folder["bind"], "mode": "rw"}
            for folder in self.group_folders
            if folder["group"] in groups
        }
        self.volumes = {**self._configured["volumes"], **folders}
        host_config = self._configured["extra_host_config"]
        if chosen.gpu is not None:
            host_config = _merged(host_config, {"device_requests": [chosen.gpu.device_request()]})
        self.extra_host_config = host_config
        self.log.info("%s starts with profile %s (%s)", self.user.name, chosen.slug, chosen.resources())
        return chosen

    def image_choices(self) -> dict[str, str]:
        """Display name -> image: what ``{"image": ...}`` may name (DockerSpawner.allowed_images)."""
        allowed = getattr(self, "allowed_images", None)
        return dict(allowed) if isinstance(allowed, dict) else {}

    # --- Docker calls: a bounded pool, one client per thread ---------------------------------

    @property
    def executor(self) -> Any:
        """The pool DockerSpawner.docker() submits calls to (instead of its single thread)."""
        return _DOCKER_CALLS.executor(self.docker_threads)

    @property
    def client(self) -> Any:
        """The calling thread's own docker-py client (DockerSpawner shares one between threads)."""
        return _DOCKER_CALLS.client(self.new_docker_client)

    def new_docker_client(self, api_version: str | None) -> Any:
        """A client made as DockerSpawner.client makes its one, told the API version when known."""
        kwargs: dict[str, Any] = {"version": api_version or "auto"}
        if self.tls_config:
            kwargs["tls"] = docker.tls.TLSConfig(**self.tls_config)
        kwargs.update(kwargs_from_env())
        kwargs.update(self.client_kwargs)
        return docker.APIClient(**kwargs)

    # --- progress --------------------------------------------------------------------------

    def spawn_progress(self) -> SpawnProgress:
        """The record of the start under way (or about to begin: the spawn page may ask first)."""
        if self._progress is None:
            self._progress = SpawnProgress()
        return self._progress

    async def progress(self) -> Any:
        """JupyterHub's progress API: each step of the start, as it happens."""
        async for event in self.spawn_progress().follow():
            yield event

    # --- the start -------------------------------------------------------------------------

    async def start(self) -> Any:
        self._start_began = time.monotonic()
        if self._progress is not None and self._progress.done:
            self._progress = None  # the last start's steps
        progress = self.spawn_progress()
        try:
            if self.profile is not None:
                progress.step(PROFILE_STEP, f"Profile: {self.profile.display_name} ({self.profile.resources()})")
            self.forget_last_start()
            self.ensure_user_folder()
            progress.step(FOLDER_STEP, "Your persistent home folder is ready")
            await self.prepare_kerberos()
            ip, port = await self.start_server()
            await self.wait_until_answering(ip, port)
            return ip, port
        finally:
            progress.finish()

    async def start_server(self) -> tuple[str, int]:
        """What the lab adds just before the container, then DockerSpawner's (or SwarmSpawner's) start."""
        ip, port = await super().start()  # type: ignore[misc]
        return ip, port

    def forget_last_start(self) -> None:
        """Drop what the user's last start found (warnings, its Spark pair): this one finds its own."""
        self.environment = {name: value for name, value in self.environment.items() if name not in PER_START_VARIABLES}

    async def stop(self, now: bool = False) -> None:
        self._progress = None
        await super().stop(now=now)  # type: ignore[misc]

    async def prepare_kerberos(self) -> None:
        """Renew the user's ticket from the encrypted auth state and hand it to the container."""
        progress = self.spawn_progress()
        if not self.kerberos.enabled:
            progress.step(KERBEROS_STEP, "No Kerberos ticket: this lab does not use Kerberos")
            return
        ticket = await self.kerberos.at_spawn(self.user.name, await self.user.get_auth_state() or {})
        self.volumes = {**self.volumes, **ticket.volumes}
        self.environment = {**self.environment, **ticket.environment}
        warning = ticket.environment.get("JUVINI_KERBEROS_WARNING")
        if warning:
            progress.warn(KERBEROS_STEP, f"no Kerberos ticket, services that need one will refuse you: {warning}")
        else:
            progress.step(KERBEROS_STEP, "Kerberos ticket ready")

    def ensure_user_folder(self) -> Path:
        """Create the user's persistent folder if it does not exist yet."""
        if self.user.name.startswith("."):
            # Names starting with a dot are the lab's own folders beside users' ones (under Swarm,
            # everyone's Kerberos tickets): never a user's home.
            raise UserFacingError(
                403,
                f"The username {self.user.name!r} starts with a dot, which this lab does not allow.",
                reason="Username not allowed",
            )
        folder = Path(self.format_volume_name(self.user_folder, self))
        if not folder.exists():
            folder.mkdir()
            folder.chmod(0o750)  # whatever the hub's umask
            os.chown(folder, self.lab_uid, self.lab_gid)
            self.log.info("created persistent folder %s for %s", folder, self.user.name)
        return folder

    async def pull_image(self, image: str) -> None:
        try:
            await super().pull_image(image)  # type: ignore[misc]
        except docker.errors.NotFound:
            raise UserFacingError(
                500,
                f"The image {image} is not on the Docker host, so your server cannot start. "
                "Ask an admin to run pulumi up, which builds the lab's images.",
                reason="Image missing",
            ) from None

    async def create_object(self) -> Any:
        try:
            created = await super().create_object()  # type: ignore[misc]
        except docker.errors.APIError as error:
            self._gpu_unavailable(error)
            raise
        self.spawn_progress().step(CREATED_STEP, f"{self.object_type.title()} created from {self.image}")
        return created

    async def start_object(self) -> None:
        try:
            await super().start_object()  # type: ignore[misc]
        except docker.errors.APIError as error:
            self._gpu_unavailable(error)
            raise
        self.spawn_progress().step(STARTED_STEP, "Server starting: waiting for JupyterLab to answer")

    def _gpu_unavailable(self, error: APIError) -> None:
        """A GPU profile on a host whose Docker has no GPU runtime: say so, at once."""
        if self.profile is None or self.profile.gpu is None or not gpu_refused(error):
            return
        explanation = error.explanation or str(error)
        self.log.error(
            "%s's server of profile %s asks for %s; Docker refused it: %s",
            self.user.name,
            self.profile.slug,
            self.profile.gpu.describe(),
            explanation,
        )
        raise UserFacingError(
            503,
            f"The profile {self.profile.display_name} asks for {self.profile.gpu.describe()}, but the Docker host "
            f"cannot hand out GPUs (Docker: {explanation}). Pick another profile, or ask an admin to install the "
            "host's GPU runtime (e.g. the NVIDIA Container Toolkit).",
            reason="GPU unavailable",
        ) from None

    def answer_url(self, ip: str, port: int) -> str:
        """The URL the hub checks once start() returns (jupyterhub.user.User._wait_up)."""
        host = f"[{ip}]" if ":" in ip else ip
        base_url = self.server.base_url if self.server is not None else url_path_join(self.user.url, self.name, "/")
        return url_path_join(f"http://{host}:{int(port)}", base_url, "api")

    async def wait_until_answering(self, ip: str, port: int) -> None:
        """Return as soon as the started server answers; fail with the reason after http_timeout.

        JupyterHub gives start() start_timeout seconds in all: when they are nearly spent first,
        start() returns and leaves the rest of the wait to the hub's own check (http_timeout
        more), as without this wait.
        """
        if self.internal_ssl:
            return  # the hub checks with its internal TLS credentials; leave it to that check
        url = self.answer_url(ip, port)
        started = time.monotonic()
        deadline = started + self.http_timeout
        hand_over = self._start_began + self.start_timeout - START_TIMEOUT_MARGIN
        # Its own client: the hub's shared one (proxy API calls) keeps its connection slots.
        client = AsyncHTTPClient(force_instance=True)
        next_exit_check = started + EXITED_CHECK_INTERVAL
        try:
            while True:
                remaining = min(deadline, hand_over) - time.monotonic()
                if await answers(client, url, timeout=max(min(remaining, 10.0), 0.1)):
                    waited = time.monotonic() - started
                    self.log.info("%s's server answers at %s after %.2f s", self.user.name, url, waited)
                    self.spawn_progress().step(ANSWERING_STEP, f"Server answering after {waited:.1f} s")
                    return
                if time.monotonic() >= next_exit_check:
                    # A server that crashed will never answer: say so now, not after http_timeout.
                    status = await self.poll()
                    if status is not None:
                        await self.log_server_output(f"stopped while starting ({status})")
                        raise UserFacingError(
                            500,
                            "Your server stopped while starting. Try again; if it happens again, ask an "
                            "admin: the hub's log holds the server's last lines.",
                            reason="Server stopped while starting",
                        )
                    next_exit_check = time.monotonic() + EXITED_CHECK_INTERVAL
                remaining = min(deadline, hand_over) - time.monotonic()
                if remaining <= 0:
                    break
                await asyncio.sleep(min(self.answer_poll_interval, remaining))
        finally:
            client.close()
        if hand_over < deadline:
            self.log.info("%s's server is not answering yet at %s: the hub's check takes over", self.user.name, url)
            return
        await self.log_server_output(f"did not answer at {url} within {self.http_timeout} s")
        raise UserFacingError(
            504,
            f"Your server started but did not answer within {self.http_timeout} seconds, so it is stopped. "
            "Try again; if it happens again, ask an admin: the hub's log holds the server's last lines.",
            reason="Server not answering",
        )

    async def log_server_output(self, what: str) -> None:
        """Copy the failed server's last lines into the hub's log: the hub removes it after a failed start."""
        try:
            output = await self.server_output(FAILED_SERVER_LOG_LINES)
        except Exception as error:  # the log is a courtesy; the failure itself must still be reported
            output = f"(its output could not be read: {error})"
        self.log.warning(
            "%s's server (%s %s) %s; its last lines:\n%s",
            self.user.name,
            self.object_type,
            self.object_name,
            what,
            output,
        )

    async def server_output(self, lines: int) -> str:
        """The server's last ``lines`` lines of output (Docker's log of its container or service)."""
        method = "service_logs" if self.object_type == "service" else "logs"
        raw = await self.docker(method, self.object_id, stdout=True, stderr=True, tail=lines)
        if isinstance(raw, bytes):
            return raw.decode(errors="replace")
        return b"".join(raw).decode(errors="replace")


class JuviniDockerSpawner(JuviniSpawnerMixin, DockerSpawner):
    """DockerSpawner for one Docker host, with the lab's folders, shares and Spark ports."""

    spark_images = required(
        List(
            Unicode(),
            help="Images whose servers can run Spark drivers (infra/flavours.py): only their servers take a "
            "Spark driver / block-manager port pair.",
        )
    )
    spark_require_ports = required(
        Bool(
            help="Refuse to start a Spark image's server when no port pair is free (503); otherwise it starts "
            "for local Spark only, with JUVINI_SPARK_WARNING saying why."
        )
    )
    spark_driver_ports = required(Unicode(help="first-last range of spark.driver.port values."))
    spark_block_manager_ports = required(Unicode(help="first-last range of spark.blockManager.port values."))
    spark_driver_host = required(Unicode(help="Address external clusters use to reach drivers (spark.driver.host)."))
    spark_publish_ip = required(Unicode(help="Host address Spark ports are published on."))
    cifs_user_shares = required(
        List(
            Dict(),
            help="Windows shares mounted with the user's own login: dicts of name, device (//server/share), "
            "options (mount options, the login as {username} and {password}), bind (path in the container) "
            "and mode (ro or rw).",
        )
    )
    user_share_labels = required(Dict(help="Labels of the per-user share volumes the hub makes at spawn."))

    spark_ports: SparkPorts | None = None
    # The container options as they were before the last start published its pair.
    _before_publish: tuple[dict[str, Any], dict[str, Any]] | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # The labels the config gives users' containers (the stack's): they name the ones to sweep.
        self._server_labels: dict[str, str] = dict(self.extra_create_kwargs.get("labels") or {})

    @validate("spark_driver_ports", "spark_block_manager_ports")
    def _port_range(self, proposal: dict[str, Any]) -> str:
        try:
            PortRange.parse(proposal["value"])
        except ValueError:
            raise TraitError(f"{proposal['trait'].name} must be first-last, not {proposal['value']!r}") from None
        return proposal["value"]

    async def prepare_user_shares(self) -> None:
        """Make this user's CIFS volumes from the password in the encrypted auth state."""
        progress = self.spawn_progress()
        if not self.cifs_user_shares:
            progress.step(SHARES_STEP, "No Windows shares to mount with your own login in this lab")
            return
        names = ", ".join(share["name"] for share in self.cifs_user_shares)
        auth_state = await self.user.get_auth_state() or {}
        password = auth_state.get("password")
        if not password:
            self._without_shares(f"no password in the auth state (log out and in again) for shares {names}")
            return
        if "," in self.user.name:
            self._without_shares(
                f"the username {self.user.name!r} holds a comma, which CIFS mount options cannot carry"
            )
            return
        # The kernel reads ",," inside a password as one comma (infra/shares.py escapes team shares' alike);
        # a single comma would end the password and pass the rest as mount options.
        login = {"username": self.user.name, "password": password.replace(",", ",,")}
        volumes = {}
        for share in self.cifs_user_shares:
            name = self.user_share_volume(share["name"])
            # Built by infra/shares.py as a team share's are; only the login is the user's.
            options = [option.format_map(login) for option in share["options"]]
            # A volume left by a server that did not stop cleanly may hold an old password.
            with contextlib.suppress(docker.errors.NotFound):
                await self.docker("remove_volume", name)
            await self.docker(
                "create_volume",
                name=name,
                driver="local",
                driver_opts={"type": "cifs", "device": share["device"], "o": ",".join(options)},
                labels=dict(self.user_share_labels),
            )
            volumes[name] = {"bind": share["bind"], "mode": share["mode"]}
        self.volumes = {**self.volumes, **volumes}
        progress.step(SHARES_STEP, f"Windows shares ready, mounted with your login: {names}")

    def _without_shares(self, message: str) -> None:
        self.log.warning("%s's server starts without its Windows shares: %s", self.user.name, message)
        self.environment = {**self.environment, "JUVINI_CIFS_WARNING": message}
        self.spawn_progress().warn(SHARES_STEP, f"your Windows shares are not mounted: {message}")

    def user_share_volume(self, share: str) -> str:
        return f"{self.container_name}-cifs-{share}"

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        for share in self.cifs_user_shares:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                await self.docker("remove_volume", self.user_share_volume(share["name"]))

    # --- after a hub crash: containers of starts the hub never finished --------------------

    async def poll(self) -> Any:
        await self.after_start_up_sweep()  # the restarted hub checks its servers with poll first
        return await super().poll()

    async def after_start_up_sweep(self) -> None:
        """Wait for this hub process's one sweep of users' containers, starting it if none did."""
        global _SWEEP
        if _SWEEP is None:
            _SWEEP = asyncio.ensure_future(self.sweep_unrecorded())
        await asyncio.shield(_SWEEP)

    async def sweep_unrecorded(self) -> None:
        """Remove the stack's users' containers no saved spawner state names (juvini_hub.reconcile)."""
        try:
            recorded = recorded_containers(self.saved_states())
            await remove_unrecorded(self.docker, self._server_labels, recorded, self.log)
        except Exception:  # the hub must still start; a user's next start replaces their own leftover
            self.log.exception("could not remove users' containers of unfinished starts")

    def saved_states(self) -> list[dict[str, Any] | None]:
        """The spawner state the hub's database holds for every server of every user."""
        return [saved.state for saved in self.user.db.query(orm.Spawner)]

    async def start_server(self) -> tuple[str, int]:
        await self.after_start_up_sweep()  # no container of this start exists before the sweep lists
        await self.prepare_user_shares()
        self.spark_ports = await self._allocate_spark_ports()
        try:
            if self.spark_ports is not None:
                self._publish(self.spark_ports)
            return await super().start_server()
        finally:
            # Released under the lock: an allocation never runs between this pair leaving
            # the table and a listing of running containers that missed its container.
            async with _ALLOCATION_LOCK:
                _RESERVED.pop(self.container_name, None)

    async def image_to_start(self) -> str:
        """The image this start runs: the user's pick (checked against allowed_images) or the default."""
        picked = self.user_options.get("image")
        if picked:
            # As DockerSpawner.start does it, which repeats it to the same effect.
            self.image = await self.check_allowed(picked)
        return self.image

    async def _allocate_spark_ports(self) -> SparkPorts | None:
        """The lowest free pair for a server of a Spark image, reserved until its container exists.

        None for other images, and when every pair is taken and the stack does not require one:
        the server then runs Spark locally, and says why.
        """
        progress = self.spawn_progress()
        image = await self.image_to_start()
        if image not in self.spark_images:
            progress.step(SPARK_STEP, "No Spark ports: this image has no Spark")
            return None
        async with _ALLOCATION_LOCK:
            running = await self._running_labels()
            try:
                ports = allocate(
                    PortRange.parse(self.spark_driver_ports),
                    PortRange.parse(self.spark_block_manager_ports),
                    running,
                    reserved=[pair for name, pair in _RESERVED.items() if name != self.container_name],
                )
            except PortsExhausted as error:
                if self.spark_require_ports:
                    self.log.warning("refusing to start %s: %s", self.user.name, error)
                    raise UserFacingError(503, str(error), reason="Spark ports exhausted") from None
                self._local_spark_only(error)
                return None
            _RESERVED[self.container_name] = ports
        progress.step(
            SPARK_STEP,
            f"Spark ports: driver {ports.driver}, block manager {ports.block_manager} "
            "(client mode against an external cluster)",
        )
        return ports

    def _local_spark_only(self, error: PortsExhausted) -> None:
        message = (
            f"All {error.capacity} Spark port pairs of this lab are in use, so this server runs Spark in local "
            "mode only: client mode against an external cluster is unavailable until a pair frees up and you "
            "restart your server."
        )
        self.log.warning("%s's server starts for local Spark only: %s", self.user.name, error)
        self.environment = {**self.environment, SPARK_WARNING_VARIABLE: message}
        self.spawn_progress().warn(SPARK_STEP, message)

    async def _running_labels(self) -> list[dict[str, str]]:
        # Every lab on this Docker host, not only this stack: host ports are shared.
        filters = {"label": [DRIVER_PORT_LABEL]}
        containers = await self.docker("containers", filters=filters)
        return [container.get("Labels") or {} for container in containers if container["Id"] != self.object_id]

    def forget_last_start(self) -> None:
        super().forget_last_start()
        # The last start's share volumes are gone (removed at stop); this start makes its own.
        shares = {self.user_share_volume(share["name"]) for share in self.cifs_user_shares}
        self.volumes = {name: mount for name, mount in self.volumes.items() if name not in shares}
        self._unpublish()

    def apply_profile(self, user_options: dict[str, Any]) -> Profile:
        self._unpublish()  # the container options the profile goes over are the config's
        return super().apply_profile(user_options)

    def _unpublish(self) -> None:
        """Take back the last start's Spark pair from the container options."""
        if self._before_publish is not None:
            self.extra_create_kwargs, self.extra_host_config = self._before_publish
            self._before_publish = None
        self.spark_ports = None

    def _publish(self, ports: SparkPorts) -> None:
        """Expose and publish the pair with the same number on the host; tell the kernel about it."""
        self._before_publish = (self.extra_create_kwargs, self.extra_host_config)
        published = (ports.driver, ports.block_manager)
        self.extra_create_kwargs = _merged(
            self.extra_create_kwargs,
            {"ports": {f"{port}/tcp": None for port in published}, "labels": ports.labels()},
        )
        self.extra_host_config = _merged(
            self.extra_host_config, {"port_bindings": {port: (self.spark_publish_ip, port) for port in published}}
        )
        self.environment = _merged(
            self.environment,
            {
                "SPARK_DRIVER_PORT": str(ports.driver),
                "SPARK_BLOCKMANAGER_PORT": str(ports.block_manager),
                "SPARK_DRIVER_HOST": self.spark_driver_host,
            },
        )


class JuviniSwarmSpawner(JuviniSpawnerMixin, SwarmSpawner):
    """SwarmSpawner for scale-out across a Docker Swarm, with the lab's folders and Kerberos tickets.

    Its start has fewer steps: no per-user shares and no Spark ports (single Docker host only).
    While the service's task waits for a node, and while that node pulls the image (minutes for
    a large image on a node that never ran it), the spawn page says so. A task the swarm will not
    run (rejected: a mount source missing on the node, an image it cannot pull) fails the start
    at once with Docker's reason, instead of waiting for ``start_timeout``.

    A server's task is not restarted by the swarm (the rendered config gives it the restart
    condition ``none``, as a single host does not restart a server): when its node dies the
    swarm shuts the task down, :meth:`poll` reports the server stopped, and the user's next start
    creates a new service, which the swarm places on a node that is up.
    """

    #: Seconds between two looks at a starting task's state (the first ones quicker).
    task_poll_interval = Float(
        0.5, min=0.05, help="Seconds between two looks at a starting service's task (its state and node)."
    ).tag(config=True)

    pull_login = Dict(
        {},
        help="The login the nodes pull users' images with: {'registry', 'username', 'password'}; empty: "
        "anonymous pulls. Handed to the swarm with each service (X-Registry-Auth), as `docker service "
        "create --with-registry-auth` does.",
    ).tag(config=True)

    @validate("pull_login")
    def _pull_login_complete(self, proposal: Any) -> dict[str, str]:
        login = dict(proposal["value"])
        if login and sorted(login) != ["password", "registry", "username"]:
            raise TraitError(f"pull_login needs exactly registry, username and password; got {sorted(login)}")
        return login

    pinned_images = Dict(
        {},
        help="Image name -> that image pinned to the digest the stack pushed (name@sha256:...): the "
        "service runs the pinned one, so every node runs the same image and a node that has it "
        "starts the server without asking the registry. An image not listed runs by its name.",
    ).tag(config=True)

    @validate("pinned_images")
    def _pins_are_digests(self, proposal: Any) -> dict[str, str]:
        pinned = dict(proposal["value"])
        for name, reference in pinned.items():
            if reference.rpartition("@sha256:")[0] != name:
                raise TraitError(f"pinned_images[{name!r}] must be {name}@sha256:<digest>; got {reference!r}")
        return pinned

    async def create_object(self) -> Any:
        """The service, running the chosen image pinned to its pushed digest when the stack pinned it."""
        configured: dict[str, Any] = self.extra_container_spec  # type: ignore[has-type]
        pinned = self.pinned_images.get(self.image)
        if pinned:
            # SwarmSpawner puts self.image in the container spec, then the extra spec over it.
            self.extra_container_spec = {**configured, "image": pinned}
        try:
            return await super().create_object()
        finally:
            self.extra_container_spec = configured

    def new_docker_client(self, api_version: str | None) -> Any:
        """A client that sends the pull login with the services it creates for that registry."""
        client = super().new_docker_client(api_version)
        if self.pull_login:
            registry = self.pull_login["registry"]
            # docker-py puts a login it holds for the image's registry in the service create's
            # X-Registry-Auth header; the swarm passes it on to the node that runs the task.
            client._auth_configs.add_auth(
                registry,
                {
                    "username": self.pull_login["username"],
                    "password": self.pull_login["password"],
                    "serveraddress": registry,
                },
            )
        return client

    async def start_object(self) -> None:
        """Wait until the service's task runs, saying where it is scheduled and what the node does."""
        progress = self.spawn_progress()
        said: set[str] = set()
        while True:
            task = await self.get_task()
            if not task:
                raise RuntimeError(f"Service {self.service_name} has no task")
            status = task.get("Status") or {}
            state = str(status.get("State", "")).lower()
            node = await self.node_name(task.get("NodeID"))
            if state == "running":
                break
            if state in TASK_FAILED_STATES or task.get("DesiredState") in TASK_ENDED_STATES:
                reason = status.get("Err") or status.get("Message") or state
                self.log.warning(
                    "%s's service %s: task %s on %s: %s",
                    self.user.name,
                    self.service_name,
                    state,
                    node or "no node",
                    reason,
                )
                raise UserFacingError(
                    500,
                    f"Your server could not start on node {node or '(none)'}: {reason}. Try again; if it happens "
                    "again, ask an admin (the node may lack the lab's folders or access to the registry).",
                    reason="Server task failed",
                )
            if node and "scheduled" not in said:
                said.add("scheduled")
                progress.step(SCHEDULED_STEP, f"Scheduled on node {node}")
            if state == "preparing" and "pulling" not in said:
                said.add("pulling")
                progress.step(
                    PULLING_STEP,
                    f"Node {node} is fetching the image {self.image} (the first start of an image on a node "
                    "downloads it from the registry: this can take a few minutes)",
                )
            await asyncio.sleep(self.task_poll_interval)
        self.spawn_progress().step(STARTED_STEP, f"Server starting on node {node}: waiting for JupyterLab to answer")

    async def node_name(self, node_id: str | None) -> str | None:
        """The hostname of the swarm node ``node_id`` (its id when it cannot be read)."""
        if not node_id:
            return None
        if node_id not in _NODE_NAMES:
            try:
                node = await self.docker("inspect_node", node_id)
                _NODE_NAMES[node_id] = str(node["Description"]["Hostname"])
            except (APIError, KeyError) as error:
                self.log.debug("node %s could not be inspected: %s", node_id, error)
                return node_id[:12]
        return _NODE_NAMES[node_id]

    async def poll(self) -> Any:
        """None while the service's task runs (or gets ready to); why not, otherwise.

        SwarmSpawner's own poll reads the task's last reported state: a task on a node that died
        still reads ``running`` there, while the swarm has already shut it down (desired state).
        """
        task = await self.get_task()
        if not task:
            self.log.warning("Service %s not found", self.service_name)
            return 0
        status = task.get("Status") or {}
        state = str(status.get("State", "")).lower()
        desired = str(task.get("DesiredState", "")).lower()
        if desired in TASK_ENDED_STATES or state not in TASK_ALIVE_STATES:
            node = await self.node_name(task.get("NodeID"))
            self.log.warning(
                "%s's server (service %s) is gone from node %s: task %s, desired %s (%s)",
                self.user.name,
                self.service_name,
                node,
                state,
                desired,
                status.get("Err") or status.get("Message") or "",
            )
            return f"task {state}, desired {desired}"
        return None
