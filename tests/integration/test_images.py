"""The lab's images, built for real from images/ and checked by running them.

The chain is built once per session (Docker's layer cache makes a rebuild with no
change take seconds), in the program's order: the Debian base made by
images/tools/make-base-image.sh, the foundation on it with this host's extra CAs, the
hub and notebook-base on the foundation, notebook-datascience on notebook-base and
notebook-pyspark on notebook-datascience, which inherit the foundation's trust store.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pip._internal.models.index import PyPI

from infra.hub_config import server_culling_args
from infra.settings import parse_settings
from tests.support.anaconda import expected_in_datascience, not_installed
from tests.support.images import (
    BASE_IMAGE_TAG,
    IMAGES_DIR,
    SIZE_GOALS,
    TOOLS_DIR,
    ImageChain,
    ImageToolError,
    build_image,
    canonical_name,
    certificates_der,
    docker,
    ensure_base_image,
    ensure_engine,
    extra_ca_bundle,
    image_config,
    image_id,
    parse_pins,
    pinned_versions,
    run_in,
)
from tests.support.startup import (
    SERVER_PORT,
    SERVER_PREFIX,
    STUB_HUB,
    ServerStart,
    hub_environment,
    imported,
    start_server,
)

pytestmark = pytest.mark.integration

TAG = "dev"
LAB_UID = 2100
LAB_GID = 2100
LAB_USER = "labuser"
LAB_HOME = f"/home/{LAB_USER}"
JUVINI_VERSION = "0.1.0"
CHP_VERSION = "4.6.3"
SYSTEM_BUNDLE_IN_IMAGE = "/etc/ssl/certs/ca-certificates.crt"
CA_ENV_VARS = (
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
)
#: Where the foundation writes the extra CAs, one file per certificate.
EXTRA_CA_DIR = "/usr/local/share/ca-certificates"
#: An HTTPS page the images must be able to fetch through the host's proxy.
HTTPS_PROBE_URL = PyPI.simple_url.rstrip("/") + "/pip/"  # pip's default index, reached through the proxy
#: A small pure-Python package that none of the images ships.
USER_PACKAGE, USER_PACKAGE_VERSION, USER_MODULE = "tomli-w", "1.2.0", "tomli_w"
#: A small package whose dependency notebook-base lacks (what pip check then says is missing).
BROKEN_PACKAGE, BROKEN_PACKAGE_MISSING = "python-slugify==8.0.4", "text-unidecode"
#: How long a started server gets to answer.
START_DEADLINE_SECONDS = 120

#: The images with a venv and a frozen requirements.txt: all but the foundation.
IMAGE_FIXTURES = ("hub_image", "notebook_base_image", "datascience_image", "pyspark_image")
NOTEBOOK_FIXTURES = IMAGE_FIXTURES[1:]
ALL_FIXTURES = ("foundation_image", *IMAGE_FIXTURES)
#: images/ folder of each image fixture.
IMAGE_DIRS = {
    "foundation_image": "foundation",
    "hub_image": "hub",
    "notebook_base_image": "notebook-base",
    "datascience_image": "notebook-datascience",
    "pyspark_image": "notebook-pyspark",
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def engine() -> None:
    ensure_engine()


@pytest.fixture(scope="session")
def extra_ca() -> str:
    return extra_ca_bundle()


@pytest.fixture(scope="session")
def base_os_image(engine: None) -> str:
    return ensure_base_image(BASE_IMAGE_TAG)


@pytest.fixture(scope="session")
def chain(base_os_image: str, extra_ca: str) -> ImageChain:
    """Each image built on first use, after its parents (foundation -> hub, foundation -> base -> ...)."""
    return ImageChain(base_os_image, extra_ca, prefix="juvini-test", tag=TAG, version=JUVINI_VERSION)


@pytest.fixture(scope="session")
def foundation_image(chain: ImageChain) -> str:
    return chain.image("foundation")


@pytest.fixture(scope="session")
def hub_image(chain: ImageChain) -> str:
    return chain.image("hub")


@pytest.fixture(scope="session")
def notebook_base_image(chain: ImageChain) -> str:
    return chain.image("base")


@pytest.fixture(scope="session")
def datascience_image(chain: ImageChain) -> str:
    return chain.image("datascience")


@pytest.fixture(scope="session")
def pyspark_image(chain: ImageChain) -> str:
    return chain.image("pyspark")


@pytest.fixture
def lab_home(tmp_path: Path) -> Path:
    """An empty host folder owned by the lab user, as the lab mounts at the home directory."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give a folder to uid 2100")
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, LAB_UID, LAB_GID)
    return home


@pytest.fixture
def container_names() -> Iterator[list[str]]:
    """Names for detached containers; every one is removed after the test."""
    names: list[str] = []
    yield names
    for name in names:
        docker("rm", "--force", name, check=False)


def _new_name(names: list[str], role: str) -> str:
    name = f"juvini-test-{role}-{uuid.uuid4().hex[:10]}"
    names.append(name)
    return name


def _published_port(container: str, port: int) -> int:
    mapping = docker("port", container, f"{port}/tcp").stdout.split()[0]
    return int(mapping.rsplit(":", 1)[1])


def _logs(container: str) -> str:
    result = docker("logs", "--tail", "60", container, check=False)
    return (result.stdout + result.stderr)[-6000:]


def _wait_for_http(
    url: str, container: str, deadline_seconds: float = START_DEADLINE_SECONDS, ready: frozenset[int] = frozenset({200})
) -> requests.Response:
    """GET ``url`` until it answers with a status in ``ready``, or fail with the container's logs.

    Other answers count as "not yet": the proxy answers 404 until the hub has added its route.
    """
    deadline = time.monotonic() + deadline_seconds
    last_error = "no attempt"
    while time.monotonic() < deadline:
        try:
            response = requests.get(url, timeout=5, allow_redirects=False)
            if response.status_code in ready:
                return response
            last_error = f"HTTP {response.status_code}"
        except requests.RequestException as error:
            last_error = repr(error)
        state = docker("inspect", "--format", "{{.State.Running}}", container, check=False).stdout.strip()
        if state != "true":
            pytest.fail(f"{container} stopped before {url} answered:\n{_logs(container)}")
        time.sleep(1)
    pytest.fail(f"{url} did not answer within {deadline_seconds:.0f} s ({last_error}):\n{_logs(container)}")


# --------------------------------------------------------------------------- tools


def test_ensure_engine_is_idempotent(engine: None) -> None:
    for _ in range(2):
        result = subprocess.run(
            [str(TOOLS_DIR / "ensure-docker-engine.sh")], capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "nothing to do" in result.stderr, result.stderr


def test_ensure_engine_gives_up_at_its_deadline(engine: None, tmp_path: Path) -> None:
    pid_file = Path("/var/run/docker.pid")
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        pytest.skip("needs a dockerd with a pid file (the script would otherwise start one)")
    # A docker client that never gets an answer, beside a live daemon: the script must
    # wait for it, not start another one, and give up at its deadline.
    silent_client = tmp_path / "docker"
    silent_client.write_text("#!/bin/sh\nexit 1\n")
    silent_client.chmod(0o755)
    environment = {
        **os.environ,
        "DOCKER": str(silent_client),
        "DOCKER_WAIT_SECONDS": "3",
        "DOCKERD_LOG": str(tmp_path / "dockerd.log"),
    }
    started = time.monotonic()
    result = subprocess.run(
        [str(TOOLS_DIR / "ensure-docker-engine.sh")],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode != 0, result.stderr
    assert "did not answer" in result.stderr and "within 3s" in result.stderr, result.stderr
    assert 3 <= elapsed < 30, f"gave up after {elapsed:.1f} s"


def test_base_image_is_cached_and_apt_works(base_os_image: str) -> None:
    again = subprocess.run(
        [str(TOOLS_DIR / "make-base-image.sh"), base_os_image], capture_output=True, text=True, timeout=60, check=False
    )
    assert again.returncode == 0 and "already exists" in again.stderr, again.stderr
    sources = run_in(base_os_image, ["cat", "/etc/apt/sources.list"]).stdout
    for suite in ("bookworm ", "bookworm-updates ", "bookworm-security "):
        assert suite in sources, sources
    update = run_in(base_os_image, ["apt-get", "update"], check=False, timeout=300)
    assert update.returncode == 0, update.stdout + update.stderr


# --------------------------------------------------------------------------- every image


def test_hub_and_notebooks_pin_the_same_jupyterhub() -> None:
    hub = pinned_versions(IMAGES_DIR / "hub" / "requirements.txt")["jupyterhub"]
    notebook = pinned_versions(IMAGES_DIR / "notebook-base" / "requirements.txt")["jupyterhub"]
    assert hub == notebook, f"hub pins jupyterhub {hub}, notebook-base pins {notebook}"


@pytest.mark.parametrize(
    ("child", "parent"),
    [("notebook-datascience", "notebook-base"), ("notebook-pyspark", "notebook-datascience")],
)
def test_stacked_freezes_keep_the_parent_pins(child: str, parent: str) -> None:
    child_pins = pinned_versions(IMAGES_DIR / child / "requirements.txt")
    parent_pins = pinned_versions(IMAGES_DIR / parent / "requirements.txt")
    moved = {name: (version, child_pins.get(name)) for name, version in parent_pins.items()}
    moved = {name: pair for name, pair in moved.items() if pair[0] != pair[1]}
    assert not moved, f"{child} re-pins {parent}'s packages (parent, child): {moved}"


@pytest.mark.parametrize("fixture", IMAGE_FIXTURES)
def test_venv_holds_exactly_the_frozen_set(fixture: str, request: pytest.FixtureRequest) -> None:
    image = request.getfixturevalue(fixture)
    frozen = pinned_versions(IMAGES_DIR / IMAGE_DIRS[fixture] / "requirements.txt")
    freeze = run_in(image, ["python", "-m", "pip", "freeze", "--all", "--local"]).stdout
    installed = parse_pins(freeze)
    assert installed == frozen, (
        f"{image}: missing or different {sorted(set(frozen.items()) - set(installed.items()))}; "
        f"unexpected {sorted(set(installed.items()) - set(frozen.items()))}"
    )


@pytest.mark.parametrize("fixture", ALL_FIXTURES)
def test_labels_and_ca_environment(fixture: str, request: pytest.FixtureRequest) -> None:
    image = request.getfixturevalue(fixture)
    config = image_config(image)
    labels = config.get("Labels") or {}
    assert labels.get("org.opencontainers.image.title") == f"juvini-{IMAGE_DIRS[fixture]}", labels
    assert labels.get("org.opencontainers.image.version") == JUVINI_VERSION, labels
    environment = dict(item.split("=", 1) for item in config.get("Env") or [])
    wrong = {name: environment.get(name) for name in CA_ENV_VARS if environment.get(name) != SYSTEM_BUNDLE_IN_IMAGE}
    assert not wrong, f"{image}: CA variables not pointing at {SYSTEM_BUNDLE_IN_IMAGE}: {wrong}"


@pytest.mark.parametrize("fixture", ALL_FIXTURES)
def test_extra_ca_is_in_the_trust_store(fixture: str, request: pytest.FixtureRequest, extra_ca: str) -> None:
    if not extra_ca:
        pytest.skip("this host trusts no CA beyond Debian's: nothing extra to install")
    image = request.getfixturevalue(fixture)
    listing = run_in(image, ["ls", EXTRA_CA_DIR]).stdout.split()
    assert "juvini-extra-ca.crt" in listing, listing
    bundle = run_in(image, ["cat", SYSTEM_BUNDLE_IN_IMAGE]).stdout
    missing = certificates_der(extra_ca) - certificates_der(bundle)
    assert not missing, f"{image}: {len(missing)} of the host's extra CAs are not in {SYSTEM_BUNDLE_IN_IMAGE}"


def _host_reaches(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10):  # noqa: S310 - a fixed https URL
            return True
    except OSError:  # URLError and timeouts are OSErrors
        return False


@pytest.mark.parametrize("fixture", ALL_FIXTURES)
def test_https_works_inside_the_container(fixture: str, request: pytest.FixtureRequest, extra_ca: str) -> None:
    image = request.getfixturevalue(fixture)
    probes = {
        "python": [
            "python3",
            "-c",
            f"import ssl, urllib.request; urllib.request.urlopen({HTTPS_PROBE_URL!r}, timeout=20).read(1)",
        ]
    }
    if fixture == "hub_image":
        # configurable-http-proxy's runtime: node must trust the same CAs.
        probes["node"] = [
            "node",
            "-e",
            f"require('https').get({HTTPS_PROBE_URL!r}, r => process.exit(r.statusCode < 400 ? 0 : 1))"
            ".on('error', e => { console.error(String(e)); process.exit(2); })",
        ]
    elif fixture != "foundation_image":
        probes["curl"] = ["curl", "-fsS", "-o", "/dev/null", HTTPS_PROBE_URL]
    failures = {}
    for tool, command in probes.items():
        result = run_in(image, command, check=False, timeout=120)
        if result.returncode != 0:
            failures[tool] = (result.stdout + result.stderr)[-1500:]
    if failures and not extra_ca and not _host_reaches(HTTPS_PROBE_URL):
        pytest.skip(f"no extra CA on this host and no network to {HTTPS_PROBE_URL}")
    assert not failures, f"{image} cannot fetch {HTTPS_PROBE_URL}: {failures}"


# --------------------------------------------------------------------------- foundation


def _layers(image: str) -> list[str]:
    return json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", image).stdout)


def _history(image: str) -> list[str]:
    """What made each history entry of ``image`` (the command of each step), newest first."""
    return docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout.splitlines()


def _extra_ca_files(image: str) -> str:
    """Name and content of each extra CA file in ``image``."""
    script = f'for f in {EXTRA_CA_DIR}/juvini-extra-ca*.crt; do echo "== $f"; cat "$f"; done'
    return run_in(image, ["sh", "-c", script]).stdout


def test_foundation_has_the_shared_os_layer(foundation_image: str) -> None:
    config = image_config(foundation_image)
    assert config["Entrypoint"] == ["tini", "-g", "--"], config["Entrypoint"]
    environment = dict(item.split("=", 1) for item in config.get("Env") or [])
    assert (environment.get("LANG"), environment.get("LC_ALL")) == ("C.UTF-8", "C.UTF-8"), environment
    script = (
        "command -v tini kinit klist juvini-pip-install && klist -V"
        " && python3 -m venv /tmp/venv && /tmp/venv/bin/python -c 'import ssl; print(ssl.OPENSSL_VERSION)'"
    )
    result = run_in(foundation_image, ["sh", "-c", script])
    assert "Kerberos 5" in result.stdout and "OpenSSL" in result.stdout, result.stdout


def test_foundation_writes_one_file_per_extra_ca(foundation_image: str, extra_ca: str) -> None:
    if not extra_ca:
        pytest.skip("this host trusts no CA beyond Debian's: nothing extra to install")
    files = _extra_ca_files(foundation_image)
    assert files.count("== ") == len(certificates_der(extra_ca)), files
    assert certificates_der(files) == certificates_der(extra_ca)


def test_foundation_refuses_extra_ca_text_without_a_certificate(base_os_image: str) -> None:
    with pytest.raises(ImageToolError, match="EXTRA_CA_CERTS holds no PEM certificate"):
        build_image(
            IMAGES_DIR / "foundation",
            f"juvini-test/foundation:{TAG}-junk-ca",
            {"BASE_IMAGE": base_os_image, "EXTRA_CA_CERTS": "not a certificate\n-----END CERTIFICATE-----"},
        )


@pytest.mark.parametrize("fixture", IMAGE_FIXTURES)
def test_images_above_inherit_the_foundation_trust_store(
    fixture: str, request: pytest.FixtureRequest, foundation_image: str
) -> None:
    """Built on the foundation's layers, with its CA files and bundle, and no CA step of their own."""
    image = request.getfixturevalue(fixture)
    foundation_layers = _layers(foundation_image)
    assert _layers(image)[: len(foundation_layers)] == foundation_layers, f"{image} is not built on {foundation_image}"
    foundation_history = _history(foundation_image)
    assert any("update-ca-certificates" in step for step in foundation_history), foundation_history
    own_steps = _history(image)[: -len(foundation_history)]
    ca_steps = [step for step in own_steps if "update-ca-certificates" in step or "EXTRA_CA_CERTS" in step]
    assert not ca_steps, f"{image} has a CA step of its own: {ca_steps}"
    assert _extra_ca_files(image) == _extra_ca_files(foundation_image)
    bundle = run_in(image, ["cat", SYSTEM_BUNDLE_IN_IMAGE]).stdout
    assert certificates_der(bundle) == certificates_der(
        run_in(foundation_image, ["cat", SYSTEM_BUNDLE_IN_IMAGE]).stdout
    )


@pytest.mark.parametrize(
    ("fixture", "parent"),
    [
        ("hub_image", "foundation_image"),
        ("notebook_base_image", "foundation_image"),
        ("datascience_image", "notebook_base_image"),
        ("pyspark_image", "datascience_image"),
    ],
)
def test_images_record_the_base_they_are_built_on(fixture: str, parent: str, request: pytest.FixtureRequest) -> None:
    image, base = request.getfixturevalue(fixture), request.getfixturevalue(parent)
    labels = image_config(image).get("Labels") or {}
    assert labels.get("org.opencontainers.image.base.name") == base, labels
    assert labels.get("org.opencontainers.image.base.digest") == image_id(base), labels


@pytest.mark.parametrize("folder", ["hub", "notebook-base", "notebook-datascience", "notebook-pyspark"])
def test_images_above_the_foundation_need_base_image(folder: str, engine: None) -> None:
    with pytest.raises(ImageToolError, match="BASE_IMAGE"):
        build_image(IMAGES_DIR / folder, f"juvini-test/{folder}:no-base", {})


@pytest.mark.parametrize("fixture", ALL_FIXTURES)
def test_kerberos_client_tools(fixture: str, request: pytest.FixtureRequest) -> None:
    image = request.getfixturevalue(fixture)
    result = run_in(image, ["sh", "-c", "command -v kinit && command -v klist && klist -V"])
    assert "/kinit" in result.stdout and "Kerberos 5" in result.stdout, result.stdout


def test_pip_install_script_installs_exactly_the_file_and_checks_it(notebook_base_image: str) -> None:
    """juvini-pip-install, the pip step of every image: into the venv of `python` on PATH, then pip check."""
    usage = run_in(notebook_base_image, ["juvini-pip-install"], check=False)
    assert usage.returncode == 2 and "usage" in usage.stderr, usage.stderr
    install = (
        f"printf '{USER_PACKAGE}=={USER_PACKAGE_VERSION}\\n' >/tmp/r.txt && juvini-pip-install /tmp/r.txt"
        f" && python -c 'import {USER_MODULE}; print({USER_MODULE}.__file__)' && ls -A $HOME"
    )
    result = run_in(notebook_base_image, ["sh", "-c", install], check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/opt/juvini/venv/lib/python3" in result.stdout, result.stdout
    assert ".cache" not in result.stdout.split(), result.stdout
    # --no-deps then pip check: a file missing a dependency fails.
    broken = f"printf '{BROKEN_PACKAGE}\\n' >/tmp/r.txt && juvini-pip-install /tmp/r.txt"
    result = run_in(notebook_base_image, ["sh", "-c", broken], check=False, timeout=300)
    assert result.returncode != 0, result.stdout + result.stderr
    assert BROKEN_PACKAGE_MISSING in result.stdout + result.stderr, result.stdout + result.stderr


# --------------------------------------------------------------------------- hub

HUB_DISTRIBUTIONS = {
    # distribution: module it must import as
    "jupyterhub": "jupyterhub",
    "dockerspawner": "dockerspawner",
    "jupyterhub-ldapauthenticator": "ldapauthenticator",
    "jupyterhub-nativeauthenticator": "nativeauthenticator",
    "oauthenticator": "oauthenticator",
    "jupyterhub-idle-culler": "jupyterhub_idle_culler",
    "docker": "docker",
}


def test_hub_packages_import_at_their_pins(hub_image: str) -> None:
    pins = pinned_versions(IMAGES_DIR / "hub" / "requirements.txt")
    script = (
        "import importlib, importlib.metadata as m, json, sys\n"
        f"wanted = {HUB_DISTRIBUTIONS!r}\n"
        "found = {}\n"
        "for dist, module in wanted.items():\n"
        "    importlib.import_module(module)\n"
        "    found[dist] = m.version(dist)\n"
        "importlib.import_module('dockerspawner').SwarmSpawner\n"
        "importlib.import_module('juvini_hub.spawner'); importlib.import_module('juvini_hub.auth')\n"
        "print(json.dumps(found))\n"
    )
    found = json.loads(run_in(hub_image, ["python", "-c", script]).stdout)
    expected = {dist: pins[dist] for dist in HUB_DISTRIBUTIONS}
    assert found == expected


def test_hub_proxy_version_as_the_lab_runs_it(hub_image: str) -> None:
    # The lab runs the proxy from the hub image as the lab user, not as root.
    result = run_in(hub_image, ["configurable-http-proxy", "--version"], user=f"{LAB_UID}:{LAB_GID}")
    assert result.stdout.strip() == CHP_VERSION


def test_hub_image_defaults(hub_image: str) -> None:
    config = image_config(hub_image)
    assert config["Cmd"] == ["jupyterhub", "-f", "/srv/jupyterhub/jupyterhub_config.py"]
    assert config["Entrypoint"][0] == "tini", config["Entrypoint"]
    assert config["WorkingDir"] == "/srv/jupyterhub"
    assert set(config["ExposedPorts"]) == {"8000/tcp", "8001/tcp", "8081/tcp"}
    assert config.get("User", "") in ("", "root", "0"), config.get("User")


HUB_SMOKE_CONFIG = """
c = get_config()  # noqa: F821
c.JupyterHub.authenticator_class = "native"
c.JupyterHub.spawner_class = "docker"
c.NativeAuthenticator.open_signup = True
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {"admin"}
c.JupyterHub.db_url = "sqlite:////tmp/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "/tmp/jupyterhub_cookie_secret"
c.JupyterHub.services = [
    {"name": "idle-culler", "command": ["python3", "-m", "jupyterhub_idle_culler", "--timeout=3600"]}
]
c.JupyterHub.load_roles = [
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
]
"""


def _xsrf(html: str) -> str:
    match = re.search(r'name="_xsrf"\s+value="([^"]+)"', html)
    assert match, "no _xsrf field in the form"
    return match.group(1)


def test_hub_signs_up_and_logs_in_through_the_proxy(hub_image: str, tmp_path: Path, container_names: list[str]) -> None:
    """Default command, CHP started by the hub, NativeAuthenticator pages and the idle culler."""
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(HUB_SMOKE_CONFIG)
    name = _new_name(container_names, "hub")
    docker(
        "run", "--detach", "--name", name, "--publish", "127.0.0.1::8000",
        "--volume", f"{config}:/srv/jupyterhub/jupyterhub_config.py:ro",
        hub_image,
    )  # fmt: skip
    base = f"http://127.0.0.1:{_published_port(name, 8000)}/hub"
    api = _wait_for_http(f"{base}/api", name)
    assert api.status_code == 200, api.text
    assert api.json()["version"] == pinned_versions(IMAGES_DIR / "hub" / "requirements.txt")["jupyterhub"]

    session = requests.Session()
    password = "correct-horse-battery-staple-42"
    form = session.get(f"{base}/signup", timeout=10)
    assert form.status_code == 200, form.text[:500]
    signup = session.post(
        f"{base}/signup",
        data={
            "_xsrf": _xsrf(form.text),
            "username": "admin",
            "signup_password": password,
            "signup_password_confirmation": password,
        },
        timeout=10,
    )
    assert signup.status_code == 200, f"{signup.status_code}: {_logs(name)}"
    login_form = session.get(f"{base}/login", timeout=10)
    login = session.post(
        f"{base}/login",
        data={"_xsrf": _xsrf(login_form.text), "username": "admin", "password": password},
        allow_redirects=False,
        timeout=10,
    )
    assert login.status_code == 302, f"login answered {login.status_code}:\n{_logs(name)}"
    assert login.headers["Location"].endswith("/hub/spawn"), login.headers["Location"]
    full_logs = docker("logs", name).stderr
    assert "Starting managed service idle-culler" in full_logs, full_logs[-4000:]
    assert "Traceback" not in full_logs, full_logs[-4000:]


# --------------------------------------------------------------------------- notebook-base


@pytest.mark.parametrize("fixture", NOTEBOOK_FIXTURES)
def test_notebook_runs_as_the_lab_user(fixture: str, request: pytest.FixtureRequest) -> None:
    image = request.getfixturevalue(fixture)
    result = run_in(image, ["sh", "-c", 'echo "$(id -u) $(id -g) $(id -un) $HOME $(pwd)"'])
    assert result.stdout.split() == [str(LAB_UID), str(LAB_GID), LAB_USER, LAB_HOME, LAB_HOME]
    config = image_config(image)
    assert config["Cmd"] == ["juvini-singleuser"]
    assert "8888/tcp" in config["ExposedPorts"]


@pytest.mark.parametrize("fixture", NOTEBOOK_FIXTURES)
def test_notebook_venv_belongs_to_the_lab_user(fixture: str, request: pytest.FixtureRequest) -> None:
    """Users may `pip install` into the venv: every file in it is theirs."""
    image = request.getfixturevalue(fixture)
    script = f"find /opt/juvini/venv \\( ! -user {LAB_UID} -o ! -group {LAB_GID} \\) -print | head -5"
    assert run_in(image, ["sh", "-c", script]).stdout == ""


def test_singleuser_matches_the_hub_version(notebook_base_image: str, hub_image: str) -> None:
    notebook = run_in(notebook_base_image, ["jupyterhub-singleuser", "--version"]).stdout.strip()
    lab_command = run_in(notebook_base_image, ["juvini-singleuser", "--version"]).stdout.strip()
    hub = run_in(hub_image, ["jupyterhub", "--version"]).stdout.strip()
    assert notebook == lab_command == hub == pinned_versions(IMAGES_DIR / "hub" / "requirements.txt")["jupyterhub"]


@pytest.mark.parametrize(
    ("command", "environment"),
    [
        (["pip", "install", "--user"], {}),
        # The lab's spawner sets PIP_USER=1, so a plain `pip install` must land in home too.
        (["pip", "install"], {"PIP_USER": "1"}),
    ],
    ids=["--user", "PIP_USER=1"],
)
def test_pip_user_install_lands_in_the_mounted_home(
    notebook_base_image: str, lab_home: Path, command: list[str], environment: dict[str, str]
) -> None:
    absent = run_in(notebook_base_image, ["python", "-c", f"import {USER_MODULE}"], check=False)
    assert absent.returncode != 0, f"{USER_MODULE} is already in the image: pick another test package"
    script = [*command, "--no-cache-dir", f"{USER_PACKAGE}=={USER_PACKAGE_VERSION}"]
    check = f"import {USER_MODULE}; print({USER_MODULE}.__file__)"
    result = run_in(
        notebook_base_image,
        ["sh", "-c", f'{" ".join(script)} && python -c "{check}"'],
        env=environment,
        volumes={lab_home: LAB_HOME},
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith(f"{LAB_HOME}/.local/lib/python3"), result.stdout
    installed = list(lab_home.glob(f".local/lib/python3.*/site-packages/{USER_MODULE}/__init__.py"))
    assert installed, f"nothing under {lab_home}/.local: {sorted(p.name for p in lab_home.rglob('*'))[:20]}"
    assert installed[0].stat().st_uid == LAB_UID


def test_singleuser_starts_on_an_empty_mounted_home(
    notebook_base_image: str, hub_image: str, lab_home: Path, container_names: list[str]
) -> None:
    """The image's own entrypoint and command, a fresh home folder, the env DockerSpawner sets."""
    hub = _new_name(container_names, "stub-hub")
    # The notebook joins the stub's network namespace: the hub is at 127.0.0.1:8081 and
    # the notebook's 8888 is published through the stub container.
    docker(
        "run", "--detach", "--name", hub, "--publish", "127.0.0.1::8888", "--env", f"JUPYTERHUB_USER={LAB_USER}",
        hub_image, "python3", "-c", STUB_HUB,
    )  # fmt: skip
    notebook = _new_name(container_names, "notebook")
    prefix = SERVER_PREFIX
    environment = hub_environment(uuid.uuid4().hex)
    env_args = [arg for name, value in environment.items() for arg in ("--env", f"{name}={value}")]
    docker(
        "run", "--detach", "--name", notebook, "--network", f"container:{hub}",
        "--volume", f"{lab_home}:{LAB_HOME}", *env_args, notebook_base_image,
    )  # fmt: skip
    url = f"http://127.0.0.1:{_published_port(hub, 8888)}{prefix}"
    status = _wait_for_http(f"{url}api", notebook)
    assert status.status_code == 200 and "version" in status.json(), status.text
    lab = requests.get(f"{url}lab", allow_redirects=False, timeout=10)
    assert lab.status_code == 302 and "/hub/api/oauth2/authorize" in lab.headers["Location"], lab.headers
    runtime = lab_home / ".local" / "share" / "jupyter" / "runtime"
    assert runtime.is_dir(), _logs(notebook)
    assert runtime.stat().st_uid == LAB_UID


# --------------------------------------------------------------------------- server start (every notebook image)

#: What importing rfc3987-syntax loads: its grammar module (which compiles the Lark grammars) and
#: lark. The notebook images leave both packages out (notebook-base/requirements.in, "leave-out").
#: Not the package name itself: -X importtime lists failed attempts too, and jsonschema tries
#: `rfc3987` and `rfc3987_syntax` in turn.
IRI_GRAMMAR_MODULES = ("rfc3987_syntax.syntax_helpers", "lark")
#: The formats only rfc3987-syntax checks; jsonschema leaves them unchecked without it.
IRI_FORMATS = {"iri", "iri-reference"}

#: In the image: the formats the Jupyter event schemas there use, the formats jupyter_events'
#: checker checks, and that it still tells a URI from a non-URI (an event schema's $id must be one).
FORMAT_CHECK = r"""
import json, pathlib, sysconfig, yaml
from jsonschema import ValidationError
from jupyter_events.schema import EventSchema
from jupyter_events.validators import draft7_format_checker as checker

site = pathlib.Path(sysconfig.get_paths()["purelib"])
metaschemas = sorted(site.glob("jupyter_events/schemas/*.yml"))
event_schemas = sorted(path for path in site.glob("*/event_schemas/**/*") if path.suffix in (".yaml", ".yml", ".json"))

def formats(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "format" and isinstance(value, str):
                yield value
            else:
                yield from formats(value)
    elif isinstance(node, list):
        for value in node:
            yield from formats(value)

used = set()
for path in [*metaschemas, *event_schemas]:
    schema = yaml.safe_load(path.read_text())
    used |= set(formats(schema))
    if path in event_schemas:
        EventSchema(schema)  # checked against the Jupyter Events metaschema, formats included

def schema_id_refused(schema_id):
    probe = {"$id": schema_id, "version": "1", "title": "probe", "type": "object",
             "properties": {"name": {"title": "name", "type": "string"}}}
    try:
        EventSchema(probe)
    except ValidationError:
        return True
    return False

print(json.dumps({
    "metaschemas": len(metaschemas),
    "event_schemas": [str(path.relative_to(site)) for path in event_schemas],
    "used": sorted(used),
    "checked": sorted(checker.checkers),
    "uri": [checker.conforms("https://events.jupyter.org/juvini/probe", "uri"), checker.conforms("not a uri", "uri")],
    "date-time": [checker.conforms("2026-01-02T03:04:05Z", "date-time"), checker.conforms("soon", "date-time")],
    "refused": [schema_id_refused("https://events.jupyter.org/juvini/probe"), schema_id_refused("not a uri")],
}))
"""


@pytest.mark.parametrize("fixture", NOTEBOOK_FIXTURES)
def test_server_start_skips_the_iri_grammars(fixture: str, request: pytest.FixtureRequest) -> None:
    """The start loads jsonschema's format checkers (through jupyter_events) but not rfc3987_syntax."""
    image = request.getfixturevalue(fixture)
    with start_server(image, importtime=True) as start:
        imports = start.imports
    assert imported(imports, "jupyterhub.singleuser"), f"no -X importtime output:\n{start.log[-3000:]}"
    assert imported(imports, "jsonschema._format") and imported(imports, "jupyter_events"), sorted(
        item.module for item in imports
    )[:50]
    loaded = sorted({item.module for item in imports if any(imported([item], name) for name in IRI_GRAMMAR_MODULES)})
    assert not loaded, f"{image}: the server start imports {loaded}"
    absent = run_in(image, ["python", "-c", "import rfc3987_syntax"], check=False)
    assert absent.returncode != 0 and "No module named" in absent.stderr, absent.stdout + absent.stderr


#: What only the hub's own web application and database model import: a single-user server
#: started by juvini-singleuser loads none of them (its docstring says why).
HUB_APPLICATION_MODULES = ("jupyterhub.handlers.base", "jupyterhub.user", "alembic", "sqlalchemy.orm")


@pytest.mark.parametrize("fixture", NOTEBOOK_FIXTURES)
def test_server_start_leaves_out_the_hubs_application(fixture: str, request: pytest.FixtureRequest) -> None:
    """The image's command loads neither the hub's handlers nor its ORM, and still checks tokens with the hub."""
    image = request.getfixturevalue(fixture)
    with start_server(image, importtime=True) as start:
        imports = start.imports
        loaded = sorted({name for name in HUB_APPLICATION_MODULES if imported(imports, name)})
        # HubAuth, which imports jupyterhub.scopes (and so the lazily loaded ORM), answers for
        # the token; without one the server refuses.
        identity = start.get_json("api/me")
        anonymous, _ = start.get("api/me", token=False)
    assert imported(imports, "jupyterhub.singleuser") and imported(imports, "jupyterhub.scopes"), start.log[-3000:]
    assert not loaded, f"{image}: the server start imports {loaded}"
    assert identity["identity"]["name"] == LAB_USER, identity
    assert anonymous == 403, anonymous


#: Run in the image: after juvini-singleuser's imports, the hub's modules are the real ones.
HUB_MODULES_AFTER_IMPORT = """
import importlib.machinery, json, shutil, sys, types
loader = importlib.machinery.SourceFileLoader("juvini_singleuser", shutil.which("juvini-singleuser"))
lab = types.ModuleType(loader.name)
loader.exec_module(lab)
with lab._hub_application_left_out():
    import jupyterhub.singleuser
    stand_in = sys.modules["jupyterhub.handlers.pages"]
import jupyterhub.log
deferred = "alembic" not in sys.modules
# (no `import jupyterhub.orm` here: the import statement itself reads the module's __spec__,
# which counts as a first use)
orm_table = sys.modules["jupyterhub.orm"].User.__tablename__
import jupyterhub.handlers.pages
print(json.dumps({
    "stand_in_used": jupyterhub.log.HealthCheckHandler is stand_in.HealthCheckHandler,
    "orm_deferred": deferred,
    "orm_works": orm_table,
    "alembic_after_use": "alembic" in sys.modules,
    "real_pages": jupyterhub.handlers.pages is not stand_in and hasattr(jupyterhub.handlers.pages, "default_handlers"),
    "finder_removed": not any(type(f).__name__ == "_LazyModuleFinder" for f in sys.meta_path),
}))
"""


def test_hub_modules_are_real_after_the_servers_imports(notebook_base_image: str) -> None:
    report = json.loads(run_in(notebook_base_image, ["python", "-c", HUB_MODULES_AFTER_IMPORT]).stdout.splitlines()[-1])
    assert report == {
        "stand_in_used": True,
        "orm_deferred": True,
        "orm_works": "users",
        "alembic_after_use": True,
        "real_pages": True,
        "finder_removed": True,
    }, report


#: An IPython start-up file (written into the kernel's profile): it writes KERNEL_STARTED_MARKER
#: once the kernel runs it, and at the kernel's exit KERNEL_EXIT_MARKER, as a kernel's own
#: clean-up (closing files, stopping Spark) would run.
KERNEL_STARTED_MARKER = "/tmp/juvini-kernel-started"
KERNEL_EXIT_MARKER = "/tmp/juvini-kernel-exited"
KERNEL_STARTUP = f"""
import atexit, pathlib
atexit.register(lambda: pathlib.Path({KERNEL_EXIT_MARKER!r}).write_text("clean exit"))
pathlib.Path({KERNEL_STARTED_MARKER!r}).touch()
"""


@pytest.mark.parametrize("fixture", NOTEBOOK_FIXTURES)
def test_server_stop_shuts_kernels_down_cleanly(fixture: str, request: pytest.FixtureRequest) -> None:
    """A stop (SIGTERM, as the spawner's) still shuts the kernels down, and the server exits with 0."""
    image = request.getfixturevalue(fixture)
    with start_server(image) as start:
        startup_dir = f"{LAB_HOME}/.ipython/profile_default/startup"
        docker("exec", start.container, "python3", "-c",
               f"import pathlib, sys; d = pathlib.Path({startup_dir!r}); d.mkdir(parents=True); "
               "(d / '50-exit.py').write_text(sys.argv[1])", KERNEL_STARTUP)  # fmt: skip
        status, body = start.request("POST", "api/kernels", {"name": "python3"})
        assert status == 201, body
        kernel = json.loads(body)["id"]
        deadline = time.monotonic() + 120
        started = ["test", "-e", KERNEL_STARTED_MARKER]
        while docker("exec", start.container, *started, check=False).returncode != 0:
            assert time.monotonic() < deadline, f"kernel {kernel} not up within 120 s:\n{start.server_log()[-3000:]}"
            time.sleep(0.2)
        docker("stop", "--time", "30", start.container, timeout=120)
        exit_code = docker("inspect", "--format", "{{.State.ExitCode}}", start.container).stdout.strip()
        marker = subprocess.run(
            ["/usr/bin/docker", "cp", f"{start.container}:{KERNEL_EXIT_MARKER}", "-"], capture_output=True, check=False
        )
        log = start.server_log()
    assert exit_code == "0", f"exit code {exit_code}:\n{log[-3000:]}"
    assert marker.returncode == 0 and b"clean exit" in marker.stdout, f"no kernel exit handler ran:\n{log[-3000:]}"
    assert "Shutting down" in log and "Kernel shutdown" in log, log[-3000:]


@pytest.mark.parametrize("fixture", NOTEBOOK_FIXTURES)
def test_format_checker_still_checks_what_jupyter_events_need(fixture: str, request: pytest.FixtureRequest) -> None:
    image = request.getfixturevalue(fixture)
    report = json.loads(run_in(image, ["python", "-c", FORMAT_CHECK]).stdout.strip().splitlines()[-1])
    assert report["metaschemas"] >= 3 and report["event_schemas"], report
    assert "uri" in report["used"], report
    assert not IRI_FORMATS & set(report["used"]), f"a Jupyter schema uses {IRI_FORMATS & set(report['used'])}"
    assert {"uri", "uri-reference", "date-time", "json-pointer", "uri-template"} <= set(report["checked"]), report
    assert report["uri"] == [True, False] and report["date-time"] == [True, False], report
    assert report["refused"] == [False, True], "an event schema whose $id is not a URI must be refused"


#: The Lab settings (plugin, setting, value) the images set as defaults: no news, no update
#: check, no extension manager.
LAB_SETTINGS = (
    ("@jupyterlab/apputils-extension:notification", "fetchNews", "false"),
    ("@jupyterlab/apputils-extension:notification", "checkForUpdates", False),
    ("@jupyterlab/extensionmanager-extension:plugin", "enabled", False),
)
#: What a server logs when it tries to reach out from a container with no network.
OUTBOUND_FAILURE = re.compile(
    r"name resolution|gaierror|Network is unreachable|Failed to get|Failed to fetch|Traceback|^\[E ", re.IGNORECASE
)
_PAGE_CONFIG = re.compile(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', re.DOTALL)


def _composite(answer: dict) -> dict:
    """A plugin's settings as the Lab front end composes them: the schema's defaults (with the
    settings overrides applied by the server) under the user's own settings."""
    defaults = {name: spec.get("default") for name, spec in answer["schema"]["properties"].items()}
    return defaults | answer["settings"]


@pytest.mark.parametrize("fixture", NOTEBOOK_FIXTURES)
def test_lab_does_not_call_out(fixture: str, request: pytest.FixtureRequest) -> None:
    """With no network at all, the server starts and answers, and nothing in it tries to reach out."""
    image = request.getfixturevalue(fixture)
    # --debug: the news and update handlers log their failed fetches at debug level only.
    with start_server(image, network="none", server_args=["--debug"]) as start:
        composites = {plugin: _composite(start.get_json(f"lab/api/settings/{plugin}")) for plugin, _, _ in LAB_SETTINGS}
        wrong = {
            (plugin, name): composites[plugin].get(name)
            for plugin, name, value in LAB_SETTINGS
            if composites[plugin].get(name) != value
        }
        assert not wrong, f"{image}: Lab settings (plugin, setting): value: {wrong}"
        for page in ("lab", "tree"):
            status, body = start.get(page)
            match = _PAGE_CONFIG.search(body)
            assert status == 200 and match, f"GET {page}: {status} {body[:300]}"
            config = json.loads(match.group(1))
            assert config["extensionManager"]["name"] == "read-only", config["extensionManager"]
            assert config["extensionManager"]["can_install"] is False, config["extensionManager"]
            assert config["news"] == {"disabled": True}, config["news"]
        # What the front end would ask for were the settings changed: answered from the container alone.
        assert start.get_json("lab/api/news") == {"news": []}
        assert start.get_json("lab/api/update") == {"notification": None}
        assert start.get_json("lab/api/extensions?query=jupyterlab&page=1&per_page=5") == []
        log = start.server_log()
    failures = [line for line in log.splitlines() if OUTBOUND_FAILURE.search(line)]
    assert not failures, f"{image} tried to reach out:\n" + "\n".join(failures[:20])


# --------------------------------------------------------------------------- notebook-datascience

DATASCIENCE_CHECK = r"""
import importlib, json
modules = [
    "numpy", "pandas", "scipy", "sklearn", "statsmodels.api", "matplotlib", "seaborn", "plotly",
    "bokeh", "sympy", "numba", "dask.dataframe", "pyarrow", "polars", "sqlalchemy", "openpyxl", "xlrd",
    "requests", "bs4", "lxml.etree", "networkx", "nltk", "skimage", "h5py", "tables", "xgboost",
    "lightgbm", "ipywidgets", "Cython", "cloudpickle", "dill", "patsy", "google.protobuf", "numexpr",
    "bottleneck", "altair", "ipympl", "yaml", "tqdm", "graphviz", "xlsxwriter",
]
failed = {}
for name in modules:
    try:
        importlib.import_module(name)
    except Exception as error:  # report every broken module, not just the first
        failed[name] = repr(error)

import numpy as np, pandas as pd, numba, xgboost, lightgbm, matplotlib
matplotlib.use("Agg")

@numba.njit
def total(n):
    s = 0
    for i in range(n):
        s += i
    return s

import matplotlib.pyplot as plt
from sklearn.linear_model import LinearRegression

x = np.arange(200, dtype=float).reshape(-1, 1)
y = 3 * x.ravel() + 1
results = {
    "sklearn": round(float(LinearRegression().fit(x, y).coef_[0]), 6),
    "pandas": int(pd.DataFrame({"k": [1, 1, 2], "v": [1, 2, 3]}).groupby("k").v.sum().loc[1]),
    "numba": total(10),
    "xgboost": len(xgboost.XGBRegressor(n_estimators=3).fit(x, y).predict(x)),
    "lightgbm": len(lightgbm.LGBMRegressor(n_estimators=3, verbose=-1).fit(x, y).predict(x)),
}
plt.plot([1, 2, 3]); plt.savefig("/tmp/plot.png")
print(json.dumps({"failed": failed, "results": results}))
"""


def test_datascience_imports_the_whole_set(datascience_image: str) -> None:
    output = run_in(datascience_image, ["python", "-c", DATASCIENCE_CHECK], timeout=300).stdout
    report = json.loads(output.strip().splitlines()[-1])
    assert report["failed"] == {}
    assert report["results"] == {"sklearn": 3.0, "pandas": 3, "numba": 45, "xgboost": 200, "lightgbm": 200}


def test_datascience_has_graphviz_dot(datascience_image: str) -> None:
    result = run_in(datascience_image, ["dot", "-V"])
    assert "graphviz" in (result.stdout + result.stderr).lower()


def test_datascience_pip_list_holds_the_anaconda_set(datascience_image: str) -> None:
    """Every name of Anaconda's top-level list (tests/data) is installed, but those the image says it leaves out."""
    listed = json.loads(run_in(datascience_image, ["python", "-m", "pip", "list", "--format=json"]).stdout)
    installed = {canonical_name(item["name"]) for item in listed}
    missing = sorted(expected_in_datascience() - installed)
    assert not missing, f"{datascience_image}: on the Anaconda list, not installed: {missing}"
    left_out = sorted(set(not_installed()) & installed)
    assert not left_out, f"{datascience_image}: said to be left out, yet installed: {left_out}"


#: The module of each name of the Anaconda list where it differs from the name (None: no module).
ANACONDA_MODULES = {
    "beautifulsoup4": "bs4",
    "imbalanced-learn": "imblearn",
    "ipython": "IPython",
    "jupyter": None,  # a metapackage: what it names is installed (the pip list test)
    "lckr-jupyterlab-variableinspector": "lckr_jupyterlab_variableinspector",
    "pillow": "PIL",
    "pywavelets": "pywt",
    "scikit-image": "skimage",
    "scikit-learn": "sklearn",
}

#: Imports each module named on argv (reporting every failure), then uses the native ones.
ANACONDA_IMPORTS = r"""
import importlib, json, sys
failed = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as error:
        failed[name] = repr(error)
import pyodbc, pycurl
print(json.dumps({"failed": failed, "odbc_drivers": pyodbc.drivers(), "curl": pycurl.version}))
"""


def test_datascience_imports_the_anaconda_set(datascience_image: str) -> None:
    """Each package imports, the native ones with their libraries (unixODBC's libodbc for pyodbc)."""
    # setuptools first: it stands in for the standard library's distutils and refuses to be
    # imported after a package has loaded the latter (as in any Python 3.11 environment).
    names = sorted(expected_in_datascience(), key=lambda name: (name != "setuptools", name))
    modules = [ANACONDA_MODULES.get(name, name.replace("-", "_")) for name in names]
    command = ["python", "-c", ANACONDA_IMPORTS, *(module for module in modules if module)]
    result = run_in(datascience_image, command, check=False, timeout=600)
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and lines, (result.stdout + result.stderr)[-3000:]
    report = json.loads(lines[-1])
    assert report["failed"] == {}, report["failed"]
    assert report["odbc_drivers"] == [], report  # the driver manager loads; drivers are the admin's choice
    assert report["curl"].startswith("PycURL/"), report


def test_datascience_has_curl_and_jq(datascience_image: str) -> None:
    result = run_in(datascience_image, ["sh", "-c", "curl --version && printf '{\"a\": [1, 2]}' | jq -c '.a'"])
    assert result.stdout.startswith("curl "), result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[1,2]", result.stdout


#: pycurl (its wheel brings its own libcurl) fetching a page with the image's trust store.
PYCURL_FETCH = f"""
import io, pycurl
body = io.BytesIO()
curl = pycurl.Curl()
curl.setopt(pycurl.URL, {HTTPS_PROBE_URL!r})
curl.setopt(pycurl.WRITEDATA, body)
curl.setopt(pycurl.TIMEOUT, 30)
curl.perform()
print(curl.getinfo(pycurl.RESPONSE_CODE))
"""


def test_datascience_pycurl_trusts_the_images_certificates(datascience_image: str, extra_ca: str) -> None:
    result = run_in(datascience_image, ["python", "-c", PYCURL_FETCH], check=False, timeout=120)
    if result.returncode != 0 and not extra_ca and not _host_reaches(HTTPS_PROBE_URL):
        pytest.skip(f"no extra CA on this host and no network to {HTTPS_PROBE_URL}")
    assert result.returncode == 0 and result.stdout.strip() == "200", (result.stdout + result.stderr)[-3000:]


#: What Panel's server extension loads at a server start; the images built on
#: notebook-datascience switch it off.
PANEL_MODULES = ("panel", "bokeh.models")


@pytest.mark.parametrize("fixture", ["datascience_image", "pyspark_image"])
def test_server_start_leaves_panel_and_bokeh_out(fixture: str, request: pytest.FixtureRequest) -> None:
    image = request.getfixturevalue(fixture)
    with start_server(image, importtime=True) as start:
        imports = start.imports
    assert imported(imports, "jupyterhub.singleuser"), f"no -X importtime output:\n{start.log[-3000:]}"
    loaded = sorted(name for name in PANEL_MODULES if imported(imports, name))
    assert not loaded, f"{image}: the server start imports {loaded}"


def test_datascience_image_stays_under_its_size_goal(datascience_image: str) -> None:
    size = int(docker("image", "inspect", "--format", "{{.Size}}", datascience_image).stdout)
    goal = SIZE_GOALS["notebook-datascience"]
    print(f"{datascience_image}: {size / 1e6:.0f} MB (goal < {goal / 1e6:.0f} MB)")
    assert size < goal, f"{datascience_image} takes {size / 1e6:.0f} MB, more than {goal / 1e6:.0f} MB"


# --------------------------------------------------------------------------- notebook-pyspark


def test_pyspark_kernelspecs(pyspark_image: str) -> None:
    specs = json.loads(run_in(pyspark_image, ["jupyter", "kernelspec", "list", "--json"]).stdout)["kernelspecs"]
    assert {"python3", "pyspark"} <= set(specs), sorted(specs)
    pyspark = specs["pyspark"]["spec"]
    assert pyspark["display_name"] == "PySpark"
    assert pyspark["argv"] == ["/usr/local/bin/juvini-pyspark-kernel", "-f", "{connection_file}"]
    java_home = run_in(pyspark_image, ["sh", "-c", 'echo "$JAVA_HOME"; "$JAVA_HOME/bin/java" -version 2>&1'])
    assert 'version "17' in java_home.stdout, java_home.stdout


def test_pyspark_java_trusts_the_extra_cas(pyspark_image: str, extra_ca: str) -> None:
    """Java's store is made from the system's certificates, which hold the foundation's extra CAs."""
    if not extra_ca:
        pytest.skip("this host trusts no CA beyond Debian's: nothing extra to install")
    listing = run_in(pyspark_image, ["sh", "-c", '"$JAVA_HOME/bin/keytool" -list -rfc -cacerts -storepass changeit'])
    missing = certificates_der(extra_ca) - certificates_der(listing.stdout)
    assert not missing, f"{len(missing)} of the host's extra CAs are not in Java's trust store"


#: Starts the named kernel with jupyter_client, as JupyterLab does, and runs Spark in it.
KERNEL_PROBE = r"""
import json, sys
from jupyter_client.manager import start_new_kernel

code = '''
import json
from pyspark.sql import SparkSession
spark = SparkSession.builder.master("local[1]").appName("juvini-probe").getOrCreate()
conf = spark.sparkContext.getConf()
result = {
    "memory": spark.conf.get("spark.driver.memory"),
    "driver_port": conf.get("spark.driver.port", None),
    "block_manager_port": conf.get("spark.blockManager.port", None),
    "driver_host": conf.get("spark.driver.host", None),
    "count": spark.range(100).count(),
    "pandas_rows": len(spark.range(3).toPandas()),
}
spark.stop()
print("JUVINI_PROBE " + json.dumps(result))
'''
manager, client = start_new_kernel(kernel_name=sys.argv[1], startup_timeout=120)
outputs = []
try:
    reply = client.execute_interactive(code, timeout=240, output_hook=outputs.append)
finally:
    client.stop_channels()
    manager.shutdown_kernel(now=True)
for message in outputs:
    if message["msg_type"] == "stream":
        sys.stdout.write(message["content"]["text"])
    elif message["msg_type"] == "error":
        sys.stdout.write("\n".join(message["content"]["traceback"]))
print("\nSTATUS " + reply["content"]["status"])
"""


def _probe_pyspark_kernel(image: str, environment: dict[str, str], home: Path | None = None) -> dict[str, object]:
    result = run_in(
        image,
        ["python", "-c", KERNEL_PROBE, "pyspark"],
        env=environment,
        volumes={home: LAB_HOME} if home else None,
        check=False,
        timeout=400,
    )
    output = result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("JUVINI_PROBE ")]
    assert result.returncode == 0 and lines, output[-4000:]
    return json.loads(lines[-1].removeprefix("JUVINI_PROBE "))


def test_pyspark_kernel_takes_driver_memory_from_the_environment(pyspark_image: str, lab_home: Path) -> None:
    probe = _probe_pyspark_kernel(pyspark_image, {"SPARK_DRIVER_MEMORY": "768m"}, lab_home)
    assert probe["memory"] == "768m", probe
    assert probe["count"] == 100 and probe["pandas_rows"] == 3, probe


def test_pyspark_kernel_defaults_driver_memory(pyspark_image: str) -> None:
    probe = _probe_pyspark_kernel(pyspark_image, {})
    assert probe["memory"] == "1g", probe
    assert probe["count"] == 100, probe


def test_pyspark_kernel_uses_the_spawners_driver_ports(pyspark_image: str) -> None:
    """juvini_hub's spawner publishes a port pair per server and passes it in the environment."""
    environment = {
        "SPARK_DRIVER_MEMORY": "2g",
        "SPARK_DRIVER_PORT": "12003",
        "SPARK_BLOCKMANAGER_PORT": "11103",
        "SPARK_DRIVER_HOST": "127.0.0.1",
    }
    probe = _probe_pyspark_kernel(pyspark_image, environment)
    assert (probe["memory"], probe["driver_port"], probe["block_manager_port"], probe["driver_host"]) == (
        "2g",
        "12003",
        "11103",
        "127.0.0.1",
    ), probe
    assert probe["count"] == 100, probe


#: Runs two cells in a fresh PySpark kernel, as JupyterLab does; prints each cell's streams.
WARNING_PROBE = r"""
import json
from jupyter_client.manager import start_new_kernel

manager, client = start_new_kernel(kernel_name="pyspark", startup_timeout=120)
try:
    for code in ("print('first')", "print('second')"):
        streams = []

        def keep(message, streams=streams):
            if message["msg_type"] == "stream":
                streams.append([message["content"]["name"], message["content"]["text"]])

        client.execute_interactive(code, timeout=120, output_hook=keep)
        print("JUVINI_CELL " + json.dumps(streams))
finally:
    client.stop_channels()
    manager.shutdown_kernel(now=True)
"""


def test_pyspark_kernel_shows_the_spark_warning_above_the_first_cell(pyspark_image: str) -> None:
    """The hub gave the server no Spark port pair: the notebook says why, once."""
    warning = "All 4 Spark port pairs of this lab are in use, so this server runs Spark in local mode only."
    result = run_in(
        pyspark_image, ["python", "-c", WARNING_PROBE], env={"JUVINI_SPARK_WARNING": warning}, check=False, timeout=300
    )
    cells = [
        json.loads(line.removeprefix("JUVINI_CELL "))
        for line in result.stdout.splitlines()
        if line.startswith("JUVINI_CELL ")
    ]
    assert len(cells) == 2, result.stdout + result.stderr
    (first, second) = (
        {name: "".join(text for kind, text in cell if kind == name) for name in ("stdout", "stderr")} for cell in cells
    )
    assert first["stdout"] == "first\n" and f"Juvini: {warning}\n" in first["stderr"], first
    assert second["stdout"] == "second\n" and "Juvini" not in second["stderr"], second


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SPARK_DRIVER_MEMORY", "lots", "is not <digits><k|m|g|t>"),
        ("SPARK_DRIVER_MEMORY", "12", "is not <digits><k|m|g|t>"),
        ("SPARK_DRIVER_MEMORY", "0m", "must be more than zero"),
        ("SPARK_DRIVER_MEMORY", "1g\n2g", "is not <digits><k|m|g|t>"),
        ("SPARK_DRIVER_PORT", "70000", "is not a port number"),
        ("SPARK_DRIVER_HOST", "a b", "is not a host name or address"),
    ],
)
def test_pyspark_kernel_refuses_bad_settings(pyspark_image: str, name: str, value: str, message: str) -> None:
    result = run_in(pyspark_image, ["juvini-pyspark-kernel", "--version"], env={name: value}, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr, result.stderr


# --------------------------------------------------------------------------- Lab extensions (every notebook image)

#: What JupyterHub's Spawner.get_env passes a server with a 3 GiB / 1.5 CPU limit.
LIMITS_ENVIRONMENT = {"MEM_LIMIT": str(3 * 1024**3), "CPU_LIMIT": "1.5"}


@pytest.mark.parametrize("fixture", NOTEBOOK_FIXTURES)
def test_resource_usage_shows_use_against_the_containers_limits(fixture: str, request: pytest.FixtureRequest) -> None:
    """jupyter-resource-usage's endpoint: the server's memory and CPU use against MEM_LIMIT and CPU_LIMIT."""
    image = request.getfixturevalue(fixture)
    with start_server(image, environment=LIMITS_ENVIRONMENT) as start:
        metrics = start.get_json("api/metrics/v1")
        log = start.server_log()
    assert metrics["limits"]["memory"]["rss"] == int(LIMITS_ENVIRONMENT["MEM_LIMIT"]), metrics
    assert metrics["limits"]["cpu"]["cpu"] == float(LIMITS_ENVIRONMENT["CPU_LIMIT"]), metrics
    assert metrics["rss"] > 20 * 1024**2 and metrics["cpu_percent"] >= 0, metrics
    # No callback walking every process each second for Prometheus gauges nobody scrapes.
    assert "Prometheus metrics reporting disabled" in log, log[-3000:]


@pytest.mark.parametrize("fixture", NOTEBOOK_FIXTURES)
def test_git_extension_runs_git_in_the_users_folder(fixture: str, request: pytest.FixtureRequest) -> None:
    """jupyterlab-git's server side: the image's git, and the status of a repository in the home folder."""
    image = request.getfixturevalue(fixture)
    with start_server(image) as start:
        settings = start.get_json("git/settings")
        git_version = docker("exec", start.container, "git", "--version").stdout.split()[-1]
        docker("exec", start.container, "sh", "-c", "git init -q probe && echo hello > probe/new.txt")
        status, body = start.request("POST", "git/probe/status", {})
    assert settings["gitVersion"] == git_version, settings
    assert (
        settings["serverVersion"]
        == pinned_versions(IMAGES_DIR / "notebook-base" / "requirements.txt")["jupyterlab-git"]
    ), settings
    assert status == 200, body
    files = {entry["to"]: (entry["x"], entry["y"]) for entry in json.loads(body)["files"]}
    assert files == {"new.txt": ("?", "?")}, body


def _notebook(source: str) -> str:
    cell: dict[str, object] = {
        "cell_type": "code",
        "execution_count": None,
        "id": "probe",
        "metadata": {},
        "outputs": [],
        "source": source,
    }
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.mark.parametrize("fixture", NOTEBOOK_FIXTURES)
def test_git_extension_diffs_notebooks_without_nbdimes_server_extension(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    """Notebook diffs come from jupyterlab-git's endpoint (nbdime as a library); nbdime's own server
    extension, which imports GitPython, is off, so a server start loads neither."""
    image = request.getfixturevalue(fixture)
    with start_server(image, importtime=True) as start:
        imports = start.imports
        change = {"previousContent": _notebook("x = 1"), "currentContent": _notebook("x = 2")}
        status, body = start.request("POST", "git/diffnotebook", change)
    assert imported(imports, "jupyterlab_git"), sorted({item.module for item in imports})[:80]
    loaded = sorted(name for name in ("nbdime.webapp", "git") if imported(imports, name))
    assert not loaded, f"{image}: the server start imports {loaded}"
    assert status == 200, body
    diff = json.loads(body)["diff"]
    assert diff and diff[0]["key"] == "cells", diff


#: Runs in the image: talks LSP to the python server through jupyter-lsp's websocket, as
#: jupyterlab-lsp does; prints the completions offered after "json.du" and the diagnostics.
LSP_PROBE = r"""
import asyncio, json, sys
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

url, token = sys.argv[1], sys.argv[2]
uri = "file:///home/labuser/probe.py"
text = "import os\nimport json\njson.du"

async def main():
    socket = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
    diagnostics = []

    async def send(method, params, number=None):
        message = {"jsonrpc": "2.0", "method": method, "params": params}
        await socket.write_message(json.dumps(message if number is None else message | {"id": number}))

    async def call(number, method, params):
        await send(method, params, number)
        while True:
            message = json.loads(await asyncio.wait_for(socket.read_message(), 120))
            if message.get("method") == "textDocument/publishDiagnostics":
                diagnostics.extend(item["message"] for item in message["params"]["diagnostics"])
            if message.get("id") == number:
                return message.get("result")

    def at(line, character):
        return {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}

    await call(1, "initialize", {"processId": None, "rootUri": "file:///home/labuser", "capabilities": {}})
    await send("initialized", {})
    document = {"uri": uri, "languageId": "python", "version": 1, "text": text}
    await send("textDocument/didOpen", {"textDocument": document})
    result = await call(2, "textDocument/completion", at(2, 7))
    items = result["items"] if isinstance(result, dict) else result
    # pyflakes lints on open; its diagnostics may come after the completion.
    loop = asyncio.get_running_loop()
    deadline, number = loop.time() + 60, 3
    while not diagnostics and loop.time() < deadline:
        await call(number, "textDocument/hover", at(1, 8))
        number += 1
        await asyncio.sleep(0.5)
    # A label is the name, or with pylsp's default snippets the name with its signature.
    names = sorted({item["label"].split("(", 1)[0] for item in items})
    report = {"completions": names, "diagnostics": diagnostics}
    print("JUVINI_LSP " + json.dumps(report))

asyncio.run(main())
"""


@pytest.mark.parametrize("fixture", NOTEBOOK_FIXTURES)
def test_python_language_server_completes_and_lints_through_jupyter_lsp(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    """jupyter-lsp finds python-lsp-server, which completes (jedi) and reports pyflakes' findings."""
    image = request.getfixturevalue(fixture)
    with start_server(image) as start:
        lsp_status = start.get_json("lsp/status")
        url = f"ws://127.0.0.1:{SERVER_PORT}{SERVER_PREFIX}lsp/ws/pylsp"
        probe = docker("exec", start.container, "python", "-c", LSP_PROBE, url, start.token, check=False, timeout=240)
        log = start.server_log()
    assert "pylsp" in lsp_status["specs"], sorted(lsp_status["specs"])
    lines = [line for line in probe.stdout.splitlines() if line.startswith("JUVINI_LSP ")]
    assert probe.returncode == 0 and lines, (probe.stdout + probe.stderr)[-3000:] + log[-3000:]
    report = json.loads(lines[-1].removeprefix("JUVINI_LSP "))
    assert {"dump", "dumps"} <= set(report["completions"]), report
    assert any("'os' imported but unused" in message for message in report["diagnostics"]), report


# --------------------------------------------------------------------------- culling inside the server

#: Short culling for the test, through the same settings and arguments the hub config passes.
FAST_CULLING = {"kernelIdleTimeout": 5, "terminalIdleTimeout": 5, "kernelCullEvery": 5}
CULL_DEADLINE_SECONDS = 90


def _wait_until_gone(start: ServerStart, collection: str, key: str, value: str) -> float:
    """Poll ``api/<collection>`` until no item has ``key`` == ``value``; the seconds it took."""
    began = time.monotonic()
    while any(item[key] == value for item in start.get_json(f"api/{collection}")):
        if time.monotonic() - began > CULL_DEADLINE_SECONDS:
            pytest.fail(
                f"{collection} {value} still there after {CULL_DEADLINE_SECONDS} s:\n{start.server_log()[-3000:]}"
            )
        time.sleep(1)
    return time.monotonic() - began


def test_server_culls_an_idle_kernel_and_terminal(notebook_base_image: str) -> None:
    """With the hub's culling arguments (here with 5 s timeouts), the server shuts an idle kernel
    down and closes an idle terminal by itself."""
    args = server_culling_args(parse_settings({"spawner": FAST_CULLING}).spawner)
    with start_server(notebook_base_image, server_args=args) as start:
        status, body = start.request("POST", "api/kernels", {"name": "python3"})
        assert status == 201, body
        kernel = json.loads(body)["id"]
        status, body = start.request("POST", "api/terminals", {})
        assert status == 200, body
        terminal = json.loads(body)["name"]
        kernel_seconds = _wait_until_gone(start, "kernels", "id", kernel)
        terminal_seconds = _wait_until_gone(start, "terminals", "name", terminal)
        log = start.server_log()
    assert re.search(rf"Culling '\w+' kernel '\w+' \({kernel}\)", log), log[-3000:]
    assert f"Culling terminal '{terminal}' due to" in log, log[-3000:]
    # The servers' own culling reports, at their first kernel and terminal, the timeouts it was given.
    assert "Culling kernels with idle durations > 5 seconds at 5 second intervals" in log, log[-3000:]
    assert "Culling terminals with inactivity > 5 seconds at 5 second intervals" in log, log[-3000:]
    assert "Culling kernels even if busy" not in log and "even with connected clients" not in log, log[-3000:]
    print(f"culled: kernel after {kernel_seconds:.1f} s, terminal after {terminal_seconds:.1f} s")
