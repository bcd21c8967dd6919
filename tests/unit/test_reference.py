"""Pulumi.yaml's config block and the README's reference are generated from the settings model."""

from __future__ import annotations

import typing
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from infra import reference
from infra.settings import SECRET_KEYS, PortRange, Section, Settings

pytestmark = pytest.mark.unit


def test_pulumi_yaml_is_generated_from_the_model() -> None:
    assert reference.PULUMI_YAML.read_text(encoding="utf-8") == reference.pulumi_yaml_text(), (
        "Pulumi.yaml is stale: run `python -m infra.reference`"
    )


def test_readme_reference_is_generated_from_the_model() -> None:
    readme = reference.README.read_text(encoding="utf-8")
    assert readme == reference.readme_with_reference(readme), "README.md is stale: run `python -m infra.reference`"


def test_every_top_level_key_is_declared_with_a_description_and_default() -> None:
    config = yaml.safe_load(reference.PULUMI_YAML.read_text(encoding="utf-8"))["config"]
    assert set(config) == {reference.to_camel(name) for name in Settings.model_fields}
    for key, declaration in config.items():
        assert declaration["description"], key
        assert "default" in declaration, key
        if "type" in declaration:
            assert declaration["type"] in ("string", "integer", "boolean", "array"), key


def test_declared_primitive_defaults_equal_the_models() -> None:
    config = yaml.safe_load(reference.PULUMI_YAML.read_text(encoding="utf-8"))["config"]
    defaults = Settings().model_dump(by_alias=True, mode="json")
    for key, declaration in config.items():
        if "type" in declaration:
            assert declaration["default"] == defaults[key], key
        else:
            # Sections default to {} (lists of objects to []): the model fills in every default, so
            # they live in one place.
            assert declaration["default"] == ({} if isinstance(defaults[key], dict) else []), key


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key below ``model``, from the model itself: a new key cannot be forgotten here."""
    keys = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{to_camel(name)}"
        annotation: Any = field.annotation
        item = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else None
        if isinstance(annotation, type) and issubclass(annotation, Section):
            keys += _leaf_keys(annotation, f"{key}.")
        elif isinstance(item, type) and issubclass(item, Section):
            keys += [key, *_leaf_keys(item, f"{key}[].")]
        else:
            keys.append(key)
    return keys


def _rows() -> dict[str, str]:
    rows = {}
    for line in reference.markdown_reference().splitlines()[2:]:
        key = line.split("|")[1].strip().strip("`").removeprefix("juvini:")
        rows[key] = line
    return rows


def test_reference_lists_every_leaf_key_once_in_model_order() -> None:
    assert list(_rows()) == _leaf_keys(Settings)


def test_reference_marks_every_secret_and_only_secrets() -> None:
    for key, line in _rows().items():
        assert ("| secret string |" in line) == (key in SECRET_KEYS), line


def test_reference_shows_each_leafs_default_from_the_model() -> None:
    defaults = Settings().model_dump(by_alias=True, mode="json")
    for key, line in _rows().items():
        if "[]" in key or key == "cifs.shares":
            continue
        value: Any = defaults
        for part in key.split("."):
            value = value[part]
        if isinstance(value, dict) and set(value) == {"first", "last"}:
            value = str(PortRange(**value))
        shown = line.split("|")[3].strip()
        assert (shown == "—") if value is None else (yaml.safe_load(shown.strip("`")) == value), line


def test_every_section_has_a_description_and_every_key_too() -> None:
    assert all("|  |" not in line for line in _rows().values())
    for name, field in Settings.model_fields.items():
        assert field.description, name


def test_pulumi_yaml_asks_the_cli_to_type_check_the_program() -> None:
    project = yaml.safe_load(reference.PULUMI_YAML.read_text(encoding="utf-8"))
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["typechecker"] == "mypy"
    assert project["runtime"]["options"]["virtualenv"] == "venv"


def test_stale_files_fail_the_check(tmp_path, monkeypatch) -> None:
    stale = tmp_path / "Pulumi.yaml"
    stale.write_text(reference.pulumi_yaml_text().replace("/var/run/docker.sock", "/run/x.sock"), encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(reference.README.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(reference, "PULUMI_YAML", stale)
    monkeypatch.setattr(reference, "README", readme)
    assert reference.main(["--check"]) == 1
    stale.write_text(reference.pulumi_yaml_text(), encoding="utf-8")
    assert reference.main(["--check"]) == 0


def test_the_readmes_active_directory_example_is_a_valid_stack() -> None:
    from infra.settings import AuthType, parse_settings

    readme = reference.README.read_text(encoding="utf-8")
    section = readme[readme.index("### Example: Active Directory") :]
    block = section[section.index("```yaml") + len("```yaml") : section.index("```", section.index("```yaml") + 7)]
    config = {key.removeprefix("juvini:"): value for key, value in yaml.safe_load(block)["config"].items()}
    config["auth"]["ldap"]["searchPassword"] = "from --secret"
    config["cifs"]["shares"][0]["password"] = "from --secret"
    settings = parse_settings(config, secret_keys={"auth", "cifs"})
    assert settings.auth.type is AuthType.LDAP
    assert settings.auth.ldap.user_attribute == "sAMAccountName"
    assert settings.kerberos.enabled and settings.kerberos.realm == "CORP.EXAMPLE.ORG"
    assert [share.per_user for share in settings.cifs.shares] == [False, True]
