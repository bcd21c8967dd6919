"""OpenID Connect login in the hub (images/hub/juvini_hub/oidc.py).

The authenticator runs OAuthenticator's own code here; only its HTTP client is a stand-in
that answers as an OpenID provider would (discovery document, token endpoint, userinfo)
and records what the hub sent. tests/e2e/test_oidc.py runs the same flow against a real
provider.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any
from urllib.parse import parse_qs

import pytest
from oauthenticator.oauth2 import _serialize_state
from tornado import web
from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse
from traitlets.config import Config

from juvini_hub.contract import MissingConfig
from juvini_hub.oidc import (
    BASIC,
    POST,
    DiscoveryError,
    JuviniOIDCAuthenticator,
    claimed_groups,
    discovery_url,
    parse_discovery,
    token_error,
)

pytestmark = pytest.mark.unit

ISSUER = "https://login.example.org/realms/lab"
CLIENT_ID = "juvini-lab"
CLIENT_SECRET = "client-secret-1"
CALLBACK = "https://lab.example.org/hub/oauth_callback"
DOCUMENT = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth",
    "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
    "userinfo_endpoint": f"{ISSUER}/protocol/openid-connect/userinfo",
    "token_endpoint_auth_methods_supported": ["private_key_jwt", BASIC, POST],
}
CLAIMS = {"sub": "id-2101", "preferred_username": "Alice", "groups": ["datalab-users", "finance"]}


# --- the discovery document -----------------------------------------------------------------


def test_discovery_url_is_under_the_issuer_with_or_without_a_trailing_slash() -> None:
    expected = f"{ISSUER}/.well-known/openid-configuration"
    assert discovery_url(ISSUER) == expected
    assert discovery_url(ISSUER + "/") == expected


def test_the_endpoints_come_from_the_document() -> None:
    metadata = parse_discovery(DOCUMENT, ISSUER)
    assert metadata.issuer == ISSUER
    assert metadata.authorization_endpoint == DOCUMENT["authorization_endpoint"]
    assert metadata.token_endpoint == DOCUMENT["token_endpoint"]
    assert metadata.userinfo_endpoint == DOCUMENT["userinfo_endpoint"]
    assert metadata.token_auth_method == BASIC


@pytest.mark.parametrize(
    ("methods", "expected"),
    [
        (None, BASIC),  # absent: the default is client_secret_basic
        ([POST, BASIC], BASIC),
        ([POST, "private_key_jwt"], POST),
    ],
)
def test_http_basic_is_preferred_at_the_token_endpoint(methods: list[str] | None, expected: str) -> None:
    document = {key: value for key, value in DOCUMENT.items() if key != "token_endpoint_auth_methods_supported"}
    if methods is not None:
        document["token_endpoint_auth_methods_supported"] = methods
    assert parse_discovery(document, ISSUER).token_auth_method == expected


def test_a_trailing_slash_is_the_only_issuer_difference_accepted() -> None:
    assert parse_discovery(DOCUMENT, ISSUER + "/").issuer == ISSUER


def test_without_a_userinfo_endpoint_the_claims_come_from_the_id_token() -> None:
    document = {key: value for key, value in DOCUMENT.items() if key != "userinfo_endpoint"}
    assert parse_discovery(document, ISSUER).userinfo_endpoint is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"issuer": "https://evil.example.org/realms/lab"}, "names the issuer 'https://evil.example.org/realms/lab'"),
        ({"issuer": None}, "names the issuer None"),
        (
            {"token_endpoint": "http://login.example.org/token"},
            "token_endpoint 'http://login.example.org/token' is not",
        ),
        ({"authorization_endpoint": None}, "authorization_endpoint is missing"),
        ({"userinfo_endpoint": "ftp://login.example.org/me"}, "userinfo_endpoint 'ftp://login.example.org/me' is not"),
        ({"token_endpoint_auth_methods_supported": ["private_key_jwt"]}, "takes none of client_secret_basic"),
    ],
)
def test_an_unusable_document_is_refused_with_the_reason(change: dict[str, Any], message: str) -> None:
    with pytest.raises(DiscoveryError, match=message.replace("(", r"\(")):
        parse_discovery(DOCUMENT | change, ISSUER)


def test_a_document_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(DiscoveryError, match="not a JSON object"):
        parse_discovery(["not", "an", "object"], ISSUER)


# --- groups and token errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["a", "b", "a"], {"a", "b"}),
        ("only-one", {"only-one"}),
        (["a", 7, None, "", {"x": 1}], {"a"}),
        ("", set()),
        (None, set()),
        (42, set()),
    ],
)
def test_groups_are_the_claims_names(value: Any, expected: set[str]) -> None:
    assert claimed_groups({"groups": value}, "groups") == expected


def test_a_claim_name_with_dots_is_read_verbatim() -> None:
    claim = "https://example.org/claims/groups"
    assert claimed_groups({claim: ["lab"], "https://example": {"org": "nested"}}, claim) == {"lab"}


def _response(url: str, code: int, body: Any) -> HTTPResponse:
    return HTTPResponse(HTTPRequest(url), code, buffer=BytesIO(json.dumps(body).encode()))


def test_token_error_reads_the_oauth_error() -> None:
    error = HTTPClientError(
        401, response=_response("https://x/token", 401, {"error": "invalid_client", "error_description": "bad secret"})
    )
    assert token_error(error) == "invalid_client (bad secret)"
    assert token_error(HTTPClientError(400, response=_response("https://x/token", 400, ["?"]))) == "HTTP 400"
    assert token_error(HTTPClientError(599)) == "HTTP 599"


# --- the authenticator against a stand-in provider ------------------------------------------


@dataclass
class FakeProvider:
    """An HTTP client for the authenticator that answers as an OpenID provider."""

    document: dict[str, Any] = field(default_factory=lambda: dict(DOCUMENT))
    claims: dict[str, Any] = field(default_factory=lambda: dict(CLAIMS))
    secret: str = CLIENT_SECRET
    #: Discovery answers with this status while it is not 200 (a provider that is down).
    discovery_status: int = 200
    requests: list[HTTPRequest] = field(default_factory=list)
    fetch_kwargs: list[dict[str, Any]] = field(default_factory=list)

    def urls(self) -> list[str]:
        return [request.url.split("?")[0] for request in self.requests]

    async def fetch(self, request: HTTPRequest, **kwargs: Any) -> HTTPResponse:
        self.requests.append(request)
        self.fetch_kwargs.append(kwargs)
        url = request.url.split("?")[0]
        if url == discovery_url(ISSUER):
            if self.discovery_status != 200:
                raise HTTPClientError(self.discovery_status, response=_response(url, self.discovery_status, {}))
            return _response(url, 200, self.document)
        if url == self.document["token_endpoint"]:
            if not self._client_authenticated(request):
                body = {"error": "invalid_client", "error_description": "client authentication failed"}
                raise HTTPClientError(401, response=_response(url, 401, body))
            return _response(url, 200, {"access_token": "at-1", "token_type": "Bearer", "id_token": "x.y.z"})
        if url == self.document.get("userinfo_endpoint"):
            assert request.headers["Authorization"] == "Bearer at-1"
            return _response(url, 200, self.claims)
        raise AssertionError(f"unexpected request to {request.url}")

    def _client_authenticated(self, request: HTTPRequest) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            return base64.b64decode(header[6:]).decode() == f"{CLIENT_ID}:{self.secret}"
        form = parse_qs((request.body or b"").decode())
        return form.get("client_id") == [CLIENT_ID] and form.get("client_secret") == [self.secret]


class CallbackHandler:
    """What the authenticator reads of the OAuth callback request."""

    def __init__(self, code: str = "code-1") -> None:
        self.code = code

    def get_argument(self, name: str, default: Any = None) -> Any:
        return {"code": self.code}.get(name, default)

    def get_state_cookie(self) -> str:
        return _serialize_state({"state_id": "s", "code_verifier": "verifier-1"})


def lab_config(**overrides: Any) -> Config:
    """The authenticator's options as the rendered jupyterhub_config.py sets them."""
    config = Config()
    section = config.JuviniOIDCAuthenticator
    section.issuer = ISSUER
    section.client_id = CLIENT_ID
    section.client_secret = CLIENT_SECRET
    section.oauth_callback_url = CALLBACK
    section.scope = ["openid", "profile", "groups"]
    section.username_claim = "preferred_username"
    section.allow_all = True
    for name, value in overrides.items():
        setattr(section, name, value)
    return config


def authenticator(provider: FakeProvider, **overrides: Any) -> JuviniOIDCAuthenticator:
    made = JuviniOIDCAuthenticator(config=lab_config(**overrides))
    made.http_client = provider
    return made


def shown(error: web.HTTPError) -> str:
    """The message JupyterHub's error page shows for ``error``."""
    return (error.log_message or "") % error.args


def run(coroutine_factory: Callable[[], Any]) -> Any:
    return asyncio.run(coroutine_factory())


def test_the_issuer_is_required() -> None:
    config = lab_config()
    del config.JuviniOIDCAuthenticator["issuer"]
    with pytest.raises(MissingConfig, match=r"c\.JuviniOIDCAuthenticator\.issuer"):
        JuviniOIDCAuthenticator(config=config)


def test_nothing_is_fetched_until_it_is_needed() -> None:
    provider = FakeProvider()
    made = authenticator(provider)
    assert provider.requests == []
    assert made.metadata is None
    assert (made.authorize_url, made.token_url, made.userdata_url) == ("", "", "")


def test_discovery_sets_the_endpoints_once() -> None:
    provider = FakeProvider()
    made = authenticator(provider)

    async def twice() -> None:
        await asyncio.gather(made.discover(), made.discover())
        await made.discover()

    run(twice)
    assert provider.urls() == [discovery_url(ISSUER)]
    assert made.authorize_url == DOCUMENT["authorization_endpoint"]
    assert made.token_url == DOCUMENT["token_endpoint"]
    assert made.userdata_url == DOCUMENT["userinfo_endpoint"]
    assert made.basic_auth is True
    assert made.userdata_from_id_token is False


def test_discovery_goes_through_the_configured_ca() -> None:
    provider = FakeProvider()
    made = authenticator(provider, http_request_kwargs={"ca_certs": "/srv/jupyterhub/oidc-ca.crt"})
    run(made.discover)
    (request,) = provider.requests
    assert request.ca_certs == "/srv/jupyterhub/oidc-ca.crt"
    assert request.validate_cert is True


def test_a_failed_discovery_is_a_503_and_is_tried_again() -> None:
    provider = FakeProvider(discovery_status=502)
    made = authenticator(provider)
    with pytest.raises(web.HTTPError) as caught:
        run(made.discover)
    assert caught.value.status_code == 503
    assert discovery_url(ISSUER) in shown(caught.value)
    assert made.metadata is None
    provider.discovery_status = 200
    assert run(made.discover).issuer == ISSUER
    assert provider.urls() == [discovery_url(ISSUER)] * 2


def test_a_document_for_another_issuer_is_a_503() -> None:
    provider = FakeProvider(document=DOCUMENT | {"issuer": "https://evil.example.org"})
    with pytest.raises(web.HTTPError, match="503") as caught:
        run(authenticator(provider).discover)
    assert "names the issuer 'https://evil.example.org'" in shown(caught.value)


def test_login_exchanges_the_code_with_http_basic_and_reads_userinfo() -> None:
    provider = FakeProvider()
    made = authenticator(provider)
    model = run(lambda: made.authenticate(CallbackHandler()))
    assert provider.urls() == [discovery_url(ISSUER), DOCUMENT["token_endpoint"], DOCUMENT["userinfo_endpoint"]]
    token_request = provider.requests[1]
    form = parse_qs(token_request.body.decode())
    assert form["code"] == ["code-1"]
    assert form["redirect_uri"] == [CALLBACK]
    assert form["code_verifier"] == ["verifier-1"]
    assert "client_secret" not in form, "with HTTP Basic the secret is not in the form too"
    assert token_request.headers["Authorization"].startswith("Basic ")
    assert model["name"] == "alice", "the username claim, normalised"
    assert model["auth_state"]["oauth_user"] == CLAIMS
    assert "groups" not in model, "no groups without manage_groups"


def test_a_provider_without_http_basic_gets_the_secret_in_the_form() -> None:
    provider = FakeProvider(document=DOCUMENT | {"token_endpoint_auth_methods_supported": [POST]})
    run(lambda: authenticator(provider).authenticate(CallbackHandler()))
    form = parse_qs(provider.requests[1].body.decode())
    assert (form["client_id"], form["client_secret"]) == ([CLIENT_ID], [CLIENT_SECRET])
    assert "Authorization" not in provider.requests[1].headers


def test_a_wrong_client_secret_refuses_the_login_and_says_why() -> None:
    provider = FakeProvider(secret="the-one-the-provider-holds")
    made = authenticator(provider)
    with pytest.raises(web.HTTPError) as caught:
        run(lambda: made.authenticate(CallbackHandler()))
    assert caught.value.status_code == 403
    message = shown(caught.value)
    assert "refused the lab's token request: invalid_client (client authentication failed)" in message
    assert CLIENT_SECRET not in message
    assert provider.urls()[-1] == DOCUMENT["token_endpoint"], "no userinfo request after a refused token request"


def test_a_server_error_at_the_token_endpoint_is_not_disguised() -> None:
    provider = FakeProvider()
    made = authenticator(provider)
    original = provider.fetch

    async def failing(request: HTTPRequest, **kwargs: Any) -> HTTPResponse:
        if request.url == DOCUMENT["token_endpoint"]:
            raise HTTPClientError(500, response=_response(request.url, 500, {}))
        return await original(request, **kwargs)

    provider.fetch = failing  # type: ignore[method-assign]
    with pytest.raises(HTTPClientError, match="500"):
        run(lambda: made.authenticate(CallbackHandler()))


def test_the_groups_claim_becomes_the_users_groups() -> None:
    made = authenticator(FakeProvider(), manage_groups=True, groups_claim="groups")
    model = run(lambda: made.authenticate(CallbackHandler()))
    assert model["groups"] == ["datalab-users", "finance"]


def test_a_missing_groups_claim_gives_no_groups() -> None:
    claims = {key: value for key, value in CLAIMS.items() if key != "groups"}
    made = authenticator(FakeProvider(claims=claims), manage_groups=True, groups_claim="groups")
    assert run(lambda: made.authenticate(CallbackHandler()))["groups"] == []


@pytest.mark.parametrize(
    ("groups", "allowed", "admin"),
    [
        (["datalab-users"], True, False),
        (["datalab-admins"], True, True),
        (["finance"], False, False),
        ([], False, False),
    ],
)
def test_allowed_and_admin_groups(groups: list[str], allowed: bool, admin: bool) -> None:
    made = authenticator(
        FakeProvider(claims=CLAIMS | {"groups": groups}),
        manage_groups=True,
        groups_claim="groups",
        allowed_groups={"datalab-users"},
        admin_groups={"datalab-admins"},
        allow_all=False,
    )
    model = run(lambda: made.authenticate(CallbackHandler()))
    assert bool(model["admin"]) is admin
    assert run(lambda: made.check_allowed(model["name"], model)) is allowed


def test_without_a_userinfo_endpoint_the_id_token_is_read() -> None:
    document = {key: value for key, value in DOCUMENT.items() if key != "userinfo_endpoint"}
    made = authenticator(FakeProvider(document=document))
    run(made.discover)
    assert made.userdata_url == ""
    assert made.userdata_from_id_token is True


def test_a_refresh_after_a_hub_restart_discovers_first() -> None:
    provider = FakeProvider()
    made = authenticator(provider, enable_auth_state=True)
    token_response = {"access_token": "at-1", "token_type": "Bearer"}

    class User:
        name = "alice"

        async def get_auth_state(self) -> dict[str, Any]:
            return {"token_response": token_response, "access_token": "at-1", "refresh_token": None}

    model = run(lambda: made.refresh_user(User()))
    assert provider.urls() == [discovery_url(ISSUER), DOCUMENT["userinfo_endpoint"]]
    assert model["name"] == "alice"
