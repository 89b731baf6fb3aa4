"""Logging into the UI in a real browser (auth on): the login page, what each role sees, logout.

A server of its own runs with ``THREADLINE_AUTH=true``; its data comes over OTLP with an admin key
made by ``threadline keys create``, its people from ``threadline users create``. A viewer sees no
write control; a member annotates (``app.js`` sends the login's CSRF token); logging out leads
back to the login page and the old cookie opens nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from support.databases import fresh_database
from support.otlp import SpanMaker, TurnSpec, export_http
from support.server import ServerProcess, new_server

from .conftest import Guard, open_page

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
