"""The spawn page as a person sees it, in a real browser: headless Debian Chromium logs in through
the hub's form, picks a profile, watches the start's steps on the spawn-pending page, lands in
JupyterLab; and a start that fails shows the user why.

Screenshots go to SCREENSHOTS (printed by each test), for a person to look at.

A start takes about two seconds, and the page reloads as soon as the server is ready; so that
the pending page is seen, and seen at a known step, the user's own ``~/.jupyter`` holds the
server's start (a config file that waits for a file the test creates): the page is captured at
"Server starting", then the server is let go. What the page shows after that, up to its reload,
is read from what it wrote in its own Event log (recorded into the tab's sessionStorage as
lines are added), not from a screenshot.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from infra import outputs
from infra.flavours import BY_NAME as FLAVOURS
from tests.e2e.conftest import Lab
from tests.support.browser import launch_chromium
from tests.support.lab_client import LabUser, wait_for

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path("/tmp/juvini-screenshots")
LAB_UID = 2100
LAB_GID = 2100
#: Milliseconds the browser waits for what a start shows (the lab's http_timeout is 180 s).
START_MS = 180_000

#: Where the spawn-pending page's Event log is recorded, each line as the page adds it.
PROGRESS_KEY = "juvini-e2e-progress-log"
RECORD_PROGRESS_LOG = """
(() => {
  if (!location.pathname.includes("/hub/spawn-pending/")) return;
  document.addEventListener("DOMContentLoaded", () => {
    const log = document.getElementById("progress-log");
    if (!log) return;
    const record = () => sessionStorage.setItem(
      KEY, JSON.stringify(Array.from(log.querySelectorAll(".progress-log-event"), (line) => line.innerText)));
    new MutationObserver(record).observe(log, {childList: true});
  });
})();
""".replace("KEY", json.dumps(PROGRESS_KEY))

#: A server config in the user's own ~/.jupyter that holds the server's start until the test
#: creates GATE beside it (it gives up waiting after two minutes).
GATE = "spawn-page-gate"
HOLD_THE_START = f"""\
# Written by tests/e2e/test_spawn_page.py: the start waits here until the test lets it go.
import time
from pathlib import Path

_gate = Path(__file__).resolve().parent / {GATE!r}
_deadline = time.monotonic() + 120
while not _gate.exists() and time.monotonic() < _deadline:
    time.sleep(0.05)
"""


@pytest.fixture(scope="module")
def browser(lab: Lab) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright, lab.url, lab.ca_file)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(60_000)
    context.add_init_script(RECORD_PROGRESS_LOG)
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    # CSS transitions (the progress bar's width) run to their end first.
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    print(f"screenshot: {path}")
    return path


def signed_up(lab: Lab, name: str) -> LabUser:
    user = lab.user(name)
    user.sign_up()
    user.log_in()  # an API token, to stop the server after
    return user


def log_in_and_submit_the_spawn_form(lab: Lab, page: Page, user: LabUser, flavour: str) -> None:
    page.goto(lab.url + "hub/login")
    page.fill("#username_input", user.name)
    page.fill("#password_input", user.password)
    page.click("#login_submit")
    page.wait_for_url(lambda url: "/hub/login" not in url)
    page.goto(lab.url + "hub/spawn")
    # One described choice per profile: the lab's profile of the flavour's image for everyone has its name.
    page.get_by_label(FLAVOURS[flavour].display_name).check()
    screenshot(page, "spawn-form")
    page.get_by_role("button", name="Start").click()


def user_server_config(lab: Lab, name: str, text: str) -> Path:
    """The user's folder as the hub would make it, with ``text`` as their own server config; its folder."""
    folder = lab.path("usersDir") / name
    config = folder / ".jupyter"
    for path in (folder, config):
        path.mkdir(mode=0o750, exist_ok=True)
        os.chown(path, LAB_UID, LAB_GID)
    (config / "jupyter_server_config.py").write_text(text, encoding="utf-8")
    return config


def hold_the_start(lab: Lab, name: str) -> Path:
    """A server config that waits for the gate; the folder the gate goes into."""
    return user_server_config(lab, name, HOLD_THE_START)


def test_the_spawn_page_shows_each_step_then_jupyterlab_opens(lab: Lab, page: Page) -> None:
    user = signed_up(lab, "watcher")
    config = hold_the_start(lab, user.name)
    image = lab.outputs[outputs.IMAGES]["base"]
    before_answer = [
        "Server requested",
        "Profile: Base: JupyterLab, Python, build tools (1 CPU, 2 GiB memory)",
        "Your persistent home folder is ready",
        "No Kerberos ticket: this lab does not use Kerberos",
        "No Windows shares to mount with your own login in this lab",
        "No Spark ports: this image has no Spark",
        f"Container created from {image}",
        "Server starting: waiting for JupyterLab to answer",
    ]
    try:
        log_in_and_submit_the_spawn_form(lab, page, user, "base")
        page.wait_for_url(re.compile(rf"/hub/spawn-pending/{user.name}\b"))
        page.get_by_text("Event log", exact=True).click()  # open the details, as a curious user would
        lines = page.locator("#progress-log .progress-log-event")
        expect(lines).to_have_text(before_answer, timeout=START_MS)
        expect(page.locator("#progress-message")).to_have_text(before_answer[-1])
        expect(page.locator("#progress-bar")).to_have_attribute("aria-valuenow", "70")
        expect(page.locator("#progress-log")).to_be_visible()
        screenshot(page, "spawn-pending")
        bar, track = page.locator("#progress-bar").bounding_box(), page.locator(".progress").bounding_box()
        assert bar and track and abs(bar["width"] / track["width"] - 0.70) < 0.02, (bar, track)

        (config / GATE).touch()  # the server may start now
        page.wait_for_url(re.compile(rf"/user/{user.name}/lab(/|\?|$)"), timeout=START_MS)
        expect(page.locator(".jp-Launcher")).to_be_visible(timeout=START_MS)
        screenshot(page, "jupyterlab")

        shown = json.loads(page.evaluate(f"sessionStorage.getItem({PROGRESS_KEY!r})") or "[]")
        print("the page's event log:", *shown, sep="\n  ")
        assert shown[: len(before_answer)] == before_answer, shown
        assert len(shown) == len(before_answer) + 2, shown
        assert re.fullmatch(r"Server answering after \d+\.\d s", shown[-2]), shown
        assert shown[-1] == f"Server ready at /user/{user.name}/", shown
        assert not any(re.search(r"<\w|&\w+;", line) for line in shown), f"markup shown as text: {shown}"
    finally:
        (config / "jupyter_server_config.py").unlink(missing_ok=True)
        (config / GATE).unlink(missing_ok=True)
        if user.model().get("servers"):
            user.stop_server()


def test_a_start_that_fails_tells_the_user_why_in_the_page(lab: Lab, page: Page) -> None:
    """The image the user picked has gone from the Docker host (removed by hand, not built yet)."""
    user = signed_up(lab, "unlucky")
    image = lab.outputs[outputs.IMAGES]["base"]
    repository, tag = image.rsplit(":", 1)
    held = ("juvini-e2e-held", user.name)  # keeps the image while its name is gone
    lab.docker.images.get(image).tag(*held)
    lab.docker.images.remove(image, noprune=True)
    try:
        log_in_and_submit_the_spawn_form(lab, page, user, "base")
        why = (
            f"The image {image} is not on the Docker host, so your server cannot start. "
            "Ask an admin to run pulumi up, which builds the lab's images."
        )
        # Within its first second the hub answers the form with it; later, the pending page shows it.
        expect(page.get_by_text(why).first).to_be_visible(timeout=START_MS)
        screenshot(page, "spawn-failed")
        text = page.locator("body").inner_text()
        assert not re.search(r"<\w|&\w+;", text), f"markup shown as text: {text}"
        assert not user.model().get("servers"), "a failed start leaves no server"
    finally:
        lab.docker.images.get(":".join(held)).tag(repository, tag)
        lab.docker.images.remove(":".join(held), noprune=True)


def test_a_server_that_crashes_while_starting_fails_at_once_saying_so(lab: Lab) -> None:
    """A user's own broken server config kills the server: the start fails within seconds (not after
    http_timeout, 180 s here) with a message for the user, and starts again once the config is fixed."""
    user = signed_up(lab, "crasher")
    config = user_server_config(lab, user.name, "raise SystemExit(3)  # a broken config of the user's own\n")
    try:
        began = time.monotonic()
        response = user.request_server(FLAVOURS["base"].display_name)
        if response.status_code in (201, 202):  # still starting after the hub's 10 s: follow the events
            events = wait_for("the failed start's events", user._progress_events, 60, interval=0.2)
            assert events[-1].get("failed"), events
            message = events[-1]["message"]
        else:  # failed within the 10 s the hub waits before answering
            message = response.json()["message"]
        # Well before the http_timeout (180 s) a server that never answers would take.
        assert time.monotonic() - began < 60
        assert "Your server stopped while starting" in message, message
        wait_for("no server left after the failed start", lambda: not user.model().get("servers"), 60)
    finally:
        (config / "jupyter_server_config.py").unlink(missing_ok=True)
    user.start_server(FLAVOURS["base"].display_name)
    user.stop_server()
