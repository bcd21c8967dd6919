"""A test double of the program's providers that APPLIES what the program declares.

No Pulumi CLI (and so no engine or provider plugins) can be installed on our CI
machines. This double runs the real program under ``pulumi.runtime.set_mocks`` and,
for each registered resource, does what the real provider would do, for real, with the
same inputs:

- ``docker:index/image:Image``: ``docker build`` with BuildKit (Debian's client), then ``docker push``
  unless ``skipPush`` (with ``docker login`` into a throw-away client configuration when it has
  ``registry`` credentials);
- ``docker:index/network:Network`` / ``Container``: the Docker SDK;
- ``command:remote:Command``: its ``create`` over SSH (``delete`` at teardown) with ``stdin``;
- ``tls:*``: keys, requests and certificates made with ``cryptography``;
- ``random:index/randomBytes:RandomBytes``: ``os.urandom``.

The SDK registers a resource only once the resources it depends on have been
registered, so resources are applied in the order the program's dependencies give.

A second run may start from an earlier deployment (``apply(..., previous=deployment)``), as
``pulumi up`` starts from the stack's state: a resource registered again with the same inputs
is kept as it is, a remote command whose inputs changed runs its create again (pulumi-command's
update without an ``update`` script), random bytes whose inputs changed are made anew, and what
the run no longer registers is undone, newest first, once the run is over.
The double fails loudly on a resource type or input it does not understand, so the
program cannot silently outgrow it. It is a test double, not a product feature:
operators use ``pulumi up``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import ipaddress
import os
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.pulumi_mocks import RecordingMonitor, _unwrap, evaluate_stack, start_mocked_stack

DOCKER_CLI = "/usr/bin/docker"


class UnsupportedByDouble(Exception):
    """The program declared something the double does not know how to apply."""


@dataclass
class Applied:
    """A resource the double applied, and how to undo it."""

    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    undo: Callable[[], None] | None = None


@dataclass
class ProviderDouble(pulumi.runtime.Mocks):
    """Applies registrations for real; ``destroy()`` undoes them in reverse order."""

    ssh_private_key_fallback: str | None = None
    build_log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="juvini-build-")))
    applied: list[Applied] = field(default_factory=list)
    #: What an earlier run applied, by (type, name): the state this run starts from.
    previous: dict[tuple[str, str], Applied] = field(default_factory=dict)
    #: Names of the resources this run created or ran again (the others were kept as they were).
    changed: list[str] = field(default_factory=list)
    inputs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _docker: docker.DockerClient | None = None
    #: The docker provider's ``host``, for the Docker CLI's builds and pushes.
    docker_host: str = "unix:///var/run/docker.sock"

    # --- Mocks interface -------------------------------------------------------------------

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.inputs[(args.typ, args.name)] = dict(args.inputs)
        inputs = _unwrap(dict(args.inputs))
        if not args.custom:
            return "", {}
        handler = _HANDLERS.get(args.typ)
        if handler is None:
            raise UnsupportedByDouble(f"{args.typ} ({args.name}): the provider double cannot apply this type")
        with self._lock:
            before = self.previous.pop((args.typ, args.name), None)
        if before is not None and before.inputs == inputs and not args.typ.startswith("pulumi:providers:"):
            with self._lock:
                self.applied.append(before)
            return f"{args.name}-kept", {**inputs, **before.outputs}
        if before is not None and before.inputs != inputs and args.typ not in _UPDATED_BY_CREATE:
            raise UnsupportedByDouble(f"{args.typ} ({args.name}): replacing a changed resource is not applied here")
        resource_id, outputs, undo = handler(self, args.name, inputs)
        with self._lock:
            self.applied.append(Applied(args.typ, args.name, inputs, outputs, undo))
            self.changed.append(args.name)
        return resource_id, {**inputs, **outputs}

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise UnsupportedByDouble(f"invoke {args.token}: the program is not expected to call functions")

    # --- teardown --------------------------------------------------------------------------

    def destroy(self) -> list[str]:
        """Undo everything applied, newest first (as `pulumi destroy` does). Returns errors."""
        errors = []
        for item in reversed(self.applied):
            if item.undo is None:
                continue
            try:
                item.undo()
            except Exception as error:  # keep tearing down; report all at the end
                errors.append(f"{item.type} {item.name}: {error}")
        self.applied.clear()
        return errors

    def forget_previous(self) -> list[str]:
        """Undo what the earlier run applied and this one no longer declares, newest first."""
        errors = []
        for item in reversed(list(self.previous.values())):
            if item.undo is None:
                continue
            try:
                item.undo()
            except Exception as error:  # keep going; report all at the end
                errors.append(f"{item.type} {item.name}: {error}")
        self.previous.clear()
        return errors

    # --- helpers ---------------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        if self._docker is None:
            raise UnsupportedByDouble("a Docker resource was registered before its docker provider")
        return self._docker


def _check_inputs(type_: str, name: str, inputs: dict[str, Any], known: set[str]) -> None:
    unknown = set(inputs) - known
    if unknown:
        raise UnsupportedByDouble(f"{type_} ({name}): the provider double does not understand inputs {sorted(unknown)}")


# --- providers --------------------------------------------------------------------------------


def _docker_provider(double: ProviderDouble, name: str, inputs: dict[str, Any]) -> tuple[str, dict, None]:
    _check_inputs("pulumi:providers:docker", name, inputs, {"host", "version"})
    host = inputs.get("host", "unix:///var/run/docker.sock")
    if not host.startswith(("unix://", "tcp://")):
        raise UnsupportedByDouble(f"docker provider {name}: only unix sockets and tcp:// are applied here, not {host}")
    double._docker = docker.DockerClient(base_url=host, timeout=600)
    double.docker_host = host
    return f"{name}-provider", {}, None


def _noop_provider(double: ProviderDouble, name: str, inputs: dict[str, Any]) -> tuple[str, dict, None]:
    return f"{name}-provider", {}, None


# --- random / tls ---------------------------------------------------------------------------------


def _random_bytes(double: ProviderDouble, name: str, inputs: dict[str, Any]) -> tuple[str, dict, None]:
    _check_inputs("random:index/randomBytes:RandomBytes", name, inputs, {"length", "keepers"})
    data = os.urandom(int(inputs["length"]))
    return name, {"hex": data.hex(), "base64": base64.b64encode(data).decode()}, None


def _private_key(double: ProviderDouble, name: str, inputs: dict[str, Any]) -> tuple[str, dict, None]:
    _check_inputs("tls:index/privateKey:PrivateKey", name, inputs, {"algorithm", "ecdsaCurve", "rsaBits"})
    algorithm = inputs.get("algorithm", "RSA")
    if algorithm == "ECDSA":
        curves: dict[str, type[ec.EllipticCurve]] = {
            "P224": ec.SECP224R1,
            "P256": ec.SECP256R1,
            "P384": ec.SECP384R1,
            "P521": ec.SECP521R1,
        }
        key: Any = ec.generate_private_key(curves[inputs.get("ecdsaCurve", "P224")]())
    elif algorithm == "RSA":
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(inputs.get("rsaBits", 2048)))
    else:
        raise UnsupportedByDouble(f"tls PrivateKey {name}: algorithm {algorithm}")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return name, {"private_key_pem": pem.decode(), "public_key_pem": public.decode(), "algorithm": algorithm}, None


def _subject(subject: dict[str, Any] | None) -> x509.Name:
    subject = subject or {}
    attributes = []
    if subject.get("organization"):
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject["organization"]))
    if subject.get("commonName"):
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, subject["commonName"]))
    unknown = set(subject) - {"organization", "commonName"}
    if unknown:
        raise UnsupportedByDouble(f"tls subject fields {sorted(unknown)}")
    return x509.Name(attributes)


_KEY_USAGES = {
    "digital_signature": "digital_signature",
    "key_encipherment": "key_encipherment",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
}
_EXTENDED_USAGES = {"server_auth": ExtendedKeyUsageOID.SERVER_AUTH, "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH}


def _build_certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: Any,
    signing_key: Any,
    inputs: dict[str, Any],
    sans: list[x509.GeneralName],
    issuer_key: Any,
) -> str:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=int(inputs["validityPeriodHours"])))
    )
    is_ca = bool(inputs.get("isCaCertificate"))
    builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    uses = inputs.get("allowedUses", [])
    unknown = set(uses) - set(_KEY_USAGES) - set(_EXTENDED_USAGES)
    if unknown:
        raise UnsupportedByDouble(f"tls allowedUses {sorted(unknown)}")
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    for use in uses:
        if use in _KEY_USAGES:
            flags[_KEY_USAGES[use]] = True
    builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    extended = [_EXTENDED_USAGES[use] for use in uses if use in _EXTENDED_USAGES]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if inputs.get("setSubjectKeyId"):
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    if issuer_key is not None and not is_ca:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False)
    certificate = builder.sign(signing_key, hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _self_signed_cert(double: ProviderDouble, name: str, inputs: dict[str, Any]) -> tuple[str, dict, None]:
    known = {
        "privateKeyPem",
        "isCaCertificate",
        "setSubjectKeyId",
        "validityPeriodHours",
        "allowedUses",
        "subject",
        "dnsNames",
        "ipAddresses",
        "earlyRenewalHours",
    }
    _check_inputs("tls:index/selfSignedCert:SelfSignedCert", name, inputs, known)
    key = serialization.load_pem_private_key(inputs["privateKeyPem"].encode(), password=None)
    subject = _subject(inputs.get("subject"))
    pem = _build_certificate(subject, subject, key.public_key(), key, inputs, _sans(inputs), None)
    return name, {"cert_pem": pem}, None


def _sans(inputs: dict[str, Any]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in inputs.get("dnsNames") or []]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in inputs.get("ipAddresses") or []]
    return names


def _cert_request(double: ProviderDouble, name: str, inputs: dict[str, Any]) -> tuple[str, dict, None]:
    _check_inputs(
        "tls:index/certRequest:CertRequest", name, inputs, {"privateKeyPem", "dnsNames", "ipAddresses", "subject"}
    )
    key = serialization.load_pem_private_key(inputs["privateKeyPem"].encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise UnsupportedByDouble(f"tls:index/certRequest:CertRequest ({name}): a {type(key).__name__} key")
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(inputs.get("subject")))
    sans = _sans(inputs)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    request = builder.sign(key, hashes.SHA256())
    return name, {"cert_request_pem": request.public_bytes(serialization.Encoding.PEM).decode()}, None


def _locally_signed_cert(double: ProviderDouble, name: str, inputs: dict[str, Any]) -> tuple[str, dict, None]:
    known = {
        "certRequestPem",
        "caPrivateKeyPem",
        "caCertPem",
        "validityPeriodHours",
        "earlyRenewalHours",
        "allowedUses",
        "setSubjectKeyId",
        "isCaCertificate",
    }
    _check_inputs("tls:index/locallySignedCert:LocallySignedCert", name, inputs, known)
    request = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
    ca_key = serialization.load_pem_private_key(inputs["caPrivateKeyPem"].encode(), password=None)
    ca_cert = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
    try:
        sans = list(request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = []
    pem = _build_certificate(
        request.subject, ca_cert.subject, request.public_key(), ca_key, inputs, sans, ca_key.public_key()
    )
    return name, {"cert_pem": pem}, None


# --- remote commands ----------------------------------------------------------------------


def _ssh(
    double: ProviderDouble, connection: dict[str, Any], command: str, stdin: str | None
) -> subprocess.CompletedProcess:
    unknown = set(connection) - {"host", "port", "user", "privateKey", "hostKey", "dialErrorLimit", "perDialTimeout"}
    if unknown:
        raise UnsupportedByDouble(f"remote connection fields {sorted(unknown)}")
    key = connection.get("privateKey") or double.ssh_private_key_fallback
    if not key:
        raise UnsupportedByDouble("remote Command without privateKey: the double only applies key-based SSH")
    with tempfile.TemporaryDirectory() as folder:
        key_file = Path(folder) / "key"
        key_file.write_text(key if key.endswith("\n") else key + "\n", encoding="utf-8")
        key_file.chmod(0o600)
        known_hosts = Path(folder) / "known_hosts"
        options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(connection.get('perDialTimeout', 15))}"]
        if connection.get("hostKey"):
            # known_hosts names a host on port 22 bare, on any other port as [host]:port.
            port = int(connection.get("port", 22))
            known = connection["host"] if port == 22 else f"[{connection['host']}]:{port}"
            known_hosts.write_text(f"{known} {connection['hostKey']}\n")
            options += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        else:
            options += ["-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={known_hosts}"]
        argv = [
            "ssh",
            "-i",
            str(key_file),
            "-p",
            str(int(connection.get("port", 22))),
            *options,
            f"{connection['user']}@{connection['host']}",
            command,
        ]
        return subprocess.run(argv, input=stdin or "", capture_output=True, text=True, timeout=600, check=False)


def _remote_command(double: ProviderDouble, name: str, inputs: dict[str, Any]) -> tuple[str, dict, Callable | None]:
    known = {
        "connection",
        "create",
        "delete",
        "update",
        "stdin",
        "logging",
        "triggers",
        "environment",
        "addPreviousOutputInEnv",
    }
    _check_inputs("command:remote:Command", name, inputs, known)
    if inputs.get("environment"):
        raise UnsupportedByDouble(f"remote Command {name}: environment (needs sshd AcceptEnv) is not applied")
    connection = inputs["connection"]
    result = _ssh(double, connection, inputs["create"], inputs.get("stdin"))
    if result.returncode != 0:
        raise RuntimeError(f"remote Command {name} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")

    def undo() -> None:
        if inputs.get("delete"):
            done = _ssh(double, connection, inputs["delete"], None)
            if done.returncode != 0:
                raise RuntimeError(f"delete of {name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")

    return name, {"stdout": result.stdout, "stderr": result.stderr}, undo


# --- docker ----------------------------------------------------------------------------------


def _image(double: ProviderDouble, name: str, inputs: dict[str, Any]) -> tuple[str, dict, None]:
    _check_inputs(
        "docker:index/image:Image", name, inputs, {"imageName", "build", "skipPush", "buildOnPreview", "registry"}
    )
    build = inputs["build"]
    _check_inputs(
        "docker:index/image:Image build",
        name,
        build,
        {"context", "dockerfile", "args", "builderVersion", "platform", "target", "network"},
    )
    argv = [DOCKER_CLI, "build", "--progress=plain", "-t", inputs["imageName"]]
    if build.get("dockerfile"):
        argv += ["-f", build["dockerfile"]]
    for key, value in (build.get("args") or {}).items():
        argv += ["--build-arg", f"{key}={value}"]
    for option in ("platform", "target", "network"):
        if build.get(option):
            argv += [f"--{option}", build[option]]
    argv.append(build.get("context", "."))
    environment = os.environ | {
        "DOCKER_BUILDKIT": "1" if build.get("builderVersion") != "BuilderV1" else "0",
        "DOCKER_HOST": double.docker_host,
    }
    log_file = double.build_log_dir / f"{name}.log"
    started = time.monotonic()
    with log_file.open("w", encoding="utf-8") as log:
        result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=environment, timeout=3600, check=False)
    if result.returncode != 0:
        tail = log_file.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise RuntimeError(f"docker build of {name} failed ({result.returncode}); log {log_file}:\n{tail}")
    image = double.client.images.get(inputs["imageName"])
    seconds = time.monotonic() - started
    outputs = {"image_name": inputs["imageName"], "repo_digest": image.id, "build_seconds": seconds}
    if not inputs.get("skipPush", False):
        outputs |= _push(double, name, inputs["imageName"], inputs.get("registry"), environment)
    return image.id, outputs, None


def _push(
    double: ProviderDouble, name: str, image_name: str, registry: dict[str, Any] | None, environment: dict[str, str]
) -> dict[str, Any]:
    """``docker push`` of the built image (after a login when the image has credentials); its digest."""
    started = time.monotonic()
    log_file = double.build_log_dir / f"{name}.push.log"
    with tempfile.TemporaryDirectory() as client_config, log_file.open("w", encoding="utf-8") as log:
        # A throw-away client configuration: the login's credentials do not outlive the push.
        environment = environment | {"DOCKER_CONFIG": client_config}
        if registry:
            _check_inputs("docker:index/image:Image registry", name, registry, {"server", "username", "password"})
            login = subprocess.run(
                [DOCKER_CLI, "login", "--username", registry["username"], "--password-stdin", registry["server"]],
                input=registry["password"],
                capture_output=True,
                text=True,
                env=environment,
                timeout=120,
                check=False,
            )
            if login.returncode != 0:
                raise RuntimeError(f"docker login to {registry['server']} for {name} failed: {login.stderr[-2000:]}")
        result = subprocess.run(
            [DOCKER_CLI, "push", image_name], stdout=log, stderr=subprocess.STDOUT, env=environment, timeout=3600
        )
    if result.returncode != 0:
        tail = log_file.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise RuntimeError(f"docker push of {image_name} failed ({result.returncode}); log {log_file}:\n{tail}")
    repository = image_name.rsplit(":", 1)[0]
    digests = [
        digest
        for digest in double.client.images.get(image_name).attrs.get("RepoDigests") or []
        if digest.startswith(f"{repository}@")
    ]
    if not digests:
        raise RuntimeError(f"docker push of {image_name} left the image no digest in {repository}")
    return {"repo_digest": digests[0], "push_seconds": time.monotonic() - started}


def _network(double: ProviderDouble, name: str, inputs: dict[str, Any]) -> tuple[str, dict, Callable]:
    _check_inputs(
        "docker:index/network:Network",
        name,
        inputs,
        {"name", "driver", "attachable", "ipamConfigs", "labels", "internal", "options"},
    )
    ipam = None
    if inputs.get("ipamConfigs"):
        for config in inputs["ipamConfigs"]:
            _check_inputs("network ipamConfig", name, config, {"subnet", "gateway", "ipRange"})
        pools = [
            docker.types.IPAMPool(subnet=config["subnet"], gateway=config.get("gateway"), iprange=config.get("ipRange"))
            for config in inputs["ipamConfigs"]
        ]
        ipam = docker.types.IPAMConfig(pool_configs=pools)
    network = double.client.networks.create(
        inputs["name"],
        driver=inputs.get("driver", "bridge"),
        options=inputs.get("options"),
        attachable=inputs.get("attachable"),
        internal=bool(inputs.get("internal", False)),
        ipam=ipam,
        labels={label["label"]: label["value"] for label in inputs.get("labels") or []},
        check_duplicate=True,
    )

    def undo() -> None:
        network.remove()

    return network.id, {"name": inputs["name"]}, undo


def _volume(double: ProviderDouble, name: str, inputs: dict[str, Any]) -> tuple[str, dict, Callable]:
    _check_inputs("docker:index/volume:Volume", name, inputs, {"name", "driver", "driverOpts", "labels"})
    volume = double.client.volumes.create(
        name=inputs["name"],
        driver=inputs.get("driver", "local"),
        driver_opts=inputs.get("driverOpts") or {},
        labels={label["label"]: label["value"] for label in inputs.get("labels") or []},
    )

    def undo() -> None:
        with contextlib.suppress(docker.errors.NotFound):
            double.client.volumes.get(volume.name).remove(force=True)

    return volume.name, {"name": volume.name}, undo


def _duration_ns(text: str) -> int:
    units = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "").isdigit():
            return int(float(text[: -len(suffix)]) * units[suffix])
    raise UnsupportedByDouble(f"duration {text!r}")


def _tar(path: str, content: str, permissions: str | None) -> bytes:
    data = content.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name=Path(path).name)
        info.size = len(data)
        info.mode = int(permissions, 8) if permissions else 0o644
        info.mtime = int(time.time())
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _container(double: ProviderDouble, name: str, inputs: dict[str, Any]) -> tuple[str, dict, Callable]:
    known = {
        "name",
        "image",
        "command",
        "user",
        "envs",
        "mounts",
        "ports",
        "networksAdvanced",
        "restart",
        "healthcheck",
        "labels",
        "mustRun",
        "uploads",
        "capabilities",
        "securityOpts",
        "networkMode",
    }
    _check_inputs("docker:index/container:Container", name, inputs, known)
    client = double.client
    mounts = []
    for mount in inputs.get("mounts") or []:
        _check_inputs("container mount", name, mount, {"type", "source", "target", "readOnly"})
        if mount["type"] not in ("bind", "volume"):
            raise UnsupportedByDouble(f"container {name}: mount type {mount['type']}")
        mounts.append(
            docker.types.Mount(
                mount["target"], mount["source"], type=mount["type"], read_only=bool(mount.get("readOnly"))
            )
        )
    capabilities = inputs.get("capabilities") or {}
    _check_inputs("container capabilities", name, capabilities, {"adds", "drops"})
    ports = {}
    for port in inputs.get("ports") or []:
        _check_inputs("container port", name, port, {"internal", "external", "ip", "protocol"})
        ports[f"{int(port['internal'])}/{port.get('protocol', 'tcp')}"] = (
            port.get("ip", "0.0.0.0"),
            int(port["external"]),
        )
    healthcheck = None
    if inputs.get("healthcheck"):
        check = inputs["healthcheck"]
        _check_inputs("container healthcheck", name, check, {"tests", "interval", "timeout", "retries", "startPeriod"})
        healthcheck = {
            "test": check["tests"],
            "interval": _duration_ns(check.get("interval", "30s")),
            "timeout": _duration_ns(check.get("timeout", "30s")),
            "retries": int(check.get("retries", 3)),
            "start_period": _duration_ns(check.get("startPeriod", "0s")),
        }
    networks = [network["name"] for network in inputs.get("networksAdvanced") or []]
    for network in inputs.get("networksAdvanced") or []:
        _check_inputs("container network", name, network, {"name", "aliases", "ipv4Address"})
    restart = inputs.get("restart", "no")
    environment = dict(entry.split("=", 1) for entry in inputs.get("envs") or [])
    container = client.containers.create(
        inputs["image"],
        command=inputs.get("command"),
        name=inputs["name"],
        user=inputs.get("user"),
        environment=environment,
        mounts=mounts,
        ports=ports,
        network=networks[0] if networks else None,
        restart_policy={"Name": restart} if restart != "no" else None,
        healthcheck=healthcheck,
        labels={label["label"]: label["value"] for label in inputs.get("labels") or []},
        cap_add=capabilities.get("adds"),
        cap_drop=capabilities.get("drops"),
        security_opt=inputs.get("securityOpts"),
        network_mode=inputs.get("networkMode"),
    )
    for network in inputs.get("networksAdvanced") or []:
        aliases, address = network.get("aliases"), network.get("ipv4Address")
        if network["name"] != networks[0] or aliases or address:
            if network["name"] == networks[0]:
                client.networks.get(network["name"]).disconnect(container)
            client.networks.get(network["name"]).connect(container, aliases=aliases, ipv4_address=address)
    for upload in inputs.get("uploads") or []:
        _check_inputs("container upload", name, upload, {"file", "content", "permissions"})
        container.put_archive(
            str(Path(upload["file"]).parent), _tar(upload["file"], upload["content"], upload.get("permissions"))
        )
    if inputs.get("mustRun", True):
        container.start()
        container.reload()
        if container.status != "running":
            logs = container.logs(tail=50).decode(errors="replace")
            raise RuntimeError(f"container {inputs['name']} is {container.status} after start:\n{logs}")

    def undo() -> None:
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(container.id).remove(force=True)

    return container.id, {"name": inputs["name"]}, undo


#: Types whose changed inputs mean running their create again (or making them anew), not a replacement.
_UPDATED_BY_CREATE = {"command:remote:Command", "random:index/randomBytes:RandomBytes"}

_HANDLERS: dict[str, Callable[[ProviderDouble, str, dict[str, Any]], tuple[str, dict, Any]]] = {
    "pulumi:providers:docker": _docker_provider,
    "pulumi:providers:command": _noop_provider,
    "pulumi:providers:tls": _noop_provider,
    "pulumi:providers:random": _noop_provider,
    "random:index/randomBytes:RandomBytes": _random_bytes,
    "tls:index/privateKey:PrivateKey": _private_key,
    "tls:index/selfSignedCert:SelfSignedCert": _self_signed_cert,
    "tls:index/certRequest:CertRequest": _cert_request,
    "tls:index/locallySignedCert:LocallySignedCert": _locally_signed_cert,
    "command:remote:Command": _remote_command,
    "docker:index/image:Image": _image,
    "docker:index/network:Network": _network,
    "docker:index/container:Container": _container,
    "docker:index/volume:Volume": _volume,
}


@dataclass
class Deployment:
    """A stack brought up by the double: its outputs, and the way to tear it down."""

    double: ProviderDouble
    outputs: dict[str, Any]
    monitor: RecordingMonitor

    def destroy(self) -> list[str]:
        return self.double.destroy()


def bring_up(config: dict[str, Any], stack: str, secret_keys: list[str] | None = None) -> Deployment:
    """Run the program for ``stack`` with ``config`` and apply every resource for real."""
    from infra.program import main

    return apply(main, config, stack, secret_keys)


def apply(
    declare: Callable[[], Any],
    config: dict[str, Any],
    stack: str,
    secret_keys: list[str] | None = None,
    previous: Deployment | None = None,
) -> Deployment:
    """Run ``declare`` (the program, or part of it) under the double with the stack's config.

    ``previous``: the deployment this run updates (its resources are kept, run again or undone);
    it must not be destroyed afterwards: the returned deployment holds what is left of it. If
    this run fails, ``previous`` holds everything instead (what it had, and what this run made
    or ran again before it failed), as a failed ``pulumi up`` leaves the stack's state: destroy
    it then. A first run that fails is torn down at once.
    """
    double = ProviderDouble()
    if previous is not None:
        double.previous = {(item.type, item.name): item for item in previous.double.applied}
        previous.double.applied = []
    monitor = RecordingMonitor(double)  # type: ignore[arg-type]
    start_mocked_stack(double, monitor, config, secret_keys, stack)
    try:
        result = evaluate_stack(declare)
    except BaseException:
        if previous is not None:
            # As the stack's state after a failed update: nothing undone, everything still held.
            previous.double.applied = double.applied + list(double.previous.values())
            raise
        double.applied[:0] = list(double.previous.values())
        errors = double.destroy()
        if errors:
            print("teardown after a failed bring-up reported:", *errors, sep="\n  ")
        raise
    errors = double.forget_previous()
    if errors:
        raise RuntimeError("undoing what the run no longer declares failed:\n  " + "\n  ".join(errors))
    return Deployment(double=double, outputs=result.get("outputs", {}), monitor=monitor)
