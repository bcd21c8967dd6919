"""The registry's scripts on each node, run for real: the CA written where Docker looks for it
(``/etc/docker/certs.d/<registry>/``) and taken back, and the check that each node's engine can
fetch the lab's images, against a stub engine API on a unix socket that answers
``GET /distribution/<image>/json`` as the engine does, and records the login header it gets."""

from __future__ import annotations

import base64
import json
import shutil
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from infra.host import Node, registry_ca_scripts
from infra.naming import Naming
from infra.settings import Settings, parse_settings
from infra.swarm import registry_auth_header, registry_check_script

pytestmark = pytest.mark.unit

SHELLCHECK = shutil.which("shellcheck")
STACK = Naming("juvini", "dev")
CA = "-----BEGIN CERTIFICATE-----\nMIIBregistryCA\n-----END CERTIFICATE-----\n"
IMAGES = ["registry.example.org:5000/lab/juvini-dev-notebook-base:1.0", "registry.example.org:5000/lab/other:1.0"]
DIGEST = "sha256:" + "ab" * 32


def settings(tmp: Path, **images: Any) -> Settings:
    return parse_settings(
        {
            "host": {"address": "10.0.0.10"},
            "dockerSocket": str(tmp / "docker.sock"),
            "images": {"registry": "registry.example.org:5000/lab", "push": True, **images},
            "swarm": {"enabled": True, "workers": [{"name": "worker-1", "address": "10.0.0.11"}]},
        }
    )


def worker(found: Settings) -> Node:
    return Node.of_worker(found, found.swarm.workers[0])


@dataclass
class Distribution:
    """The stub engine's distribution endpoint: an answer per image, the requests it got."""

    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class Endpoint(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, socket_path: Path, distribution: Distribution) -> None:
        self.distribution = distribution
        super().__init__(str(socket_path), Handler)


class Handler(BaseHTTPRequestHandler):
    server: Endpoint

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        distribution = self.server.distribution
        image = self.path.removeprefix("/distribution/").removesuffix("/json")
        distribution.requests.append((image, self.headers.get("X-Registry-Auth")))
        status, body = distribution.answers.get(image, (404, {"message": f"no such image: {image}"}))
        answer = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[Distribution]:
    found = Distribution()
    server = Endpoint(tmp_path / "docker.sock", found)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


def check(found: Settings, stdin: str = "") -> subprocess.CompletedProcess[str]:
    script = registry_check_script(found, worker(found), IMAGES)
    return subprocess.run(["sh", "-c", script], input=stdin, capture_output=True, text=True, check=False)


def resolvable() -> dict[str, tuple[int, dict[str, Any]]]:
    return {
        image: (
            200,
            {
                "Descriptor": {
                    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "digest": DIGEST,
                    "size": 1,
                },
                "Platforms": [],
            },
        )
        for image in IMAGES
    }


def test_each_image_is_resolved_by_the_engine_and_its_digest_printed(
    tmp_path: Path, distribution: Distribution
) -> None:
    distribution.answers = resolvable()
    result = check(settings(tmp_path))
    assert result.returncode == 0, result.stderr
    assert [image for image, _ in distribution.requests] == IMAGES
    assert all(header is None for _, header in distribution.requests), "no login: no header"
    for image in IMAGES:
        assert f"registry: {image} resolves to {DIGEST} here" in result.stdout


def test_the_pull_login_goes_to_the_engine_as_its_header_from_stdin(tmp_path: Path, distribution: Distribution) -> None:
    distribution.answers = resolvable()
    found = settings(tmp_path, pullUsername="puller", pullPassword="pull-secret")
    header = registry_auth_header(found)
    assert header is not None
    result = check(found, header)
    assert result.returncode == 0, result.stderr
    assert {sent for _, sent in distribution.requests} == {header}
    login = json.loads(base64.urlsafe_b64decode(header))
    assert login == {"username": "puller", "password": "pull-secret", "serveraddress": "registry.example.org:5000"}
    assert "pull-secret" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("message", "advice"),
    [
        (
            "Get https://registry.example.org:5000/v2/: x509: certificate signed by unknown authority",
            "set images.registryCa to the registry's CA, or put it in /etc/docker/certs.d/registry.example.org:5000/",
        ),
        (
            "Get https://registry.example.org:5000/v2/: http: server gave HTTP response to HTTPS client",
            "list registry.example.org:5000 in this engine's insecure-registries (/etc/docker/daemon.json)",
        ),
        ("unauthorized: authentication required", "set images.pullUsername and images.pullPassword"),
        ("dial tcp 10.9.9.9:5000: connect: no route to host", "is the registry reachable from this node"),
    ],
)
def test_an_image_the_engine_cannot_fetch_fails_naming_the_node_the_image_and_what_to_set(
    tmp_path: Path, distribution: Distribution, message: str, advice: str
) -> None:
    distribution.answers = resolvable() | {IMAGES[1]: (500, {"message": message})}
    result = check(settings(tmp_path))
    assert result.returncode == 1
    assert "juvini swarm: swarm node worker-1 (10.0.0.11):" in result.stderr
    assert IMAGES[1] in result.stderr and message in result.stderr and advice in result.stderr, result.stderr


def test_a_refused_login_says_the_one_set_is_refused(tmp_path: Path, distribution: Distribution) -> None:
    distribution.answers = {IMAGES[0]: (500, {"message": "unauthorized: incorrect username or password"})}
    found = settings(tmp_path, pullUsername="puller", pullPassword="wrong")
    result = check(found, registry_auth_header(found) or "")
    assert result.returncode == 1
    assert "(the ones set are refused)" in result.stderr and "wrong" not in result.stderr


def test_no_engine_fails_naming_the_node(tmp_path: Path) -> None:
    result = check(settings(tmp_path))
    assert result.returncode == 1
    assert "swarm node worker-1 (10.0.0.11): could not ask the engine" in result.stderr


def ca_scripts(folder: Path, found: Settings) -> tuple[str, str]:
    """The CA scripts as rendered for ``found``, with the certs.d folder moved under ``folder``."""
    create, delete = registry_ca_scripts(found, STACK, worker(found))
    return (
        create.replace("/etc/docker/certs.d", str(folder)),
        delete.replace("/etc/docker/certs.d", str(folder)),
    )


def test_the_ca_is_written_where_docker_reads_it_for_that_registry_and_taken_back(tmp_path: Path) -> None:
    found = settings(tmp_path, registryCa=CA)
    create, delete = ca_scripts(tmp_path / "certs.d", found)
    folder = tmp_path / "certs.d" / "registry.example.org:5000"
    other = folder / "juvini-prod.crt"
    for _ in range(2):  # idempotent
        result = subprocess.run(["sh", "-c", create], input=CA, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
    written = folder / "juvini-dev.crt"
    assert written.read_text() == CA
    assert oct(written.stat().st_mode & 0o777) == "0o644"
    assert sorted(path.name for path in folder.iterdir()) == ["juvini-dev.crt"], "no temporary file left"
    other.write_text(CA)
    subprocess.run(["sh", "-c", delete], check=True)
    assert sorted(path.name for path in folder.iterdir()) == ["juvini-prod.crt"], "another stack's CA stays"
    other.unlink()
    subprocess.run(["sh", "-c", create], input=CA, text=True, check=True)
    subprocess.run(["sh", "-c", delete], check=True)
    assert not folder.exists(), "the folder goes once empty"


def test_no_certificate_on_stdin_fails_and_keeps_the_ca_there(tmp_path: Path) -> None:
    found = settings(tmp_path, registryCa=CA)
    create, _ = ca_scripts(tmp_path / "certs.d", found)
    subprocess.run(["sh", "-c", create], input=CA, text=True, check=True)
    result = subprocess.run(["sh", "-c", create], input="", capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "node worker-1 (10.0.0.11): no CA certificate arrived" in result.stderr
    assert (tmp_path / "certs.d" / "registry.example.org:5000" / "juvini-dev.crt").read_text() == CA


def every_script(tmp: Path) -> dict[str, str]:
    found = settings(tmp, registryCa=CA, pullUsername="puller", pullPassword="pull-secret")
    create, delete = registry_ca_scripts(found, STACK, worker(found))
    return {"registry-ca": create, "registry-ca-delete": delete, "registry-check": check_script(found)}


def check_script(found: Settings) -> str:
    return registry_check_script(found, worker(found), IMAGES)


@pytest.mark.parametrize("name", ["registry-ca", "registry-ca-delete", "registry-check"])
def test_script_parses_with_sh_and_passes_shellcheck(name: str, tmp_path: Path) -> None:
    script = every_script(tmp_path)[name]
    parsed = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True, check=False)
    assert parsed.returncode == 0, parsed.stderr
    if SHELLCHECK:
        linted = subprocess.run(
            [SHELLCHECK, "-s", "sh", "-"], input=script, capture_output=True, text=True, check=False
        )
        assert linted.returncode == 0, linted.stdout


def test_the_ca_scripts_need_a_registry() -> None:
    found = parse_settings({"host": {"address": "10.0.0.10"}})
    with pytest.raises(ValueError, match=r"images\.registryCa needs images\.registry"):
        registry_ca_scripts(found, STACK, Node.manager(found))
