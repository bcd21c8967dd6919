"""The lab's settings: every ``juvini:`` stack key, typed and validated in one place.

This is the only module that reads ``pulumi.Config``. Everything else receives a
:class:`Settings` object. Validation happens once, before any resource is
registered, and every problem is reported together: each message names the key,
the bad value and what is allowed.

Defaults live here and nowhere else: ``Pulumi.yaml``'s ``config:`` block and the
README's configuration reference are generated from this model
(``python -m infra.reference``) and a unit test keeps them in step.
"""

from __future__ import annotations

import ipaddress
import json
import re
import typing
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from infra import flavours

NAMESPACE = "juvini"

#: Notebook image flavours built from ``images/``; users pick among the allowed ones at spawn.
NOTEBOOK_FLAVOURS: tuple[str, ...] = flavours.NAMES

_DOCKER_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOCKER_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DOCKER_REF = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_POSIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(?:\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?))*\.?$"
)
_DNS_SAN = re.compile(
    r"^(?:\*\.)?(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(?:\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?))*$"
)
_DOCKER_MEMORY = re.compile(r"^(?P<number>[0-9]+)(?P<unit>[bkmgBKMG]?)$")
_SPARK_MEMORY = re.compile(r"^(?P<number>[0-9]+)(?P<unit>[kmgtKMGT])$")
_PORT_RANGE = re.compile(r"^(?P<first>[0-9]{1,5})-(?P<last>[0-9]{1,5})$")
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

#: Largest extra CA bundle accepted: it travels as a build argument, which becomes an
#: environment variable of the build's RUN steps, and Linux refuses a single
#: environment string over 128 KiB.
MAX_CA_BUNDLE_BYTES = 64 * 1024


class ConfigError(Exception):
    """Invalid stack configuration; ``problems`` lists one line per bad key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid {NAMESPACE} stack configuration ({len(problems)} problem(s)):\n{listing}")


# --- reusable constrained types -------------------------------------------------------


def _absolute_path(value: str) -> str:
    path = PurePosixPath(value)
    if not path.is_absolute():
        raise ValueError("must be an absolute path such as /srv/juvini")
    if str(path) == "/":
        raise ValueError("must not be the filesystem root")
    if ".." in path.parts:
        raise ValueError("must not contain '..'")
    if not re.fullmatch(r"[A-Za-z0-9/._-]+", value):
        raise ValueError("may only contain letters, digits, '/', '.', '_' and '-'")
    return str(path)


def _hostname_or_ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not _HOSTNAME.match(value):
        raise ValueError("must be a DNS name or an IP address")
    return value


def _docker_memory(value: str) -> str:
    match = _DOCKER_MEMORY.match(value)
    if not match or int(match["number"]) == 0:
        raise ValueError("must be a memory size: a positive number with an optional unit b, k, m or g (e.g. 512m, 4g)")
    if memory_bytes(value) < 64 * 1024**2:
        raise ValueError("must be at least 64m: a Jupyter server does not start in less")
    return value


def _image_reference(value: str) -> str:
    match = _DOCKER_REF.match(value)
    if not match:
        raise ValueError("must be a Docker image reference such as debian:bookworm-slim or registry:5000/team/base:1.2")
    if not match["tag"] and not match["digest"]:
        raise ValueError("must be pinned with a tag or a @sha256 digest (an untagged reference means 'latest')")
    if match["tag"] == "latest" and not match["digest"]:
        raise ValueError("must not use the moving 'latest' tag; pin a version or a digest")
    return value


def _username(value: str) -> str:
    value = value.strip().lower()
    if not re.fullmatch(r"[a-z0-9][a-z0-9._@-]{0,63}", value):
        raise ValueError("must be a JupyterHub username: letters, digits, '.', '_', '@' or '-', at most 64 characters")
    return value


AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]
HostnameOrIp = Annotated[str, AfterValidator(_hostname_or_ip)]
DockerMemory = Annotated[str, AfterValidator(_docker_memory)]
ImageReference = Annotated[str, AfterValidator(_image_reference)]
Username = Annotated[str, AfterValidator(_username)]
Port = Annotated[int, Field(ge=1, le=65535)]


def memory_bytes(value: str) -> int:
    """Bytes in a Docker (``512m``) or Spark (``2g``) memory size."""
    match = _DOCKER_MEMORY.match(value) or _SPARK_MEMORY.match(value)
    if not match:
        raise ValueError(f"not a memory size: {value!r}")
    return int(match["number"]) * _UNITS[match["unit"].lower()]


class PortRange(BaseModel):
    """An inclusive range of TCP ports, written ``first-last`` in the stack."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first: int
    last: int

    @model_validator(mode="after")
    def _bounds(self) -> PortRange:
        if not 1024 <= self.first <= self.last <= 65535:
            raise ValueError("must lie within 1024-65535 with first <= last")
        return self

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def overlaps(self, other: PortRange) -> bool:
        return self.first <= other.last and other.first <= self.last

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


def _port_range(value: Any) -> Any:
    if isinstance(value, PortRange | dict):
        return value
    match = _PORT_RANGE.match(str(value))
    if not match:
        raise ValueError("must be a port range written first-last, e.g. 12000-12010")
    first, last = int(match["first"]), int(match["last"])
    if not 1024 <= first <= last <= 65535:
        raise ValueError("must lie within 1024-65535 with first <= last")
    return {"first": first, "last": last}


# --- the model ----------------------------------------------------------------------------


class Section(BaseModel):
    """Base of every settings group: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
        validate_default=True,
    )


class HostSettings(Section):
    """How host commands reach the Docker host over SSH."""

    address: HostnameOrIp = Field("127.0.0.1", description="SSH address of the Docker host the lab runs on.")
    ssh_port: Port = Field(22, description="SSH port of the Docker host.")
    ssh_user: str = Field(
        "root",
        pattern=_POSIX_USER.pattern,
        description="SSH user for host commands. A non-root user needs passwordless sudo (set useSudo).",
    )
    ssh_private_key: SecretStr | None = Field(
        None, description="SSH private key (PEM/OpenSSH) for the SSH user. Secret. Without it the SSH agent is used."
    )
    ssh_private_key_file: str | None = Field(
        None,
        description="Path of an SSH private key file on the machine running Pulumi, instead of sshPrivateKey; "
        "its content is handled as a secret.",
    )
    ssh_password: SecretStr | None = Field(None, description="SSH password, when no key is used. Secret.")
    host_key: str | None = Field(
        None, description="Expected SSH host public key (e.g. 'ssh-ed25519 AAAA...'); unchecked when unset."
    )
    use_sudo: bool = Field(False, description="Run privileged host steps through 'sudo -n' (for a non-root SSH user).")

    @field_validator("host_key")
    @classmethod
    def _host_key_shape(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(
            r"(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+", value
        ):
            raise ValueError("must be an SSH public key line 'TYPE BASE64' such as 'ssh-ed25519 AAAA...'")
        return value

    @field_validator("ssh_private_key_file")
    @classmethod
    def _key_file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).expanduser().is_file():
            raise ValueError("must be the path of a readable SSH private key file; no such file")
        return value

    @model_validator(mode="after")
    def _sudo_only_for_non_root(self) -> HostSettings:
        if self.use_sudo and self.ssh_user == "root":
            raise ValueError("useSudo is for a non-root sshUser; root needs no sudo")
        if self.ssh_private_key is not None and self.ssh_private_key_file is not None:
            raise ValueError("set sshPrivateKey or sshPrivateKeyFile, not both")
        return self

    def private_key(self) -> SecretStr | None:
        """The SSH private key, from the secret setting or the key file."""
        if self.ssh_private_key_file is not None:
            return SecretStr(Path(self.ssh_private_key_file).expanduser().read_text(encoding="utf-8"))
        return self.ssh_private_key


class LabUserSettings(Section):
    """The host account whose uid/gid containers run as, so persisted files belong to the host too."""

    name: str = Field("labuser", pattern=_POSIX_USER.pattern, description="Host user and group name.")
    uid: int = Field(2100, ge=1000, le=60000, description="User id on the host and inside notebook containers.")
    gid: int = Field(2100, ge=1000, le=60000, description="Group id on the host and inside notebook containers.")
    docker_group: str = Field(
        "docker", pattern=_POSIX_USER.pattern, description="Host group granting Docker access; the lab user joins it."
    )


class PathSettings(Section):
    """Lab folders on the Docker host."""

    shared_dir: AbsolutePath = Field(
        "/shared/jupyterhub", description="Shared exchange folder (setgid, group-writable), mounted in every server."
    )
    tls_dir: AbsolutePath = Field("/etc/jupyterhub/ssl", description="TLS folder (0700); keys inside are 0600.")
    users_dir: AbsolutePath = Field(
        "/srv/juvini/users", description="Root of per-user persistent folders (one sub-folder per user)."
    )
    hub_state_dir: AbsolutePath = Field("/srv/juvini/hub", description="Hub state: user database and runtime files.")

    @model_validator(mode="after")
    def _distinct_and_not_nested(self) -> PathSettings:
        named = {to_camel(name): PurePosixPath(getattr(self, name)) for name in type(self).model_fields}
        problems = []
        keys = list(named)
        for index, first in enumerate(keys):
            for second in keys[index + 1 :]:
                a, b = named[first], named[second]
                if a == b or a in b.parents or b in a.parents:
                    problems.append(
                        f"{first} ({a}) and {second} ({b}) must be separate folders, neither inside the other"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class TlsMode(StrEnum):
    SELF_SIGNED = "selfSigned"
    PROVIDED = "provided"


class TlsSettings(Section):
    """HTTPS certificates: a lab CA made by the stack, or the operator's own."""

    mode: TlsMode = Field(
        TlsMode.SELF_SIGNED, description="selfSigned (a CA and server certificate made with pulumi-tls) or provided."
    )
    dns_names: list[str] = Field(["localhost"], description="DNS names in the server certificate (SAN).")
    ip_addresses: list[str] = Field(["127.0.0.1"], description="IP addresses in the server certificate (SAN).")
    organization: str = Field(
        "Juvini lab", min_length=1, max_length=64, description="Organization in the certificates' subject."
    )
    validity_days: int = Field(365, ge=1, le=3650, description="Validity of the generated server certificate, in days.")
    ca_validity_days: int = Field(3650, ge=1, le=7300, description="Validity of the generated CA, in days.")
    certificate: str | None = Field(None, description="provided mode: PEM server certificate (with chain).")
    private_key: SecretStr | None = Field(
        None, description="provided mode: PEM private key of the certificate. Secret."
    )
    ca_certificate: str | None = Field(None, description="provided mode: PEM CA certificate users should trust.")

    @field_validator("dns_names")
    @classmethod
    def _dns_names(cls, names: list[str]) -> list[str]:
        bad = [name for name in names if not _DNS_SAN.match(name)]
        if bad:
            raise ValueError(f"{bad} are not DNS names (letters, digits, '-', dots; an optional leading '*.')")
        return names

    @field_validator("ip_addresses")
    @classmethod
    def _ip_addresses(cls, addresses: list[str]) -> list[str]:
        bad = []
        for address in addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                bad.append(address)
        if bad:
            raise ValueError(f"{bad} are not IP addresses")
        return addresses

    @field_validator("certificate", "ca_certificate")
    @classmethod
    def _pem_certificate(cls, value: str | None) -> str | None:
        if value is not None and not _PEM_CERT.search(value):
            raise ValueError("must be a PEM certificate (-----BEGIN CERTIFICATE----- ...)")
        return value

    @model_validator(mode="after")
    def _mode_requirements(self) -> TlsSettings:
        if not self.dns_names and not self.ip_addresses:
            raise ValueError("dnsNames and ipAddresses are both empty; the certificate needs at least one name")
        provided = [self.certificate, self.private_key, self.ca_certificate]
        if self.mode is TlsMode.PROVIDED and any(item is None for item in provided):
            missing = [
                key
                for key, item in zip(("certificate", "privateKey", "caCertificate"), provided, strict=True)
                if item is None
            ]
            raise ValueError(f"mode 'provided' needs certificate, privateKey and caCertificate; missing {missing}")
        if self.mode is TlsMode.SELF_SIGNED and any(item is not None for item in provided):
            raise ValueError("certificate, privateKey and caCertificate are for mode 'provided'; mode is 'selfSigned'")
        if self.private_key is not None and "PRIVATE KEY-----" not in self.private_key.get_secret_value():
            raise ValueError("privateKey must be a PEM private key (-----BEGIN ... PRIVATE KEY-----)")
        return self


class NetworkSettings(Section):
    """Docker networks: one for hub and proxy, one for users' servers."""

    hub_subnet: str | None = Field(None, description="CIDR of the hub/proxy network; Docker picks one when unset.")
    users_subnet: str | None = Field(None, description="CIDR of the users' network; Docker picks one when unset.")

    @field_validator("hub_subnet", "users_subnet")
    @classmethod
    def _private_cidr(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError as error:
            raise ValueError(f"must be a CIDR network such as 172.30.0.0/24 ({error})") from None
        if not network.is_private:
            raise ValueError("must be a private range (10/8, 172.16/12, 192.168/16 or IPv6 ULA)")
        if network.version == 4 and network.prefixlen > 28:
            raise ValueError("must have a prefix of /28 or shorter: leave room for the gateway and containers")
        return value

    @model_validator(mode="after")
    def _no_overlap(self) -> NetworkSettings:
        if (
            self.hub_subnet
            and self.users_subnet
            and ipaddress.ip_network(self.hub_subnet).overlaps(ipaddress.ip_network(self.users_subnet))
        ):
            raise ValueError(f"hubSubnet {self.hub_subnet} and usersSubnet {self.users_subnet} overlap")
        return self


class ImageSettings(Section):
    """Images built from ``images/``."""

    base_image: ImageReference = Field(
        "debian:bookworm-slim",
        description="Debian-like image the hub and notebook images are built from "
        "(must be pullable or present locally).",
    )
    registry: str | None = Field(
        None,
        description="Registry/namespace prefix for image names (e.g. registry.example.com/lab); local only when unset.",
    )
    tag: str = Field("0.1.0", description="Tag given to the built images.")
    push: bool = Field(False, description="Push the built images to the registry.")
    extra_ca_bundle: str | None = Field(
        None,
        description="Extra CA certificates (PEM text, a PEM file, or a folder of .crt files) trusted in the "
        "images at build and run time, e.g. a corporate TLS-inspecting proxy's CA.",
    )
    build_on_preview: bool = Field(False, description="Build images during 'pulumi preview' too.")

    @field_validator("tag")
    @classmethod
    def _tag(cls, value: str) -> str:
        if not _DOCKER_TAG.match(value):
            raise ValueError("must be a Docker tag: letters, digits, '_', '.', '-', at most 128 characters")
        if value == "latest":
            raise ValueError("must not be 'latest': tags pin what a stack deployed")
        return value

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str | None) -> str | None:
        if value is not None and not _DOCKER_REF.match(f"{value}/x:1"):
            raise ValueError("must be a registry host with an optional namespace, e.g. registry.example.com:5000/lab")
        return value

    @field_validator("extra_ca_bundle")
    @classmethod
    def _ca_bundle(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value
        if "-----BEGIN" not in value:
            path = Path(value).expanduser()
            if path.is_dir():
                # A folder of CA files, like Debian's /usr/local/share/ca-certificates: an
                # empty one simply means there are no extra CAs.
                files = sorted([*path.glob("*.crt"), *path.glob("*.pem")])
                text = "".join(file.read_text(encoding="utf-8", errors="replace") for file in files)
                if not text:
                    return None
            elif path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace")
            else:
                raise ValueError("must be PEM text, a PEM file or a folder of .crt/.pem files; no such path")
        certificates = _PEM_CERT.findall(text)
        if not certificates:
            raise ValueError("contains no PEM certificate (-----BEGIN CERTIFICATE-----)")
        bundle = "\n".join(certificates) + "\n"
        if len(bundle.encode()) > MAX_CA_BUNDLE_BYTES:
            raise ValueError(
                f"holds {len(bundle.encode())} bytes of certificates; at most {MAX_CA_BUNDLE_BYTES} are allowed "
                "(list only the extra CAs, not a whole system bundle)"
            )
        return bundle

    @model_validator(mode="after")
    def _push_needs_registry(self) -> ImageSettings:
        if self.push and not self.registry:
            raise ValueError("push is true but no registry is set")
        return self


class HubSettings(Section):
    """The hub and its proxy."""

    https_port: Port = Field(8443, description="Host port where the lab is served over HTTPS.")
    http_redirect_port: Port | None = Field(
        None, description="Optional host port that redirects plain HTTP to HTTPS; unset means HTTP is refused."
    )
    bind_address: HostnameOrIp = Field("0.0.0.0", description="Host address the HTTPS port is published on.")
    public_hostname: HostnameOrIp = Field(
        "localhost", description="Name users type in the browser; used in the hub URL."
    )
    admin_users: list[Username] = Field([], description="Usernames that are hub admins.")
    concurrent_spawn_limit: int = Field(25, ge=0, le=1000, description="Most servers starting at once (0 = unlimited).")
    log_level: Literal["DEBUG", "INFO", "WARN", "ERROR"] = Field("INFO", description="Hub log level.")

    @model_validator(mode="after")
    def _ports_differ(self) -> HubSettings:
        if self.http_redirect_port is not None and self.http_redirect_port == self.https_port:
            raise ValueError(f"httpRedirectPort and httpsPort are both {self.https_port}; they must differ")
        return self


class SpawnerSettings(Section):
    """Users' servers: images offered, limits, timeouts, culling."""

    allowed_images: list[Literal[flavours.NAMES]] = Field(  # type: ignore[valid-type]
        ["datascience", "pyspark", "base"],
        min_length=1,
        description="Notebook images users may pick at spawn; the first is the default.",
    )
    cpu_limit: float = Field(2.0, gt=0, le=256, description="CPUs one user's server may use.")
    mem_limit: DockerMemory = Field("4g", description="Memory one user's server may use (Docker units: 512m, 4g).")
    start_timeout: int = Field(
        300, ge=30, le=3600, description="Seconds a server may take to start (image pull included)."
    )
    http_timeout: int = Field(
        120,
        ge=30,
        le=3600,
        description="Seconds a started server may take to answer; many concurrent starts need more than 30.",
    )
    idle_timeout: int = Field(
        3600, ge=0, le=7 * 86400, description="Seconds of inactivity before a server is culled; 0 disables culling."
    )
    cull_every: int = Field(300, ge=10, le=86400, description="Seconds between idle-culler passes.")
    environment: dict[str, str] = Field({}, description="Extra environment variables for users' servers.")

    @field_validator("allowed_images")
    @classmethod
    def _unique(cls, images: list[str]) -> list[str]:
        if len(set(images)) != len(images):
            raise ValueError(f"{images} lists an image twice")
        return images

    @field_validator("environment")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        bad = [name for name in env if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)]
        if bad:
            raise ValueError(f"{bad} are not environment variable names ([A-Za-z_][A-Za-z0-9_]*)")
        return env

    @model_validator(mode="after")
    def _cull_interval(self) -> SpawnerSettings:
        if self.idle_timeout and self.cull_every > self.idle_timeout:
            raise ValueError(f"cullEvery ({self.cull_every}) is longer than idleTimeout ({self.idle_timeout})")
        return self


class SparkSettings(Section):
    """Spark in users' servers."""

    driver_memory: str = Field("1g", description="spark.driver.memory of the PySpark kernel (Spark units: 512m, 2g).")
    driver_ports: PortRange = Field(
        "12000-12010", description="Host ports handed out as spark.driver.port, one per running server."
    )
    block_manager_ports: PortRange = Field(
        "11100-11110", description="Host ports handed out as spark.blockManager.port, one per running server."
    )
    driver_host: HostnameOrIp | None = Field(
        None,
        description="Address an external cluster uses to reach drivers (spark.driver.host); "
        "the host address when unset.",
    )

    @field_validator("driver_ports", "block_manager_ports", mode="before")
    @classmethod
    def _ranges(cls, value: Any) -> Any:
        return _port_range(value)

    @field_validator("driver_memory")
    @classmethod
    def _spark_memory(cls, value: str) -> str:
        if not _SPARK_MEMORY.match(value) or memory_bytes(value) == 0:
            raise ValueError("must be a Spark memory size: a positive number with a unit k, m, g or t (e.g. 512m, 2g)")
        return value

    @model_validator(mode="after")
    def _ranges_apart(self) -> SparkSettings:
        if self.driver_ports.overlaps(self.block_manager_ports):
            raise ValueError(
                f"driverPorts {self.driver_ports} and blockManagerPorts {self.block_manager_ports} overlap"
            )
        return self


class AuthType(StrEnum):
    NATIVE = "native"
    LDAP = "ldap"
    GITHUB = "github"
    DUMMY = "dummy"


class NativeAuthSettings(Section):
    """NativeAuthenticator: accounts kept in the hub's database."""

    open_signup: bool = Field(
        False, description="Sign-ups are authorized at once (otherwise an admin authorizes them)."
    )
    minimum_password_length: int = Field(10, ge=8, le=128, description="Shortest password accepted at sign-up.")
    check_common_password: bool = Field(True, description="Refuse common passwords at sign-up.")


class LdapTls(StrEnum):
    NONE = "insecure"
    STARTTLS = "before_bind"
    ON_CONNECT = "on_connect"


class LdapSettings(Section):
    """LDAP / Active Directory login (ldapauthenticator)."""

    server_address: HostnameOrIp | None = Field(None, description="LDAP/AD server address.")
    server_port: Port | None = Field(
        None, description="LDAP port; 389, or 636 with tlsStrategy on_connect, when unset."
    )
    tls_strategy: LdapTls = Field(
        LdapTls.STARTTLS, description="insecure, before_bind (StartTLS) or on_connect (LDAPS)."
    )
    ca_certificate: str | None = Field(None, description="PEM CA certificate that signs the LDAP server's certificate.")
    bind_dn_template: list[str] = Field(
        [], description="Direct bind DNs with {username}, e.g. uid={username},ou=people,dc=example,dc=org."
    )
    lookup_dn: bool = Field(False, description="Search the user's DN with a service account before binding.")
    search_user: str | None = Field(None, description="Service account DN (or user@domain on AD) for the search.")
    search_password: SecretStr | None = Field(None, description="Service account password. Secret.")
    user_search_base: str | None = Field(None, description="Search base for users, e.g. ou=people,dc=example,dc=org.")
    user_attribute: str = Field(
        "uid", description="Attribute holding the login name: uid (OpenLDAP) or sAMAccountName (AD)."
    )
    allowed_groups: list[str] = Field(
        [], description="Group DNs whose members may log in; empty allows every valid user."
    )
    admin_groups: list[str] = Field([], description="Group DNs whose members are hub admins (and may always log in).")

    @field_validator("ca_certificate")
    @classmethod
    def _pem(cls, value: str | None) -> str | None:
        if value is not None and not _PEM_CERT.search(value):
            raise ValueError("must be a PEM certificate (-----BEGIN CERTIFICATE----- ...)")
        return value

    @field_validator("bind_dn_template")
    @classmethod
    def _templates(cls, templates: list[str]) -> list[str]:
        bad = [template for template in templates if "{username}" not in template]
        if bad:
            raise ValueError(f"{bad} lack the {{username}} placeholder")
        return templates


class GithubAuthSettings(Section):
    """GitHub OAuth (oauthenticator)."""

    client_id: str | None = Field(None, description="OAuth app client id.")
    client_secret: SecretStr | None = Field(None, description="OAuth app client secret. Secret.")
    allowed_organizations: list[str] = Field([], description="GitHub organizations whose members may log in.")


class AuthSettings(Section):
    """Who may log in."""

    type: AuthType = Field(
        AuthType.NATIVE, description="native, ldap, github or dummy (shared password, for demos only)."
    )
    native: NativeAuthSettings = Field(NativeAuthSettings(), description="Settings for type native.")
    ldap: LdapSettings = Field(LdapSettings(), description="Settings for type ldap.")
    github: GithubAuthSettings = Field(GithubAuthSettings(), description="Settings for type github.")
    dummy_password: SecretStr | None = Field(None, description="type dummy: the shared password. Secret.")
    allowed_users: list[Username] = Field(
        [], description="Usernames allowed to log in besides admins (empty: any authenticated user)."
    )

    @model_validator(mode="after")
    def _type_requirements(self) -> AuthSettings:
        problems = []
        if self.type is AuthType.LDAP:
            ldap = self.ldap
            if ldap.server_address is None:
                problems.append("ldap.serverAddress is required for type ldap")
            if ldap.lookup_dn:
                missing = [
                    key
                    for key, value in (
                        ("searchUser", ldap.search_user),
                        ("searchPassword", ldap.search_password),
                        ("userSearchBase", ldap.user_search_base),
                    )
                    if value is None
                ]
                if missing:
                    problems.append(f"ldap.lookupDn needs {missing}")
            elif not ldap.bind_dn_template:
                problems.append("ldap needs bindDnTemplate, or lookupDn with searchUser/searchPassword/userSearchBase")
        if self.type is AuthType.GITHUB and (self.github.client_id is None or self.github.client_secret is None):
            problems.append("type github needs github.clientId and github.clientSecret")
        if self.type is AuthType.DUMMY and (
            self.dummy_password is None or len(self.dummy_password.get_secret_value()) < 8
        ):
            problems.append("type dummy needs dummyPassword of at least 8 characters")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class KerberosSettings(Section):
    """A Kerberos ticket at login, for Spark/Hadoop clients in users' servers (LDAP login only)."""

    enabled: bool = Field(False, description="Run kinit with the user's password at login (auth.type ldap).")
    realm: str | None = Field(None, description="Kerberos realm, upper case, e.g. CORP.EXAMPLE.ORG.")
    kdcs: list[str] = Field([], description="KDC addresses, host or host:port.")
    admin_server: str | None = Field(None, description="kadmin server, host or host:port; the first KDC when unset.")
    on_failure: Literal["warn", "refuse"] = Field(
        "warn",
        description="When no ticket can be had (e.g. the KDC is down): warn (log in, start without a ticket, "
        "say why in JUVINI_KERBEROS_WARNING) or refuse the login.",
    )
    ticket_lifetime: str = Field("10h", pattern=r"^[0-9]+[smhd]$", description="Requested ticket lifetime, e.g. 10h.")
    renew_lifetime: str = Field("7d", pattern=r"^[0-9]+[smhd]$", description="Requested renewable lifetime, e.g. 7d.")

    @field_validator("realm")
    @classmethod
    def _realm(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Z0-9][A-Z0-9.-]*", value):
            raise ValueError("must be a Kerberos realm in upper case, e.g. CORP.EXAMPLE.ORG")
        return value

    @field_validator("kdcs")
    @classmethod
    def _kdcs(cls, kdcs: list[str]) -> list[str]:
        bad = [kdc for kdc in kdcs if not _host_port(kdc)]
        if bad:
            raise ValueError(f"{bad} are not host or host:port addresses")
        return kdcs

    @field_validator("admin_server")
    @classmethod
    def _admin_server(cls, value: str | None) -> str | None:
        if value is not None and not _host_port(value):
            raise ValueError("must be host or host:port")
        return value

    @model_validator(mode="after")
    def _complete(self) -> KerberosSettings:
        if self.enabled and (self.realm is None or not self.kdcs):
            raise ValueError("enabled needs realm and at least one of kdcs")
        return self


def _host_port(value: str) -> bool:
    host, _, port = value.rpartition(":") if ":" in value else (value, "", "")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        return False
    try:
        _hostname_or_ip(host)
    except ValueError:
        return False
    return True


class CifsShare(Section):
    """A Windows (SMB/CIFS) share mounted into users' servers through a Docker volume."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="Short name (volume and default folder name).")
    unc: str = Field(description="Share as //server/share.")
    address: str | None = Field(
        None, description="IP address of the server (the kernel's CIFS client needs one); from unc when that is an IP."
    )
    mount_path: str | None = Field(None, description="Folder under the user's home it appears at; name when unset.")
    per_user: bool = Field(
        False,
        description="Mount with each user's own login and password at spawn (auth.type ldap), not a service account.",
    )
    username: str | None = Field(None, description="Service account for a team share.")
    password: SecretStr | None = Field(None, description="Service account password. Secret.")
    domain: str | None = Field(None, pattern=r"^[A-Za-z0-9.-]{1,64}$", description="Windows domain of the accounts.")
    version: Literal["2.0", "2.1", "3.0", "3.1.1"] = Field("3.0", description="SMB protocol version (vers=).")
    read_only: bool = Field(False, description="Mount read-only.")

    @field_validator("unc")
    @classmethod
    def _unc(cls, value: str) -> str:
        if not re.fullmatch(r"//[A-Za-z0-9.-]+/[A-Za-z0-9$_. -]+(/[A-Za-z0-9$_. /-]*)?", value):
            raise ValueError("must be //server/share (forward slashes)")
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)
        return value

    @field_validator("mount_path")
    @classmethod
    def _mount_path(cls, value: str | None) -> str | None:
        if value is not None and (
            value.startswith("/") or ".." in value.split("/") or not re.fullmatch(r"[A-Za-z0-9._/-]+", value)
        ):
            raise ValueError("must be a relative folder under the user's home, e.g. team or shares/finance")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> CifsShare:
        host = self.unc.split("/")[2]
        if self.address is None:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(
                    f"{self.name}: address is required when the unc server {host!r} is not an IP"
                ) from None
        if self.per_user and (self.username or self.password):
            raise ValueError(f"{self.name}: a perUser share uses each user's own login; drop username/password")
        if not self.per_user and (not self.username or self.password is None):
            raise ValueError(f"{self.name}: a team share needs username and password (or set perUser)")
        return self

    @property
    def server_address(self) -> str:
        return self.address or self.unc.split("/")[2]

    @property
    def folder(self) -> str:
        return self.mount_path or self.name


class CifsSettings(Section):
    """Windows shares in users' servers."""

    shares: list[CifsShare] = Field([], description="Shares to mount; see the CIFS section of the README.")

    @model_validator(mode="after")
    def _unique(self) -> CifsSettings:
        names = [share.name for share in self.shares]
        folders = [share.folder for share in self.shares]
        if len(set(names)) != len(names) or len(set(folders)) != len(folders):
            raise ValueError(f"share names {names} and folders {folders} must be unique")
        return self


class SwarmSettings(Section):
    """Docker Swarm scale-out: users' servers as swarm services across nodes (SwarmSpawner)."""

    enabled: bool = Field(
        False, description="Spawn users' servers as Swarm services (the Docker host must be a manager)."
    )
    placement_constraints: list[str] = Field(
        [], description="Swarm placement constraints for users' services, e.g. node.role==worker."
    )

    @field_validator("placement_constraints")
    @classmethod
    def _constraints(cls, constraints: list[str]) -> list[str]:
        bad = [c for c in constraints if not re.fullmatch(r"[A-Za-z0-9_.\-]+ *(==|!=) *[A-Za-z0-9_.\-]+", c)]
        if bad:
            raise ValueError(f"{bad} are not placement constraints like node.role==worker")
        return constraints


class Settings(Section):
    """Every ``juvini:`` key of a stack."""

    docker_host: str = Field(
        "unix:///var/run/docker.sock",
        description="Docker engine endpoint: unix:///var/run/docker.sock, ssh://user@host or tcp://host:2376.",
    )
    docker_socket: AbsolutePath = Field(
        "/var/run/docker.sock", description="Path of the Docker socket on the Docker host, mounted into the hub."
    )
    host: HostSettings = Field(HostSettings(), description="SSH access to the Docker host for host commands.")
    lab_user: LabUserSettings = Field(LabUserSettings(), description="The lab's host user and group.")
    paths: PathSettings = Field(PathSettings(), description="Lab folders on the Docker host.")
    allow_data_removal: bool = Field(
        False, description="Let 'pulumi destroy' delete user data (shared, users' and hub state folders, the lab user)."
    )
    tls: TlsSettings = Field(TlsSettings(), description="HTTPS certificates.")
    network: NetworkSettings = Field(NetworkSettings(), description="Docker networks.")
    images: ImageSettings = Field(ImageSettings(), description="Image builds.")
    hub: HubSettings = Field(HubSettings(), description="The hub and its proxy.")
    auth: AuthSettings = Field(AuthSettings(), description="Login.")
    spawner: SpawnerSettings = Field(SpawnerSettings(), description="Users' servers.")
    spark: SparkSettings = Field(SparkSettings(), description="Spark in users' servers.")
    kerberos: KerberosSettings = Field(KerberosSettings(), description="Kerberos ticket at login.")
    cifs: CifsSettings = Field(CifsSettings(), description="Windows (CIFS) shares in users' servers.")
    swarm: SwarmSettings = Field(SwarmSettings(), description="Docker Swarm scale-out.")

    @field_validator("docker_host")
    @classmethod
    def _docker_host(cls, value: str) -> str:
        if not re.fullmatch(
            r"(unix://(/[^\s]+)|tcp://[A-Za-z0-9.\-]+:[0-9]{1,5}|ssh://([a-z_][a-z0-9_-]*@)?[A-Za-z0-9.\-]+(:[0-9]{1,5})?)",
            value,
        ):
            raise ValueError("must be unix:///path/docker.sock, tcp://host:port or ssh://[user@]host[:port]")
        return value

    @model_validator(mode="after")
    def _cross_section(self) -> Settings:
        problems = []
        hub_ports = {"hub.httpsPort": self.hub.https_port}
        if self.hub.http_redirect_port is not None:
            hub_ports["hub.httpRedirectPort"] = self.hub.http_redirect_port
        for key, port in hub_ports.items():
            for range_key, port_range in (
                ("spark.driverPorts", self.spark.driver_ports),
                ("spark.blockManagerPorts", self.spark.block_manager_ports),
            ):
                if port in port_range:
                    problems.append(f"{key} {port} lies inside {range_key} {port_range}")
        if memory_bytes(self.spark.driver_memory) >= memory_bytes(self.spawner.mem_limit):
            problems.append(
                f"spark.driverMemory {self.spark.driver_memory} must be below spawner.memLimit {self.spawner.mem_limit}"
            )
        if self.kerberos.enabled and self.auth.type is not AuthType.LDAP:
            problems.append(
                f"kerberos.enabled needs the login password: auth.type must be ldap, not {self.auth.type.value!r}"
            )
        per_user = [share.name for share in self.cifs.shares if share.per_user]
        if per_user and self.auth.type is not AuthType.LDAP:
            problems.append(f"cifs.shares {per_user} are perUser: auth.type must be ldap, not {self.auth.type.value!r}")
        if self.lab_user.name == self.lab_user.docker_group:
            problems.append(f"labUser.name and labUser.dockerGroup are both {self.lab_user.name!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # --- derived values -----------------------------------------------------------------

    @property
    def hub_url(self) -> str:
        host = self.hub.public_hostname
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        port = "" if self.hub.https_port == 443 else f":{self.hub.https_port}"
        return f"https://{host}{port}/"

    @property
    def admin_users(self) -> list[str]:
        return list(self.hub.admin_users)


# --- reading the stack --------------------------------------------------------------------


def _secret_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted camelCase paths of every SecretStr field below ``model``."""
    paths = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{to_camel(name)}"
        annotation = field.annotation
        item = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else None
        if annotation is not None and "SecretStr" in str(annotation):
            paths.append(path)
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths.extend(_secret_fields(annotation, f"{path}."))
        elif isinstance(item, type) and issubclass(item, BaseModel):
            paths.extend(_secret_fields(item, f"{path}[]."))
    return paths


SECRET_KEYS: tuple[str, ...] = tuple(_secret_fields(Settings))


def _lookup(data: Any, dotted: str) -> list[Any]:
    """Every value at ``dotted`` (``a.b[].c`` walks each item of the list ``a.b``)."""
    values = [data]
    for part in dotted.split("."):
        each = part.endswith("[]")
        key = part.removesuffix("[]")
        found = []
        for value in values:
            if isinstance(value, dict) and key in value:
                item = value[key]
                found.extend(item if each and isinstance(item, list) else [] if each else [item])
        values = found
    return values


def _describe(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _format_error(error: Any) -> str:
    """One line per problem: the key, the bad value and what is allowed."""
    location = ".".join(str(part) for part in error["loc"])
    key = f"{NAMESPACE}:{location}" if location else NAMESPACE
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        parent = _model_at(Settings, [str(part) for part in error["loc"][:-1]])
        allowed = sorted(to_camel(name) for name in parent.model_fields) if parent else []
        return f"{key}: unknown key; allowed keys here: {', '.join(allowed)}"
    model = _model_at(Settings, [str(part) for part in error["loc"]])
    if model is not None and issubclass(model, Section) and isinstance(error.get("input"), dict):
        # A whole section failed a cross-field check: the message names the keys and values.
        return f"{key}: {message}"
    return f"{key}: {_describe(error.get('input'))} is not allowed: {message}"


def _model_at(model: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    for part in path:
        fields = {to_camel(name): field for name, field in model.model_fields.items()}
        field = fields.get(part)
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def parse_settings(raw: dict[str, Any], secret_keys: set[str] | None = None) -> Settings:
    """Validate the ``juvini:`` keys (without the namespace) into :class:`Settings`.

    ``secret_keys`` holds the top-level keys the stack stores encrypted; a secret
    field given in plain text is an error, so that it never lands in plain state.
    Raises :class:`ConfigError` listing every problem at once.
    """
    problems = []
    if secret_keys is not None:
        for dotted in SECRET_KEYS:
            top = dotted.split(".")[0]
            if any(value not in (None, "") for value in _lookup(raw, dotted)) and top not in secret_keys:
                problems.append(
                    f"{NAMESPACE}:{dotted}: is stored in plain text; it is a secret: "
                    f"set it with `pulumi config set --secret --path {NAMESPACE}:{dotted.replace('[]', '[0]')} ...`"
                )
    try:
        settings = Settings.model_validate(_drop_empty_secrets(raw))
    except ValidationError as error:
        problems.extend(_format_error(item) for item in error.errors(include_url=False))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return settings


def _drop_empty_secrets(raw: dict[str, Any]) -> dict[str, Any]:
    """Treat an empty secret (``""``, the Pulumi.yaml default) as unset."""
    cleaned = json.loads(json.dumps(raw))
    for dotted in SECRET_KEYS:
        parents, _, leaf = dotted.rpartition(".")
        for holder in _lookup(cleaned, parents) if parents else [cleaned]:
            if isinstance(holder, dict) and holder.get(leaf) == "":
                del holder[leaf]
    return cleaned


def _decode(value: str, field_name: str) -> Any:
    """Stack values arrive as strings; objects, lists, numbers and booleans as JSON text."""
    annotation = Settings.model_fields[field_name].annotation
    if annotation is str:
        return value
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value  # let validation report it with the key and the allowed shape


def load_settings() -> Settings:
    """Read every ``juvini:`` key of the current stack into validated :class:`Settings`."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    config = pulumi.Config(NAMESPACE)
    # pulumi.Config has no way to list a namespace; unknown keys must be reported, so
    # look at the full map the engine handed the program.
    present = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    prefix = f"{NAMESPACE}:"
    raw: dict[str, Any] = {}
    fields_by_key = {to_camel(name): name for name in Settings.model_fields}
    for full_key in sorted(present):
        if not full_key.startswith(prefix):
            continue
        key = full_key[len(prefix) :]
        value = config.get(key)
        if value is None:
            continue
        raw[key] = _decode(value, fields_by_key[key]) if key in fields_by_key else value
    secret_keys = {
        key[len(prefix) :] for key in present if key.startswith(prefix) and runtime_config.is_config_secret(key)
    }
    return parse_settings(raw, secret_keys)
