"""The Docker API filter: the hub drives the Docker engine through it, never through the socket.

Whoever holds the Docker socket holds the host (a container binding ``/``, ``--pid host``, an
exec into any container). So the hub gets no socket of the engine's: HAProxy in its own
container (``images/socket-filter``) binds a socket in a small volume the two share, and passes
on only what the lab's spawner does, decided by a Lua policy from the facts this module renders:
the lab's folders, labels, images, networks and share volumes, all taken from the values the
hub's own ``jupyterhub_config.py`` is rendered from (:func:`infra.hub_config.hub_config_values`),
so the spawner and its filter cannot disagree. Refusals are 403s with a JSON message naming the
rule (docker-py raises them as APIError) and a line in the filter's log.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

import pulumi
import pulumi_docker as docker

from infra.containers import labels
from infra.hub_config import hub_config_values, krb5_conf_host_path
from infra.naming import Naming
from infra.settings import Settings

TYPE = "juvini:index:SocketFilter"

#: The policy's code, in the filter image (images/socket-filter/Dockerfile copies it there).
POLICY_CODE = "/usr/local/share/juvini/juvini-docker-policy.lua"
#: The rendered configuration, uploaded into the filter container.
CONFIG_DIR = "/etc/juvini/socket-filter"
HAPROXY_CONFIG_PATH = f"{CONFIG_DIR}/haproxy.cfg"
POLICY_PATH = f"{CONFIG_DIR}/policy.json"
#: Where the FOLDER of the host's Docker socket appears in the filter container (or, with the filter
#: off, in the hub). The folder, not the socket file: an engine started without systemd's socket
#: activation makes a new socket file at each start, and a container holding a mount of the old
#: file (kept running by live-restore) would reach no engine after a restart (measured, Docker 20.10).
ENGINE_SOCKET_DIR = "/run/juvini/engine"
#: The folder, in the filter and in the hub, of the volume holding the filtered socket.
SOCKET_DIR = "/run/juvini/docker-api"
FILTERED_SOCKET = f"{SOCKET_DIR}/docker.sock"
#: The hub's Docker endpoint: docker-py (DockerSpawner, juvini_hub) reads DOCKER_HOST.
HUB_DOCKER_HOST = f"unix://{FILTERED_SOCKET}"
#: A container-create body is a few KB; a larger body is refused, never cut.
BUFFER_BYTES = 65536
#: Waits for a container to stop and followed logs are long calls.
CALL_TIMEOUT = "10m"
#: How long the policy waits for the engine when it looks up the labels of an object.
LOOKUP_TIMEOUT_SECONDS = 10
#: Connections the filter holds at once. An idle keep-alive connection stays open until
#: ``timeout http-request`` (30 s) ends it, so a busy minute piles them up: 20 starts then 20
#: stops held ~200 (415 sockets) here. At 256, the next calls waited ~15 s in the socket's queue
#: for idle ones to close (a start right after a class's stops took 28 s instead of 13 s).
MAX_CONNECTIONS = 4096


def engine_socket(settings: Settings) -> str:
    """The host's Docker socket as the filter (or, filter off, the hub) reaches it."""
    return f"{ENGINE_SOCKET_DIR}/{PurePosixPath(settings.docker_socket).name}"


def engine_socket_mount(settings: Settings) -> docker.ContainerMountArgs:
    """The folder of the host's Docker socket, read-only (connecting to a socket writes nothing)."""
    folder = str(PurePosixPath(settings.docker_socket).parent)
    return docker.ContainerMountArgs(type="bind", source=folder, target=ENGINE_SOCKET_DIR, read_only=True)


def _ranges(text: str) -> list[int]:
    first, last = text.split("-")
    return [int(first), int(last)]


def _folders(settings: Settings, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The host folders users' servers may bind: exact folders, or folders of per-user children."""
    folders: list[dict[str, Any]] = []
    for source, mount in values["volumes"].items():
        if not source.startswith("/"):
            continue  # a named volume (a team share)
        children = source.endswith("/{username}")
        folders.append(
            {
                "path": source.removesuffix("/{username}") if children else source,
                "children": children,
                # DockerSpawner.volumes: the target alone (read-write), or a dict with bind and mode.
                "readOnly": isinstance(mount, dict) and mount.get("mode") == "ro",
            }
        )
    folders += [{"path": group["path"], "children": False, "readOnly": False} for group in values["group_folders"]]
    if values["kerberos"]["enabled"]:
        # Each user's ticket folder, and the realm's krb5.conf (juvini_hub.kerberos mounts both).
        folders += [
            {"path": values["kerberos"]["ccache_host_root"], "children": True, "readOnly": False},
            {"path": krb5_conf_host_path(settings), "children": False, "readOnly": True},
        ]
    return folders


def filter_policy(settings: Settings, naming: Naming, notebook_images: dict[str, str]) -> dict[str, Any]:
    """What the Lua policy allows, from the same values as the hub's rendered configuration."""
    values = hub_config_values(settings, naming, notebook_images)
    images = {values["default_image"], *values["allowed_images"].values()}
    images |= {profile["image"] for profile in values["profiles"]}
    host_config = values["user_host_config"]
    swarm = settings.swarm.enabled
    # Spark's port pairs, published on one Docker host only.
    spark_ranges = [_ranges(values["spark_driver_ports"]), _ranges(values["spark_block_manager_ports"])]
    return {
        "engineSocket": engine_socket(settings),
        "namePrefix": values["name_template"].removesuffix("{username}"),
        "userLabels": values["container_labels"],
        "userShareLabels": values["user_share_labels"],
        "user": values["container_user"],
        "images": sorted(images),
        "networks": [values["users_network"]],
        "capAdd": list(host_config["cap_add"]),
        # Swarm services do not carry no-new-privileges (infra/settings/security.py).
        "noNewPrivileges": bool(host_config["security_opt"]) and not swarm,
        "folders": _folders(settings, values),
        "namedVolumes": sorted(source for source in values["volumes"] if not source.startswith("/")),
        "userShares": [share["name"] for share in values["user_shares"]],
        "userShareDevices": sorted({share["device"] for share in values["user_shares"]}),
        "hostPorts": [] if swarm else spark_ranges,
        "swarm": swarm,
        "bodyBytes": BUFFER_BYTES,
        "lookupTimeoutSeconds": LOOKUP_TIMEOUT_SECONDS,
    }


def render_policy(settings: Settings, naming: Naming, notebook_images: dict[str, str]) -> str:
    """The policy file, parsed back before it is used (a rendering fault fails here, not in HAProxy)."""
    from infra.rendering import render

    text = render("socket-filter-policy.json.j2", policy=filter_policy(settings, naming, notebook_images))
    json.loads(text)
    return text


def render_haproxy_config(settings: Settings, naming: Naming) -> str:
    """HAProxy's configuration: the filtered socket, the policy, the engine's socket."""
    from infra.rendering import render

    return render(
        "socket-filter-haproxy.cfg.j2",
        stack_prefix=naming.prefix,
        container_name=naming.physical("socket-filter"),
        max_connections=MAX_CONNECTIONS,
        buffer_bytes=BUFFER_BYTES,
        policy_file=POLICY_PATH,
        policy_code=POLICY_CODE,
        call_timeout=CALL_TIMEOUT,
        filtered_socket=FILTERED_SOCKET,
        engine_socket=engine_socket(settings),
    )


def socket_volume_name(naming: Naming) -> str:
    return naming.physical("docker-api")


def hub_docker_mount(settings: Settings, naming: Naming) -> docker.ContainerMountArgs:
    """How the hub reaches Docker: the filter's socket volume, or (filter off) the host's socket."""
    if settings.security.docker_api_filter:
        return docker.ContainerMountArgs(type="volume", source=socket_volume_name(naming), target=SOCKET_DIR)
    return engine_socket_mount(settings)


def hub_docker_environment(settings: Settings) -> dict[str, str]:
    """DOCKER_HOST for the hub's docker-py: the filter's socket, or (filter off) the engine's."""
    if settings.security.docker_api_filter:
        return {"DOCKER_HOST": HUB_DOCKER_HOST}
    return {"DOCKER_HOST": f"unix://{engine_socket(settings)}"}


def healthcheck() -> docker.ContainerHealthcheckArgs:
    """The engine's /_ping through the filtered socket, with the image's Python (no curl needed)."""
    probe = (
        "import socket; s = socket.socket(socket.AF_UNIX); s.settimeout(4); "
        f"s.connect({FILTERED_SOCKET!r}); s.sendall(b'GET /_ping HTTP/1.0\\r\\n\\r\\n'); "
        "assert s.recv(64).split()[1] == b'200'"
    )
    return docker.ContainerHealthcheckArgs(
        tests=["CMD", "python3", "-c", probe], interval="10s", timeout="5s", retries=3, start_period="10s"
    )


class SocketFilter(pulumi.ComponentResource):
    """The filter container, the volume holding its socket, and its rendered configuration."""

    volume: docker.Volume
    container: docker.Container

    def __init__(
        self,
        name: str,
        settings: Settings,
        naming: Naming,
        *,
        image: pulumi.Input[str],
        notebook_images: dict[str, str],
        after: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``image``: the filter's image (images/socket-filter); ``notebook_images``: the references of
        the notebook images users' servers run (Images.notebook_image_names); ``after``: what must be
        there before the filter runs (its image, the host's engine set up)."""
        super().__init__(TYPE, name, None, opts)
        self.policy_text = render_policy(settings, naming, notebook_images)
        self.config_text = render_haproxy_config(settings, naming)
        self.volume = docker.Volume(
            f"{name}-socket",
            name=socket_volume_name(naming),
            labels=[
                docker.VolumeLabelArgs(label=key, value=value) for key, value in naming.labels("socket-filter").items()
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.container = docker.Container(
            f"{name}-filter",
            name=naming.physical("socket-filter"),
            image=image,
            command=["haproxy", "-W", "-db", "-f", HAPROXY_CONFIG_PATH],
            mounts=[
                engine_socket_mount(settings),
                docker.ContainerMountArgs(type="volume", source=self.volume.name, target=SOCKET_DIR),
            ],
            uploads=[
                docker.ContainerUploadArgs(file=HAPROXY_CONFIG_PATH, content=self.config_text),
                docker.ContainerUploadArgs(file=POLICY_PATH, content=self.policy_text),
            ],
            # Root for the sockets (both root's), with no capability and nothing to gain.
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            security_opts=["no-new-privileges:true"],
            network_mode="none",
            restart="unless-stopped",
            healthcheck=healthcheck(),
            labels=labels(naming, "socket-filter"),
            must_run=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*after, self.volume]),
        )
        self.register_outputs({"container": self.container.name, "volume": self.volume.name})
