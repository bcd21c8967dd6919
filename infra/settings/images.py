"""The ``images`` section: the images built from ``images/``."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator

from infra.settings.base import PEM_CERT, Problem, Section, refuse

_DOCKER_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DOCKER_REF = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)

#: Largest extra CA bundle accepted: it travels as a build argument, which becomes an
#: environment variable of the build's RUN steps, and Linux refuses a single
#: environment string over 128 KiB.
MAX_CA_BUNDLE_BYTES = 64 * 1024


def _image_reference(value: str) -> str:
    match = _DOCKER_REF.match(value)
    if not match:
        raise ValueError("must be a Docker image reference such as debian:bookworm-slim or registry:5000/team/base:1.2")
    if not match["tag"] and not match["digest"]:
        raise ValueError("must be pinned with a tag or a @sha256 digest (an untagged reference means 'latest')")
    if match["tag"] == "latest" and not match["digest"]:
        raise ValueError("must not use the moving 'latest' tag; pin a version or a digest")
    return value


ImageReference = Annotated[str, AfterValidator(_image_reference)]


class ImageSettings(Section):
    """Images built from ``images/``."""

    base_image: ImageReference = Field(
        default="debian:bookworm-slim",
        description="Debian-like image the hub and notebook images are built from "
        "(must be pullable or present locally).",
    )
    registry: str | None = Field(
        default=None,
        description="Registry/namespace prefix for image names (e.g. registry.example.com/lab); local only when unset.",
    )
    tag: str = Field(default="0.1.0", description="Tag given to the built images.")
    push: bool = Field(default=False, description="Push the built images to the registry.")
    registry_username: str | None = Field(
        default=None, description="User the pushes log in to images.registry as; unset: no login."
    )
    registry_password: SecretStr | None = Field(
        default=None, description="Password (or token) of images.registryUsername for the pushes. Secret."
    )
    registry_ca: str | None = Field(
        default=None,
        description="CA certificates (PEM text or a PEM file) the nodes' engines trust for images.registry only "
        "(written to /etc/docker/certs.d/<registry>/ on every node): a private registry's CA.",
    )
    pull_username: str | None = Field(
        default=None,
        description="User the swarm's nodes pull the images as (the hub hands the login to the swarm with each "
        "user's server); unset: anonymous pulls. Best a read-only account.",
    )
    pull_password: SecretStr | None = Field(
        default=None, description="Password (or token) of images.pullUsername. Secret."
    )
    extra_ca_bundle: str | None = Field(
        default=None,
        description="Extra CA certificates (PEM text, a PEM file, or a folder of .crt files) trusted in the "
        "images at build and run time, e.g. a corporate TLS-inspecting proxy's CA.",
    )
    build_on_preview: bool = Field(default=False, description="Build images during 'pulumi preview' too.")

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

    @field_validator("extra_ca_bundle", "registry_ca")
    @classmethod
    def _ca_bundle(cls, value: str | None) -> str | None:
        """Only the certificates of the PEM text (the loading step has read a file or folder)."""
        if value is None:
            return None
        certificates = PEM_CERT.findall(value)
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
        problems = []
        if self.push and not self.registry:
            problems.append(Problem("push", True, "needs images.registry, the registry to push to"))
        logins = (
            ("registryUsername", self.registry_username, "registryPassword", self.registry_password),
            ("pullUsername", self.pull_username, "pullPassword", self.pull_password),
        )
        for user_key, user, password_key, password in logins:
            if (user is None) != (password is None):
                given = user_key if user is not None else password_key
                problems.append(Problem(given, "(set)", f"needs both images.{user_key} and images.{password_key}"))
        for key, value in (("registryCa", self.registry_ca), ("pullUsername", self.pull_username)):
            if value is not None and not self.registry:
                problems.append(Problem(key, "(set)", "needs images.registry, the registry it is for"))
        refuse(problems)
        return self

    def registry_server(self) -> str | None:
        """The registry's host (and port) of ``registry``, what a login names."""
        return self.registry.split("/", 1)[0] if self.registry else None
