"""Pulumi.yaml's config block and the README's reference are generated from the settings model."""

from __future__ import annotations

import pytest
import yaml

from infra import reference
from infra.settings import Settings

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
            # Sections default to {}: the model fills in every default, so they live in one place.
            assert declaration["default"] == {}, key


def test_reference_lists_every_leaf_key_and_marks_secrets() -> None:
    table = reference.markdown_reference()
    for dotted in ("labUser.uid", "paths.sharedDir", "spark.driverPorts", "auth.ldap.userAttribute"):
        assert f"`juvini:{dotted}`" in table, dotted
    ldap_password = next(line for line in table.splitlines() if "auth.ldap.searchPassword" in line)
    assert "secret string" in ldap_password


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
