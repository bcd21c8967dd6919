"""OpenID Connect login, end to end: the lab against a real OpenID provider, over HTTPS.

A lab of its own (stack ``e2e-oidc``: its own folders, port and Spark ports, so it coexists
with the other e2e labs; only the base notebook image) is brought up from the program with
``auth.type: oidc`` against the OpenID peer of tests/peers/oidc (oidc-provider, HTTPS from
a test CA that the lab's ``caCertificate`` names). The module runs the peer on its own
network; the hub is attached to it and reaches the provider at its issuer, the same URL the
browser-like session of the tests uses.

Every login goes the authorization-code way a browser goes: the lab's /hub/oauth_login, the
provider's login form, its consent form, the lab's /hub/oauth_callback (where the hub
exchanges the code for tokens and reads the userinfo claims). The wrong-secret test comes
last: it starts the provider again holding another secret for the lab's client.
"""

from __future__ import annotations

import html
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import docker
import pytest
import requests

from infra import outputs
from infra.flavours import BY_NAME as FLAVOURS
from infra.settings import parse_settings
from tests.e2e.conftest import Lab, lab_config, remove_stack_objects
from tests.support import peers
from tests.support.lab_client import LabUser, new_api_token, wait_for
from tests.support.local_stack import free_port
from tests.support.peers import ALICE, BOB, CAROL, Account, Peer
from tests.support.provider_double import bring_up

pytestmark = pytest.mark.e2e

STACK = "e2e-oidc"
STACK_LABELS = {"org.juvini.stack": STACK}
PEER_NETWORK = f"juvini-{STACK}-peers"
PEER_CONTAINER = f"juvini-{STACK}-peer-oidc"
HUB_CONTAINER = f"juvini-{STACK}-hub"
#: The login cookie JupyterHub sets once a user is authenticated (and allowed).
LOGIN_COOKIE = "jupyterhub-hub-login"
BASE_IMAGE = FLAVOURS["base"].display_name
#: Redirects a login follows at most (lab -> provider -> forms -> lab).
MAX_HOPS = 12


@dataclass
class OidcLab:
    lab: Lab
    peer: Peer
    network: peers.PeerNetwork
    #: The lab's CA and the provider's test CA: what the browser-like session trusts.
    trusted: str
    callback: str
    issuer: str
    client: docker.DockerClient

    @property
    def url(self) -> str:
        return self.lab.url

    def restart_provider(self, client_secret: str) -> None:
        """Start the provider afresh (same address, same CA) holding ``client_secret`` for the lab."""
        self.peer.remove()
        self.peer = _start_provider(self.network, self.client, self.callback, client_secret)


def _peer_network(client: docker.DockerClient) -> peers.PeerNetwork:
    """This module's own network for the provider, with a subnet Docker picks as free."""
    subnet = peers.free_subnet(client, f"{PEER_NETWORK}-probe", STACK_LABELS)
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet))])
    client.networks.create(PEER_NETWORK, driver="bridge", ipam=ipam, labels=STACK_LABELS)
    return peers.PeerNetwork(PEER_NETWORK, subnet)


def _start_provider(network: peers.PeerNetwork, client: docker.DockerClient, callback: str, client_secret: str) -> Peer:
    ip = network.address(peers.PEERS["oidc"].address_index)
    return peers.start_peer(
        "oidc",
        network,
        client,
        environment=peers.oidc_environment(ip, [callback], client_secret),
        container_name=PEER_CONTAINER,
        labels=STACK_LABELS,
    )


@pytest.fixture(scope="module")
def oidc_lab() -> Iterator[OidcLab]:
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=300)
    remove_stack_objects(client, STACK)
    root = Path(tempfile.mkdtemp(prefix="juvini-e2e-oidc-", dir="/var/tmp"))
    root.chmod(0o755)
    try:
        config = lab_config(root, free_port())
        # One image (fast); no culling; Spark ports apart from the other e2e labs'.
        config["spawner"] = config["spawner"] | {"allowedImages": ["base"], "idleTimeout": 0}
        config.pop("profiles", None)  # the e2e lab's name the other images: here the base image is the one
        config["spark"] = config["spark"] | {"driverPorts": "12400-12403", "blockManagerPorts": "11500-11503"}
        # Its users' network apart from the other e2e labs' (the default, 172.16.16.0/22, is the e2e lab's).
        config["network"] = {"usersSubnet": "172.16.24.0/22"}
        # The provider must know the lab's callback before the lab knows the provider's CA.
        callback = parse_settings({"hub": config["hub"]}).hub_url + "hub/oauth_callback"
        network = _peer_network(client)
        peer = _start_provider(network, client, callback, peers.OIDC_CLIENT_SECRET)
        provider_ca = peers.oidc_ca_certificate(peer)
        config["auth"] = peers.stack_oidc_config(peer.ip, provider_ca)
        # auth holds oidc.clientSecret: the stack keeps that top-level key as a secret.
        deployment = bring_up(config, stack=STACK, secret_keys=["auth"])
        lab = Lab(deployment, config, deployment.outputs[outputs.HUB_URL], str(root / "lab-ca.pem"), root, client)
        try:
            lab_ca = deployment.outputs[outputs.CA_CERTIFICATE]
            Path(lab.ca_file).write_text(lab_ca, encoding="utf-8")
            trusted = root / "trusted.pem"
            trusted.write_text(lab_ca + provider_ca, encoding="utf-8")
            # Docker isolates bridge networks: the hub reaches the provider once attached to its network.
            client.networks.get(PEER_NETWORK).connect(HUB_CONTAINER)
            wait_for(
                "the hub to answer /hub/health over HTTPS",
                lambda: requests.get(lab.url + "hub/health", verify=lab.ca_file, timeout=5).status_code == 200,
                timeout=180,
            )
            yield OidcLab(lab, peer, network, str(trusted), callback, peers.oidc_issuer(peer.ip), client)
        finally:
            errors = lab.destroy()
            assert not errors, errors
    finally:
        remove_stack_objects(client, STACK)
        shutil.rmtree(root, ignore_errors=True)


# --- logging in the authorization-code way -------------------------------------------------


@dataclass
class Login:
    """One login: every URL the session was sent to, and the lab's answer at its callback."""

    session: requests.Session
    visited: list[str] = field(default_factory=list)
    callback: requests.Response | None = None

    @property
    def succeeded(self) -> bool:
        return (
            self.callback is not None
            and self.callback.status_code in (302, 303)
            and LOGIN_COOKIE in self.session.cookies
        )


def _follow(login: Login, response: requests.Response, callback: str) -> requests.Response:
    """Follow redirects until a page, or until the lab's callback has answered."""
    for _ in range(MAX_HOPS):
        if response.status_code not in (302, 303):
            return response
        target = urljoin(response.url, response.headers["location"])
        login.visited.append(target)
        response = login.session.get(target, allow_redirects=False, timeout=60)
        if target.startswith(callback):
            login.callback = response
            return response
    raise AssertionError(f"more than {MAX_HOPS} redirects: {login.visited}")


def _form_action(page: requests.Response) -> str:
    match = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert match, f"no form at {page.url}: {page.status_code} {page.text[:300]}"
    return urljoin(page.url, match.group(1))


def oidc_login(oidc_lab: OidcLab, account: Account, password: str | None = None) -> Login:
    """Log ``account`` in as a browser would: the lab, the provider's two forms, the lab's callback."""
    session = requests.Session()
    session.verify = oidc_lab.trusted
    session.trust_env = False  # requests would let REQUESTS_CA_BUNDLE override verify
    login = Login(session, [oidc_lab.url + "hub/oauth_login"])
    start = session.get(login.visited[0], allow_redirects=False, timeout=60)
    login_form = _follow(login, start, oidc_lab.callback)
    if login.callback is not None:
        return login  # the provider answered at once (it should not: no session there yet)
    credentials = {"login": account.name, "password": account.password if password is None else password}
    after_login = session.post(_form_action(login_form), data=credentials, allow_redirects=False, timeout=60)
    consent = _follow(login, after_login, oidc_lab.callback)
    if login.callback is not None or consent.status_code != 200:
        return login
    allowed = session.post(_form_action(consent), allow_redirects=False, timeout=60)
    _follow(login, allowed, oidc_lab.callback)
    return login


def lab_user(oidc_lab: OidcLab, login: Login) -> LabUser:
    """The hub user a successful login made, with an API token of its own."""
    assert login.succeeded, f"login failed: {login.visited} -> {login.callback and login.callback.status_code}"
    session = login.session
    # A page of the hub (not /hub/, which would start a server) gives the session its _xsrf cookie.
    session.get(oidc_lab.url + "hub/home", timeout=30).raise_for_status()
    headers = {"X-XSRFToken": session.cookies.get("_xsrf") or ""}
    me = session.get(oidc_lab.url + "hub/api/user", headers=headers, timeout=30)
    me.raise_for_status()
    name = me.json()["name"]
    token = new_api_token(session, oidc_lab.url, name, STACK)
    return LabUser(base_url=oidc_lab.url, ca_file=oidc_lab.lab.ca_file, name=name, token=token)


@pytest.fixture(scope="module")
def alice_login(oidc_lab: OidcLab) -> Login:
    return oidc_login(oidc_lab, ALICE)


@pytest.fixture(scope="module")
def alice(oidc_lab: OidcLab, alice_login: Login) -> LabUser:
    return lab_user(oidc_lab, alice_login)


@pytest.fixture(scope="module")
def bob(oidc_lab: OidcLab) -> LabUser:
    return lab_user(oidc_lab, oidc_login(oidc_lab, BOB))


# --- the tests -------------------------------------------------------------------------------


def test_the_login_page_offers_the_provider(oidc_lab: OidcLab) -> None:
    page = requests.get(oidc_lab.url + "hub/login", verify=oidc_lab.lab.ca_file, timeout=30)
    assert page.status_code == 200
    assert f"Sign in with {oidc_lab.lab.config['auth']['oidc']['loginService']}" in html.unescape(page.text)
    assert "oauth_login" in page.text


def test_login_goes_through_the_providers_forms_and_back_to_the_lab(oidc_lab: OidcLab, alice_login: Login) -> None:
    visited = alice_login.visited
    authorize = next((url for url in visited if url.startswith(oidc_lab.issuer + "/auth?")), None)
    assert authorize, f"the lab never sent the browser to the provider's authorization endpoint: {visited}"
    assert "response_type=code" in authorize and "code_challenge=" in authorize, authorize
    assert any(urlsplit(url).path.startswith("/interaction/") for url in visited), visited
    assert visited[-1].startswith(oidc_lab.callback + "?code="), visited
    assert alice_login.succeeded, f"{alice_login.callback and alice_login.callback.status_code}: {visited}"
    assert alice_login.callback is not None
    assert urlsplit(alice_login.callback.headers["location"]).path.startswith("/hub/")


def test_the_user_is_the_username_claim(alice: LabUser) -> None:
    model = alice.model()
    assert model["name"] == ALICE.name, "preferred_username, not sub (id-<uid>)"
    assert model["admin"] is False


def test_a_member_of_the_admin_group_is_a_hub_admin(bob: LabUser) -> None:
    assert bob.model()["admin"] is True
    assert bob.api("GET", "hub/api/users").status_code == 200


def test_the_groups_claim_becomes_hub_groups(alice: LabUser, bob: LabUser) -> None:
    listing = bob.api("GET", "hub/api/groups")
    assert listing.status_code == 200, listing.text
    members = {group["name"]: set(group["users"]) for group in listing.json()}
    assert members.get("datalab-users") == {ALICE.name, BOB.name}, members
    assert members.get("datalab-admins") == {BOB.name}, members
    assert set(alice.model()["groups"]) == set(ALICE.groups)
    assert set(bob.model()["groups"]) == set(BOB.groups)


def test_a_user_outside_the_allowed_groups_is_refused(oidc_lab: OidcLab) -> None:
    assert not CAROL.groups, "precondition: carol is in no lab group"
    login = oidc_login(oidc_lab, CAROL)
    assert login.callback is not None, f"carol never came back to the lab: {login.visited}"
    assert login.callback.status_code == 403, login.callback.text[:300]
    assert "not currently authorized to use this hub" in html.unescape(login.callback.text)
    assert LOGIN_COOKIE not in login.session.cookies
    assert login.session.get(oidc_lab.url + "hub/api/user", timeout=30).status_code == 403


def test_a_wrong_password_at_the_provider_never_reaches_the_lab(oidc_lab: OidcLab) -> None:
    login = oidc_login(oidc_lab, ALICE, password="not-" + ALICE.password)
    assert login.callback is None, f"the provider sent a failed login back to the lab: {login.visited}"
    assert LOGIN_COOKIE not in login.session.cookies


def test_an_oidc_user_starts_a_server(alice: LabUser) -> None:
    """The spawn refreshes the user's tokens at the provider first (OAuthenticator's refresh_pre_spawn)."""
    alice.start_server(BASE_IMAGE)
    try:
        assert alice.run_code("print(6 * 7)").strip() == "42"
    finally:
        alice.stop_server()


def test_a_wrong_client_secret_is_refused_at_the_token_exchange(oidc_lab: OidcLab) -> None:
    """Last: the provider is started again holding another secret for the lab's client."""
    oidc_lab.restart_provider(client_secret="Another-secret-than-the-labs-0002")
    login = oidc_login(oidc_lab, BOB)
    assert login.callback is not None, f"bob never came back to the lab: {login.visited}"
    assert login.callback.status_code == 403, login.callback.text[:300]
    page = html.unescape(login.callback.text)
    assert "refused the lab's token request: invalid_client" in page, page[:1000]
    assert LOGIN_COOKIE not in login.session.cookies
    assert login.session.get(oidc_lab.url + "hub/api/user", timeout=30).status_code == 403
    assert "grant.error: invalid_client" in oidc_lab.peer.logs(tail=20)
