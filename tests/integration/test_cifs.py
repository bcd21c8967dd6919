"""A CIFS share for the lab: the Samba peer serves it, and Docker volumes can mount it.

The share is checked with a real ``smbclient`` in a throwaway container of the samba
peer's image, on the peers' network. The Docker volume (driver ``local``,
``type=cifs``) is created and inspected on the real engine; mounting it needs cifs
support in the kernel, which is detected, and the mount tests skip without it.

The program's own :class:`infra.shares.Shares` component is applied too (through the
provider double, for real, on this engine) with a team share pointing at the samba
peer: its volume, options, labels and the secrecy of its options are checked on what
the engine holds, and ``destroy`` must remove it.

A per-user share is made as the hub makes it at spawn: the hub's own spawner, configured
by a jupyterhub_config.py rendered for a stack with the samba peer's ``homes`` share,
creates alice's volume on this engine from her password in the auth state; its options
must be those the stack gives a team share for the same share and login.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker
import pulumi
import pulumi_docker
import pytest
from docker.errors import NotFound
from docker.models.volumes import Volume
from pydantic import SecretStr
from traitlets.config import PyFileConfigLoader

from infra.hub_config import render_hub_config
from infra.naming import Naming
from infra.settings import NOTEBOOK_FLAVOURS, CifsShare, load_settings, parse_settings
from infra.shares import Shares, cifs_options
from juvini_hub.spawner import JuviniDockerSpawner
from tests.support import peers
from tests.support.peers import ALICE, BOB, LABELS, SMB_HOSTNAME, TEAM_FILE, TEAM_FILE_TEXT, TEAM_SHARE, Account, Peer
from tests.support.provider_double import Deployment, apply
from tests.support.pulumi_mocks import Registration

pytestmark = pytest.mark.integration

VOLUME = "juvini-test-cifs-team"
#: The lab user's ids (LabUserSettings defaults): files on the mounted share belong to them.
LAB_UID = LAB_GID = 2100
#: The stack the program's Shares component is applied for, and the volume it makes.
SHARES_STACK = "it-shares"
SHARES_VOLUME = f"juvini-{SHARES_STACK}-cifs-{TEAM_SHARE}"
VOLUME_TYPE = "docker:index/volume:Volume"


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return peers.docker_client()


@pytest.fixture(scope="module")
def samba(client: docker.DockerClient) -> Iterator[Peer]:
    with peers.peers_running("samba", client=client) as running:
        yield running["samba"]


def smbclient(samba: Peer, share: str, account: Account, command: str, password: str | None = None) -> tuple[int, str]:
    """smbclient as a client elsewhere on the peers' network, over SMB3, to the server's DNS alias."""
    return peers.run_in_peer_image(
        "samba",
        ["smbclient", f"//{SMB_HOSTNAME}/{share}", "-U", account.name, "-m", "SMB3", "-c", command],
        samba.network,
        # smbclient takes the password from PASSWD: it stays off the command line.
        environment={"PASSWD": password if password is not None else account.password},
    )


def kernel_cifs_support() -> str | None:
    """None when this kernel (the Docker engine's: it runs here) can mount cifs, else why not."""
    names = [line.split()[-1] for line in Path("/proc/filesystems").read_text().splitlines() if line.strip()]
    if "cifs" in names:
        return None
    modprobe = shutil.which("modprobe") or shutil.which("modprobe", path="/usr/sbin:/sbin")
    if modprobe is None:
        return f"cifs is not in /proc/filesystems and there is no modprobe to load it (kernel {os.uname().release})"
    probe = subprocess.run([modprobe, "-n", "-q", "cifs"], capture_output=True, text=True, check=False)
    if probe.returncode == 0:
        return None  # a loadable module: the mount loads it
    return f"cifs is not in /proc/filesystems and modprobe -n cifs fails (kernel {os.uname().release})"


def require_kernel_cifs() -> None:
    """Skip the calling test, with the reason, where this kernel cannot mount cifs."""
    missing = kernel_cifs_support()
    if missing is not None:
        pytest.skip(f"kernel has no cifs support: {missing}")


def volume_options(samba: Peer, account: Account) -> dict[str, str]:
    return {
        "type": "cifs",
        "device": f"//{samba.ip}/{TEAM_SHARE}",
        "o": f"addr={samba.ip},username={account.name},password={account.password},"
        f"vers=3.0,uid={LAB_UID},gid={LAB_GID}",
    }


@pytest.fixture
def cifs_volume(client: docker.DockerClient, samba: Peer) -> Iterator[Volume]:
    def remove() -> None:
        with contextlib.suppress(NotFound):
            client.volumes.get(VOLUME).remove(force=True)

    remove()
    volume = client.volumes.create(
        name=VOLUME,
        driver="local",
        driver_opts=volume_options(samba, ALICE),
        labels=LABELS | {"org.juvini.role": "cifs-volume"},
    )
    yield volume
    # A container still using it would keep it: those the test ran are removed already.
    remove()


# --- the share ------------------------------------------------------------------------------


def test_alice_lists_the_team_share(samba: Peer) -> None:
    code, output = smbclient(samba, TEAM_SHARE, ALICE, "ls")
    assert code == 0, output
    assert TEAM_FILE in output


def test_alice_reads_the_team_file(samba: Peer) -> None:
    code, output = smbclient(samba, TEAM_SHARE, ALICE, f"get {TEAM_FILE} /dev/stdout")
    assert code == 0, output
    assert TEAM_FILE_TEXT.strip() in output


def test_a_wrong_password_is_refused_by_the_file_server(samba: Peer) -> None:
    code, output = smbclient(samba, TEAM_SHARE, ALICE, "ls", password="not-alices-password")
    assert code != 0
    assert "NT_STATUS_LOGON_FAILURE" in output


def test_each_user_has_a_home_share_of_their_own(samba: Peer) -> None:
    code, output = smbclient(samba, ALICE.name, ALICE, "ls")
    assert code == 0, output
    assert f"notes-{ALICE.name}.txt" in output
    code, output = smbclient(samba, ALICE.name, BOB, "ls")
    assert code != 0
    assert "NT_STATUS_ACCESS_DENIED" in output


# --- the Docker volume ----------------------------------------------------------------------


def test_a_cifs_volume_is_created_with_the_options_given(
    client: docker.DockerClient, samba: Peer, cifs_volume: Volume
) -> None:
    inspected = client.api.inspect_volume(VOLUME)
    assert inspected["Driver"] == "local"
    assert inspected["Options"] == volume_options(samba, ALICE)
    assert inspected["Labels"]["org.juvini.stack"] == "peers"


def read_file_through(client: docker.DockerClient, volume: str, name: str) -> tuple[int, str]:
    """A container mounting ``volume`` prints file ``name``'s owner and text; its exit code and output."""
    container = client.containers.create(
        peers.ensure_base_image(),
        command=["sh", "-c", f"stat -c '%u:%g' /mnt/share/{name} && cat /mnt/share/{name}"],
        volumes={volume: {"bind": "/mnt/share", "mode": "ro"}},
        labels=LABELS | {"org.juvini.role": "cifs-client"},
    )
    try:
        container.start()
        status = container.wait(timeout=60)
        output = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    return status["StatusCode"], output


def read_team_file_through(client: docker.DockerClient, volume: str) -> tuple[int, str]:
    return read_file_through(client, volume, TEAM_FILE)


def test_a_container_sees_the_share_through_the_cifs_volume(client: docker.DockerClient, cifs_volume: Volume) -> None:
    require_kernel_cifs()
    code, output = read_team_file_through(client, VOLUME)
    assert code == 0, output
    assert TEAM_FILE_TEXT.strip() in output
    # the mount maps every file to the lab user, whoever owns it on the server
    assert f"{LAB_UID}:{LAB_GID}" in output


# --- the program's Shares component, applied -----------------------------------------------


def declare_shares() -> None:
    """The part of the program that makes team-share volumes, on an explicit docker provider (as Lab does)."""
    settings = load_settings()
    provider = pulumi_docker.Provider("it-docker", host="unix:///var/run/docker.sock")
    Shares(
        "it-shares",
        settings,
        Naming(pulumi.get_project(), pulumi.get_stack()),
        opts=pulumi.ResourceOptions(providers={"docker": provider}),
    )


def shares_config(samba: Peer, read_only: bool) -> dict[str, object]:
    """``juvini:cifs`` with one team share on the samba peer, mounted with the test account."""
    share = {
        "name": TEAM_SHARE,
        "unc": f"//{samba.ip}/{TEAM_SHARE}",
        "username": ALICE.name,
        "password": ALICE.password,
        "readOnly": read_only,
    }
    return {"cifs": {"shares": [share]}}


def remove_shares_volume(client: docker.DockerClient) -> None:
    """Remove a volume of this stack an aborted earlier run left (only if it carries the stack's label)."""
    with contextlib.suppress(NotFound):
        volume = client.volumes.get(SHARES_VOLUME)
        if (volume.attrs.get("Labels") or {}).get("org.juvini.stack") == SHARES_STACK:
            volume.remove(force=True)


@pytest.fixture
def kernel_mounts_cifs() -> None:
    """Skips (before anything is applied) where this kernel cannot mount cifs."""
    require_kernel_cifs()


@dataclass
class AppliedShares:
    deployment: Deployment
    read_only: bool

    @property
    def volume(self) -> Registration:
        (volume,) = [r for r in self.deployment.monitor.registrations if r.type == VOLUME_TYPE]
        return volume


@pytest.fixture(params=[False, True], ids=["read-write", "read-only"])
def applied_shares(request: pytest.FixtureRequest, client: docker.DockerClient, samba: Peer) -> Iterator[AppliedShares]:
    remove_shares_volume(client)
    deployment = apply(declare_shares, shares_config(samba, request.param), SHARES_STACK, secret_keys=["cifs"])
    try:
        yield AppliedShares(deployment, request.param)
    finally:
        errors = deployment.destroy()  # a no-op when the test destroyed it already
        remove_shares_volume(client)
        assert not errors, errors


def test_the_programs_team_share_is_a_cifs_volume_on_the_engine(
    client: docker.DockerClient, samba: Peer, applied_shares: AppliedShares
) -> None:
    inspected = client.api.inspect_volume(SHARES_VOLUME)
    assert inspected["Driver"] == "local"
    options = inspected["Options"]
    # Exactly what the program computed and registered, nothing more or less ...
    assert options == applied_shares.volume.inputs["driverOpts"]
    # ... and that is a CIFS mount of the share with the test account, mapped to the lab user.
    assert set(options) == {"type", "device", "o"}
    assert (options["type"], options["device"]) == ("cifs", f"//{samba.ip}/{TEAM_SHARE}")
    expected = [
        f"addr={samba.ip}",
        f"username={ALICE.name}",
        f"password={ALICE.password}",
        "vers=3.0",
        f"uid={LAB_UID}",
        f"gid={LAB_GID}",
        "file_mode=0660",
        "dir_mode=0770",
    ]
    assert options["o"].split(",") == expected + (["ro"] if applied_shares.read_only else [])


def test_the_programs_volume_carries_the_stack_labels(
    client: docker.DockerClient, applied_shares: AppliedShares
) -> None:
    labels = client.api.inspect_volume(SHARES_VOLUME)["Labels"]
    assert labels == {"org.juvini.project": "juvini", "org.juvini.stack": SHARES_STACK, "org.juvini.role": "share"}


def test_the_registration_keeps_the_driver_options_secret(applied_shares: AppliedShares) -> None:
    volume = applied_shares.volume
    assert "driverOpts" in volume.secret_inputs, f"{volume} keeps the share password in plain state"
    plain = {key: value for key, value in volume.inputs.items() if key not in volume.secret_inputs}
    assert ALICE.password not in repr(plain), f"{volume} has the password outside its secret inputs"


def test_destroy_removes_the_programs_volume(client: docker.DockerClient, applied_shares: AppliedShares) -> None:
    client.volumes.get(SHARES_VOLUME)  # there before
    errors = applied_shares.deployment.destroy()
    assert not errors, errors
    with pytest.raises(NotFound):
        client.volumes.get(SHARES_VOLUME)


def test_a_container_sees_the_share_through_the_programs_volume(
    kernel_mounts_cifs: None, client: docker.DockerClient, applied_shares: AppliedShares
) -> None:
    code, output = read_team_file_through(client, SHARES_VOLUME)
    assert code == 0, output
    assert TEAM_FILE_TEXT.strip() in output
    assert f"{LAB_UID}:{LAB_GID}" in output


# --- a per-user share, made by the hub's spawner -------------------------------------------

#: The stack the hub's config is rendered for, and alice's home share volume it makes at spawn.
USER_SHARES_STACK = "it-user-shares"
HOME_SHARE = "home"
ALICE_HOME_VOLUME = f"juvini-{USER_SHARES_STACK}-user-{ALICE.name}-cifs-{HOME_SHARE}"


@dataclass
class SpawnedShare:
    share: CifsShare
    naming: Naming
    spawner: JuviniDockerSpawner


def remove_alice_home_volume(client: docker.DockerClient) -> None:
    with contextlib.suppress(NotFound):
        volume = client.volumes.get(ALICE_HOME_VOLUME)
        if (volume.attrs.get("Labels") or {}).get("org.juvini.stack") == USER_SHARES_STACK:
            volume.remove(force=True)


@pytest.fixture
def alice_home_share(client: docker.DockerClient, samba: Peer, tmp_path: Path) -> Iterator[SpawnedShare]:
    """alice's per-user share volume, made by the spawner the rendered config configures."""
    settings = parse_settings(
        {
            "auth": {"type": "ldap", "ldap": {"serverAddress": "ldap.test", "bindDnTemplate": ["uid={username}"]}},
            # Samba's [homes] is the connecting user's own home.
            "cifs": {"shares": [{"name": HOME_SHARE, "unc": f"//{samba.ip}/homes", "perUser": True}]},
        }
    )
    naming = Naming("juvini", USER_SHARES_STACK)
    images = {flavour: naming.image(f"notebook-{flavour}", "it") for flavour in NOTEBOOK_FLAVOURS}
    (tmp_path / "jupyterhub_config.py").write_text(render_hub_config(settings, naming, images), encoding="utf-8")
    config = PyFileConfigLoader("jupyterhub_config.py", path=str(tmp_path)).load_config()

    async def auth_state() -> dict[str, Any]:
        return {"password": ALICE.password}

    user = SimpleNamespace(name=ALICE.name, escaped_name=ALICE.name, id=1, url="/", settings={})
    user.get_auth_state = auth_state
    spawner = JuviniDockerSpawner(config=config, user=user)
    remove_alice_home_volume(client)
    asyncio.run(spawner.prepare_user_shares())
    try:
        yield SpawnedShare(settings.cifs.shares[0], naming, spawner)
    finally:
        remove_alice_home_volume(client)


def test_the_hubs_per_user_volume_has_a_team_shares_options(
    client: docker.DockerClient, alice_home_share: SpawnedShare
) -> None:
    inspected = client.api.inspect_volume(ALICE_HOME_VOLUME)
    share = alice_home_share.share
    # The same share as a team share with a service account called alice: the stack's volume.
    team = share.model_copy(update={"per_user": False, "username": ALICE.name, "password": SecretStr(ALICE.password)})
    assert inspected["Driver"] == "local"
    assert inspected["Options"] == {
        "type": "cifs",
        "device": share.unc,
        "o": cifs_options(team, LAB_UID, LAB_GID, ALICE.name, ALICE.password),
    }
    assert inspected["Labels"] == alice_home_share.naming.labels("user-share")
    assert alice_home_share.spawner.volumes[ALICE_HOME_VOLUME] == {"bind": "/home/labuser/home", "mode": "rw"}


def test_a_container_sees_alices_home_through_the_hubs_volume(
    kernel_mounts_cifs: None, client: docker.DockerClient, alice_home_share: SpawnedShare
) -> None:
    code, output = read_file_through(client, ALICE_HOME_VOLUME, f"notes-{ALICE.name}.txt")
    assert code == 0, output
    assert f"Notes of {ALICE.name}" in output
    assert f"{LAB_UID}:{LAB_GID}" in output
