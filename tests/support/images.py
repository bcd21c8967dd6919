"""Build and run the lab's images in tests: small typed helpers around the Docker CLI.

Everything goes through ``/usr/bin/docker`` with BuildKit (the Debian client, whose
builder works without buildx) and the scripts in ``images/tools/``, the same ones
a lab host uses, so the tests exercise them too. ``ImageChain`` builds the images in
the program's order (``infra.images.build_order``): the foundation, then each image
``FROM`` its parent.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from infra.images import ImageBuild, build_order

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = REPO_ROOT / "images"
TOOLS_DIR = IMAGES_DIR / "tools"

DOCKER = "/usr/bin/docker"
#: The OS image make-base-image.sh makes; the foundation builds FROM it.
BASE_IMAGE_TAG = "juvini-base:bookworm"

#: The system trust store (Debian's CAs plus the local ones) and Debian's own CAs.
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBIAN_CA_DIR = Path("/usr/share/ca-certificates")

#: Most bytes an image may take, as `docker images` counts it (all layers), by images/ folder:
#: issue 11 keeps the data-science image, with the Anaconda set, under 3.5 GB. The benchmark
#: prints each beside the image's size; the image tests check it.
SIZE_GOALS: dict[str, int] = {"notebook-datascience": 3_500_000_000}
#: Cold builds of the data-science and PySpark images download a few GB.
BUILD_TIMEOUT_SECONDS = 3600
#: How much of a failed build's log goes into the exception.
LOG_TAIL_LINES = 80

_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.DOTALL)
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


class ImageToolError(RuntimeError):
    """A docker command or an images/tools script failed; the message holds its output."""


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _run_tool(script: str, *args: str, timeout: float) -> str:
    command = [str(TOOLS_DIR / script), *args]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        raise ImageToolError(f"{script} did not finish within {timeout:.0f} s") from error
    if result.returncode != 0:
        raise ImageToolError(
            f"{script} {' '.join(args)} exited {result.returncode}:\n{_tail(result.stdout + result.stderr)}"
        )
    return result.stdout + result.stderr


def ensure_engine(timeout: float = 300) -> None:
    """Make sure a Docker engine answers (images/tools/ensure-docker-engine.sh)."""
    _run_tool("ensure-docker-engine.sh", timeout=timeout)


def ensure_base_image(tag: str = BASE_IMAGE_TAG, timeout: float = 900) -> str:
    """Make the local Debian base image ``tag`` unless it exists (make-base-image.sh); returns ``tag``."""
    _run_tool("make-base-image.sh", tag, timeout=timeout)
    return tag


def _der(pem_body: str) -> bytes | None:
    try:
        return base64.b64decode("".join(pem_body.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _certificates(text: str) -> list[tuple[bytes, str]]:
    """(DER bytes, PEM text) of each certificate in ``text``, in order; unreadable blocks skipped."""
    found = []
    for match in _PEM_BLOCK.finditer(text):
        der = _der(match.group(1))
        if der is not None:
            found.append((der, match.group(0)))
    return found


def certificates_der(text: str) -> set[bytes]:
    """The DER bytes of every certificate in PEM ``text`` (compares certificates, not whitespace)."""
    return {der for der, _ in _certificates(text)}


def extra_ca_bundle(bundle: Path = SYSTEM_BUNDLE, shipped_dir: Path = DEBIAN_CA_DIR) -> str:
    """PEM text of the CAs this host trusts that Debian's ca-certificates does not ship.

    Those are the local additions (a TLS-inspecting proxy's CA, a company CA): the
    images need them to reach package indexes from here. Empty when there is none.
    """
    if not bundle.is_file():
        return ""
    shipped: set[bytes] = set()
    if shipped_dir.is_dir():
        for path in sorted(shipped_dir.rglob("*.crt")):
            shipped |= certificates_der(path.read_text(encoding="ascii", errors="replace"))
    extra: list[str] = []
    seen: set[bytes] = set()
    for der, pem in _certificates(bundle.read_text(encoding="ascii", errors="replace")):
        if der not in shipped and der not in seen:
            seen.add(der)
            extra.append(pem)
    return "".join(f"{pem}\n" for pem in extra)


def build_image(context_dir: Path | str, tag: str, build_args: Mapping[str, str]) -> str:
    """``docker build`` ``context_dir`` (its Dockerfile) as ``tag`` with BuildKit; returns ``tag``.

    Raises ImageToolError with the tail of the build log when the build fails.
    """
    command = [DOCKER, "build", "--progress=plain", "--tag", tag]
    for name, value in build_args.items():
        command += ["--build-arg", f"{name}={value}"]
    command.append(str(context_dir))
    environment = {**os.environ, "DOCKER_BUILDKIT": "1"}
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=environment,
            timeout=BUILD_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise ImageToolError(f"building {tag} took longer than {BUILD_TIMEOUT_SECONDS} s") from error
    if result.returncode != 0:
        raise ImageToolError(
            f"building {tag} from {context_dir} failed (exit {result.returncode}):\n"
            f"{_tail(result.stdout + result.stderr)}"
        )
    return tag


def docker(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a docker CLI command; with ``check`` a failure raises with its output."""
    result = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise ImageToolError(
            f"docker {' '.join(args)[:300]} exited {result.returncode}:\n{_tail(result.stdout + result.stderr)}"
        )
    return result


def run_in(
    image: str,
    command: Sequence[str],
    *,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    volumes: Mapping[Path | str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``docker run --rm`` ``command`` in ``image``; ``volumes`` maps host paths to container paths."""
    args = ["run", "--rm"]
    if user is not None:
        args += ["--user", user]
    for name, value in (env or {}).items():
        args += ["--env", f"{name}={value}"]
    for host_path, container_path in (volumes or {}).items():
        args += ["--volume", f"{host_path}:{container_path}"]
    return docker(*args, image, *command, timeout=timeout, check=check)


def image_config(image: str) -> dict[str, Any]:
    """The ``Config`` section of ``docker image inspect`` (Cmd, Entrypoint, Env, Labels, ...)."""
    inspected = json.loads(docker("image", "inspect", image).stdout)
    return inspected[0]["Config"]


def canonical_name(name: str) -> str:
    """A distribution name as PEP 503 normalises it (``Jinja2`` == ``jinja2``, ``a_b`` == ``a-b``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(text: str) -> dict[str, str]:
    """``{canonical name: version}`` of the ``name==version`` lines of ``text`` (e.g. ``pip freeze``)."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        match = _REQUIREMENT.match(line.strip())
        if match:
            pins[canonical_name(match.group(1))] = match.group(2)
    return pins


def pinned_versions(requirements_txt: Path) -> dict[str, str]:
    """``{canonical name: version}`` of a frozen requirements file."""
    return parse_pins(requirements_txt.read_text(encoding="utf-8"))


def image_id(image: str) -> str:
    """The local image id (``sha256:...``) of ``image``."""
    return docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()


def chain_build_args(
    build: ImageBuild, base: str, extra_ca: str, version: str, base_digest: str = ""
) -> dict[str, str]:
    """Build arguments of ``build`` on ``base``, as the program passes them (defaults for the lab user).

    Only the foundation takes ``extra_ca``; the images above get their base's digest.
    """
    args = {"BASE_IMAGE": base, "JUVINI_VERSION": version}
    if build.parent is None:
        args["EXTRA_CA_CERTS"] = extra_ca
    else:
        args["BASE_IMAGE_DIGEST"] = base_digest
    return args


class ImageChain:
    """The lab's images built on demand, each after and ``FROM`` its parent, once per instance.

    Tags are ``<prefix>/<folder>:<tag>``; the foundation is built from ``base_os_image``
    with ``extra_ca``.
    """

    def __init__(self, base_os_image: str, extra_ca: str, prefix: str, tag: str, version: str) -> None:
        self.base_os_image = base_os_image
        self.extra_ca = extra_ca
        self.prefix = prefix
        self.tag = tag
        self.version = version
        self.builds = {build.key: build for build in build_order()}
        self._built: dict[str, str] = {}

    def tag_of(self, key: str) -> str:
        return f"{self.prefix}/{self.builds[key].folder}:{self.tag}"

    def image(self, key: str) -> str:
        """The image ``key`` (``foundation``, ``hub`` or a flavour), built with its parents if need be."""
        if key not in self._built:
            build = self.builds[key]
            if build.parent is None:
                base, digest = self.base_os_image, ""
            else:
                base = self.image(build.parent)
                digest = image_id(base)
            args = chain_build_args(build, base, self.extra_ca, self.version, digest)
            self._built[key] = build_image(IMAGES_DIR / build.folder, self.tag_of(key), args)
        return self._built[key]
