"""Conversation page conveniences: keys between turns, copy a message, the session's state and idle timeout.

Against the real server of ``conftest.ui`` in Chromium; every page is guarded (no dialog, no
console error, so no CSP violation, no request leaving 127.0.0.1). The long session of
``traffic.long_session`` (130 turns, 100 per page) has its only failed turn at #58.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from threadline.server.web.ui.render import duration

from .conftest import PROJECT, Guard, UiServer, open_page
from .traffic import SECOND, SessionSpec, TurnSpec, now_ns, send

pytestmark = pytest.mark.browser

KEYS_PROJECT = "keys-lab"
SETTINGS_PROJECT = "keys-settings"
LONG = f"/projects/{PROJECT}/sessions/long-session"
# Markdown whose rendered text differs from its source: the clipboard must get the source.
QUESTION = "Please **compare** these:\n\n- `alpha` <b>\n- [beta](https://example.invalid/b)\n\nthanks"
ANSWER = "# Verdict\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n> *quoted* & done"


def page_class(name: str) -> re.Pattern[str]:
    """A class-list matcher for ``to_have_class``: ``name`` among the element's classes."""
    return re.compile(rf"(^|\s){re.escape(name)}(\s|$)")


def _wait_for_turns(http: httpx.Client, project: str, session_id: str, turns: int) -> dict[str, Any]:
    """The session once all its exported turns are stored (bounded poll on the REST API)."""
    deadline = time.monotonic() + 30
    url = f"/v1/projects/{project}/sessions/{quote(session_id, safe='')}"
    while True:
        response = http.get(url)
        if response.status_code == 200 and len(response.json()["turns"]) >= turns:
            body: dict[str, Any] = response.json()
            return body
        assert time.monotonic() < deadline, f"{session_id} not stored in time: {response.status_code}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def keys_data(ui: UiServer) -> None:
    start = now_ns() - 300 * SECOND
    specs = [
        SessionSpec("copy-me", [TurnSpec("ana", QUESTION, ANSWER, start),
                                TurnSpec("ana", "plain follow-up", "plain reply", start + 5 * SECOND)]),
        SessionSpec("close-me", [TurnSpec("bo", "hello", "hi", start + 20 * SECOND),
                                 TurnSpec("bo", "bye", "see you", start + 25 * SECOND)]),
    ]
    send(ui.endpoint, KEYS_PROJECT, specs)
    send(ui.endpoint, SETTINGS_PROJECT, [SessionSpec("tune-me", [TurnSpec("cy", "q", "a", start)])])
    with httpx.Client(base_url=ui.base_url, timeout=30) as http:
        for spec in specs:
            _wait_for_turns(http, KEYS_PROJECT, spec.session_id, len(spec.turns))
        _wait_for_turns(http, SETTINGS_PROJECT, "tune-me", 1)


@pytest.fixture
def clipboard_page(browser: Browser, guard: Guard) -> Iterator[Page]:
    p = open_page(browser, guard, viewport={"width": 1280, "height": 900},
                  permissions=["clipboard-read", "clipboard-write"])
    yield p
    p.context.close()
    guard.check()


def _top(page: Page, selector: str) -> float:
    box = page.locator(selector).bounding_box()
    assert box is not None, selector
    return float(box["y"])


# --- keys ------------------------------------------------------------------------------------------

def test_j_and_k_move_focus_scroll_and_outline(page: Page, ui: UiServer) -> None:
    page.goto(ui.url(LONG))
    bar = page.locator("[data-keys]")
    expect(bar).to_be_visible()
    expect(bar.locator("[aria-keyshortcuts=j]")).to_contain_text("next")
    expect(bar.locator("[aria-keyshortcuts=k]")).to_be_visible()
    expect(bar.locator("[aria-keyshortcuts=b]")).to_be_visible()
    assert page.evaluate("window.scrollY") == 0

    page.keyboard.press("j")
    expect(page.locator("#turn-1")).to_be_focused()
    expect(page.locator("#turn-1")).to_have_class(page_class("current"))
    for _ in range(11):
        page.keyboard.press("j")
    current = page.locator("#turn-12")
    expect(current).to_be_focused()
    expect(current).to_be_in_viewport()
    expect(page.locator("#turn-1")).not_to_be_in_viewport()
    assert page.evaluate("window.scrollY") > 0
    assert 0 <= _top(page, "#turn-12") < 150  # scrolled to the top of the window (below the top bar)
    expect(page.locator("#turns > li.current")).to_have_count(1)
    outline = page.locator("#turn-12").evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline == "solid"

    page.keyboard.press("k")
    page.keyboard.press("k")
    expect(page.locator("#turn-10")).to_be_focused()
    expect(page.locator("#turn-10")).to_have_attribute("aria-current", "true")
    expect(page.locator("#turns > li.current")).to_have_count(1)
    expect(page.locator("#turn-12")).not_to_have_class(page_class("current"))

    # While typing in a field the keys are text, not commands.
    page.locator(".idle-timeout summary").click()
    field = page.locator("form[data-idle-form] input[name=idle_timeout_seconds]")
    field.fill("")
    field.press_sequentially("jkb")
    expect(field).to_have_value("jkb")
    expect(page.locator("#turn-10")).to_have_class(page_class("current"))
    assert "at=" not in page.url


def test_j_at_the_last_loaded_turn_offers_more_turns(page: Page, ui: UiServer) -> None:
    page.goto(ui.url(LONG + "#turn-100"))
    expect(page.locator("#turn-100")).to_have_class(page_class("current"))
    page.keyboard.press("j")
    expect(page.locator("a[data-more]")).to_be_focused()
    expect(page.locator("[data-keys-status]")).to_contain_text("load more")


def test_b_jumps_to_the_broken_turn_on_this_page(page: Page, ui: UiServer) -> None:
    page.goto(ui.url(LONG))
    expect(page.locator("[data-breakdown]")).to_have_attribute("data-breakdown", "58")
    url = page.url
    page.keyboard.press("b")
    broken = page.locator("#turn-58")
    expect(broken).to_be_focused()
    expect(broken).to_have_class(page_class("broken"))
    expect(broken).to_be_in_viewport()
    assert page.url == url  # no navigation: the turn was loaded


def test_b_opens_the_page_of_turns_that_holds_the_broken_turn(page: Page, ui: UiServer) -> None:
    page.goto(ui.url(LONG + "?at=100"))
    expect(page.locator("#turn-101")).to_be_attached()
    expect(page.locator("#turn-58")).to_have_count(0)
    page.keyboard.press("b")
    page.wait_for_url("**/long-session?at=57#turn-58")
    broken = page.locator("#turn-58")
    expect(broken).to_be_focused()
    expect(broken).to_have_class(page_class("current"))
    expect(broken).to_be_in_viewport()
    expect(broken.locator(".badge.breaks")).to_be_visible()
    expect(page.locator("#turns > li").first).to_have_attribute("id", "turn-58")
    page.keyboard.press("k")  # the first turn of this page: earlier turns live on the first page
    expect(page.locator("[data-keys-status]")).to_contain_text("first page")
    page.keyboard.press("j")
    expect(page.locator("#turn-59")).to_be_focused()


def test_b_without_a_broken_turn_says_so_and_help_toggles(page: Page, ui: UiServer, keys_data: None) -> None:
    page.goto(ui.url(f"/projects/{KEYS_PROJECT}/sessions/close-me"))
    expect(page.locator("[data-breakdown]")).to_have_count(0)
    page.keyboard.press("b")
    expect(page.locator("[data-keys-status]")).to_have_text("No turn of this session is broken.")
    assert "at=" not in page.url

    help_box = page.locator("#keys-help")
    expect(help_box).to_be_hidden()
    page.keyboard.press("?")
    expect(help_box).to_be_visible()
    expect(help_box).to_contain_text("first broken turn")
    expect(page.locator("[data-key-action=help]")).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Escape")
    expect(help_box).to_be_hidden()
    page.locator("[data-key-action=help]").click()
    expect(help_box).to_be_visible()


# --- copy ------------------------------------------------------------------------------------------

def test_copy_puts_the_original_text_on_the_clipboard(clipboard_page: Page, ui: UiServer, keys_data: None) -> None:
    page = clipboard_page
    page.goto(ui.url(f"/projects/{KEYS_PROJECT}/sessions/copy-me"))
    first = page.locator("#turn-1")
    expect(first.locator(".bubble.user .text strong")).to_have_text("compare")  # rendered as markdown
    user_copy = first.locator(".bubble.user button.copy-msg")
    expect(user_copy).to_be_visible()
    user_copy.click()
    expect(user_copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == QUESTION

    reply_copy = first.locator(".bubble.assistant button.copy-msg")
    reply_copy.click()
    expect(reply_copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == ANSWER
    expect(reply_copy).to_have_text("Copy", timeout=5000)  # the confirmation goes away

    page.locator("#turn-2 .bubble.assistant button.copy-msg").click()
    assert page.evaluate("navigator.clipboard.readText()") == "plain reply"


# --- session state ---------------------------------------------------------------------------------

def test_close_the_session_from_the_page(page: Page, ui: UiServer, http: httpx.Client, keys_data: None) -> None:
    state_url = f"/v1/projects/{KEYS_PROJECT}/sessions/close-me/state"
    assert http.get(state_url).json()["closed"] is False
    page.goto(ui.url(f"/projects/{KEYS_PROJECT}/sessions/close-me"))
    state = page.locator("#session-state")
    expect(state.locator("[data-session-state]")).to_have_text("open")
    settings = http.get(f"/v1/projects/{KEYS_PROJECT}/settings").json()
    expect(state.locator("[data-idle-text]")).to_have_text(
        duration(settings["effective_idle_timeout_seconds"] * 1000) if settings["effective_idle_timeout_seconds"]
        else "never")

    state.get_by_role("button", name="Close session").click()
    expect(state.locator("[data-session-state]")).to_have_text("closed")
    expect(state.locator("[data-state-status]")).to_have_text("Session closed.")
    body = http.get(state_url).json()
    assert body["closed"] is True
    since = body["closed_at"].replace("T", " ")[:19]
    expect(state.locator("[data-state-since]")).to_have_text(f"since {since} UTC")
    expect(state.get_by_role("button", name="Close session")).to_have_count(0)

    page.reload()
    expect(state.locator("[data-session-state]")).to_have_text("closed")
    expect(state.locator("[data-state-since]")).to_have_text(f"since {since} UTC")
    expect(state.get_by_role("button", name="Close session")).to_have_count(0)


def test_close_shows_the_api_error_inline(page: Page, guard: Guard, ui: UiServer, http: httpx.Client,
                                          keys_data: None) -> None:
    page.goto(ui.url(f"/projects/{KEYS_PROJECT}/sessions/copy-me"))
    state = page.locator("#session-state")
    expect(state.locator("[data-session-state]")).to_have_text("open")
    # Aim the button at a session the server does not have: its real 404 must show in place.
    missing = f"/v1/projects/{KEYS_PROJECT}/sessions/no-such-session/close"
    refused = http.post(missing, json={})
    assert refused.status_code == 404
    state.evaluate("(el, url) => { el.dataset.closeUrl = url; }", missing)
    state.get_by_role("button", name="Close session").click()
    status = state.locator("[data-state-status]")
    expect(status).to_have_text(refused.json()["error"]["message"])
    expect(status).to_have_class(page_class("err"))
    expect(state.get_by_role("button", name="Close session")).to_be_enabled()
    expect(state.locator("[data-session-state]")).to_have_text("open")
    assert http.get(f"/v1/projects/{KEYS_PROJECT}/sessions/copy-me/state").json()["closed"] is False
    # The browser logs the refused fetch; that one 404 is expected, anything else still fails the test.
    logged = "Failed to load resource: the server responded with a status of 404 (Not Found)"
    assert guard.console_errors.count(logged) == 1
    guard.console_errors[:] = [e for e in guard.console_errors if e != logged]


def test_set_the_idle_timeout_from_the_page(page: Page, guard: Guard, ui: UiServer, http: httpx.Client,
                                            keys_data: None) -> None:
    settings_url = f"/v1/projects/{SETTINGS_PROJECT}/settings"
    reset = http.put(settings_url, json={"idle_timeout_seconds": None, "online_evaluators": ["errors"]})
    assert reset.status_code == 200
    page.goto(ui.url(f"/projects/{SETTINGS_PROJECT}/sessions/tune-me"))
    state = page.locator("#session-state")
    expect(state.locator("[data-idle-source]")).to_have_text("(server default)")
    state.locator(".idle-timeout summary").click()
    field = state.locator("input[name=idle_timeout_seconds]")
    field.fill("5400")
    state.get_by_role("button", name="Save").click()
    expect(state.locator("[data-state-status]")).to_have_text(f"Saved: idle timeout {duration(5400 * 1000)}.")
    expect(state.locator("[data-idle-text]")).to_have_text(duration(5400 * 1000))
    expect(state.locator("[data-idle-source]")).to_have_text("(project setting)")
    expect(state.locator("[data-closes-at]")).to_contain_text("closes by itself about")  # 5400 s after activity
    saved = http.get(settings_url).json()
    assert saved["idle_timeout_seconds"] == 5400
    assert saved["online_evaluators"] == ["errors"]  # PUT replaces: the page sent them back

    page.reload()
    expect(state.locator("[data-idle-text]")).to_have_text(duration(5400 * 1000))
    expect(state.locator("input[name=idle_timeout_seconds]")).to_have_value("5400")

    # A refused value: the API's message, inline, and nothing changes.
    refused = http.put(settings_url, json={"idle_timeout_seconds": -3, "online_evaluators": ["errors"]})
    assert refused.status_code == 400
    state.locator(".idle-timeout summary").click()
    field.fill("-3")
    state.get_by_role("button", name="Save").click()
    status = state.locator("[data-state-status]")
    expect(status).to_have_text(refused.json()["error"]["message"])
    expect(status).to_have_class(page_class("err"))
    assert http.get(settings_url).json()["idle_timeout_seconds"] == 5400
    logged = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    assert guard.console_errors.count(logged) == 1
    guard.console_errors[:] = [e for e in guard.console_errors if e != logged]

    # Empty: back to the server default.
    field.fill("")
    state.get_by_role("button", name="Save").click()
    expect(state.locator("[data-idle-source]")).to_have_text("(server default)")
    assert http.get(settings_url).json()["idle_timeout_seconds"] is None
