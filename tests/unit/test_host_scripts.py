"""The host scripts: parsed by sh and shellcheck, and run for real against stub system tools.

The scripts create the lab user and folders on the Docker host. Here they run without
root: a fake ``bin`` folder first on ``PATH`` holds stub ``getent``, ``groupadd``,
``useradd``, ``usermod``, ``id``, ``userdel``, ``groupdel``, ``install``, ``chown`` and
``stat`` that log their arguments and keep a tiny passwd/group database in files.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra import rendering
from infra.host import file_script, folder_scripts, lab_user_scripts, live_restore_scripts, privileged
from infra.isolation import isolation_scripts, rules_script
from infra.naming import Naming
from infra.network import subnet_check_script
from infra.settings import Settings, parse_settings

pytestmark = pytest.mark.unit

SHELLCHECK = shutil.which("shellcheck")
REAL_STAT = shutil.which("stat")

DEV = Naming("juvini", "dev")

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "custom": {
        "labUser": {"name": "lab-user", "uid": 3001, "gid": 3002, "dockerGroup": "docker-lab"},
        "paths": {
            "sharedDir": "/data/lab.shared",
            "tlsDir": "/etc/juvini-tls.d",
            "usersDir": "/srv/lab-users.v2",
            "hubStateDir": "/var/lib/juvini_hub.state",
        },
    },
    "data-removal": {"allowDataRemoval": True},
    "keep-data": {"allowDataRemoval": False, "labUser": {"name": "lab_user"}},
    "sudo": {"host": {"sshUser": "ops", "useSudo": True}},
    "group-and-data-folders": {
        "paths": {"groupsDir": "/srv/juvini/groups", "dataDir": "/srv/data.sets"},
        "folders": {"groups": ["modellers", "a.b_c-d"]},
    },
    "listed-egress": {"network": {"usersSubnet": "10.9.0.0/24", "egress": ["10.20.0.0/16", "192.0.2.10/32"]}},
}


def scripts(settings: Settings) -> dict[str, str]:
    """Every script the Host component runs, by name."""
    lab_user, lab_user_delete = lab_user_scripts(settings)
    folders, folders_delete = folder_scripts(settings)
    worker_folders, worker_folders_delete = folder_scripts(settings, worker=True)
    subnet_check = subnet_check_script(settings, DEV)
    assert subnet_check is not None, "every variant has an IPv4 users' subnet"
    return {
        "lab-user": lab_user,
        "lab-user-delete": lab_user_delete,
        "folders": folders,
        "folders-delete": folders_delete,
        "worker-folders": worker_folders,
        "worker-folders-delete": worker_folders_delete,
        "file-key": file_script(settings, f"{settings.paths.tls_dir}/server.key", "0600"),
        "file-cert": file_script(settings, f"{settings.paths.tls_dir}/server.crt", "0644"),
        "user-servers-delete": rendering.render("host-user-servers-delete.sh.j2", stack="dev", project="juvini"),
        **dict(
            zip(("live-restore", "live-restore-delete"), live_restore_scripts(Naming("juvini", "dev")), strict=True)
        ),
        **dict(zip(("network-isolation", "network-isolation-delete"), isolation_scripts(settings, DEV), strict=True)),
        "network-isolation-rules": rules_script(settings, DEV),
        "subnet-check": subnet_check,
    }


CASES = [(variant, name) for variant in VARIANTS for name in scripts(parse_settings(VARIANTS[variant]))]
CASE_IDS = [f"{variant}-{name}" for variant, name in CASES]


def render(variant: str, name: str) -> str:
    return scripts(parse_settings(VARIANTS[variant]))[name]


# --- static checks -------------------------------------------------------------------------


@pytest.mark.parametrize(("variant", "name"), CASES, ids=CASE_IDS)
def test_script_parses_with_sh(variant: str, name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.sh"
    path.write_text(render(variant, name), encoding="utf-8")
    result = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed")
@pytest.mark.parametrize(("variant", "name"), CASES, ids=CASE_IDS)
def test_script_passes_shellcheck(variant: str, name: str) -> None:
    result = subprocess.run(
        [SHELLCHECK or "shellcheck", "-s", "sh", "-"],
        input=render(variant, name),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed")
def test_lab_user_script_passes_shellcheck_for_any_valid_name() -> None:
    create, delete = lab_user_scripts(parse_settings({"labUser": {"name": "lab_user-2"}}))
    for script in (create, delete):
        result = subprocess.run(
            [SHELLCHECK or "shellcheck", "-s", "sh", "-"], input=script, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(("variant", "name"), CASES, ids=CASE_IDS)
def test_privileged_command_parses_with_sh(variant: str, name: str, tmp_path: Path) -> None:
    settings = parse_settings(VARIANTS[variant])
    path = tmp_path / "command.sh"
    path.write_text(privileged(settings, scripts(settings)[name]) + "\n", encoding="utf-8")
    result = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_privileged_uses_sudo_only_when_asked(variant: str) -> None:
    settings = parse_settings(VARIANTS[variant])
    command = privileged(settings, "true")
    if settings.host.use_sudo:
        assert command.startswith("sudo -n sh -c "), command
    else:
        assert command.startswith("sh -c "), command
        assert "sudo" not in command


def test_privileged_passes_the_script_intact() -> None:
    script = "printf '%s|' \"it's\" '$HOME' \"a  b\"\necho done"
    command = privileged(parse_settings({}), script)
    # sshd hands a remote command line to the login shell as `sh -c COMMAND`.
    through_privileged = subprocess.run(
        ["sh", "-c", command],
        capture_output=True,
        text=True,
        check=True,
    )
    direct = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert through_privileged.stdout == direct.stdout == "it's|$HOME|a  b|done\n"


# --- a fake host: stub system tools over a tiny passwd/group database ----------------------

_PRELUDE = """#!/bin/sh
db=${FAKE_DB:?}
echo "$(basename "$0") $*" >>"$db/calls.log"
"""

STUBS: dict[str, str] = {
    "getent": """
awk -F: -v k="$2" '$1 == k || $3 == k { print; found = 1 } END { exit found ? 0 : 2 }' "$db/$1"
""",
    "groupadd": """
gid=
while [ $# -gt 1 ]; do
    case $1 in
        --gid) gid=$2; shift 2 ;;
        --system) shift ;;
        *) echo "groupadd: unexpected $1" >&2; exit 2 ;;
    esac
done
if awk -F: -v n="$1" '$1 == n { f = 1 } END { exit !f }' "$db/group"; then
    echo "groupadd: group '$1' already exists" >&2; exit 9
fi
[ -n "$gid" ] || gid=$((900 + $(wc -l <"$db/group")))
echo "$1:x:$gid:" >>"$db/group"
""",
    "useradd": """
uid= gid= home= shell=
while [ $# -gt 1 ]; do
    case $1 in
        --uid) uid=$2; shift 2 ;;
        --gid) gid=$2; shift 2 ;;
        --home-dir) home=$2; shift 2 ;;
        --shell) shell=$2; shift 2 ;;
        --create-home) shift ;;
        *) echo "useradd: unexpected $1" >&2; exit 2 ;;
    esac
done
if awk -F: -v n="$1" '$1 == n { f = 1 } END { exit !f }' "$db/passwd"; then
    echo "useradd: user '$1' already exists" >&2; exit 9
fi
echo "$1:x:$uid:$gid::$home:$shell" >>"$db/passwd"
""",
    "usermod": """
[ "$1 $2" = "--append --groups" ] || { echo "usermod: unexpected $*" >&2; exit 2; }
awk -F: -v OFS=: -v g="$3" -v u="$4" '$1 == g { $4 = ($4 == "" ? u : $4 "," u) } { print }' \
    "$db/group" >"$db/group.new"
mv "$db/group.new" "$db/group"
""",
    "id": """
user=$2
line=$(awk -F: -v n="$user" '$1 == n' "$db/passwd")
[ -n "$line" ] || { echo "id: '$user': no such user" >&2; exit 1; }
case $1 in
    -u) echo "$line" | cut -d: -f3 ;;
    -g) echo "$line" | cut -d: -f4 ;;
    -nG)
        primary=$(echo "$line" | cut -d: -f4)
        awk -F: -v u="$user" -v p="$primary" '
            $3 == p { names = names " " $1; next }
            { n = split($4, m, ","); for (i = 1; i <= n; i++) if (m[i] == u) names = names " " $1 }
            END { print substr(names, 2) }' "$db/group" ;;
    *) echo "id: unexpected $1" >&2; exit 2 ;;
esac
""",
    "userdel": """
[ "$1" = --remove ] && shift
awk -F: -v n="$1" '$1 == n { f = 1 } END { exit !f }' "$db/passwd" || { echo "userdel: no $1" >&2; exit 6; }
awk -F: -v n="$1" '$1 != n' "$db/passwd" >"$db/passwd.new"
mv "$db/passwd.new" "$db/passwd"
""",
    "groupdel": """
awk -F: -v n="$1" '$1 == n { f = 1 } END { exit !f }' "$db/group" || { echo "groupdel: no $1" >&2; exit 6; }
awk -F: -v n="$1" '$1 != n' "$db/group" >"$db/group.new"
mv "$db/group.new" "$db/group"
""",
    # install -d -o UID -g GID -m MODE DIR...: folders and modes for real, owners only logged.
    "install": """
mode=
[ "$1" = -d ] || { echo "install: only -d is stubbed" >&2; exit 2; }
shift
while [ $# -gt 0 ]; do
    case $1 in
        -o|-g) shift 2 ;;
        -m) mode=$2; shift 2 ;;
        *) mkdir -p "$1"; [ -z "$mode" ] || chmod "$mode" "$1"; shift ;;
    esac
done
""",
    # Logs the owner it would set and the mode the file has at that moment.
    "chown": """
[ -z "${FAKE_CHOWN_FAIL:-}" ] || { echo "chown: failing as asked" >&2; exit 1; }
last=
for arg in "$@"; do last=$arg; done
[ ! -e "$last" ] || echo "mode-at-chown $(@REAL_STAT@ -c %a "$last") $last" >>"$db/calls.log"
""",
    "stat": """
exec @REAL_STAT@ "$@"
""",
}
#: Tools that would change the real system if a script started using them: refused loudly.
UNSTUBBED = ("adduser", "addgroup", "gpasswd", "passwd", "chgrp", "deluser", "delgroup", "sudo")


@dataclass
class FakeHost:
    """Stub tools on PATH and their database; ``run`` executes a privileged command line."""

    root: Path
    db: Path
    env: dict[str, str]

    def run(self, settings: Settings, script: str, stdin: str = "", **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["sh", "-c", privileged(settings, script)],  # as sshd runs a remote command
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env | extra_env,
            check=False,
        )

    def calls(self) -> list[str]:
        log = self.db / "calls.log"
        return log.read_text(encoding="utf-8").splitlines() if log.exists() else []

    def clear_calls(self) -> None:
        (self.db / "calls.log").unlink(missing_ok=True)

    def calls_to(self, tool: str) -> list[str]:
        return [call for call in self.calls() if call.split(" ", 1)[0] == tool]

    def database(self, name: str) -> list[str]:
        return (self.db / name).read_text(encoding="utf-8").splitlines()

    def add(self, name: str, line: str) -> None:
        with (self.db / name).open("a", encoding="utf-8") as database:
            database.write(line + "\n")


@pytest.fixture
def fake_host(tmp_path: Path) -> FakeHost:
    assert REAL_STAT is not None
    bin_dir = tmp_path / "fake-bin"
    db = tmp_path / "fake-db"
    bin_dir.mkdir()
    db.mkdir()
    for name, body in STUBS.items():
        stub = bin_dir / name
        stub.write_text(_PRELUDE + body.replace("@REAL_STAT@", REAL_STAT), encoding="utf-8")
        stub.chmod(0o755)
    for name in UNSTUBBED:
        stub = bin_dir / name
        stub.write_text(f"#!/bin/sh\necho '{name} is not stubbed in this test' >&2\nexit 127\n", encoding="utf-8")
        stub.chmod(0o755)
    (db / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n", encoding="utf-8")
    (db / "group").write_text("root:x:0:\n", encoding="utf-8")
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_DB": str(db), "LC_ALL": "C"}
    return FakeHost(tmp_path, db, env)


def folder_settings(root: Path, **raw: Any) -> Settings:
    """Settings whose four lab folders lie under ``root``."""
    paths = {
        "sharedDir": str(root / "shared.d"),
        "tlsDir": str(root / "etc" / "juvini-tls"),
        "usersDir": str(root / "srv" / "users"),
        "hubStateDir": str(root / "srv" / "hub-state"),
    }
    return parse_settings({"paths": paths, **raw})


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the lab user --------------------------------------------------------------------------


def test_lab_user_first_run_creates_group_and_user(fake_host: FakeHost) -> None:
    settings = parse_settings({})
    result = fake_host.run(settings, lab_user_scripts(settings)[0])
    assert result.returncode == 0, result.stderr
    assert "groupadd --gid 2100 labuser" in fake_host.calls()
    assert (
        "useradd --uid 2100 --gid 2100 --home-dir /home/labuser --create-home --shell /bin/bash labuser"
        in fake_host.calls()
    )
    assert "labuser:x:2100:" in fake_host.database("group")
    assert "labuser:x:2100:2100::/home/labuser:/bin/bash" in fake_host.database("passwd")


def test_lab_user_joins_the_docker_group(fake_host: FakeHost) -> None:
    fake_host.add("group", "docker:x:998:")
    settings = parse_settings({})
    result = fake_host.run(settings, lab_user_scripts(settings)[0])
    assert result.returncode == 0, result.stderr
    assert fake_host.calls_to("usermod") == ["usermod --append --groups docker labuser"]
    assert "docker:x:998:labuser" in fake_host.database("group")
    assert fake_host.calls_to("groupadd") == ["groupadd --gid 2100 labuser"]  # docker group already there


def test_lab_user_creates_a_missing_docker_group(fake_host: FakeHost) -> None:
    settings = parse_settings({})
    result = fake_host.run(settings, lab_user_scripts(settings)[0])
    assert result.returncode == 0, result.stderr
    assert "groupadd --system docker" in fake_host.calls()


def test_lab_user_custom_ids_and_names(fake_host: FakeHost) -> None:
    settings = parse_settings(VARIANTS["custom"])
    result = fake_host.run(settings, lab_user_scripts(settings)[0])
    assert result.returncode == 0, result.stderr
    assert "groupadd --gid 3002 lab-user" in fake_host.calls()
    assert (
        "useradd --uid 3001 --gid 3002 --home-dir /home/lab-user --create-home --shell /bin/bash lab-user"
        in fake_host.calls()
    )
    assert "usermod --append --groups docker-lab lab-user" in fake_host.calls()


def test_lab_user_second_run_changes_nothing(fake_host: FakeHost) -> None:
    settings = parse_settings({})
    script = lab_user_scripts(settings)[0]
    assert fake_host.run(settings, script).returncode == 0
    passwd, group = fake_host.database("passwd"), fake_host.database("group")
    fake_host.clear_calls()
    result = fake_host.run(settings, script)
    assert result.returncode == 0, result.stderr
    for tool in ("groupadd", "useradd", "usermod"):
        assert fake_host.calls_to(tool) == [], f"second run called {tool}"
    assert (fake_host.database("passwd"), fake_host.database("group")) == (passwd, group)


def test_lab_user_fails_on_existing_group_with_another_gid(fake_host: FakeHost) -> None:
    fake_host.add("group", "labuser:x:4242:")
    settings = parse_settings({})
    result = fake_host.run(settings, lab_user_scripts(settings)[0])
    assert result.returncode != 0
    assert "gid 4242" in result.stderr
    assert "2100" in result.stderr
    assert fake_host.calls_to("groupadd") == []
    assert fake_host.calls_to("useradd") == []


def test_lab_user_fails_when_the_gid_belongs_to_another_group(fake_host: FakeHost) -> None:
    fake_host.add("group", "staff:x:2100:")
    settings = parse_settings({})
    result = fake_host.run(settings, lab_user_scripts(settings)[0])
    assert result.returncode != 0
    assert "gid 2100 already belongs to group staff" in result.stderr
    assert fake_host.calls_to("groupadd") == []


def test_lab_user_fails_on_existing_user_with_another_uid(fake_host: FakeHost) -> None:
    fake_host.add("group", "labuser:x:2100:")
    fake_host.add("passwd", "labuser:x:4343:2100::/home/labuser:/bin/bash")
    settings = parse_settings({})
    result = fake_host.run(settings, lab_user_scripts(settings)[0])
    assert result.returncode != 0
    assert "uid 4343" in result.stderr
    assert fake_host.calls_to("useradd") == []


def test_lab_user_delete_keeps_the_account_without_data_removal(fake_host: FakeHost) -> None:
    fake_host.add("group", "labuser:x:2100:")
    fake_host.add("passwd", "labuser:x:2100:2100::/home/labuser:/bin/bash")
    settings = parse_settings({"allowDataRemoval": False})
    result = fake_host.run(settings, lab_user_scripts(settings)[1])
    assert result.returncode == 0, result.stderr
    assert "keeping user and group labuser" in result.stdout
    assert fake_host.calls_to("userdel") == []
    assert fake_host.calls_to("groupdel") == []
    assert "labuser:x:2100:2100::/home/labuser:/bin/bash" in fake_host.database("passwd")


def test_lab_user_delete_removes_the_account_with_data_removal(fake_host: FakeHost) -> None:
    fake_host.add("group", "labuser:x:2100:")
    fake_host.add("passwd", "labuser:x:2100:2100::/home/labuser:/bin/bash")
    settings = parse_settings({"allowDataRemoval": True})
    result = fake_host.run(settings, lab_user_scripts(settings)[1])
    assert result.returncode == 0, result.stderr
    assert fake_host.calls_to("userdel") == ["userdel --remove labuser"]
    assert fake_host.calls_to("groupdel") == ["groupdel labuser"]
    assert not any(line.startswith("labuser:") for line in fake_host.database("passwd"))
    assert not any(line.startswith("labuser:") for line in fake_host.database("group"))


def test_lab_user_delete_of_an_absent_account_succeeds(fake_host: FakeHost) -> None:
    settings = parse_settings({"allowDataRemoval": True})
    result = fake_host.run(settings, lab_user_scripts(settings)[1])
    assert result.returncode == 0, result.stderr
    assert fake_host.calls_to("userdel") == []
    assert fake_host.calls_to("groupdel") == []


# --- the lab's folders ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "owner"),
    [({}, "2100 -g 2100"), ({"labUser": {"uid": 3001, "gid": 3002}}, "3001 -g 3002")],
    ids=["default-owner", "custom-owner"],
)
def test_folders_are_installed_with_modes_and_owner(fake_host: FakeHost, raw: dict, owner: str) -> None:
    settings = folder_settings(fake_host.root / "host", **raw)
    paths = settings.paths
    result = fake_host.run(settings, folder_scripts(settings)[0])
    assert result.returncode == 0, result.stderr
    assert fake_host.calls_to("install") == [
        f"install -d -o {owner} -m 2775 {paths.shared_dir}",
        f"install -d -o {owner} -m 0700 {paths.tls_dir}",
        f"install -d -o {owner} -m 0750 {paths.users_dir}",
        f"install -d -o {owner} -m 0750 {paths.hub_state_dir}",
    ]
    expected = {paths.shared_dir: 0o2775, paths.tls_dir: 0o700, paths.users_dir: 0o750, paths.hub_state_dir: 0o750}
    for folder, mode in expected.items():
        assert mode_of(Path(folder)) == mode, folder
        assert any(line.startswith(f"{mode:o} ") and line.endswith(f" {folder}") for line in result.stdout.splitlines())


def test_folders_rerun_keeps_what_users_stored(fake_host: FakeHost) -> None:
    settings = folder_settings(fake_host.root / "host")
    script = folder_scripts(settings)[0]
    assert fake_host.run(settings, script).returncode == 0
    notebook = Path(settings.paths.users_dir) / "alice" / "work.ipynb"
    notebook.parent.mkdir()
    notebook.write_text("{}", encoding="utf-8")
    result = fake_host.run(settings, script)
    assert result.returncode == 0, result.stderr
    assert notebook.read_text(encoding="utf-8") == "{}"


def _populated_folders(fake_host: FakeHost, settings: Settings) -> dict[str, Path]:
    assert fake_host.run(settings, folder_scripts(settings)[0]).returncode == 0
    files = {}
    for name in ("shared_dir", "tls_dir", "users_dir", "hub_state_dir"):
        file = Path(getattr(settings.paths, name)) / "data.txt"
        file.write_text(name, encoding="utf-8")
        files[name] = file
    return files


def test_folders_delete_keeps_user_data_without_data_removal(fake_host: FakeHost) -> None:
    settings = folder_settings(fake_host.root / "host", allowDataRemoval=False)
    files = _populated_folders(fake_host, settings)
    result = fake_host.run(settings, folder_scripts(settings)[1])
    assert result.returncode == 0, result.stderr
    assert not Path(settings.paths.tls_dir).exists()
    for name in ("shared_dir", "users_dir", "hub_state_dir"):
        assert files[name].read_text(encoding="utf-8") == name
    assert result.stdout.count("allowDataRemoval is false") == 3


def test_folders_delete_removes_everything_with_data_removal(fake_host: FakeHost) -> None:
    settings = folder_settings(fake_host.root / "host", allowDataRemoval=True)
    _populated_folders(fake_host, settings)
    result = fake_host.run(settings, folder_scripts(settings)[1])
    assert result.returncode == 0, result.stderr
    for name in ("shared_dir", "tls_dir", "users_dir", "hub_state_dir"):
        assert not Path(getattr(settings.paths, name)).exists(), name


def test_a_worker_gets_only_the_folders_users_servers_mount(fake_host: FakeHost) -> None:
    settings = folder_settings(fake_host.root / "host")
    paths = settings.paths
    result = fake_host.run(settings, folder_scripts(settings, worker=True)[0])
    assert result.returncode == 0, result.stderr
    assert fake_host.calls_to("install") == [
        f"install -d -o 2100 -g 2100 -m 2775 {paths.shared_dir}",
        f"install -d -o 2100 -g 2100 -m 0750 {paths.users_dir}",
    ]
    assert not Path(paths.tls_dir).exists() and not Path(paths.hub_state_dir).exists()


def test_a_workers_destroy_keeps_the_shared_storage_even_with_data_removal(fake_host: FakeHost) -> None:
    """A worker leaving the stack must not remove what its folders are: the shared users' data."""
    settings = folder_settings(fake_host.root / "host", allowDataRemoval=True)
    files = _populated_folders(fake_host, settings)
    result = fake_host.run(settings, folder_scripts(settings, worker=True)[1])
    assert result.returncode == 0, result.stderr
    for name, file in files.items():
        assert file.read_text(encoding="utf-8") == name, name
    assert result.stdout.count("the shared storage is the manager's") == 2, result.stdout


def test_folders_delete_twice_succeeds(fake_host: FakeHost) -> None:
    settings = folder_settings(fake_host.root / "host", allowDataRemoval=True)
    _populated_folders(fake_host, settings)
    delete = folder_scripts(settings)[1]
    assert fake_host.run(settings, delete).returncode == 0
    result = fake_host.run(settings, delete)
    assert result.returncode == 0, result.stderr


# --- the file writer -----------------------------------------------------------------------

PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def tls_folder(fake_host: FakeHost) -> Path:
    folder = fake_host.root / "tls"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("mode", ["0600", "0644"])
def test_file_writer_writes_stdin_with_mode(fake_host: FakeHost, tls_folder: Path, mode: str) -> None:
    settings = parse_settings({})
    target = tls_folder / "server.key"
    result = fake_host.run(settings, file_script(settings, str(target), mode), stdin=PRIVATE_KEY)
    assert result.returncode == 0, result.stderr
    assert target.read_text(encoding="utf-8") == PRIVATE_KEY
    assert mode_of(target) == int(mode, 8)
    assert f"chown 2100:2100 {target}.juvini-tmp" in fake_host.calls()


def test_file_writer_replaces_the_target_by_rename(fake_host: FakeHost, tls_folder: Path) -> None:
    settings = parse_settings({})
    target = tls_folder / "server.key"
    target.write_text("old key\n", encoding="utf-8")
    old_inode = target.stat().st_ino
    with target.open(encoding="utf-8") as reader:  # a reader holding the old file keeps it whole
        result = fake_host.run(settings, file_script(settings, str(target), "0600"), stdin=PRIVATE_KEY)
        assert reader.read() == "old key\n"
    assert result.returncode == 0, result.stderr
    assert target.stat().st_ino != old_inode
    assert target.read_text(encoding="utf-8") == PRIVATE_KEY
    assert sorted(path.name for path in tls_folder.iterdir()) == ["server.key"]


def test_file_writer_never_exposes_the_content_while_writing(fake_host: FakeHost, tls_folder: Path) -> None:
    settings = parse_settings({})
    target = tls_folder / "server.crt"
    result = fake_host.run(settings, file_script(settings, str(target), "0644"), stdin=PRIVATE_KEY)
    assert result.returncode == 0, result.stderr
    # Before the final chmod the temporary file is private (umask 077).
    assert f"mode-at-chown 600 {target}.juvini-tmp" in fake_host.calls()


def test_file_writer_failure_leaves_the_target_untouched(fake_host: FakeHost, tls_folder: Path) -> None:
    settings = parse_settings({})
    target = tls_folder / "server.key"
    target.write_text("old key\n", encoding="utf-8")
    target.chmod(0o600)
    result = fake_host.run(settings, file_script(settings, str(target), "0600"), stdin=PRIVATE_KEY, FAKE_CHOWN_FAIL="1")
    assert result.returncode != 0
    assert target.read_text(encoding="utf-8") == "old key\n"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_file_content_is_never_on_the_command_line(variant: str) -> None:
    settings = parse_settings(VARIANTS[variant])
    command = privileged(settings, file_script(settings, f"{settings.paths.tls_dir}/server.key", "0600"))
    assert "PRIVATE KEY" not in command
    assert "c2VjcmV0" not in command


def test_file_content_stays_out_of_the_output(fake_host: FakeHost, tls_folder: Path) -> None:
    settings = parse_settings({})
    target = tls_folder / "server.key"
    result = fake_host.run(settings, file_script(settings, str(target), "0600"), stdin=PRIVATE_KEY)
    assert result.returncode == 0, result.stderr
    assert "c2VjcmV0" not in result.stdout + result.stderr
    assert not any("c2VjcmV0" in call for call in fake_host.calls())


# --- group folders and the read-only data folder -------------------------------------------


def with_group_and_data_folders(root: Path, **raw: Any) -> Settings:
    paths = {"groupsDir": str(root / "srv" / "groups"), "dataDir": str(root / "data")}
    settings = folder_settings(root, **raw)
    extra = {"paths": settings.paths.model_dump(by_alias=True, exclude_none=True) | paths}
    return parse_settings({**raw, **extra, "folders": {"groups": ["modellers", "analysts"]}})


def test_group_folders_are_made_like_the_shared_folder_and_the_data_folder_root_owned(fake_host: FakeHost) -> None:
    settings = with_group_and_data_folders(fake_host.root / "host")
    groups, data = Path(str(settings.paths.groups_dir)), Path(str(settings.paths.data_dir))
    result = fake_host.run(settings, folder_scripts(settings)[0])
    assert result.returncode == 0, result.stderr
    assert fake_host.calls_to("install")[4:] == [
        f"install -d -o 2100 -g 2100 -m 0750 {groups}",
        f"install -d -o 2100 -g 2100 -m 2775 {groups}/modellers",
        f"install -d -o 2100 -g 2100 -m 2775 {groups}/analysts",
        f"install -d -o 0 -g 0 -m 0755 {data}",
    ]
    for folder, mode in ((groups, 0o750), (groups / "modellers", 0o2775), (groups / "analysts", 0o2775), (data, 0o755)):
        assert mode_of(folder) == mode, folder
    listed = {line.rsplit(" ", 1)[1]: line.split(" ", 1)[0] for line in result.stdout.splitlines()}
    assert {folder: listed[str(folder)] for folder in (groups / "modellers", data)} == {
        groups / "modellers": "2775",
        data: "755",
    }


def test_an_existing_data_folder_is_left_as_it_is(fake_host: FakeHost) -> None:
    settings = with_group_and_data_folders(fake_host.root / "host")
    data = Path(str(settings.paths.data_dir))
    data.mkdir(parents=True, mode=0o700)
    (data / "set.csv").write_text("a,b\n", encoding="utf-8")
    result = fake_host.run(settings, folder_scripts(settings)[0])
    assert result.returncode == 0, result.stderr
    assert not [call for call in fake_host.calls_to("install") if call.endswith(f" {data}")]
    assert mode_of(data) == 0o700
    assert (data / "set.csv").read_text(encoding="utf-8") == "a,b\n"


@pytest.mark.parametrize("allow", [False, True], ids=["keep-data", "data-removal"])
def test_destroy_treats_group_folders_as_user_data_and_never_removes_the_data_folder(
    fake_host: FakeHost, allow: bool
) -> None:
    settings = with_group_and_data_folders(fake_host.root / "host", allowDataRemoval=allow)
    assert fake_host.run(settings, folder_scripts(settings)[0]).returncode == 0
    shared_work = Path(str(settings.paths.groups_dir)) / "modellers" / "model.txt"
    shared_work.write_text("ours", encoding="utf-8")
    dataset = Path(str(settings.paths.data_dir)) / "set.csv"
    dataset.write_text("a,b", encoding="utf-8")
    result = fake_host.run(settings, folder_scripts(settings)[1])
    assert result.returncode == 0, result.stderr
    assert shared_work.exists() is not allow
    assert dataset.read_text(encoding="utf-8") == "a,b"
    assert f"keeping {settings.paths.data_dir}: the read-only data folder is the admins'" in result.stdout
