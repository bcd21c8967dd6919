"""OpenID Connect login for the lab, on top of OAuthenticator's generic OAuth2 client.

Adds what the stock ``GenericOAuthenticator`` lacks for an OpenID provider (Azure AD / Entra
ID, Keycloak, ADFS, ...):

- the provider's endpoints come from its discovery document,
  ``<issuer>/.well-known/openid-configuration``, read when it is first needed (a login, or
  the refresh of a user's tokens) rather than at hub start: the stack's preview needs no
  network, and a provider that is down does not stop the hub, it only fails logins until it
  is back. The document must name the configured issuer and give https endpoints (OpenID
  Connect Discovery 1.0, section 4.3);
- the client authenticates at the token endpoint with HTTP Basic when the provider offers it
  (RFC 6749 section 2.3.1: every server must), else with the form post;
- groups come from a claim named verbatim (claim names may hold dots, e.g. URLs), whether
  the provider gives a list or a single name; with ``manage_groups`` they become the user's
  hub groups at each login;
- a provider that refuses the token request (a wrong client secret: ``invalid_client``)
  refuses the login with a message that says so, instead of a bare server error.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.oauth2 import OAuthLoginHandler
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import Unicode

from juvini_hub.contract import check_required, required

#: Where an issuer publishes its metadata (OpenID Connect Discovery 1.0, section 4).
DISCOVERY_PATH = "/.well-known/openid-configuration"
#: Client authentication methods at the token endpoint this authenticator can use.
BASIC, POST = "client_secret_basic", "client_secret_post"


class DiscoveryError(ValueError):
    """The provider's discovery document is unusable; the message says why."""


@dataclass(frozen=True)
class ProviderMetadata:
    """What the lab uses of a provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    #: None when the provider has no userinfo endpoint: the claims are then read from the ID token.
    userinfo_endpoint: str | None
    #: How the client authenticates at the token endpoint: ``client_secret_basic`` or ``client_secret_post``.
    token_auth_method: str


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + DISCOVERY_PATH


def _same_issuer(configured: str, published: str) -> bool:
    # The spec wants them identical; a trailing slash is the one harmless difference operators make.
    return configured.rstrip("/") == published.rstrip("/")


def _https_url(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise DiscoveryError(f"{key} is missing")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise DiscoveryError(f"{key} {value!r} is not an https URL")
    return value


def parse_discovery(document: Any, issuer: str) -> ProviderMetadata:
    """The provider's metadata from its discovery document, checked against the configured ``issuer``."""
    if not isinstance(document, dict):
        raise DiscoveryError("the document is not a JSON object")
    published = document.get("issuer")
    if not isinstance(published, str) or not _same_issuer(issuer, published):
        raise DiscoveryError(f"it names the issuer {published!r}, not the configured {issuer!r}")
    userinfo = _https_url(document, "userinfo_endpoint") if document.get("userinfo_endpoint") else None
    # Absent, the methods default to client_secret_basic (Discovery 1.0, section 3).
    methods = document.get("token_endpoint_auth_methods_supported") or [BASIC]
    if BASIC in methods:
        method = BASIC
    elif POST in methods:
        method = POST
    else:
        raise DiscoveryError(f"the token endpoint takes none of {BASIC}, {POST} (it takes {methods})")
    return ProviderMetadata(
        issuer=published,
        authorization_endpoint=_https_url(document, "authorization_endpoint"),
        token_endpoint=_https_url(document, "token_endpoint"),
        userinfo_endpoint=userinfo,
        token_auth_method=method,
    )


def claimed_groups(claims: dict[str, Any], claim: str) -> set[str]:
    """The group names in ``claims[claim]``: a list of names or a single one; nothing when absent."""
    value = claims.get(claim)
    if isinstance(value, str):
        return {value} if value else set()
    if isinstance(value, list | tuple):
        return {item for item in value if isinstance(item, str) and item}
    return set()


def token_error(error: HTTPClientError) -> str:
    """The OAuth error a token endpoint answered with (RFC 6749 section 5.2), as one line."""
    body = error.response.body.decode("utf-8", "replace") if error.response is not None and error.response.body else ""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        description = answer.get("error_description")
        return answer["error"] + (f" ({description})" if isinstance(description, str) and description else "")
    return f"HTTP {error.code}"


class DiscoveringLoginHandler(OAuthLoginHandler):
    """The redirect to the provider, once its authorization endpoint is known."""

    async def get(self) -> None:
        await self.authenticator.discover()
        super().get()


class JuviniOIDCAuthenticator(GenericOAuthenticator):
    """GenericOAuthenticator configured from an OpenID provider's discovery document."""

    login_handler = DiscoveringLoginHandler

    issuer = required(Unicode(help="The provider's issuer URL (https); its discovery document gives the endpoints."))
    groups_claim = Unicode(
        "", help="Claim holding the user's groups (used with manage_groups); empty: no groups from the provider."
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_required(self)
        self._metadata: ProviderMetadata | None = None
        self._discovering = asyncio.Lock()

    @property
    def metadata(self) -> ProviderMetadata | None:
        """The provider's metadata once discovered."""
        return self._metadata

    async def discover(self) -> ProviderMetadata:
        """Read the discovery document once (again after a failure) and take the endpoints from it."""
        async with self._discovering:
            if self._metadata is None:
                self._metadata = await self._read_discovery()
            return self._metadata

    async def _read_discovery(self) -> ProviderMetadata:
        url = discovery_url(self.issuer)
        try:
            document = await self.httpfetch(
                url, label="fetching the OpenID discovery document", validate_cert=self.validate_server_cert
            )
            metadata = parse_discovery(document, self.issuer)
        except (OSError, HTTPClientError, ValueError) as error:
            self.log.error("OpenID discovery at %s failed: %s", url, error)
            message = f"The identity provider's configuration at {url} cannot be read: {error}"
            raise web.HTTPError(503, "%s", message) from error
        self._apply(metadata)
        self.log.info(
            "OpenID provider %s: authorization %s, token %s (%s), userinfo %s",
            metadata.issuer,
            metadata.authorization_endpoint,
            metadata.token_endpoint,
            metadata.token_auth_method,
            metadata.userinfo_endpoint or "none: claims from the ID token",
        )
        return metadata

    def _apply(self, metadata: ProviderMetadata) -> None:
        self.authorize_url = metadata.authorization_endpoint
        self.token_url = metadata.token_endpoint
        self.basic_auth = metadata.token_auth_method == BASIC
        if metadata.userinfo_endpoint:
            self.userdata_from_id_token = False
            self.userdata_url = metadata.userinfo_endpoint
        else:
            self.userdata_url = ""
            self.userdata_from_id_token = True

    async def authenticate(self, handler: Any, data: Any = None, **kwargs: Any) -> dict[str, Any] | None:
        await self.discover()
        return await super().authenticate(handler, data, **kwargs)

    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> Any:
        await self.discover()
        return await super().refresh_user(user, handler, **kwargs)

    async def get_token_info(self, handler: Any, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return await super().get_token_info(handler, params)
        except HTTPClientError as error:
            if error.code not in (400, 401):
                raise
            reason = token_error(error)
            self.log.error("The identity provider refused the token request: %s", reason)
            raise web.HTTPError(
                403,
                "%s",
                f"The identity provider refused the lab's token request: {reason}. Ask the lab's administrator.",
            ) from error

    async def get_user_groups(self, auth_state: dict[str, Any]) -> set[str]:
        if not self.groups_claim:
            return set()
        claims = auth_state.get(self.user_auth_state_key) or {}
        groups = claimed_groups(claims, self.groups_claim)
        if self.groups_claim not in claims:
            self.log.warning(
                "The identity provider gave no %r claim (scopes requested: %s): no groups",
                self.groups_claim,
                self.scope,
            )
        return groups
