"""A real headless browser on the lab: Debian's Chromium driven by Playwright.

Playwright's own browsers are not downloaded (``playwright install`` is never run): the
system's ``chromium`` package is launched by path. The lab's TLS is trusted the way a
pinned client trusts it: the certificate the proxy serves is verified against the stack's
CA output here, with Python's ``ssl``, and Chromium is told to accept exactly that key.
(Chromium has no switch to add a CA; its store is an NSS database, which would need
``certutil`` from another package.)
"""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import Browser, Playwright

CHROMIUM = Path("/usr/bin/chromium")

#: Headless Chromium as root on a machine with a closed network: no sandbox (root), no GPU,
#: and none of the browser's own calls out (updates, sync, QUIC probes), which are refused here.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def served_key_pin(url: str, ca_file: str) -> str:
    """The pin (base64 SHA-256 of the SubjectPublicKeyInfo) of the certificate served at ``url``,
    once the handshake has verified it against ``ca_file`` and the URL's host name."""
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 443
    context = ssl.create_default_context(cafile=ca_file)
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        served = tls.getpeercert(binary_form=True)
    if served is None:
        raise AssertionError(f"{url} served no certificate")
    certificate = x509.load_der_x509_certificate(served)
    key = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(key).digest()).decode("ascii")


def launch_chromium(playwright: Playwright, url: str, ca_file: str) -> Browser:
    """Headless Debian Chromium that trusts the lab at ``url`` (verified against ``ca_file``) and
    refuses any other certificate error."""
    if not CHROMIUM.is_file():
        raise AssertionError(f"{CHROMIUM} is missing: run tests/setup.sh (it installs Debian's chromium)")
    pin = served_key_pin(url, ca_file)
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"],
    )
