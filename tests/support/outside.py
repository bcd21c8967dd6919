"""A machine outside the lab, for checking where users' servers may connect: a network namespace
on the Docker host, joined to it by a veth pair and routed like any other network the host
reaches, with a small HTTP server answering on every address it has.

The test machines have no internet: this stands in for the company network or the internet.
Traffic to it is forwarded by the host (not delivered to the host itself) and leaves through an
interface that is not a Docker bridge, as traffic to a real outside machine does. Needs root.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.support.lab_client import wait_for

#: Answers every GET with "outside <the address it was asked at>".
SERVER = """
import http.server, socketserver, sys
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"outside {self.connection.getsockname()[0]}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", int(sys.argv[1])), Answer).serve_forever()
"""


@dataclass(frozen=True)
class Outside:
    """The outside machine: its addresses (all answering HTTP on ``port``)."""

    addresses: list[str]
    port: int

    def url(self, index: int = 0) -> str:
        return f"http://{self.addresses[index]}:{self.port}/"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def _remove(namespace: str, veth: str) -> None:
    # Deleting the namespace deletes its end of the pair, and with it the host's end.
    subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False, timeout=30)
    subprocess.run(["ip", "link", "del", veth], capture_output=True, check=False, timeout=30)


@contextmanager
def outside_machine(name: str, subnet: str, port: int = 8080) -> Iterator[Outside]:
    """An outside machine in ``subnet`` (a /29 or larger): the host takes the first address, the
    machine the next two. ``name``: at most 13 characters (it names interfaces), unique to the caller."""
    network = ipaddress.ip_network(subnet)
    host_side, *machine = (str(network[index]) for index in (1, 2, 3))
    namespace, veth, peer = f"juvini-{name}", f"{name}-h", f"{name}-m"
    _remove(namespace, veth)  # what an aborted run left
    server: subprocess.Popen[bytes] | None = None
    try:
        _ip("netns", "add", namespace)
        _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", namespace)
        _ip("addr", "add", f"{host_side}/{network.prefixlen}", "dev", veth)
        _ip("link", "set", veth, "up")
        for address in machine:
            _ip("-n", namespace, "addr", "add", f"{address}/{network.prefixlen}", "dev", peer)
        _ip("-n", namespace, "link", "set", peer, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("-n", namespace, "route", "add", "default", "via", host_side)
        server = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", SERVER, str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        outside = Outside(machine, port)
        wait_for(
            f"the outside machine's HTTP server at {outside.url()}",
            lambda: urllib.request.urlopen(outside.url(), timeout=2).status == 200,  # noqa: S310 - http on purpose
            timeout=30,
        )
        yield outside
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=30)
        _remove(namespace, veth)
