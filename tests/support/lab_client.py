"""A lab user's view over HTTPS: sign up, log in, start a server (following its progress), run code
in a kernel.

Everything goes through the proxy's HTTPS port and is verified against the stack's CA
output. Waits loop on real readiness with deadlines, never on fixed sleeps.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
import websocket

T = TypeVar("T")


class DeadlineExceeded(AssertionError):
    """A wait ran out of time; the message says what was awaited and what was last seen."""


class KernelDied(AssertionError):
    """The kernel running the code died (its server reported it restarting or dead)."""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Call ``probe`` until it returns something other than None/False, or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            result = probe()
            if result is not None and result is not False:
                return result
            last = result
        except Exception as error:  # the thing awaited may refuse connections while it starts
            last = repr(error)
        if time.monotonic() >= deadline:
            raise DeadlineExceeded(f"gave up after {timeout:.0f} s waiting for {what}; last seen: {last}")
        time.sleep(interval)


def new_api_token(session: requests.Session, base_url: str, name: str, note: str, expires_in: int = 3600) -> str:
    """An API token of hub user ``name``, asked for by its logged-in session (with the session's _xsrf)."""
    created = session.post(
        base_url.rstrip("/") + f"/hub/api/users/{name}/tokens",
        json={"note": note, "expires_in": expires_in},
        headers={"X-XSRFToken": session.cookies.get("_xsrf") or ""},
        timeout=30,
    )
    created.raise_for_status()
    return str(created.json()["token"])


@dataclass
class LabUser:
    """One person using the lab through a browser-like session, then an API token."""

    base_url: str  # e.g. https://localhost:18443/
    ca_file: str
    name: str
    password: str = field(default_factory=lambda: f"pw-{uuid.uuid4().hex}")
    session: requests.Session = field(default_factory=requests.Session)
    token: str | None = None

    def __post_init__(self) -> None:
        self.session.verify = self.ca_file
        # requests lets REQUESTS_CA_BUNDLE from the environment override session.verify.
        self.session.trust_env = False

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    def _xsrf(self, page: str) -> str:
        response = self.session.get(self.url(page), timeout=30)
        response.raise_for_status()
        token = self.session.cookies.get("_xsrf")
        if not token:
            raise AssertionError(f"{page} set no _xsrf cookie")
        return token

    def sign_up(self) -> requests.Response:
        xsrf = self._xsrf("hub/signup")
        form = {
            "_xsrf": xsrf,
            "username": self.name,
            "signup_password": self.password,
            "signup_password_confirmation": self.password,
        }
        response = self.session.post(self.url("hub/signup"), data=form, timeout=30)
        response.raise_for_status()
        return response

    def log_in(self) -> None:
        xsrf = self._xsrf("hub/login")
        form = {"_xsrf": xsrf, "username": self.name, "password": self.password}
        response = self.session.post(self.url("hub/login"), data=form, timeout=30, allow_redirects=False)
        if response.status_code not in (302, 303) or "jupyterhub-session-id" not in self.session.cookies:
            raise AssertionError(f"login of {self.name} failed: {response.status_code} {response.text[:300]}")
        self.token = new_api_token(self.session, self.base_url, self.name, "e2e")

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {}) | {"Authorization": f"token {self.token}"}
        return requests.request(method, self.url(path), headers=headers, verify=self.ca_file, timeout=60, **kwargs)

    def model(self) -> dict[str, Any]:
        response = self.api("GET", f"hub/api/users/{self.name}")
        response.raise_for_status()
        return response.json()

    def request_server(self, image_choice: str | None = None, profile: str | None = None) -> requests.Response:
        """Ask the hub to start the server (an image by its display name, or a profile by its slug);
        return its answer without waiting for the server."""
        body = {"image": image_choice} if image_choice else {}
        if profile:
            body["profile"] = profile
        return self.api("POST", f"hub/api/users/{self.name}/server", json=body)

    def start_server(
        self, image_choice: str | None = None, timeout: float = 300, profile: str | None = None
    ) -> dict[str, Any]:
        response = self.request_server(image_choice, profile)
        if response.status_code not in (201, 202):
            raise AssertionError(f"spawn for {self.name} refused: {response.status_code} {response.text[:300]}")
        return wait_for(f"{self.name}'s server to be ready", self._ready_server, timeout, interval=1)

    def _ready_server(self) -> dict[str, Any] | None:
        server = self.model().get("servers", {}).get("")
        if server and server.get("ready"):
            return server
        if server is None:
            pending = self.model().get("pending")
            if pending is None:
                raise AssertionError(f"{self.name}'s server is neither pending nor running")
        return None

    def start_server_following_progress(
        self, image_choice: str | None = None, timeout: float = 300, profile: str | None = None
    ) -> list[dict]:
        """Start the server as the spawn page does: ask for it, follow its progress event stream
        (``/hub/api/users/<name>/server/progress``) to the end; the events, the last one ready or failed."""
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            posted = pool.submit(self.request_server, image_choice, profile)
            events = wait_for(f"{self.name}'s progress events", self._progress_events, timeout, interval=0.1)
            response = posted.result(timeout=timeout)
        if response.status_code not in (201, 202):
            raise AssertionError(f"spawn for {self.name} refused: {response.status_code} {response.text[:300]}")
        return events

    def _progress_events(self) -> list[dict] | None:
        with self.api("GET", f"hub/api/users/{self.name}/server/progress", stream=True) as response:
            if response.status_code in (400, 404):  # the hub has not begun the start yet
                return None
            response.raise_for_status()
            prefix = b"data:"
            return [json.loads(line[len(prefix) :]) for line in response.iter_lines() if line.startswith(prefix)]

    def stop_server(self, timeout: float = 120) -> None:
        response = self.api("DELETE", f"hub/api/users/{self.name}/server")
        if response.status_code not in (202, 204):
            raise AssertionError(f"stop of {self.name}'s server refused: {response.status_code} {response.text[:300]}")
        wait_for(f"{self.name}'s server to stop", lambda: not self.model().get("servers"), timeout, interval=1)

    def server_api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.api(method, f"user/{self.name}/{path.lstrip('/')}", **kwargs)

    def run_code(self, code: str, kernel_name: str = "python3", timeout: float = 180) -> str:
        """Start a kernel through the server's REST API, run ``code`` over its websocket, return stdout."""
        with self.kernel(kernel_name) as run:
            return run(code, timeout)

    def run_code_streams(self, code: str, kernel_name: str = "python3", timeout: float = 180) -> dict[str, str]:
        """As :meth:`run_code`, in a fresh kernel: the text of each output stream (stdout, stderr)."""
        with self._kernel_id(kernel_name) as kernel_id:
            return self._execute(kernel_id, code, timeout)

    @contextlib.contextmanager
    def kernel(self, kernel_name: str = "python3") -> Iterator[Callable[[str, float], str]]:
        """A kernel that lives for the ``with`` block: yields ``run(code, timeout) -> stdout``."""
        with self._kernel_id(kernel_name) as kernel_id:

            def execute(code: str, timeout: float = 180) -> str:
                return self._execute(kernel_id, code, timeout)["stdout"]

            yield execute

    @contextlib.contextmanager
    def _kernel_id(self, kernel_name: str) -> Iterator[str]:
        response = self.server_api("POST", "api/kernels", json={"name": kernel_name})
        if response.status_code != 201:
            raise AssertionError(f"kernel start refused: {response.status_code} {response.text[:300]}")
        kernel_id = response.json()["id"]
        try:
            yield kernel_id
        finally:
            self.server_api("DELETE", f"api/kernels/{kernel_id}")

    def _execute(self, kernel_id: str, code: str, timeout: float) -> dict[str, str]:
        ws_url = self.url(f"user/{self.name}/api/kernels/{kernel_id}/channels").replace("https://", "wss://", 1)
        context = ssl.create_default_context(cafile=self.ca_file)
        connection = websocket.create_connection(
            ws_url,
            header=[f"Authorization: token {self.token}"],
            sslopt={"context": context},
            timeout=timeout,
        )
        try:
            message_id = uuid.uuid4().hex
            request = {
                "header": {
                    "msg_id": message_id,
                    "username": self.name,
                    "session": uuid.uuid4().hex,
                    "msg_type": "execute_request",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False, "store_history": False, "allow_stdin": False},
                "channel": "shell",
            }
            connection.send(json.dumps(request))
            streams: dict[str, list[str]] = {"stdout": [], "stderr": []}
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                message = json.loads(connection.recv())
                state = message.get("content", {}).get("execution_state")
                if message["header"]["msg_type"] == "status" and state in ("restarting", "dead"):
                    # The server's own notice (no parent): the kernel process is gone.
                    raise KernelDied(f"the kernel died running the code (its server says: {state})")
                if message.get("parent_header", {}).get("msg_id") != message_id:
                    continue
                kind = message["header"]["msg_type"]
                if kind == "stream":
                    streams.setdefault(message["content"]["name"], []).append(message["content"]["text"])
                elif kind == "error":
                    raise AssertionError("kernel error: " + "\n".join(message["content"]["traceback"])[-3000:])
                elif kind == "status" and message["content"]["execution_state"] == "idle":
                    return {name: "".join(texts) for name, texts in streams.items()}
            raise DeadlineExceeded(f"code did not finish within {timeout} s")
        finally:
            connection.close()
