"""The loading step: the only reader of ``pulumi.Config`` and of the files settings name.

``load_settings`` reads the stack; ``parse_settings`` (also used by tests and tools) reads the
files the settings point at (an SSH key file, a CA bundle file or folder), validates
everything and reports every problem at once, each at its key.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.alias_generators import to_camel

from infra.settings.base import NAMESPACE, ConfigError, describe, format_error
from infra.settings.model import Settings


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


def _plain_text_secrets(raw: dict[str, Any], secret_keys: set[str] | None) -> list[str]:
    """A secret field in a top-level key the stack does not encrypt would land in plain state."""
    if secret_keys is None:
        return []
    problems = []
    for dotted in SECRET_KEYS:
        top = dotted.split(".")[0]
        if any(value not in (None, "") for value in _lookup(raw, dotted)) and top not in secret_keys:
            problems.append(
                f"{NAMESPACE}:{dotted}: is stored in plain text; it is a secret: "
                f"set it with `pulumi config set --secret --path {NAMESPACE}:{dotted.replace('[]', '[0]')} ...`"
            )
    return problems


def _drop_empty_secrets(raw: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` where an empty secret (``""``, the Pulumi.yaml default) is unset."""
    cleaned: dict[str, Any] = json.loads(json.dumps(raw))
    for dotted in SECRET_KEYS:
        parents, _, leaf = dotted.rpartition(".")
        for holder in _lookup(cleaned, parents) if parents else [cleaned]:
            if isinstance(holder, dict) and holder.get(leaf) == "":
                del holder[leaf]
    return cleaned


class _Files(NamedTuple):
    """What the loading step read: problems, values shown instead of contents, the SSH key."""

    problems: list[str]
    shown: dict[str, Any]
    ssh_key: SecretStr | None


def _problem(key: str, value: Any, allowed: str) -> str:
    return f"{NAMESPACE}:{key}: {describe(value)} is not allowed: {allowed}"


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    section = data.get(key)
    return section if isinstance(section, dict) else {}


def _read_files(data: dict[str, Any]) -> _Files:
    """Read the files ``data`` names; put a CA bundle's PEM text in place of its path."""
    problems: list[str] = []
    shown: dict[str, Any] = {}
    ssh_key = None
    host = _section(data, "host")
    key_file = host.get("sshPrivateKeyFile")
    if isinstance(key_file, str) and key_file.strip():
        try:
            text = Path(key_file.strip()).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not a text file"
            problems.append(
                _problem("host.sshPrivateKeyFile", key_file, f"must be a readable SSH private key file; {reason}")
            )
        else:
            if "PRIVATE KEY-----" not in text:
                problems.append(
                    _problem(
                        "host.sshPrivateKeyFile",
                        key_file,
                        "must hold an SSH private key (-----BEGIN ... PRIVATE KEY-----)",
                    )
                )
            ssh_key = SecretStr(text)
    images = _section(data, "images")
    for key in PEM_FILE_KEYS:
        problem = _read_pem(images, key, shown)
        if problem:
            problems.append(problem)
    return _Files(problems, shown, ssh_key)


#: Keys of ``images`` given as PEM text, a PEM file or a folder of .crt/.pem files.
PEM_FILE_KEYS = ("extraCaBundle", "registryCa")


def _read_pem(images: dict[str, Any], key: str, shown: dict[str, Any]) -> str | None:
    """Put the PEM text of the file or folder ``images[key]`` names in its place; a problem, if any."""
    given = images.get(key)
    if not isinstance(given, str) or not given.strip() or "-----BEGIN" in given:
        return None
    path = Path(given.strip()).expanduser()
    try:
        if path.is_dir():
            # A folder of CA files, like Debian's /usr/local/share/ca-certificates: an
            # empty one simply means there are no such CAs.
            files = sorted([*path.glob("*.crt"), *path.glob("*.pem")])
            text = "".join(file.read_text(encoding="utf-8", errors="replace") for file in files)
        else:
            text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        del images[key]
        reason = "no such path" if isinstance(error, FileNotFoundError) else error.strerror
        allowed = f"must be PEM text, a PEM file or a folder of .crt/.pem files; {reason}"
        return _problem(f"images.{key}", given, allowed)
    if text.strip():
        images[key] = text
        shown[f"images.{key}"] = given
    else:
        del images[key]
    return None


def parse_settings(raw: dict[str, Any], secret_keys: set[str] | None = None) -> Settings:
    """Validate the ``juvini:`` keys (without the namespace) into :class:`Settings`.

    ``secret_keys`` holds the top-level keys the stack stores encrypted; a secret
    field given in plain text is an error, so that it never lands in plain state.
    Files the settings name are read here. Raises :class:`ConfigError` listing every
    problem at once. ``raw`` is not changed.
    """
    problems = _plain_text_secrets(raw, secret_keys)
    data = _drop_empty_secrets(raw)
    files = _read_files(data)
    problems += files.problems
    try:
        settings = Settings.model_validate(data)
    except ValidationError as error:
        for item in error.errors(include_url=False):
            problems += format_error(item, Settings, files.shown)
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    if files.ssh_key is not None:
        settings.host.attach_key_file_content(files.ssh_key)
    return settings


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
