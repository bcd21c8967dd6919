"""The hub's LDAP login (juvini_hub.auth) against a real directory and a real KDC.

The peers come from tests/support/peers.py: OpenLDAP with StartTLS from a test CA
(``ldap.lab.test``) and an MIT KDC for ``LAB.TEST``. The authenticator is the hub's own
class, configured through traitlets as JupyterHub would; ``kinit`` runs on this machine
(Debian ``krb5-user``) with a krb5.conf rendered from the stack's own template, and with
the ``c.KerberosTickets`` options of a jupyterhub_config.py rendered for a stack on the
peers (only the hub's folders and the uid/gid are this machine's).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import shutil
import ssl
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from inspect import isawaitable
from pathlib import Path
from typing import Any, cast

import ldap3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from jupyterhub import orm
from jupyterhub.user import User
from ldap3.core.exceptions import LDAPException
from traitlets.config import Config, PyFileConfigLoader

from infra.hub_config import LDAP_CA_PATH, render_hub_config, render_krb5_conf
from infra.naming import Naming
from infra.settings import NOTEBOOK_FLAVOURS, Settings, parse_settings
from juvini_hub.auth import JuviniLDAPAuthenticator
from juvini_hub.kerberos import CCACHE_NAME, TICKET_MOUNT, KerberosTickets
from tests.support import peers
from tests.support.peers import (
    ADMINS_GROUP_DN,
    ALICE,
    BIND_DN_TEMPLATE,
    BOB,
    CAROL,
    GROUPS_DN,
    LDAP_ADMIN,
    PEOPLE_DN,
    REALM,
    SEARCH_ACCOUNT,
    USERS_GROUP_DN,
    Peer,
)

pytestmark = [
    pytest.mark.integration,
    # ldap3 2.9 checks the certificate's name with the deprecated ssl.match_hostname.
    pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning"),
]

KINIT = shutil.which("kinit")
KLIST = shutil.which("klist")
needs_kinit = pytest.mark.skipif(
    KINIT is None or KLIST is None,
    reason="kinit/klist are not installed on this machine (Debian package krb5-user; tests/setup.sh installs it)",
)

Authenticate = Callable[..., JuviniLDAPAuthenticator]


# --- the peers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab_peers() -> Iterator[dict[str, Peer]]:
    with peers.peers_running("slapd", "kdc") as running:
        yield running


@pytest.fixture(scope="module")
def ldap_ip(lab_peers: dict[str, Peer]) -> str:
    return lab_peers["slapd"].ip


@pytest.fixture(scope="module")
def kdc(lab_peers: dict[str, Peer]) -> Peer:
    return lab_peers["kdc"]


@pytest.fixture(scope="module")
def ca_file(lab_peers: dict[str, Peer], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ldap-ca") / "ca.pem"
    path.write_text(peers.ldap_ca_certificate(lab_peers["slapd"]), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def krb5_conf(kdc: Peer, ldap_ip: str, ca_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """krb5.conf rendered by the stack's template for a stack whose KDC is the peer."""
    settings = parse_settings(
        {
            "auth": peers.stack_ldap_config(ldap_ip, ca_file.read_text(encoding="utf-8")),
            "kerberos": peers.stack_kerberos_config(kdc.ip),
        }
    )
    path = tmp_path_factory.mktemp("krb5") / "krb5.conf"
    path.write_text(render_krb5_conf(settings, Naming("juvini", "it")), encoding="utf-8")
    return path


# --- the authenticator ----------------------------------------------------------------------


def base_config(ldap_ip: str, ca_file: Path, *, lookup_dn: bool) -> Config:
    config = Config()
    ldap = config.LDAPAuthenticator
    ldap.server_address = ldap_ip
    ldap.server_port = 389
    ldap.tls_strategy = "before_bind"
    ldap.tls_kwargs = {"ca_certs_file": str(ca_file), "validate": ssl.CERT_REQUIRED}
    if lookup_dn:
        ldap.lookup_dn = True
        ldap.lookup_dn_search_user = SEARCH_ACCOUNT.dn
        ldap.lookup_dn_search_password = SEARCH_ACCOUNT.password
        ldap.user_search_base = PEOPLE_DN
        ldap.user_attribute = "uid"
        ldap.lookup_dn_user_dn_attribute = "uid"
    else:
        ldap.bind_dn_template = [BIND_DN_TEMPLATE]
    ldap.allowed_groups = [USERS_GROUP_DN, ADMINS_GROUP_DN]
    config.JuviniLDAPAuthenticator.admin_groups = [ADMINS_GROUP_DN]
    return config


def make_authenticator(
    ldap_ip: str, ca_file: Path, *, lookup_dn: bool = True, kerberos: dict[str, Any] | None = None, **traits: Any
) -> JuviniLDAPAuthenticator:
    config = base_config(ldap_ip, ca_file, lookup_dn=lookup_dn)
    for name, value in traits.items():
        setattr(config.JuviniLDAPAuthenticator, name, value)
    for name, value in (kerberos or {}).items():
        setattr(config.KerberosTickets, name, value)
    return JuviniLDAPAuthenticator(config=config)


def load_rendered_config(settings: Settings, folder: Path) -> Config:
    """jupyterhub_config.py rendered from ``settings``, loaded as ``jupyterhub -f`` does."""
    naming = Naming("juvini", "it")
    images = {flavour: naming.image(f"notebook-{flavour}", "it") for flavour in NOTEBOOK_FLAVOURS}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "jupyterhub_config.py").write_text(render_hub_config(settings, naming, images), encoding="utf-8")
    return PyFileConfigLoader("jupyterhub_config.py", path=str(folder)).load_config()


def kerberos_options(
    kdc: Peer, ldap_ip: str, ca_file: Path, krb5_conf: Path, ccache_root: Path, on_failure: str = "warn"
) -> dict[str, Any]:
    """``c.KerberosTickets`` as rendered for a stack on the peers, with this machine's hub folders and ids."""
    settings = parse_settings(
        {
            "auth": peers.stack_ldap_config(ldap_ip, ca_file.read_text(encoding="utf-8"), lookup_dn=False),
            "kerberos": peers.stack_kerberos_config(kdc.ip, on_failure=on_failure),
        }
    )
    rendered = dict(load_rendered_config(settings, ccache_root.parent / f"config-{ccache_root.name}").KerberosTickets)
    assert (rendered["enabled"], rendered["realm"], rendered["on_failure"]) == (True, REALM, on_failure)
    # In the hub these are under its state folder and the lab uid; here, the test's own.
    return rendered | {
        "ccache_root": str(ccache_root),
        "krb5_conf": str(krb5_conf),
        "uid": os.getuid(),
        "gid": os.getgid(),
    }


@pytest.fixture
def authenticator(ldap_ip: str, ca_file: Path) -> Authenticate:
    """Build the hub's authenticator: service-account lookup (default) or direct bind."""

    def make(*, lookup_dn: bool = True, **traits: Any) -> JuviniLDAPAuthenticator:
        return make_authenticator(ldap_ip, ca_file, lookup_dn=lookup_dn, **traits)

    return make


@pytest.fixture
def kerberos(kdc: Peer, ldap_ip: str, ca_file: Path, krb5_conf: Path, tmp_path: Path) -> dict[str, Any]:
    return kerberos_options(kdc, ldap_ip, ca_file, krb5_conf, tmp_path / "krb5cc")


def login(authenticator: JuviniLDAPAuthenticator, username: str, password: str) -> dict[str, Any] | None:
    return asyncio.run(authenticator.authenticate(None, {"username": username, "password": password}))


def allowed(authenticator: JuviniLDAPAuthenticator, result: dict[str, Any]) -> bool:
    """check_allowed as JupyterHub calls it (it awaits what is awaitable)."""

    async def check() -> bool:
        outcome = authenticator.check_allowed(authenticator.normalize_username(result["name"]), result)
        return bool(await outcome if isawaitable(outcome) else outcome)

    return asyncio.run(check())


def klist(cache: Path, krb5_conf: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KLIST or "klist", *options, "-c", f"FILE:{cache}"],
        capture_output=True,
        text=True,
        env=os.environ | {"KRB5_CONFIG": str(krb5_conf)},
        check=False,
        timeout=30,
    )


# --- LDAP -----------------------------------------------------------------------------------


def assert_hub_admits_alice_and_admin_bob_but_not_carol(auth: JuviniLDAPAuthenticator) -> None:
    """Through get_authenticated_user, the hub's own entry point."""

    def hub_login(username: str, password: str) -> dict[str, Any] | None:
        return asyncio.run(auth.get_authenticated_user(None, {"username": username, "password": password}))

    alice = hub_login("alice", ALICE.password)
    bob = hub_login("bob", BOB.password)
    assert alice is not None and (alice["name"], alice["admin"]) == ("alice", False)
    assert bob is not None and (bob["name"], bob["admin"]) == ("bob", True)
    assert hub_login("carol", CAROL.password) is None


def test_service_account_search_then_bind_logs_alice_in(authenticator: Authenticate) -> None:
    result = login(authenticator(), "alice", ALICE.password)
    assert result is not None
    assert result["name"] == "alice"
    assert result["auth_state"]["ldap_groups"] == [USERS_GROUP_DN]


def test_the_search_really_binds_the_service_account(authenticator: Authenticate) -> None:
    wrong_search_password = authenticator(lookup_dn_search_password="not-the-service-password")
    assert login(wrong_search_password, "alice", ALICE.password) is None


def test_a_member_of_an_allowed_group_is_allowed(authenticator: Authenticate) -> None:
    auth = authenticator()
    result = login(auth, "alice", ALICE.password)
    assert result is not None
    assert allowed(auth, result) is True


def test_a_user_in_no_allowed_group_is_refused_by_the_group_gate(authenticator: Authenticate) -> None:
    auth = authenticator()
    result = login(auth, "carol", CAROL.password)
    # ldapauthenticator 2 identifies carol (her password is right) and gates in check_allowed.
    assert result is not None
    assert result["auth_state"]["ldap_groups"] == []
    assert allowed(auth, result) is False


@pytest.mark.parametrize("lookup_dn", [True, False], ids=["lookup", "bind-template"])
def test_a_member_of_an_admin_group_is_admin(authenticator: Authenticate, lookup_dn: bool) -> None:
    result = login(authenticator(lookup_dn=lookup_dn), "bob", BOB.password)
    assert result is not None
    assert result["admin"] is True
    assert result["auth_state"]["admin_groups"] == [ADMINS_GROUP_DN]


@pytest.mark.parametrize("lookup_dn", [True, False], ids=["lookup", "bind-template"])
def test_a_user_outside_the_admin_groups_is_not_admin(authenticator: Authenticate, lookup_dn: bool) -> None:
    result = login(authenticator(lookup_dn=lookup_dn), "alice", ALICE.password)
    assert result is not None
    assert result["admin"] is False
    assert result["auth_state"]["admin_groups"] == []


@pytest.mark.parametrize("lookup_dn", [True, False], ids=["lookup", "bind-template"])
def test_a_wrong_password_is_refused(authenticator: Authenticate, lookup_dn: bool) -> None:
    assert login(authenticator(lookup_dn=lookup_dn), "alice", "not-alices-password") is None


@pytest.mark.parametrize("lookup_dn", [True, False], ids=["lookup", "bind-template"])
def test_an_unknown_user_is_refused(authenticator: Authenticate, lookup_dn: bool) -> None:
    assert login(authenticator(lookup_dn=lookup_dn), "mallory", ALICE.password) is None


def test_direct_bind_template_logs_alice_in_without_a_search(authenticator: Authenticate) -> None:
    auth = authenticator(lookup_dn=False)
    assert auth.lookup_dn is False
    result = login(auth, "alice", ALICE.password)
    assert result is not None
    assert result["name"] == "alice"
    assert result["auth_state"]["ldap_groups"] == [USERS_GROUP_DN]
    assert allowed(auth, result) is True


@pytest.mark.parametrize(
    "typed",
    [
        "  alice ",
        "  Alice ",
        "ALICE",
    ],
)
def test_a_name_typed_with_spaces_or_capitals_logs_in_as_alice(authenticator: Authenticate, typed: str) -> None:
    auth = authenticator()
    result = login(auth, typed, ALICE.password)
    assert result is not None, f"{typed!r} was refused"
    assert auth.normalize_username(result["name"]) == "alice"


def test_the_directory_certificate_is_verified(authenticator: Authenticate, tmp_path: Path) -> None:
    """With another CA trusted, StartTLS fails: the login never reaches the bind."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "some other CA")])
    now = datetime.datetime.now(datetime.UTC)
    other_ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    other_ca_file = tmp_path / "other-ca.pem"
    other_ca_file.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    auth = authenticator(tls_kwargs={"ca_certs_file": str(other_ca_file), "validate": ssl.CERT_REQUIRED})
    with pytest.raises(LDAPException, match=r"(?i)certificate"):
        login(auth, "alice", ALICE.password)


def test_the_hubs_login_entry_point_admits_members_and_refuses_others(authenticator: Authenticate) -> None:
    """get_authenticated_user, which JupyterHub calls: normalise, gate, admin."""
    auth = authenticator()

    assert_hub_admits_alice_and_admin_bob_but_not_carol(auth)


@pytest.mark.parametrize(
    "lookup_dn",
    [
        pytest.param(False, id="bind-template"),
        pytest.param(True, id="lookup"),
    ],
)
def test_the_rendered_hub_config_logs_users_in(
    ldap_ip: str, ca_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lookup_dn: bool
) -> None:
    """jupyterhub_config.py rendered from stack settings for the peers, loaded as ``jupyterhub -f`` does."""
    raw = {"auth": peers.stack_ldap_config(ldap_ip, ca_file.read_text(encoding="utf-8"), lookup_dn=lookup_dn)}
    monkeypatch.setenv("JUVINI_LDAP_SEARCH_PASSWORD", SEARCH_ACCOUNT.password)
    config = load_rendered_config(parse_settings(raw), tmp_path)
    # The hub container finds the CA at LDAP_CA_PATH; here it is the exported peer CA.
    assert config.LDAPAuthenticator.tls_kwargs == {"ca_certs_file": LDAP_CA_PATH, "validate": ssl.CERT_REQUIRED}
    config.LDAPAuthenticator.tls_kwargs = {"ca_certs_file": str(ca_file), "validate": ssl.CERT_REQUIRED}
    auth = JuviniLDAPAuthenticator(config=config)

    assert_hub_admits_alice_and_admin_bob_but_not_carol(auth)


# --- directory groups as hub groups ----------------------------------------------------------


@contextlib.contextmanager
def directory_admin(ldap_ip: str, ca_file: Path) -> Iterator[ldap3.Connection]:
    """A connection bound as the directory's admin (StartTLS, the peer's CA), to change memberships."""
    tls = ldap3.Tls(ca_certs_file=str(ca_file), validate=ssl.CERT_REQUIRED)
    server = ldap3.Server(ldap_ip, port=peers.LDAP_PORT, tls=tls)
    connection = ldap3.Connection(server, user=LDAP_ADMIN.dn, password=LDAP_ADMIN.password)
    connection.open()
    connection.start_tls()
    assert connection.bind(), connection.result
    try:
        yield connection
    finally:
        connection.unbind()


def hub_groups_after_login(auth: JuviniLDAPAuthenticator, user: User, password: str) -> list[str]:
    """Log in as the hub does and sync the auth model's groups into the hub's database, as it does."""
    model = asyncio.run(auth.get_authenticated_user(None, {"username": user.name, "password": password}))
    assert model is not None, f"{user.name} was refused"
    assert auth.manage_groups and "groups" in model, "with manage_groups every login must say the groups"
    user.sync_groups(model["groups"])
    return sorted(group.name for group in user.groups)


def test_directory_groups_become_hub_groups_and_a_removed_membership_goes_at_the_next_login(
    ldap_ip: str, ca_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config rendered for a stack with auth.ldap.groupSearchBase, against the real directory."""
    auth_keys = peers.stack_ldap_config(ldap_ip, ca_file.read_text(encoding="utf-8"))
    ldap_keys = {**cast(dict[str, object], auth_keys["ldap"]), "groupSearchBase": GROUPS_DN}
    raw = {"auth": {**auth_keys, "ldap": ldap_keys}}
    monkeypatch.setenv("JUVINI_LDAP_SEARCH_PASSWORD", SEARCH_ACCOUNT.password)
    config = load_rendered_config(parse_settings(raw), tmp_path)
    config.LDAPAuthenticator.tls_kwargs = {"ca_certs_file": str(ca_file), "validate": ssl.CERT_REQUIRED}
    auth = JuviniLDAPAuthenticator(config=config)
    db = orm.new_session_factory("sqlite://")()
    hub_user = {name: User(orm.User(name=name), db=db) for name in ("alice", "bob", "carol")}
    for user in hub_user.values():
        db.add(user.orm_user)
    db.commit()

    assert hub_groups_after_login(auth, hub_user["alice"], ALICE.password) == ["datalab-users"]
    assert hub_groups_after_login(auth, hub_user["bob"], BOB.password) == ["datalab-admins", "datalab-users"]
    with directory_admin(ldap_ip, ca_file) as admin:
        # bob stays in the lab (admins may always log in) without the users' group (alice keeps it non-empty).
        assert admin.modify(USERS_GROUP_DN, {"member": [(ldap3.MODIFY_DELETE, [BOB.dn])]}), admin.result
        try:
            assert hub_groups_after_login(auth, hub_user["bob"], BOB.password) == ["datalab-admins"]
        finally:
            assert admin.modify(USERS_GROUP_DN, {"member": [(ldap3.MODIFY_ADD, [BOB.dn])]}), admin.result
    assert hub_groups_after_login(auth, hub_user["bob"], BOB.password) == ["datalab-admins", "datalab-users"]
    # In no group: none, even if the hub held some from before (carol is refused at the gate, not here).
    hub_user["carol"].sync_groups(["datalab-users"])
    model = asyncio.run(auth.authenticate(None, {"username": "carol", "password": CAROL.password}))
    assert model is not None and model["groups"] == []


# --- Kerberos -------------------------------------------------------------------------------


@needs_kinit
def test_login_leaves_a_valid_ticket_cache_for_alice(
    authenticator: Authenticate, kerberos: dict[str, Any], krb5_conf: Path
) -> None:
    result = login(authenticator(kerberos=kerberos), "alice", ALICE.password)
    assert result is not None
    state = result["auth_state"]
    assert state["kerberos"]["ok"] is True, state["kerberos"]
    assert state["password"] == ALICE.password
    cache = Path(kerberos["ccache_root"]) / "alice" / CCACHE_NAME
    info = cache.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert (info.st_uid, info.st_gid) == (os.getuid(), os.getgid())
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    listing = klist(cache, krb5_conf)
    assert listing.returncode == 0, listing.stderr
    assert f"Default principal: {ALICE.principal}" in listing.stdout
    assert f"krbtgt/{REALM}@{REALM}" in listing.stdout
    assert klist(cache, krb5_conf, "-s").returncode == 0, "the ticket in the cache is not valid"
    assert not list(cache.parent.glob(".*")), "a temporary cache was left behind"


@needs_kinit
def test_a_user_without_a_principal_logs_in_with_the_kdcs_reason(
    authenticator: Authenticate, kerberos: dict[str, Any]
) -> None:
    # carol is in the directory only; the group gate (check_allowed) is not the point here.
    result = login(authenticator(kerberos=kerberos), "carol", CAROL.password)
    assert result is not None
    assert result["auth_state"]["kerberos"]["ok"] is False
    assert "not found in Kerberos database" in result["auth_state"]["kerberos"]["message"]
    assert not (Path(kerberos["ccache_root"]) / "carol" / CCACHE_NAME).exists()


@dataclass(frozen=True)
class OutageLogin:
    result: dict[str, Any] | None
    ccache_root: Path


@pytest.fixture(scope="class")
def logins_while_the_kdc_is_down(
    kdc: Peer, ldap_ip: str, ca_file: Path, krb5_conf: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, OutageLogin]:
    """alice logs in once per kerberos.onFailure with the KDC container stopped.

    Both logins run at once: each waits for libkrb5 to give up on the unreachable
    KDC (about 18 s: TCP, then UDP with retries). The KDC is started again, and
    waited for, before the tests look at the outcomes.
    """
    roots = {policy: tmp_path_factory.mktemp(f"krb5cc-{policy}") for policy in ("warn", "refuse")}
    authenticators = {
        policy: make_authenticator(
            ldap_ip, ca_file, kerberos=kerberos_options(kdc, ldap_ip, ca_file, krb5_conf, roots[policy], policy)
        )
        for policy in roots
    }

    async def log_in_both() -> list[dict[str, Any] | None]:
        data = {"username": "alice", "password": ALICE.password}
        return await asyncio.gather(*(auth.authenticate(None, data) for auth in authenticators.values()))

    kdc.stop()
    try:
        results = asyncio.run(log_in_both())
    finally:
        kdc.start()  # and wait until it issues tickets again
    return {policy: OutageLogin(result, roots[policy]) for policy, result in zip(authenticators, results, strict=True)}


@needs_kinit
class TestWhenTheKdcIsDown:
    def test_warn_lets_the_login_through_without_a_ticket(
        self, logins_while_the_kdc_is_down: dict[str, OutageLogin]
    ) -> None:
        login = logins_while_the_kdc_is_down["warn"]
        assert login.result is not None
        outcome = login.result["auth_state"]["kerberos"]
        assert outcome["ok"] is False
        assert ALICE.principal in outcome["message"]
        assert "Cannot contact any KDC" in outcome["message"] or "timed out" in outcome["message"]
        # kept, encrypted in the hub's auth state, to get the ticket at the next server start
        assert login.result["auth_state"]["password"] == ALICE.password
        folder = login.ccache_root / "alice"
        assert not (folder / CCACHE_NAME).exists()
        assert not list(folder.iterdir()), "a temporary cache was left behind"

    def test_refuse_refuses_the_login(self, logins_while_the_kdc_is_down: dict[str, OutageLogin]) -> None:
        login = logins_while_the_kdc_is_down["refuse"]
        assert login.result is None
        assert not (login.ccache_root / "alice" / CCACHE_NAME).exists()


@needs_kinit
def test_tickets_are_issued_again_after_the_kdc_restarts(
    authenticator: Authenticate, kerberos: dict[str, Any], kdc: Peer
) -> None:
    assert kdc.is_running()
    result = login(authenticator(kerberos=kerberos | {"on_failure": "refuse"}), "bob", BOB.password)
    assert result is not None
    assert result["auth_state"]["kerberos"]["ok"] is True
    assert result["admin"] is True


@needs_kinit
def test_a_server_start_renews_the_ticket_from_the_auth_state(kerberos: dict[str, Any], krb5_conf: Path) -> None:
    """What the spawner does at each start, with the same c.KerberosTickets as the login."""
    tickets = KerberosTickets(config=Config({"KerberosTickets": kerberos}))
    ticket = asyncio.run(tickets.at_spawn("alice", {"password": ALICE.password}))
    cache = Path(kerberos["ccache_root"]) / "alice" / CCACHE_NAME
    assert klist(cache, krb5_conf, "-s").returncode == 0, "no valid ticket after the start"
    assert "JUVINI_KERBEROS_WARNING" not in ticket.environment
    assert ticket.environment["KRB5CCNAME"] == f"FILE:{TICKET_MOUNT}/{CCACHE_NAME}"
    assert ticket.volumes[f"{kerberos['ccache_host_root']}/alice"] == {"bind": TICKET_MOUNT, "mode": "rw"}
