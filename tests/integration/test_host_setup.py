"""Host setup and TLS applied for real: remote commands over SSH to this machine's sshd."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from infra.host import Host
from infra.settings import load_settings
from infra.tls import Tls
from tests.support.local_stack import SSH_KEY, lab_paths, local_host
from tests.support.provider_double import Deployment, _ssh, apply

pytestmark = pytest.mark.integration


def host_config(root: Path, allow_data_removal: bool = False) -> dict[str, Any]:
    return {
        "host": local_host(),
        "paths": lab_paths(root, tlsDir=root / "etc" / "ssl"),
        "allowDataRemoval": allow_data_removal,
        "tls": {"dnsNames": ["localhost", "lab.test"], "ipAddresses": ["127.0.0.1"]},
    }


def declare_host_and_tls() -> None:
    settings = load_settings()
    host = Host("it-host", settings)
    Tls("it-tls", settings, host)


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    if not SSH_KEY.is_file():
        pytest.fail(f"{SSH_KEY} is missing: run tests/setup.sh")
    folder = Path(tempfile.mkdtemp(prefix="juvini-host-", dir="/var/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def deployment(root: Path) -> Iterator[Deployment]:
    deployment = apply(declare_host_and_tls, host_config(root), "it")
    yield deployment
    deployment.destroy()


def mode_and_owner(path: Path) -> tuple[str, int, int]:
    info = path.stat()
    return oct(stat.S_IMODE(info.st_mode)), info.st_uid, info.st_gid


def test_lab_user_and_group_have_the_fixed_ids_and_docker_access(deployment: Deployment) -> None:
    user = pwd.getpwnam("labuser")
    assert (user.pw_uid, user.pw_gid) == (2100, 2100)
    assert grp.getgrnam("labuser").gr_gid == 2100
    assert "labuser" in grp.getgrnam("docker").gr_mem


def test_folders_have_their_modes_and_belong_to_the_lab_user(deployment: Deployment, root: Path) -> None:
    assert mode_and_owner(root / "shared") == ("0o2775", 2100, 2100)
    assert mode_and_owner(root / "etc" / "ssl") == ("0o700", 2100, 2100)
    assert mode_and_owner(root / "users") == ("0o750", 2100, 2100)
    assert mode_and_owner(root / "hub") == ("0o750", 2100, 2100)


def test_tls_files_are_written_with_their_modes_and_verify(deployment: Deployment, root: Path) -> None:
    ssl_dir = root / "etc" / "ssl"
    assert mode_and_owner(ssl_dir / "server.key") == ("0o600", 2100, 2100)
    assert mode_and_owner(ssl_dir / "server.crt")[1:] == (2100, 2100)
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ssl_dir / "ca.crt"), str(ssl_dir / "server.crt")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    certificate = x509.load_pem_x509_certificate((ssl_dir / "server.crt").read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"localhost", "lab.test"}
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_a_second_run_changes_nothing(deployment: Deployment, root: Path) -> None:
    user_file = root / "shared" / "notes.txt"
    user_file.write_text("a user's file")
    os.chown(user_file, 2100, 2100)
    user_file.chmod(0o640)
    before = {path: mode_and_owner(path) for path in [*root.rglob("*")]}
    commands = [item for item in deployment.double.applied if item.type == "command:remote:Command"]
    for item in commands:
        again = _ssh(deployment.double, item.inputs["connection"], item.inputs["create"], item.inputs.get("stdin"))
        assert again.returncode == 0, f"{item.name}: {again.stderr}"
        assert "created" not in again.stdout and "added" not in again.stdout, f"{item.name}: {again.stdout}"
    after = {path: mode_and_owner(path) for path in [*root.rglob("*")]}
    assert after == before


def test_a_clashing_existing_group_is_an_error_not_a_silent_fix(deployment: Deployment) -> None:
    (user_command,) = [i for i in deployment.double.applied if i.name == "it-host-lab-user"]
    clashing = user_command.inputs["create"].replace("lab_gid=2100", "lab_gid=2199")
    result = _ssh(deployment.double, user_command.inputs["connection"], clashing, None)
    assert result.returncode != 0
    assert "group labuser exists with gid 2100, expected 2199" in result.stderr


def test_destroy_keeps_user_data_and_removes_tls_material(root: Path) -> None:
    other = root / "keep"
    other.mkdir()
    deployment = apply(declare_host_and_tls, host_config(other), "it-keep")
    (other / "users" / "alice").mkdir()
    assert not deployment.destroy()
    assert (other / "users" / "alice").is_dir()
    assert (other / "shared").is_dir() and (other / "hub").is_dir()
    assert not (other / "etc" / "ssl").exists()
    assert pwd.getpwnam("labuser").pw_uid == 2100


def test_destroy_removes_data_and_the_user_only_when_allowed(root: Path) -> None:
    other = root / "remove"
    other.mkdir()
    deployment = apply(declare_host_and_tls, host_config(other, allow_data_removal=True), "it-remove")
    (other / "shared" / "file.txt").write_text("x")
    try:
        assert not deployment.destroy()
        for name in ("shared", "users", "hub", "etc/ssl"):
            assert not (other / name).exists(), name
        with pytest.raises(KeyError):
            pwd.getpwnam("labuser")
    finally:
        # Leave the machine as the other tests expect it: the lab user exists.
        apply(declare_host_and_tls, host_config(root / "restore"), "it-restore")
