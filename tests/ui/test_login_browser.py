"""Logging into the UI in a real browser (auth on): the login page, what each role sees, logout.

A server of its own runs with ``THREADLINE_AUTH=true``; its data comes over OTLP with an admin key
made by ``threadline keys create``, its people from ``threadline users create``. A viewer sees no
write control; a member annotates (``app.js`` sends the login's CSRF token); logging out leads
back to the login page and the old cookie opens nothing. Forged requests from a logged-in browser
(no CSRF token, another origin's form) and a rebound host name are refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from support.databases import fresh_database
from support.otlp import SpanMaker, TurnSpec, export_http
from support.server import ServerProcess, new_server

from .conftest import CHROMIUM, CHROMIUM_ARGS, Guard, open_page

pytestmark = pytest.mark.browser

PROJECT = "login-shop"
SESSION = "chat-1"
PASSWORD = "correct horse battery"


@dataclass
class AuthUi:
    """The server (auth on), an admin key and the trace id of the session's one turn."""

    server: ServerProcess
    admin_key: str
    trace_id: str

    def url(self, path: str) -> str:
        return self.server.base_url + path

    @property
    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.base_url, timeout=30,
                            headers={"authorization": f"Bearer {self.admin_key}"})


def threadline(db_url: str, home: Path, *args: str, stdin: str = "") -> str:
    """Run the ``threadline`` command line; its stdout."""
    done = subprocess.run([sys.executable, "-m", "threadline", *args, "--db", db_url], input=stdin,
                          env={**os.environ, "THREADLINE_HOME": str(home)}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def auth_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthUi]:
    tmp = tmp_path_factory.mktemp("login-ui")
    with fresh_database("sqlite", tmp) as url:
        cli = tmp / "cli"
        key = threadline(url, cli, "keys", "create", "--name", "seed", "--role", "admin").strip().splitlines()[-1]
        for name, role in (("vera", "viewer"), ("max", "member")):
            threadline(url, cli, "users", "create", name, "--role", role, stdin=PASSWORD + "\n")
        server = new_server(url, tmp / "home", THREADLINE_AUTH="true").start()
        try:
            maker = SpanMaker(PROJECT)
            spans = maker.turn(TurnSpec(question="Where is my parcel?", answer="On its way.", session_id=SESSION,
                                        user_id="u-1"))
            maker.shutdown()
            assert export_http(spans, server.otlp_http_url, headers={"authorization": f"Bearer {key}"})
            state = AuthUi(server, key, format(spans[0].context.trace_id, "032x"))
            with state.api as api:
                put = api.put(f"/v1/projects/{PROJECT}/annotation-configs/tone", json={
                    "kind": "categorical", "direction": "higher_is_better",
                    "labels": [{"label": "polite", "polarity": "good", "score": 1},
                               {"label": "rude", "polarity": "bad", "score": 0}]})
                assert put.status_code == 200, put.text
                sessions = f"/v1/projects/{PROJECT}/sessions/{SESSION}"
                deadline = time.monotonic() + 30
                while api.get(sessions).status_code != 200:  # poll until the writer stored the session
                    assert time.monotonic() < deadline, "the session was not stored"
                    time.sleep(0.05)
            yield state
        finally:
            server.stop()


@pytest.fixture
def fresh_page(browser: Browser, guard: Guard) -> Iterator[Page]:
    """A page in a context of its own (no cookies). The wrong password's 401 is expected: Chromium's
    console line about it is no error of the page."""
    p = open_page(browser, guard, viewport={"width": 1280, "height": 900})
    yield p
    p.context.close()
    guard.console_errors = [m for m in guard.console_errors if "status of 401" not in m]
    guard.check()


def log_in(page: Page, name: str) -> None:
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()


def test_viewer_sees_no_write_control_and_member_annotates(fresh_page: Page, auth_ui: AuthUi) -> None:
    page = fresh_page
    session_path = f"/projects/{PROJECT}/sessions/{SESSION}"
    page.goto(auth_ui.url(session_path))
    assert page.url == auth_ui.url(f"/login?next={quote(session_path, safe='/')}")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()

    page.get_by_label("Name").fill("vera")
    page.get_by_label("Password").fill("not the password")
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    expect(page.locator("[data-login-message]")).to_have_text("Wrong name or password.")

    log_in(page, "vera")  # back to the conversation it asked for
    assert page.url == auth_ui.url(session_path)
    expect(page.locator("[data-whoami]")).to_contain_text("vera")
    expect(page.locator("[data-role]")).to_have_text("viewer")
    expect(page.locator("#turns .turn")).to_have_count(1)
    for control in ("details.annotate", "form[data-annotate]", "#annotate-form", "[data-close-session]",
                    "[data-idle-form]", "[data-state-controls]"):
        expect(page.locator(control)).to_have_count(0)

    with page.expect_navigation():
        page.get_by_role("button", name="Log out").click()
    assert page.url.startswith(auth_ui.url("/login"))
    page.goto(auth_ui.url(session_path))
    assert page.url.startswith(auth_ui.url("/login?next="))  # the old login opens nothing

    log_in(page, "max")
    assert page.url == auth_ui.url(session_path)
    expect(page.locator("[data-role]")).to_have_text("member")
    expect(page.locator("[data-close-session]")).to_be_visible()
    expect(page.locator("[data-idle-form]")).to_have_count(0)  # project settings: admins only
    page.locator("#turn-1 details.annotate summary").click()
    form = page.locator("#turn-1 form[data-annotate]")
    expect(form.locator("select[name=name] option", has_text="tone")).to_have_count(1)
    expect(form.locator("select[name=name] option", has_text="New annotation name")).to_have_count(0)
    form.locator("select[name=name]").select_option("tone")
    form.locator("select[name=label]").select_option("polite")
    with page.expect_navigation():
        form.get_by_role("button", name="Save").click()
    expect(page.locator("#turn-1 .turn-annotations .badge.note", has_text="tone")).to_contain_text("tone 1")
    with auth_ui.api as api:
        found = api.get(f"/v1/projects/{PROJECT}/annotations",
                        params={"target_kind": "trace", "target_id": auth_ui.trace_id, "name": "tone"}).json()
    assert [(n["label"], n["score"]) for n in found["data"]] == [("polite", 1.0)]

    with page.expect_navigation():
        page.get_by_role("button", name="Log out").click()
    assert page.url.startswith(auth_ui.url("/login"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


# --- what a hostile page can and cannot do with a logged-in browser ----------------------------------------

FORGED_FORM = """<!doctype html><html><body>
<form id="f" method="post" action="{action}"><input name="x" value="1"></form>
<script>document.getElementById("f").submit()</script></body></html>"""


@pytest.fixture
def hostile_site(auth_ui: AuthUi) -> Iterator[str]:
    """A page on another origin (another port of 127.0.0.1: the same *site*, so a SameSite cookie
    goes along) that posts a form to Threadline's close-session route on load."""
    action = auth_ui.url(f"/v1/projects/{PROJECT}/sessions/{SESSION}/close")
    page = FORGED_FORM.format(action=action).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def session_state(auth_ui: AuthUi) -> bool:
    with auth_ui.api as api:
        closed: bool = api.get(f"/v1/projects/{PROJECT}/sessions/{SESSION}/state").json()["closed"]
    return closed


def test_forged_requests_from_a_logged_in_browser_are_refused(browser: Browser, auth_ui: AuthUi,
                                                               hostile_site: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(auth_ui.url("/login"))
        log_in(page, "max")  # a member: closing sessions is within the role, so only CSRF defences stop it
        assert not session_state(auth_ui)
        # Same page, script without the login's CSRF token (what an injected script could try).
        status = page.evaluate("""async (url) => (await fetch(url, {method: "POST",
            headers: {"content-type": "application/json"}, body: "{}"})).status""",
                               auth_ui.url(f"/v1/projects/{PROJECT}/sessions/{SESSION}/close"))
        assert status == 403
        # Another origin's auto-submitting form: the cookie goes along, the Origin gives it away.
        with page.expect_response(lambda r: r.url.endswith(f"/sessions/{SESSION}/close")) as answer:
            page.goto(hostile_site)
        assert answer.value.status == 403
        assert not session_state(auth_ui), "the forged close did nothing"
    finally:
        context.close()


def test_a_rebound_host_name_gets_nothing(playwright_instance: Playwright, auth_ui: AuthUi) -> None:
    """DNS rebinding: evil.test resolves to 127.0.0.1, so the browser talks to Threadline with
    ``Host: evil.test`` — refused before anything is read."""
    rebinding = playwright_instance.chromium.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP evil.test 127.0.0.1"])
    try:
        page = rebinding.new_page()
        port = auth_ui.server.port
        for path in ("/login", "/v1/projects", f"/projects/{PROJECT}/sessions"):
            response = page.goto(f"http://evil.test:{port}{path}")
            assert response is not None and response.status == 400, path
            assert "THREADLINE_ALLOWED_HOSTS" in page.content()
    finally:
        rebinding.close()
