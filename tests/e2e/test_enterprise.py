"""The lab behind a company directory and a KDC, end to end over HTTPS.

A second lab (stack ``e2e-ad``, its own folders and port, so it coexists with the
``e2e`` lab of test_lab.py) is brought up from the program with ``auth.type: ldap``
against the slapd peer (StartTLS, service-account search then bind, group gates) and
``kerberos`` against the KDC peer (tickets at login, ``onFailure: warn``). The module
runs its own slapd and KDC (the images and readiness checks of tests/support/peers.py)
on its own network; the hub container is attached to it and reaches them by their
fixed addresses.

Where this machine's kernel can mount cifs, the module also runs a samba peer on its
network and the lab gets two Windows shares from it: a team share (mounted with a
service account) and a perUser share (``//<samba>/homes``: each user's own home,
mounted with their login at spawn). Where the kernel cannot, the lab is configured
without shares, so that spawns keep working, and the share tests skip with the reason.

Every login goes through the lab's login form, every check through the HTTPS front
door verified with the stack's CA. The KDC outage tests come last: they stop the KDC
peer for a while (and start it again, waiting until it issues tickets).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import ssl
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import ldap3
import pytest
import requests
from docker.errors import NotFound

from infra import outputs
from infra.flavours import BY_NAME as FLAVOURS
from tests.e2e.conftest import Lab, lab_config, remove_stack_objects
from tests.integration.test_cifs import kernel_cifs_support
from tests.support import peers
from tests.support.lab_client import LabUser, new_api_token, wait_for
from tests.support.local_stack import free_port
from tests.support.peers import ALICE, BOB, CAROL, REALM, TEAM_FILE, TEAM_FILE_TEXT, TEAM_SHARE, Peer
from tests.support.provider_double import bring_up

pytestmark = pytest.mark.e2e

STACK = "e2e-ad"
STACK_LABELS = {"org.juvini.stack": STACK}
PEER_NETWORK = f"juvini-{STACK}-peers"
HUB_CONTAINER = f"juvini-{STACK}-hub"
LAB_UID = 2100
LAB_GID = 2100
#: Where the spawner mounts the user's ticket folder, and the cache's name in it.
CCACHE_IN_SERVER = "FILE:/run/juvini/krb5/krb5cc"
#: A login runs kinit; with the KDC down libkrb5 gives up after ~18 s (the hub waits up to 30 s).
LOGIN_TIMEOUT = 90
#: The login cookie JupyterHub sets once a user is authenticated (and allowed).
LOGIN_COOKIE = "jupyterhub-hub-login"
LOGIN_ERROR = "Invalid username or password"
BASE_IMAGE = FLAVOURS["base"].display_name

#: The shares the lab gets where the kernel mounts cifs: the team share at ~/team, with a
#: service account (bob's file-server login: not alice's own), and each user's home on the
#: file server (Samba's ``homes`` is the connecting user's own home) at ~/windows-home.
TEAM_FOLDER = TEAM_SHARE
HOME_SHARE = "home"
HOME_FOLDER = "windows-home"
TEAM_SHARE_ACCOUNT = BOB
#: The volume the hub makes for alice's home share at spawn (and removes at stop).
ALICE_HOME_VOLUME = f"juvini-{STACK}-user-alice-cifs-{HOME_SHARE}"

#: Run in a kernel: what the user's server sees of its shares, as JSON.
SHARES_PROBE = f"""
import json, os
from pathlib import Path
home = Path("~").expanduser()
def folder(name):
    path = home / name
    try:
        return {{"listing": sorted(os.listdir(path)), "error": None}}
    except OSError as error:
        return {{"listing": [], "error": repr(error)}}
def text(path):
    try:
        return (home / path).read_text()
    except OSError as error:
        return repr(error)
mounts = [line.split()[:3] for line in open("/proc/self/mounts")]
print(json.dumps({{
    "home": str(home),
    "team": folder({TEAM_FOLDER!r}),
    "team_file": text({TEAM_FOLDER!r} + "/" + {TEAM_FILE!r}),
    "mine": folder({HOME_FOLDER!r}),
    "my_notes": text({HOME_FOLDER!r} + "/notes-alice.txt"),
    "mounts": {{mount_point: [device, fs_type] for device, mount_point, fs_type in mounts}},
}}))
"""

#: Run in a kernel: what the user's server knows about its Kerberos ticket, as JSON.
KERBEROS_PROBE = """
import json, os, subprocess
listing = subprocess.run(["klist"], capture_output=True, text=True)
valid = subprocess.run(["klist", "-s"], capture_output=True, text=True)
print(json.dumps({
    "klist": listing.stdout + listing.stderr,
    "klist_code": listing.returncode,
    "valid_code": valid.returncode,
    "KRB5CCNAME": os.environ.get("KRB5CCNAME"),
    "warning": os.environ.get("JUVINI_KERBEROS_WARNING"),
    "krb5_conf": open("/etc/krb5.conf").read(),
}))
"""


@dataclass
class EnterpriseLab:
    lab: Lab
    peers: dict[str, Peer]
    #: None where the kernel mounts cifs (the lab has shares), else why it cannot.
    cifs_missing: str | None

    @property
    def url(self) -> str:
        return self.lab.url

    @property
    def kdc(self) -> Peer:
        return self.peers["kdc"]

    def ccache(self, name: str) -> Path:
        return self.lab.path("hubStateDir") / "krb5cc" / name / "krb5cc"


def _peer_network(client: docker.DockerClient) -> peers.PeerNetwork:
    """This module's own network for its peers, with a subnet Docker picks as free (fixed addresses need one)."""
    subnet = peers.free_subnet(client, f"{PEER_NETWORK}-probe", STACK_LABELS)
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet))])
    client.networks.create(PEER_NETWORK, driver="bridge", ipam=ipam, labels=STACK_LABELS)
    return peers.PeerNetwork(PEER_NETWORK, subnet)


@dataclass(frozen=True)
class _ModulePeerSpec(peers.PeerSpec):
    """A peer of peers.PEERS under a container name of this stack."""

    @property
    def container_name(self) -> str:
        return f"juvini-{STACK}-peer-{self.name}"


def _start_peer(name: str, network: peers.PeerNetwork, client: docker.DockerClient) -> Peer:
    """Like peers.start_peer, under this stack's name and labels, serving when this returns."""
    known = peers.PEERS[name]
    spec = _ModulePeerSpec(known.name, known.hostname, known.address_index, known.ports, known.check)
    ip = network.address(spec.address_index)
    container = client.containers.create(
        peers.build_peer(name),
        name=spec.container_name,
        hostname=spec.hostname,
        labels=STACK_LABELS | {"org.juvini.role": f"peer-{name}"},
        network=network.name,
        networking_config={network.name: client.api.create_endpoint_config(aliases=[spec.hostname], ipv4_address=ip)},
        detach=True,
    )
    peer = Peer(spec, container, network, ip)
    try:
        container.start()
        peer.wait_ready(timeout=90)
    except BaseException:
        peer.remove()
        raise
    return peer


def cifs_config(samba: Peer) -> dict[str, object]:
    """The ``juvini:cifs`` stack keys (camelCase): a team share and a perUser share on the samba peer."""
    team = {
        "name": TEAM_SHARE,
        "unc": f"//{samba.ip}/{TEAM_SHARE}",
        "mountPath": TEAM_FOLDER,
        "username": TEAM_SHARE_ACCOUNT.name,
        "password": TEAM_SHARE_ACCOUNT.password,
    }
    home = {"name": HOME_SHARE, "unc": f"//{samba.ip}/homes", "mountPath": HOME_FOLDER, "perUser": True}
    return {"shares": [team, home]}


def remove_user_share_volumes(client: docker.DockerClient) -> None:
    """Per-user share volumes this stack's hub made and a failed stop left (they hold a password)."""
    for volume in client.volumes.list(filters={"label": [f"org.juvini.stack={STACK}", "org.juvini.role=user-share"]}):
        with contextlib.suppress(NotFound):
            volume.remove(force=True)


@pytest.fixture(scope="module")
def ad_lab() -> Iterator[EnterpriseLab]:
    """The peers (slapd, KDC, and samba where the kernel mounts cifs) and a lab logging users in against them.

    peers.peers_running() would share fixed container names with every other run on this
    engine (the integration tests replace them when they start, and remove them when they
    end), so this module runs its own slapd and KDC, from the same images and checks, on
    its own network, labelled with its stack.
    """
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=300)
    remove_stack_objects(client, STACK)
    root = Path(tempfile.mkdtemp(prefix="juvini-e2e-ad-", dir="/var/tmp"))
    root.chmod(0o755)
    try:
        network = _peer_network(client)
        cifs_missing = kernel_cifs_support()
        names = ("slapd", "kdc") if cifs_missing is not None else ("slapd", "kdc", "samba")
        running = {name: _start_peer(name, network, client) for name in names}
        config = lab_config(root, free_port())
        config["auth"] = peers.stack_ldap_config(running["slapd"].ip, peers.ldap_ca_certificate(running["slapd"]))
        # Directory groups become hub groups at each login.
        config["auth"]["ldap"] = {**config["auth"]["ldap"], "groupSearchBase": peers.GROUPS_DN}
        config["kerberos"] = peers.stack_kerberos_config(running["kdc"].ip, on_failure="warn")
        secret_keys = ["auth"]
        if cifs_missing is None:
            # Without cifs in the kernel no server could start with these mounts: no shares then.
            config["cifs"] = cifs_config(running["samba"])
            secret_keys.append("cifs")  # the team share's password
        # One image (fast); no culling (the tests stop their servers); Spark ports apart
        # from the e2e lab's, which may run on this engine at the same time.
        config["spawner"] = config["spawner"] | {"allowedImages": ["base"], "idleTimeout": 0}
        del config["profiles"]  # the e2e lab's name the other images: here each allowed image is one
        config["spark"] = config["spark"] | {"driverPorts": "12200-12210", "blockManagerPorts": "11300-11310"}
        # Its users' network apart from the other e2e labs' (the default, 172.16.16.0/22, is the e2e lab's).
        config["network"] = {"usersSubnet": "172.16.20.0/22"}
        # auth holds ldap.searchPassword: the stack keeps that top-level key as a secret.
        deployment = bring_up(config, stack=STACK, secret_keys=secret_keys)
        lab = Lab(deployment, config, deployment.outputs[outputs.HUB_URL], str(root / "lab-ca.pem"), root, client)
        try:
            Path(lab.ca_file).write_text(deployment.outputs[outputs.CA_CERTIFICATE], encoding="utf-8")
            # Docker isolates bridge networks: the hub reaches the peers once attached to theirs.
            client.networks.get(PEER_NETWORK).connect(HUB_CONTAINER)
            wait_for(
                "the hub to answer /hub/health over HTTPS",
                lambda: requests.get(lab.url + "hub/health", verify=lab.ca_file, timeout=5).status_code == 200,
                timeout=180,
            )
            yield EnterpriseLab(lab, running, cifs_missing)
        finally:
            errors = lab.destroy()
            assert not errors, errors
    finally:
        # Leftover users' servers, the peers and their network: all carry the stack's label.
        remove_stack_objects(client, STACK)
        remove_user_share_volumes(client)
        shutil.rmtree(root, ignore_errors=True)


# --- logging in through the form ------------------------------------------------------------


@dataclass
class LoginAttempt:
    response: requests.Response
    session: requests.Session

    @property
    def succeeded(self) -> bool:
        return self.response.status_code in (302, 303) and LOGIN_COOKIE in self.session.cookies


def attempt_login(ad_lab: EnterpriseLab, typed: str, password: str) -> LoginAttempt:
    """Post the login form as a browser would; whatever the hub answers."""
    session = requests.Session()
    session.verify = ad_lab.lab.ca_file
    session.trust_env = False  # requests would let REQUESTS_CA_BUNDLE override verify
    page = session.get(ad_lab.url + "hub/login", timeout=30)
    page.raise_for_status()
    form = {"_xsrf": session.cookies.get("_xsrf") or "", "username": typed, "password": password}
    response = session.post(ad_lab.url + "hub/login", data=form, allow_redirects=False, timeout=LOGIN_TIMEOUT)
    return LoginAttempt(response, session)


def log_in(ad_lab: EnterpriseLab, typed: str, password: str) -> LabUser:
    """Log in with the name as typed; the hub user it maps to, with an API token."""
    attempt = attempt_login(ad_lab, typed, password)
    assert attempt.succeeded, f"login of {typed!r} failed: {attempt.response.status_code} {attempt.response.text[:300]}"
    session = attempt.session
    headers = {"X-XSRFToken": session.cookies.get("_xsrf") or ""}
    me = session.get(ad_lab.url + "hub/api/user", headers=headers, timeout=30)
    me.raise_for_status()
    name = me.json()["name"]
    token = new_api_token(session, ad_lab.url, name, "e2e-ad")
    return LabUser(
        base_url=ad_lab.url,
        ca_file=ad_lab.lab.ca_file,
        name=name,
        password=password,
        session=session,
        token=token,
    )


def kerberos_view(user: LabUser) -> dict[str, Any]:
    return json.loads(user.run_code(KERBEROS_PROBE))


@pytest.fixture(scope="module")
def alice(ad_lab: EnterpriseLab) -> LabUser:
    return log_in(ad_lab, "alice", ALICE.password)


@pytest.fixture(scope="module")
def bob(ad_lab: EnterpriseLab) -> LabUser:
    return log_in(ad_lab, "bob", BOB.password)


# --- the directory --------------------------------------------------------------------------


def test_a_member_of_the_users_group_logs_in_and_is_not_admin(alice: LabUser) -> None:
    assert alice.name == "alice"
    assert alice.token
    assert alice.model()["admin"] is False
    assert alice.api("GET", "hub/api/users").status_code == 403


def directory_groups(ad_lab: EnterpriseLab, name: str, password: str) -> list[str]:
    """The hub groups of ``name`` right after a fresh login through the form."""
    return sorted(log_in(ad_lab, name, password).model()["groups"])


def test_directory_groups_are_hub_groups_after_login_and_a_removed_membership_goes_at_the_next(
    ad_lab: EnterpriseLab, tmp_path: Path
) -> None:
    assert directory_groups(ad_lab, "alice", ALICE.password) == ["datalab-users"]
    assert directory_groups(ad_lab, "bob", BOB.password) == ["datalab-admins", "datalab-users"]
    ca_file = tmp_path / "ldap-ca.pem"
    ca_file.write_text(peers.ldap_ca_certificate(ad_lab.peers["slapd"]), encoding="utf-8")
    tls = ldap3.Tls(ca_certs_file=str(ca_file), validate=ssl.CERT_REQUIRED)
    admin = ldap3.Connection(
        ldap3.Server(ad_lab.peers["slapd"].ip, port=peers.LDAP_PORT, tls=tls),
        user=peers.LDAP_ADMIN.dn,
        password=peers.LDAP_ADMIN.password,
    )
    admin.open()
    admin.start_tls()
    assert admin.bind(), admin.result
    try:
        # bob stays in the lab (admins may always log in) without the users' group.
        assert admin.modify(peers.USERS_GROUP_DN, {"member": [(ldap3.MODIFY_DELETE, [BOB.dn])]}), admin.result
        try:
            assert directory_groups(ad_lab, "bob", BOB.password) == ["datalab-admins"]
        finally:
            assert admin.modify(peers.USERS_GROUP_DN, {"member": [(ldap3.MODIFY_ADD, [BOB.dn])]}), admin.result
    finally:
        admin.unbind()
    assert directory_groups(ad_lab, "bob", BOB.password) == ["datalab-admins", "datalab-users"]


def test_a_member_of_the_admins_group_is_a_hub_admin(bob: LabUser) -> None:
    assert bob.model()["admin"] is True
    listing = bob.api("GET", "hub/api/users")
    assert listing.status_code == 200, listing.text
    assert "bob" in {user["name"] for user in listing.json()}


@pytest.mark.parametrize(
    ("typed", "password"),
    [
        pytest.param("carol", CAROL.password, id="in-no-lab-group"),
        pytest.param("alice", "not-" + ALICE.password, id="wrong-password"),
        pytest.param("mallory", "Mallory-pw-0000", id="unknown-user"),
    ],
)
def test_logins_outside_the_lab_groups_or_with_bad_credentials_are_refused(
    ad_lab: EnterpriseLab, typed: str, password: str
) -> None:
    attempt = attempt_login(ad_lab, typed, password)
    assert not attempt.succeeded
    assert attempt.response.status_code == 403, attempt.response.headers.get("location")
    assert LOGIN_COOKIE not in attempt.session.cookies
    assert LOGIN_ERROR in attempt.response.text


def test_names_typed_with_spaces_or_capitals_are_one_account(ad_lab: EnterpriseLab, bob: LabUser) -> None:
    for typed in ("  ALICE ", "Alice"):
        assert log_in(ad_lab, typed, ALICE.password).name == "alice", typed
    listing = bob.api("GET", "hub/api/users")
    assert listing.status_code == 200, listing.text
    names = [user["name"] for user in listing.json()]
    assert [name for name in names if name.strip().lower() == "alice"] == ["alice"], names


# --- Kerberos -------------------------------------------------------------------------------


def test_alices_server_holds_her_ticket_from_the_login(ad_lab: EnterpriseLab, alice: LabUser) -> None:
    alice.start_server(BASE_IMAGE)
    try:
        view = kerberos_view(alice)
    finally:
        alice.stop_server()
    assert view["klist_code"] == 0, view["klist"]
    assert f"Default principal: {ALICE.principal}" in view["klist"], view["klist"]
    assert f"krbtgt/{REALM}@{REALM}" in view["klist"], view["klist"]
    assert view["valid_code"] == 0, "klist -s: the ticket is not valid"
    assert view["KRB5CCNAME"] == CCACHE_IN_SERVER
    assert view["warning"] is None
    assert f"default_realm = {REALM}" in view["krb5_conf"], view["krb5_conf"]
    info = ad_lab.ccache("alice").stat()
    assert (info.st_uid, info.st_gid) == (LAB_UID, LAB_GID)
    assert stat.S_IMODE(info.st_mode) == 0o600


# --- Windows shares -------------------------------------------------------------------------


@dataclass(frozen=True)
class SharesSeen:
    view: dict[str, Any]
    #: ``docker volume inspect`` of alice's home-share volume while her server ran (None: missing).
    volume_while_running: dict[str, Any] | None


@pytest.fixture(scope="module")
def alice_with_shares(ad_lab: EnterpriseLab, alice: LabUser) -> SharesSeen:
    """alice's server with the lab's shares, looked at from a kernel in it, then stopped."""
    if ad_lab.cifs_missing is not None:
        pytest.skip(f"kernel has no cifs support: {ad_lab.cifs_missing}")
    alice.start_server(BASE_IMAGE)
    try:
        view = json.loads(alice.run_code(SHARES_PROBE))
        try:
            volume = ad_lab.lab.docker.api.inspect_volume(ALICE_HOME_VOLUME)
        except NotFound:
            volume = None
    finally:
        alice.stop_server()
    return SharesSeen(view, volume)


def test_alices_server_sees_the_team_share_at_its_folder(ad_lab: EnterpriseLab, alice_with_shares: SharesSeen) -> None:
    view = alice_with_shares.view
    mount_point = f"{view['home']}/{TEAM_FOLDER}"
    assert view["mounts"].get(mount_point) == [f"//{ad_lab.peers['samba'].ip}/{TEAM_SHARE}", "cifs"], view["mounts"]
    assert TEAM_FILE in view["team"]["listing"], view["team"]
    assert view["team_file"] == TEAM_FILE_TEXT


def test_alices_server_sees_her_own_home_share_at_its_folder(
    ad_lab: EnterpriseLab, alice_with_shares: SharesSeen
) -> None:
    view = alice_with_shares.view
    mount_point = f"{view['home']}/{HOME_FOLDER}"
    assert view["mounts"].get(mount_point) == [f"//{ad_lab.peers['samba'].ip}/homes", "cifs"], view["mounts"]
    # Her own home on the file server (mounted with her login), not anyone else's.
    assert "notes-alice.txt" in view["mine"]["listing"], view["mine"]
    assert "notes-bob.txt" not in view["mine"]["listing"], view["mine"]
    assert view["my_notes"].startswith("Notes of alice"), view["my_notes"]


def test_her_share_volume_is_made_at_spawn_and_gone_after_her_server_stops(
    ad_lab: EnterpriseLab, alice_with_shares: SharesSeen
) -> None:
    volume = alice_with_shares.volume_while_running
    assert volume is not None, f"{ALICE_HOME_VOLUME} did not exist while alice's server ran"
    assert volume["Labels"]["org.juvini.stack"] == STACK
    assert volume["Labels"]["org.juvini.role"] == "user-share"

    def gone() -> bool:
        try:
            ad_lab.lab.docker.volumes.get(ALICE_HOME_VOLUME)
        except NotFound:
            return True
        return False

    wait_for(f"{ALICE_HOME_VOLUME} to be removed after alice's server stopped", gone, timeout=30)


@dataclass(frozen=True)
class OutageStart:
    had_a_ticket_before: bool
    view: dict[str, Any]


@pytest.fixture(scope="module")
def bob_while_the_kdc_is_down(ad_lab: EnterpriseLab, bob: LabUser) -> OutageStart:
    """bob logs in and starts his server with the KDC peer stopped (policy warn).

    bob logged in before with the KDC up (the ``bob`` fixture), as a returning user
    has. The KDC is started again, and waited for, before the tests look.
    """
    had_a_ticket_before = ad_lab.ccache("bob").is_file()
    ad_lab.kdc.stop()
    try:
        returning = log_in(ad_lab, "bob", BOB.password)
        returning.start_server(BASE_IMAGE)
        try:
            view = kerberos_view(returning)
        finally:
            returning.stop_server()
    finally:
        ad_lab.kdc.start(timeout=90)  # and wait until it issues tickets again
    return OutageStart(had_a_ticket_before, view)


def test_with_the_kdc_down_a_user_logs_in_and_the_server_says_why_it_has_no_ticket(
    bob_while_the_kdc_is_down: OutageStart,
) -> None:
    view = bob_while_the_kdc_is_down.view
    assert view["warning"], "JUVINI_KERBEROS_WARNING is missing or empty"
    assert "kinit" in view["warning"], view["warning"]
    assert BOB.principal in view["warning"], view["warning"]
    assert view["KRB5CCNAME"] == CCACHE_IN_SERVER


def test_with_the_kdc_down_the_server_holds_no_ticket(bob_while_the_kdc_is_down: OutageStart) -> None:
    assert bob_while_the_kdc_is_down.had_a_ticket_before, "precondition: bob's earlier login left a ticket"
    view = bob_while_the_kdc_is_down.view
    assert view["valid_code"] != 0, f"klist -s found a valid ticket:\n{view['klist']}"
