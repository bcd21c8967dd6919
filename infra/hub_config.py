"""``jupyterhub_config.py`` rendered from the settings: a pure function of its inputs."""

from __future__ import annotations

from typing import Any

from infra.flavours import BY_NAME as FLAVOURS
from infra.naming import Naming
from infra.settings import (
    DATA_MOUNT,
    GROUPS_MOUNT,
    SHARED_MOUNT,
    ProfileSettings,
    Settings,
    SpawnerSettings,
    memory_bytes,
)
from infra.shares import share_bind, user_share_config, volume_name

#: Where things live inside the hub container.
HUB_HOME = "/srv/jupyterhub"
CONFIG_PATH = f"{HUB_HOME}/jupyterhub_config.py"
STATE_DIR = f"{HUB_HOME}/state"
LDAP_CA_PATH = f"{HUB_HOME}/ldap-ca.crt"
OIDC_CA_PATH = f"{HUB_HOME}/oidc-ca.crt"
KRB5_CONF_NAME = "krb5.conf"
KRB5_CCACHE_DIR_NAME = "krb5cc"
#: Under Swarm, the users' ticket folders and the realm's krb5.conf: in the users' folder (shared
#: storage, the same path on every node and in the hub), names no user has (the spawner refuses
#: usernames starting with ".").
SWARM_KRB5_CCACHE_DIR_NAME = ".juvini-kerberos"
SWARM_KRB5_CONF_NAME = ".juvini-krb5.conf"
HUB_API_PORT = 8081
#: The hub's environment variable holding the notebook images pinned to their pushed digests
#: (JSON, name -> ``name@sha256:...``; infra.images.Images.pinned_notebook_images), under Swarm.
PINNED_IMAGES_ENV = "JUVINI_PINNED_IMAGES"
PROXY_PUBLIC_PORT = 8000
PROXY_API_PORT = 8001
PROXY_REDIRECT_PORT = 8080

#: Inside users' containers.
HOME_DIR_TEMPLATE = "/home/{user}"


def hub_config_values(settings: Settings, naming: Naming, notebook_images: dict[str, str]) -> dict[str, Any]:
    """The values ``jupyterhub_config.py.j2`` renders, all plain Python data."""
    hub_name = naming.physical("hub")
    home = HOME_DIR_TEMPLATE.format(user=settings.lab_user.name)
    auth = settings.auth
    allowed = {FLAVOURS[flavour].display_name: notebook_images[flavour] for flavour in settings.spawner.allowed_images}
    default_flavour = settings.spawner.allowed_images[0]
    uid, gid = settings.lab_user.uid, settings.lab_user.gid
    # The hub makes it (juvini_hub) and DockerSpawner mounts it as the user's home.
    user_folder = f"{settings.paths.users_dir}/{{username}}"
    team_shares = [share for share in settings.cifs.shares if not share.per_user]
    user_shares = [share for share in settings.cifs.shares if share.per_user]
    environment = {
        "SPARK_DRIVER_MEMORY": settings.spark.driver_memory,
        # Users may `pip install --user`; it lands in their persistent home.
        "PIP_USER": "1",
    } | settings.spawner.environment
    data_folder = (
        {settings.paths.data_dir: {"bind": f"{home}/{DATA_MOUNT}", "mode": "ro"}} if settings.paths.data_dir else {}
    )
    return {
        "stack_prefix": naming.prefix,
        "public_url": settings.hub_url,
        "hub_bind_url": f"http://0.0.0.0:{HUB_API_PORT}",
        "hub_connect_url": f"http://{hub_name}:{HUB_API_PORT}",
        "proxy_api_url": f"http://{naming.physical('proxy')}:{PROXY_API_PORT}",
        "db_url": f"sqlite:///{STATE_DIR}/jupyterhub.sqlite",
        "pid_file": f"{STATE_DIR}/jupyterhub.pid",
        "log_level": settings.hub.log_level,
        "concurrent_spawn_limit": settings.hub.concurrent_spawn_limit,
        "admin_users": sorted(settings.hub.admin_users),
        "allowed_users": sorted(auth.allowed_users),
        "auth_type": auth.type.value,
        "native": auth.native.model_dump(),
        "ldap": auth.ldap.model_dump(exclude={"search_password"}, mode="json")
        | {"tls_kwargs": {"ca_certs_file": LDAP_CA_PATH} if auth.ldap.ca_certificate else {}},
        "github": {
            "client_id": auth.github.client_id,
            "allowed_organizations": sorted(auth.github.allowed_organizations),
            "callback_url": f"{settings.hub_url}hub/oauth_callback",
        },
        "oidc": {
            "issuer": auth.oidc.issuer,
            "client_id": auth.oidc.client_id,
            "callback_url": f"{settings.hub_url}hub/oauth_callback",
            "scopes": list(auth.oidc.scopes),
            "username_claim": auth.oidc.username_claim,
            "groups_claim": auth.oidc.groups_claim or "",
            "allowed_groups": sorted(auth.oidc.allowed_groups),
            "admin_groups": sorted(auth.oidc.admin_groups),
            "ca_file": OIDC_CA_PATH if auth.oidc.ca_certificate else "",
            "login_service": auth.oidc.login_service,
        },
        # One configuration for kinit at login and at spawn (juvini_hub.kerberos.KerberosTickets).
        "kerberos": {
            "enabled": settings.kerberos.enabled,
            "realm": settings.kerberos.realm or "",
            "on_failure": settings.kerberos.on_failure,
            "ccache_root": ccache_roots(settings)[0],
            "ccache_host_root": ccache_roots(settings)[1],
            "krb5_conf": krb5_conf_host_path(settings) if settings.swarm.enabled else f"{STATE_DIR}/{KRB5_CONF_NAME}",
            "krb5_conf_host_path": krb5_conf_host_path(settings),
            "uid": uid,
            "gid": gid,
        },
        "spawner_class": "juvini_hub.spawner.JuviniSwarmSpawner"
        if settings.swarm.enabled
        else "juvini_hub.spawner.JuviniDockerSpawner",
        "swarm": settings.swarm.enabled,
        "placement_constraints": list(settings.swarm.placement_constraints),
        "pull_registry": settings.images.registry_server() if settings.images.pull_username is not None else None,
        "pinned_images_env": PINNED_IMAGES_ENV,
        "allowed_images": allowed,
        "default_image": notebook_images[default_flavour],
        "name_template": f"{naming.physical('user')}-{{username}}",
        "users_network": naming.physical("users-net"),
        "home_dir": home,
        "volumes": {
            user_folder: home,
            settings.paths.shared_dir: f"{home}/{SHARED_MOUNT}",
        }
        | data_folder
        | {volume_name(naming, share): share_bind(share, home) for share in team_shares},
        "profiles": [profile_config(profile, notebook_images) for profile in settings.spawn_profiles],
        # Mounted by the spawner into the servers of the group's members only.
        "group_folders": [
            {"group": group, "path": f"{settings.paths.groups_dir}/{group}", "bind": f"{home}/{GROUPS_MOUNT}/{group}"}
            for group in settings.folders.groups
        ],
        "user_shares": [user_share_config(share, uid, gid, home) for share in user_shares],
        "user_share_labels": naming.labels("user-share"),
        # Per-user shares need the login password (kept encrypted in the auth state) at spawn.
        "keep_password": bool(user_shares),
        # JupyterHub's byte sizes take bytes or upper-case units only; bytes are unambiguous.
        "mem_limit_bytes": memory_bytes(settings.spawner.mem_limit),
        "cpu_limit": settings.spawner.cpu_limit,
        "environment": environment,
        "container_user": f"{uid}:{gid}",
        # Capabilities, setuid, process and file limits of users' containers (infra/settings/security.py).
        # Not auto-removed by Docker: Docker 20.10 removes auto-remove containers when the engine
        # restarts, live-restore or not (measured); the spawner removes them when they stop.
        "user_host_config": settings.security.user_containers.docker_host_config() | {"auto_remove": False},
        "container_labels": naming.labels("user"),
        # Only servers of these images take a Spark port pair (infra/flavours.py: spark).
        "spark_images": sorted(
            {notebook_images[flavour] for flavour in settings.spawner.allowed_images if FLAVOURS[flavour].spark}
        ),
        "spark_require_ports": settings.spark.require_ports,
        "spark_driver_ports": str(settings.spark.driver_ports),
        "spark_block_manager_ports": str(settings.spark.block_manager_ports),
        "spark_driver_host": settings.spark.driver_host or settings.host.address,
        "spark_publish_ip": settings.hub.bind_address,
        "start_timeout": settings.spawner.start_timeout,
        "http_timeout": settings.spawner.http_timeout,
        "user_folder": user_folder,
        "lab_uid": uid,
        "lab_gid": gid,
        "idle_timeout": settings.spawner.idle_timeout,
        "cull_every": settings.spawner.cull_every,
        "server_culling_args": server_culling_args(settings.spawner),
    }


def profile_config(profile: ProfileSettings, notebook_images: dict[str, str]) -> dict[str, Any]:
    """A profile as juvini_hub.profiles reads it: the image by its reference, memory in bytes."""
    if profile.cpu_limit is None or profile.mem_limit is None:
        raise ValueError(f"profile {profile.slug!r} has no limits: pass Settings.spawn_profiles, which fills them in")
    gpu = profile.gpu
    return {
        "slug": profile.slug,
        "display_name": profile.display_name,
        "description": profile.description,
        "image": notebook_images[profile.image],
        "image_name": FLAVOURS[profile.image].display_name,
        "cpu_limit": profile.cpu_limit,
        "mem_limit": memory_bytes(profile.mem_limit),
        "environment": dict(profile.environment),
        "gpu": {"count": gpu.count, "device_ids": list(gpu.device_ids)} if gpu.requested else None,
        "groups": list(profile.groups),
        "users": list(profile.users),
    }


def server_culling_args(spawner: SpawnerSettings) -> list[str]:
    """The single-user server options that make each server cull its own idle kernels and terminals.

    Every value is passed, 0 (off) included, so the stack's choice wins over any default in
    the images. Busy kernels and kernels a notebook is connected to are never culled
    (jupyter_server's defaults, ``cull_busy`` and ``cull_connected`` False).
    """
    return [
        f"--MappingKernelManager.cull_idle_timeout={spawner.kernel_idle_timeout}",
        f"--MappingKernelManager.cull_interval={spawner.kernel_cull_every}",
        f"--TerminalManager.cull_inactive_timeout={spawner.terminal_idle_timeout}",
        f"--TerminalManager.cull_interval={spawner.kernel_cull_every}",
    ]


def ccache_roots(settings: Settings) -> tuple[str, str]:
    """The folder of users' ticket folders as the hub sees it, and as the Docker host(s) see it.

    One host: in the hub's state folder. Under Swarm a user's server may run on any node, so the
    tickets live on the shared storage, in the users' folder, which the hub mounts at the same
    path as the nodes (each user's server mounts only its own ticket folder).
    """
    if settings.swarm.enabled:
        shared = f"{settings.paths.users_dir}/{SWARM_KRB5_CCACHE_DIR_NAME}"
        return shared, shared
    return f"{STATE_DIR}/{KRB5_CCACHE_DIR_NAME}", f"{settings.paths.hub_state_dir}/{KRB5_CCACHE_DIR_NAME}"


def krb5_conf_host_path(settings: Settings) -> str:
    """Where the stack writes krb5.conf on the Docker host: in the hub state folder; under Swarm in
    the users' folder on the shared storage, which the hub and every node see at the same path."""
    if settings.swarm.enabled:
        return f"{settings.paths.users_dir}/{SWARM_KRB5_CONF_NAME}"
    return f"{settings.paths.hub_state_dir}/{KRB5_CONF_NAME}"


def render_krb5_conf(settings: Settings, naming: Naming) -> str:
    """The realm's krb5.conf for the hub's kinit and for users' containers."""
    from infra.rendering import render

    kerberos = settings.kerberos
    if not kerberos.enabled or kerberos.realm is None:
        raise ValueError("krb5.conf is rendered only with kerberos.enabled")
    return render(
        "krb5.conf.j2",
        stack_prefix=naming.prefix,
        realm=kerberos.realm,
        kdcs=kerberos.kdcs,
        admin_server=kerberos.admin_server or kerberos.kdcs[0],
        ticket_lifetime=kerberos.ticket_lifetime,
        renew_lifetime=kerberos.renew_lifetime,
    )


def render_hub_config(settings: Settings, naming: Naming, notebook_images: dict[str, str]) -> str:
    """The text of ``jupyterhub_config.py`` for this stack."""
    from infra.rendering import render

    return render("jupyterhub_config.py.j2", **hub_config_values(settings, naming, notebook_images))
