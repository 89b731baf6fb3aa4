"""One real ``threadline serve`` (SQLite) filled through OTLP, and a guarded Chromium page per test.

Every page a test opens is watched: a JavaScript dialog (an XSS payload that ran), a console
error (CSP violations are reported there), an uncaught exception or a request to anything but
127.0.0.1 fails the test at teardown.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Playwright, Request, sync_playwright

from support.databases import fresh_database
from support.server import ServerProcess, new_server

from .traffic import (
    XSS_PROJECT,
    XSS_PROJECT_NAMES,
    SessionSpec,
    long_session,
    now_ns,
    send,
    standard_sessions,
    xss_sessions,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PROJECT = "shop"


@dataclass
class UiServer:
    """The running server and what was sent to it."""

    server: ServerProcess
    sessions: list[SessionSpec]
    long: SessionSpec
    trace_ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def endpoint(self) -> str:
        return self.server.base_url + "/v1/traces"

    def url(self, path: str) -> str:
        return self.server.base_url + path


@pytest.fixture(scope="session")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    tmp = tmp_path_factory.mktemp("ui")
    with fresh_database("sqlite", tmp) as url:
        server = new_server(url, tmp / "home").start()
        try:
            now = now_ns()
            sessions, long = standard_sessions(now), long_session(now)
            ids = send(server.base_url + "/v1/traces", PROJECT, [*sessions, long])
            xss = xss_sessions(now)
            xss_ids = send(server.base_url + "/v1/traces", XSS_PROJECT, xss)
            for name in XSS_PROJECT_NAMES:
                send(server.base_url + "/v1/traces", name, xss[:1])
            state = UiServer(server, sessions, long)
            for spec, trace_ids in zip([*sessions, long, *xss], [*ids, *xss_ids], strict=True):
                state.trace_ids[spec.session_id] = trace_ids
            yield state
        finally:
            server.stop()


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError("Debian chromium is missing: run `make system-deps` (apt-get install chromium)")
    b = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    b.close()


@dataclass
class Guard:
    """What a page did that it must not do."""

    dialogs: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def on_request(self, request: Request) -> None:
        self.requests.append(request.url)
        parts = urlsplit(request.url)
        if parts.scheme not in ("http", "https") or parts.hostname != "127.0.0.1":
            self.foreign_requests.append(request.url)

    def check(self) -> None:
        assert self.dialogs == [], f"a dialog opened (script ran): {self.dialogs}"
        assert self.page_errors == [], f"uncaught page errors: {self.page_errors}"
        assert self.console_errors == [], f"console errors (CSP violation?): {self.console_errors}"
        assert self.foreign_requests == [], f"requests left 127.0.0.1: {self.foreign_requests}"


def open_page(browser: Browser, guard: Guard, **context_options: object) -> Page:
    context = browser.new_context(**context_options)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("dialog", guard.on_dialog)
    page.on("console", guard.on_console)
    page.on("pageerror", lambda error: guard.page_errors.append(str(error)))
    page.on("request", guard.on_request)
    return page


@pytest.fixture
def guard() -> Guard:
    return Guard()


@pytest.fixture
def page(browser: Browser, guard: Guard) -> Iterator[Page]:
    p = open_page(browser, guard, viewport={"width": 1280, "height": 900})
    yield p
    p.context.close()
    guard.check()


@pytest.fixture
def http(ui: UiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ui.base_url, timeout=30) as client:
        yield client
