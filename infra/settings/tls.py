"""The ``tls`` section: HTTPS certificates, made by the stack or the operator's own."""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum

from pydantic import Field, SecretStr, field_validator, model_validator

from infra.settings.base import PemCertificate, Problem, Section, explicit, refuse

_DNS_SAN = re.compile(
    r"^(?:\*\.)?(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(?:\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?))*$"
)

#: Keys only a certificate made by the stack uses.
SELF_SIGNED_KEYS = ("dnsNames", "ipAddresses", "organization", "validityDays", "caValidityDays")
#: Keys only an operator's certificate uses.
PROVIDED_KEYS = ("certificate", "privateKey", "caCertificate")


class TlsMode(StrEnum):
    SELF_SIGNED = "selfSigned"
    PROVIDED = "provided"


class TlsSettings(Section):
    """HTTPS certificates: a lab CA made by the stack, or the operator's own."""

    mode: TlsMode = Field(
        default=TlsMode.SELF_SIGNED,
        description="selfSigned (a CA and server certificate made with pulumi-tls) or provided.",
    )
    dns_names: list[str] = Field(
        default=["localhost"],
        description="DNS names in the server certificate (SAN); with selfSigned, hub.publicHostname "
        "must be one of them (or an IP in ipAddresses).",
    )
    ip_addresses: list[str] = Field(default=["127.0.0.1"], description="IP addresses in the server certificate (SAN).")
    organization: str = Field(
        default="Juvini lab", min_length=1, max_length=64, description="Organization in the certificates' subject."
    )
    validity_days: int = Field(
        default=365, ge=1, le=3650, description="Validity of the generated server certificate, in days."
    )
    ca_validity_days: int = Field(default=3650, ge=1, le=7300, description="Validity of the generated CA, in days.")
    certificate: PemCertificate | None = Field(
        default=None, description="provided mode: PEM server certificate (with chain)."
    )
    private_key: SecretStr | None = Field(
        default=None, description="provided mode: PEM private key of the certificate. Secret."
    )
    ca_certificate: PemCertificate | None = Field(
        default=None, description="provided mode: PEM CA certificate users should trust."
    )

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

    @model_validator(mode="after")
    def _mode_requirements(self) -> TlsSettings:
        problems = []
        provided = dict(zip(PROVIDED_KEYS, (self.certificate, self.private_key, self.ca_certificate), strict=True))
        if self.mode is TlsMode.PROVIDED:
            problems += [
                Problem(key, None, "required with tls.mode provided (certificate, privateKey and caCertificate)")
                for key, value in provided.items()
                if value is None
            ]
            set_here = explicit(self)
            problems += [
                Problem(
                    key,
                    set_here[key],
                    "only with tls.mode selfSigned; a provided certificate carries its own names and validity",
                )
                for key in SELF_SIGNED_KEYS
                if key in set_here
            ]
        else:
            if not self.dns_names and not self.ip_addresses:
                problems.append(
                    Problem("dnsNames", [], "dnsNames and ipAddresses are both empty; the certificate needs a name")
                )
            problems += [
                Problem(key, value, "only with tls.mode provided; tls.mode is 'selfSigned'")
                for key, value in provided.items()
                if value is not None
            ]
        if self.private_key is not None and "PRIVATE KEY-----" not in self.private_key.get_secret_value():
            problems.append(
                Problem("privateKey", self.private_key, "must be a PEM private key (-----BEGIN ... PRIVATE KEY-----)")
            )
        refuse(problems)
        return self

    def covers(self, name: str) -> bool:
        """Whether the server certificate made by the stack is valid for ``name``."""
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            address = None
        if address is not None:
            return any(ipaddress.ip_address(item) == address for item in self.ip_addresses)
        wanted = name.lower().rstrip(".")
        for pattern in (item.lower() for item in self.dns_names):
            if pattern == wanted:
                return True
            # A wildcard covers exactly one label: *.example.org covers lab.example.org only.
            if pattern.startswith("*.") and "." in wanted and wanted.split(".", 1)[1] == pattern[2:]:
                return True
        return False
