"""What every settings section is built from: the section base, constrained types and how
problems are collected and reported (one line per problem: key, bad value, what is allowed).
"""

from __future__ import annotations

import ipaddress
import json
import re
import typing
from enum import Enum
from pathlib import PurePosixPath
from typing import Annotated, Any, NamedTuple

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

NAMESPACE = "juvini"

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(?:\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?))*\.?$"
)
_DOCKER_MEMORY = re.compile(r"^(?P<number>[0-9]+)(?P<unit>[bkmgBKMG]?)$")
SPARK_MEMORY = re.compile(r"^(?P<number>[0-9]+)(?P<unit>[kmgtKMGT])$")
_PORT_RANGE = re.compile(r"^(?P<first>[0-9]{1,5})-(?P<last>[0-9]{1,5})$")
POSIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

#: The error type a section raises for problems it reports at their own keys.
PROBLEMS_ERROR = "juvini_problems"


class ConfigError(Exception):
    """Invalid stack configuration; ``problems`` lists one line per bad key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid {NAMESPACE} stack configuration ({len(problems)} problem(s)):\n{listing}")


class Problem(NamedTuple):
    """One bad value: its key (camelCase, relative to the model reporting it), the value and
    what is allowed instead."""

    key: str
    value: Any
    allowed: str


def refuse(problems: list[Problem]) -> None:
    """Raise every problem at once from a model validator; each is reported at its own key."""
    if problems:
        summary = "; ".join(
            f"{problem.key}: {describe(problem.value)} is not allowed: {problem.allowed}" for problem in problems
        )
        raise PydanticCustomError(PROBLEMS_ERROR, "{summary}", {"summary": summary, "problems": problems})


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


def hostname_or_ip(value: str) -> str:
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


def _pem_certificate(value: str) -> str:
    if not PEM_CERT.search(value):
        raise ValueError("must be a PEM certificate (-----BEGIN CERTIFICATE----- ...)")
    return value


def _username(value: str) -> str:
    value = value.strip().lower()
    if not re.fullmatch(r"[a-z0-9][a-z0-9._@-]{0,63}", value):
        raise ValueError("must be a JupyterHub username: letters, digits, '.', '_', '@' or '-', at most 64 characters")
    return value


AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]
HostnameOrIp = Annotated[str, AfterValidator(hostname_or_ip)]
DockerMemory = Annotated[str, AfterValidator(_docker_memory)]
Username = Annotated[str, AfterValidator(_username)]
#: A text holding a PEM certificate (a chain or a CA may hold more than one).
PemCertificate = Annotated[str, AfterValidator(_pem_certificate)]
Port = Annotated[int, Field(ge=1, le=65535)]


def memory_bytes(value: str) -> int:
    """Bytes in a Docker (``512m``) or Spark (``2g``) memory size."""
    match = _DOCKER_MEMORY.match(value) or SPARK_MEMORY.match(value)
    if not match:
        raise ValueError(f"not a memory size: {value!r}")
    return int(match["number"]) * _UNITS[match["unit"].lower()]


def split_host_port(value: str) -> tuple[str, str]:
    """``host:port`` (or ``host``) as (host, port text)."""
    host, _, port = value.rpartition(":") if ":" in value else (value, "", "")
    return host, port


def is_host_port(value: str) -> bool:
    host, port = split_host_port(value)
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        return False
    try:
        hostname_or_ip(host)
    except ValueError:
        return False
    return True


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


def port_range(value: Any) -> Any:
    """A ``first-last`` text as the fields of :class:`PortRange` (a before-validator)."""
    if isinstance(value, PortRange | dict):
        return value
    match = _PORT_RANGE.match(str(value))
    if not match:
        raise ValueError("must be a port range written first-last, e.g. 12000-12010")
    first, last = int(match["first"]), int(match["last"])
    if not 1024 <= first <= last <= 65535:
        raise ValueError("must lie within 1024-65535 with first <= last")
    return {"first": first, "last": last}


def nesting(path: PurePosixPath, other: PurePosixPath) -> str | None:
    """How ``path`` clashes with ``other`` (same, inside, containing), or None when apart."""
    if path == other:
        return "is the same as"
    if other in path.parents:
        return "lies inside"
    if path in other.parents:
        return "contains"
    return None


# --- the section base ---------------------------------------------------------------------


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


def explicit(model: BaseModel) -> dict[str, Any]:
    """Every leaf key the stack set itself below ``model`` (dotted camelCase) with its value.

    A section given as ``{}`` sets nothing: only values count, not the objects holding them.
    """
    found: dict[str, Any] = {}
    for name in model.model_fields_set:
        value = getattr(model, name)
        if isinstance(value, Section):
            found |= {f"{to_camel(name)}.{key}": item for key, item in explicit(value).items()}
        else:
            found[to_camel(name)] = value
    return found


# --- reporting ----------------------------------------------------------------------------


def describe(value: Any) -> str:
    """A bad value as shown in a problem line: never a secret, at most 80 characters."""
    if value is None:
        return "(unset)"
    if isinstance(value, SecretStr):
        return "'**********'"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, PortRange):
        value = str(value)
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def join_key(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix and not key.startswith("[") else f"{prefix}{key}"


def location(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a stack key: ``cifs.shares[2].name``."""
    key = ""
    for part in loc:
        key = f"{key}[{part}]" if isinstance(part, int) else join_key(key, str(part))
    return key


def _item_type(annotation: Any) -> Any:
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else None


def _field_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[type[BaseModel] | None, Any]:
    """The model at ``loc`` (None when it is not a model) and the annotation of its last part."""
    current: Any = model
    annotation: Any = model
    for part in loc:
        if isinstance(part, int):
            annotation = _item_type(annotation)
        elif isinstance(current, type) and issubclass(current, BaseModel):
            fields = {to_camel(name): field for name, field in current.model_fields.items()}
            field = fields.get(part)
            annotation = field.annotation if field is not None else None
        else:
            return None, None
        current = annotation
    is_model = isinstance(current, type) and issubclass(current, BaseModel)
    return (current if is_model else None), annotation


def format_error(error: Any, root: type[BaseModel], shown: dict[str, Any]) -> list[str]:
    """The problem lines of one pydantic error: the key, the bad value and what is allowed.

    ``shown`` maps keys to the value the stack gave when the loading step replaced it (a
    file's path rather than its content).
    """
    loc = tuple(error["loc"])
    key = location(loc)
    if error["type"] == PROBLEMS_ERROR:
        lines = []
        for problem in error["ctx"]["problems"]:
            full = join_key(key, problem.key)
            value = shown.get(full, problem.value)
            lines.append(f"{NAMESPACE}:{full}: {describe(value)} is not allowed: {problem.allowed}")
        return lines
    where = f"{NAMESPACE}:{key}" if key else NAMESPACE
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        parent, _ = _field_at(root, loc[:-1])
        allowed = sorted(to_camel(name) for name in parent.model_fields) if parent else []
        return [f"{where}: unknown key; allowed keys here: {', '.join(allowed)}"]
    model, annotation = _field_at(root, loc)
    if model is not None and issubclass(model, Section) and isinstance(error.get("input"), dict):
        # A whole section failed a check across its keys: the message names them.
        return [f"{where}: {message}"]
    # A missing key's "input" is the object that lacks it: show the key as unset instead.
    value = None if error["type"] == "missing" else shown.get(key, error.get("input"))
    if "SecretStr" in str(annotation):
        value = SecretStr("")
    return [f"{where}: {describe(value)} is not allowed: {message}"]
