"""A CIFS share for the lab: the Samba peer serves it, and Docker volumes can mount it.

The share is checked with a real ``smbclient`` in a throwaway container of the samba
peer's image, on the peers' network. The Docker volume (driver ``local``,
``type=cifs``) is created and inspected on the real engine; mounting it needs cifs
support in the kernel, which is detected, and the mount test skips without it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import NotFound
from docker.models.volumes import Volume

from tests.support import peers
from tests.support.peers import ALICE, BOB, LABELS, SMB_HOSTNAME, TEAM_FILE, TEAM_FILE_TEXT, TEAM_SHARE, Account, Peer

pytestmark = pytest.mark.integration

VOLUME = "juvini-test-cifs-team"
#: The lab user's ids (LabUserSettings defaults): files on the mounted share belong to them.
LAB_UID = LAB_GID = 2100


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


def cifs_options(samba: Peer, account: Account) -> dict[str, str]:
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
        driver_opts=cifs_options(samba, ALICE),
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
    assert inspected["Options"] == cifs_options(samba, ALICE)
    assert inspected["Labels"]["org.juvini.stack"] == "peers"


def test_a_container_sees_the_share_through_the_cifs_volume(client: docker.DockerClient, cifs_volume: Volume) -> None:
    missing = kernel_cifs_support()
    if missing is not None:
        pytest.skip(f"kernel has no cifs support: {missing}")
    container = client.containers.create(
        peers.ensure_base_image(),
        command=["sh", "-c", f"stat -c '%u:%g' /mnt/team/{TEAM_FILE} && cat /mnt/team/{TEAM_FILE}"],
        volumes={VOLUME: {"bind": "/mnt/team", "mode": "ro"}},
        labels=LABELS | {"org.juvini.role": "cifs-client"},
    )
    try:
        container.start()
        status = container.wait(timeout=60)
        output = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert status["StatusCode"] == 0, output
    assert TEAM_FILE_TEXT.strip() in output
    # the mount maps every file to the lab user, whoever owns it on the server
    assert f"{LAB_UID}:{LAB_GID}" in output
