"""The stack's generated secrets: the hub's cookie secret, the proxy token, the auth-state key.

Generated once per stack with pulumi-random and kept in its state, encrypted (RandomBytes
marks ``hex`` and ``base64`` secret). The proxy gets only the proxy token; the hub gets all
three. They reach the containers through their environment, never through images, files
or command lines.
"""

from __future__ import annotations

import pulumi
import pulumi_random as random

from infra.aliases import FormerParent, former

TYPE = "juvini:index:Secrets"

#: Bytes in each generated secret (hex-encoded for the containers: 64 characters).
LENGTH = 32


class Secrets(pulumi.ComponentResource):
    """The generated secrets, each a ``random.RandomBytes``: use ``.hex``."""

    cookie_secret: random.RandomBytes
    proxy_token: random.RandomBytes
    crypt_key: random.RandomBytes

    def __init__(
        self, name: str, formerly: FormerParent | None = None, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """``formerly``: the component that held them before (their aliases keep their values)."""
        super().__init__(TYPE, name, None, opts)

        def generated(role: str) -> random.RandomBytes:
            return random.RandomBytes(
                f"{name}-{role}",
                length=LENGTH,
                opts=pulumi.ResourceOptions(parent=self, aliases=former(formerly, role)),
            )

        self.cookie_secret = generated("cookie-secret")
        self.proxy_token = generated("proxy-token")
        self.crypt_key = generated("crypt-key")
        # Nothing to show: the values stay secret in the children's state.
        self.register_outputs({})
