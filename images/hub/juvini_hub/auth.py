"""LDAP / Active Directory login for the lab, on top of the stock ldapauthenticator.

Adds what the stock authenticator lacks:

- usernames typed with surrounding spaces or in upper case map to one account;
- members of ``admin_groups`` are hub admins (and always allowed in);
- with ``group_search_base`` (and ``Authenticator.manage_groups``), the user's directory groups
  become their hub groups at each login: a membership removed in the directory is gone at the
  next login (profiles and group folders follow hub groups);
- with Kerberos enabled (``c.KerberosTickets``, shared with the spawner), the login
  password obtains a Kerberos ticket (``kinit``) for the user's container; the password
  is kept only in JupyterHub's encrypted auth state, so a later start of the server can
  renew the ticket.

When the KDC cannot issue a ticket, ``KerberosTickets.on_failure`` decides: ``warn`` lets
the login through (the server starts without a ticket and says why in
``JUVINI_KERBEROS_WARNING``), ``refuse`` refuses the login.
"""

from __future__ import annotations

import inspect
from typing import Any

import ldap3
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn
from ldapauthenticator import LDAPAuthenticator
from traitlets import Bool, List, Unicode

from juvini_hub.kerberos import WithKerberosTickets


class JuviniLDAPAuthenticator(WithKerberosTickets, LDAPAuthenticator):
    """ldapauthenticator plus admin groups, name normalisation and Kerberos at login."""

    admin_groups = List(Unicode(), help="Group DNs whose members are hub admins.").tag(config=True)
    keep_password = Bool(
        False, help="Keep the password in the encrypted auth state (for per-user Windows shares at spawn)."
    ).tag(config=True)
    group_search_base = Unicode(
        "",
        help="Where the user's groups are searched (LDAPAuthenticator.group_search_filter, with the user's own "
        "bind); with Authenticator.manage_groups they become the user's hub groups. Empty: no group lookup.",
    ).tag(config=True)
    group_name_attribute = Unicode("cn", help="Attribute of a group entry that names its hub group.").tag(config=True)

    def normalize_username(self, username: str) -> str:
        return super().normalize_username(username.strip())

    async def authenticate(self, handler: Any, data: dict[str, Any]) -> dict[str, Any] | None:
        # ldapauthenticator checks the name against a lower-case pattern before JupyterHub
        # normalises it, so normalise first: "  Alice " and "ALICE" are alice.
        login = dict(data, username=self.normalize_username(data.get("username", "")))
        result = await super().authenticate(handler, login)
        if not result:
            return None
        auth_state = dict(result.get("auth_state") or {})
        name = self.normalize_username(result["name"])
        directory_groups = bool(self.manage_groups and self.group_search_base)
        if self.admin_groups or directory_groups:
            # One bind as the user serves both group searches.
            own_bind = self._own_bind(login["username"], login["password"])
            if self.admin_groups:
                groups = self._member_groups(own_bind, self.admin_groups)
                auth_state["admin_groups"] = groups
                result["admin"] = bool(groups) or name in self.admin_users
            if directory_groups:
                # Every login says which groups the user is in: none found is none, and removes the old ones.
                result["groups"] = self._directory_groups(own_bind, login["username"])
        if self.kerberos.enabled:
            outcome = await self.kerberos.at_login(name, login["password"])
            auth_state["kerberos"] = outcome.as_state()
            if self.kerberos.refuses(outcome):
                return None
        if self.kerberos.enabled or self.keep_password:
            # Encrypted at rest with the stack's crypt key; renews the ticket and mounts the
            # user's own Windows shares at spawn.
            auth_state["password"] = login["password"]
        result["auth_state"] = auth_state
        return result

    async def check_allowed(self, username: str, auth_model: dict[str, Any] | None = None) -> bool:
        if auth_model and auth_model.get("admin"):
            return True  # admin groups imply access
        allowed = super().check_allowed(username, auth_model)
        return bool(await allowed) if inspect.isawaitable(allowed) else bool(allowed)

    def _own_bind(self, login: str, password: str) -> tuple[Any, str] | None:
        """A connection bound as the user, and ``group_search_filter`` filled in for them; None
        when the user's entry or bind is not found."""
        userdn, uid = self._user_dn(login, password)
        if userdn is None:
            return None
        conn = self.get_connection(userdn, password)
        if not conn:
            return None
        return conn, self.group_search_filter.format(userdn=escape_filter_chars(userdn), uid=escape_filter_chars(uid))

    def _member_groups(self, own_bind: tuple[Any, str] | None, groups: list[str]) -> list[str]:
        """Those of ``groups`` the user belongs to, searched with the user's own bind."""
        if own_bind is None:
            return []
        conn, query = own_bind
        return [
            group
            for group in groups
            if conn.search(
                search_base=group, search_scope=ldap3.BASE, search_filter=query, attributes=self.group_attributes
            )
        ]

    def _directory_groups(self, own_bind: tuple[Any, str] | None, login: str) -> list[str]:
        """The names of the groups below ``group_search_base`` the user is a member of (own bind)."""
        if own_bind is None:
            return []
        conn, query = own_bind
        conn.search(
            search_base=self.group_search_base,
            search_scope=ldap3.SUBTREE,
            search_filter=query,
            attributes=[self.group_name_attribute],
        )
        names: set[str] = set()
        for entry in conn.entries:
            values = entry.entry_attributes_as_dict.get(self.group_name_attribute) or []
            names.update(str(value) for value in values[:1])
        self.log.info("%s's directory groups: %s", login, ", ".join(sorted(names)) or "none")
        return sorted(names)

    def _user_dn(self, login: str, password: str) -> tuple[str | None, str]:
        if self.lookup_dn:
            resolved, userdn = self.resolve_username(login)
            return userdn, resolved or login
        templates = self.bind_dn_template if isinstance(self.bind_dn_template, list) else [self.bind_dn_template]
        for template in templates:
            userdn = template.format(username=escape_rdn(login))
            if self.get_connection(userdn, password):
                return userdn, login
        return None, login
