"""Sections about login: ``auth`` (one authenticator and its settings) and ``kerberos``."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from infra.settings.base import (
    HostnameOrIp,
    PemCertificate,
    Port,
    Problem,
    Section,
    Username,
    explicit,
    hostname_or_ip,
    is_host_port,
    refuse,
)


class AuthType(StrEnum):
    NATIVE = "native"
    LDAP = "ldap"
    GITHUB = "github"
    OIDC = "oidc"
    DUMMY = "dummy"


class NativeAuthSettings(Section):
    """NativeAuthenticator: accounts kept in the hub's database."""

    open_signup: bool = Field(
        default=False, description="Sign-ups are authorized at once (otherwise an admin authorizes them)."
    )
    minimum_password_length: int = Field(default=10, ge=8, le=128, description="Shortest password accepted at sign-up.")
    check_common_password: bool = Field(default=True, description="Refuse common passwords at sign-up.")
    # Password guessing: NativeAuthenticator keeps the count per username in the hub's memory
    # (a hub restart forgets it); LDAP/AD servers apply their own lockout policy.
    allowed_failed_logins: int = Field(
        default=5,
        ge=0,
        le=1000,
        description="Failed logins in a row after which an account is locked for lockoutSeconds; 0 disables.",
    )
    lockout_seconds: int = Field(
        default=600, ge=1, le=86400, description="Seconds a locked account waits from its last failed login."
    )


class LdapTls(StrEnum):
    NONE = "insecure"
    STARTTLS = "before_bind"
    ON_CONNECT = "on_connect"


class LdapSettings(Section):
    """LDAP / Active Directory login (ldapauthenticator)."""

    server_address: HostnameOrIp | None = Field(default=None, description="LDAP/AD server address.")
    server_port: Port | None = Field(
        default=None, description="LDAP port; 389, or 636 with tlsStrategy on_connect, when unset."
    )
    tls_strategy: LdapTls = Field(
        default=LdapTls.STARTTLS, description="insecure, before_bind (StartTLS) or on_connect (LDAPS)."
    )
    ca_certificate: PemCertificate | None = Field(
        default=None, description="PEM CA certificate that signs the LDAP server's certificate."
    )
    bind_dn_template: list[str] = Field(
        default=[], description="Direct bind DNs with {username}, e.g. uid={username},ou=people,dc=example,dc=org."
    )
    lookup_dn: bool = Field(default=False, description="Search the user's DN with a service account before binding.")
    search_user: str | None = Field(
        default=None, description="Service account DN (or user@domain on AD) for the search."
    )
    search_password: SecretStr | None = Field(default=None, description="Service account password. Secret.")
    user_search_base: str | None = Field(
        default=None, description="Search base for users, e.g. ou=people,dc=example,dc=org."
    )
    user_attribute: str = Field(
        default="uid", description="Attribute holding the login name: uid (OpenLDAP) or sAMAccountName (AD)."
    )
    allowed_groups: list[str] = Field(
        default=[], description="Group DNs whose members may log in; empty allows every valid user."
    )
    admin_groups: list[str] = Field(
        default=[], description="Group DNs whose members are hub admins (and may always log in)."
    )
    group_search_base: str | None = Field(
        default=None,
        description="Search base of groups, e.g. ou=groups,dc=example,dc=org: the user's groups there become "
        "their hub groups at each login (for profiles and folders). Unset: hub groups are left alone.",
    )
    group_name_attribute: str = Field(
        default="cn", pattern=r"^[A-Za-z][A-Za-z0-9-]*$", description="Attribute of a group entry naming its hub group."
    )

    @field_validator("bind_dn_template")
    @classmethod
    def _templates(cls, templates: list[str]) -> list[str]:
        bad = [template for template in templates if "{username}" not in template]
        if bad:
            raise ValueError(f"{bad} lack the {{username}} placeholder")
        return templates

    def problems(self) -> list[Problem]:
        """What login with these settings lacks or would ignore (keys relative to ``ldap``)."""
        problems = []
        if self.server_address is None:
            problems.append(Problem("serverAddress", None, "required with auth.type ldap"))
        search = {"searchUser": self.search_user, "searchPassword": self.search_password}
        search["userSearchBase"] = self.user_search_base
        if self.lookup_dn:
            problems += [
                Problem(key, None, "required with auth.ldap.lookupDn true (the service account's search)")
                for key, value in search.items()
                if value is None
            ]
        else:
            if not self.bind_dn_template:
                problems.append(
                    Problem(
                        "bindDnTemplate",
                        [],
                        "ldap needs bindDnTemplate, or lookupDn with searchUser/searchPassword/userSearchBase",
                    )
                )
            problems += [
                Problem(key, value, "only with auth.ldap.lookupDn true; lookupDn is false, so it would be ignored")
                for key, value in search.items()
                if value is not None
            ]
        if self.ca_certificate is not None and self.tls_strategy is LdapTls.NONE:
            problems.append(
                Problem(
                    "caCertificate",
                    self.ca_certificate,
                    "only with auth.ldap.tlsStrategy before_bind or on_connect; 'insecure' uses no TLS",
                )
            )
        return problems


class GithubAuthSettings(Section):
    """GitHub OAuth (oauthenticator)."""

    client_id: str | None = Field(default=None, description="OAuth app client id.")
    client_secret: SecretStr | None = Field(default=None, description="OAuth app client secret. Secret.")
    allowed_organizations: list[str] = Field(default=[], description="GitHub organizations whose members may log in.")


#: A scope value (RFC 6749 section 3.3): printable ASCII without spaces, quotes or backslashes.
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


class OidcSettings(Section):
    """OpenID Connect login (OAuthenticator's generic OAuth2 client): Azure AD / Entra ID, Keycloak, ADFS...

    The hub reads the provider's endpoints from ``<issuer>/.well-known/openid-configuration``
    at the first login after it starts (preview needs no network), so only the issuer is given.
    """

    issuer: str | None = Field(
        default=None,
        description="Issuer URL (https), as the provider's discovery document names it, e.g. "
        "https://login.example.org/realms/lab (Keycloak) or https://login.microsoftonline.com/{tenant-id}/v2.0.",
    )
    client_id: str | None = Field(default=None, description="Client (application) id registered at the provider.")
    client_secret: SecretStr | None = Field(default=None, description="Client secret. Secret.")
    scopes: list[str] = Field(
        default=["openid", "profile", "email"],
        description="Scopes requested; must hold openid. Add the scope that releases groups if the provider needs "
        "one (e.g. groups).",
    )
    username_claim: str = Field(
        default="preferred_username",
        description="Userinfo claim holding the hub username (lower-cased), e.g. preferred_username, email, upn.",
    )
    groups_claim: str | None = Field(
        default=None,
        description="Userinfo claim holding the user's groups (a list, or one name); when set, they become the "
        "user's hub groups at each login.",
    )
    allowed_groups: list[str] = Field(
        default=[], description="Groups (from groupsClaim) whose members may log in; empty allows every valid user."
    )
    admin_groups: list[str] = Field(
        default=[], description="Groups (from groupsClaim) whose members are hub admins (and may always log in)."
    )
    ca_certificate: PemCertificate | None = Field(
        default=None,
        description="PEM CA certificate that signs the provider's certificate; the hub then trusts only it for the "
        "provider. Unset: the hub's system trust store (with images.extraCaBundle).",
    )
    login_service: str = Field(
        default="OpenID Connect",
        min_length=1,
        max_length=60,
        description="Name on the login button: 'Sign in with <loginService>'.",
    )

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme != "https":
            raise ValueError("must be an https:// URL: the hub sends the client secret and reads identities there")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must be a plain https://host[:port][/path] URL, without query, fragment or login")
        try:
            hostname_or_ip(parts.hostname or "")
            _ = parts.port  # raises on a port that is not a number in 0-65535
        except ValueError as error:
            raise ValueError(f"has no valid host and port: {error}") from None
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, scopes: list[str]) -> list[str]:
        bad = [scope for scope in scopes if not _SCOPE.match(scope)]
        if bad:
            raise ValueError(f"{bad} are not scope values (printable characters, no spaces or quotes)")
        if "openid" not in scopes:
            raise ValueError("must hold openid: without it the provider does not answer as an OpenID provider")
        return list(dict.fromkeys(scopes))

    def problems(self) -> list[Problem]:
        """What login with these settings lacks or would ignore (keys relative to ``oidc``)."""
        problems = [
            Problem(key, None, "required with auth.type oidc")
            for key, value in (
                ("issuer", self.issuer),
                ("clientId", self.client_id),
                ("clientSecret", self.client_secret),
            )
            if value is None
        ]
        if self.groups_claim is None:
            problems += [
                Problem(key, value, "needs auth.oidc.groupsClaim, the claim the groups are read from")
                for key, value in (("allowedGroups", self.allowed_groups), ("adminGroups", self.admin_groups))
                if value
            ]
        return problems


class AuthSettings(Section):
    """Who may log in."""

    type: AuthType = Field(
        default=AuthType.NATIVE,
        description="native, ldap, github, oidc (OpenID Connect) or dummy (shared password, for demos only).",
    )
    native: NativeAuthSettings = Field(default_factory=NativeAuthSettings, description="Settings for type native.")
    ldap: LdapSettings = Field(default_factory=LdapSettings, description="Settings for type ldap.")
    github: GithubAuthSettings = Field(default_factory=GithubAuthSettings, description="Settings for type github.")
    oidc: OidcSettings = Field(default_factory=OidcSettings, description="Settings for type oidc.")
    dummy_password: SecretStr | None = Field(default=None, description="type dummy: the shared password. Secret.")
    allowed_users: list[Username] = Field(
        default=[], description="Usernames allowed to log in besides admins (empty: any authenticated user)."
    )

    @model_validator(mode="after")
    def _type_requirements(self) -> AuthSettings:
        problems = []
        if self.type is AuthType.LDAP:
            problems += [problem._replace(key=f"ldap.{problem.key}") for problem in self.ldap.problems()]
        if self.type is AuthType.GITHUB:
            problems += [
                Problem(f"github.{key}", None, "required with auth.type github")
                for key, value in (("clientId", self.github.client_id), ("clientSecret", self.github.client_secret))
                if value is None
            ]
        if self.type is AuthType.OIDC:
            problems += [problem._replace(key=f"oidc.{problem.key}") for problem in self.oidc.problems()]
        if self.type is AuthType.DUMMY and (
            self.dummy_password is None or len(self.dummy_password.get_secret_value()) < 8
        ):
            problems.append(Problem("dummyPassword", self.dummy_password, "type dummy needs at least 8 characters"))
        # Settings of an authenticator that is not the chosen one would be silently ignored.
        set_here = explicit(self)
        owners = {
            "native.": AuthType.NATIVE,
            "ldap.": AuthType.LDAP,
            "github.": AuthType.GITHUB,
            "oidc.": AuthType.OIDC,
        }
        for key, value in set_here.items():
            owner = next((kind for prefix, kind in owners.items() if key.startswith(prefix)), None)
            if key == "dummyPassword":
                owner = AuthType.DUMMY
            if owner is not None and owner is not self.type:
                problems.append(
                    Problem(
                        key,
                        value,
                        f"only with auth.type {owner.value}; auth.type is {self.type.value!r}, "
                        "so it would be ignored (remove it or change auth.type)",
                    )
                )
        refuse(problems)
        return self


class KerberosSettings(Section):
    """A Kerberos ticket at login, for Spark/Hadoop clients in users' servers (LDAP login only)."""

    enabled: bool = Field(default=False, description="Run kinit with the user's password at login (auth.type ldap).")
    realm: str | None = Field(default=None, description="Kerberos realm, upper case, e.g. CORP.EXAMPLE.ORG.")
    kdcs: list[str] = Field(default=[], description="KDC addresses, host or host:port.")
    admin_server: str | None = Field(
        default=None, description="kadmin server, host or host:port; the first KDC when unset."
    )
    on_failure: Literal["warn", "refuse"] = Field(
        default="warn",
        description="When no ticket can be had (e.g. the KDC is down): warn (log in, start without a ticket, "
        "say why in JUVINI_KERBEROS_WARNING) or refuse the login.",
    )
    ticket_lifetime: str = Field(
        default="10h", pattern=r"^[0-9]+[smhd]$", description="Requested ticket lifetime, e.g. 10h."
    )
    renew_lifetime: str = Field(
        default="7d", pattern=r"^[0-9]+[smhd]$", description="Requested renewable lifetime, e.g. 7d."
    )

    @field_validator("realm")
    @classmethod
    def _realm(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Z0-9][A-Z0-9.-]*", value):
            raise ValueError("must be a Kerberos realm in upper case, e.g. CORP.EXAMPLE.ORG")
        return value

    @field_validator("kdcs")
    @classmethod
    def _kdcs(cls, kdcs: list[str]) -> list[str]:
        bad = [kdc for kdc in kdcs if not is_host_port(kdc)]
        if bad:
            raise ValueError(f"{bad} are not host or host:port addresses")
        return kdcs

    @field_validator("admin_server")
    @classmethod
    def _admin_server(cls, value: str | None) -> str | None:
        if value is not None and not is_host_port(value):
            raise ValueError("must be host or host:port")
        return value

    @model_validator(mode="after")
    def _complete(self) -> KerberosSettings:
        problems = []
        if self.enabled:
            if self.realm is None:
                problems.append(Problem("realm", None, "required with kerberos.enabled true"))
            if not self.kdcs:
                problems.append(Problem("kdcs", [], "at least one KDC is required with kerberos.enabled true"))
        else:
            problems += [
                Problem(
                    key, value, "only with kerberos.enabled true; kerberos.enabled is false, so it would be ignored"
                )
                for key, value in explicit(self).items()
                if key != "enabled"
            ]
        refuse(problems)
        return self
