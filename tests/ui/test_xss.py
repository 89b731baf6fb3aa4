"""Hostile span data is shown as text on every page and never runs (the page guard fails on any dialog).

The payloads sit in session ids, user ids, span names, attribute keys and values, tool names and
arguments, message content and project names (see ``traffic.xss_sessions``).
"""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from .conftest import UiServer
from .traffic import P_TD, PAYLOADS, XSS_PROJECT, XSS_PROJECT_NAMES, now_ns, send, xss_sessions

pytestmark = pytest.mark.browser

SESSIONS = f"/projects/{XSS_PROJECT}/sessions"


def assert_inert(page: Page) -> None:
    """No event-handler attribute exists, no link points at a script, no script element is inline."""
    assert page.locator("[onerror], [onload], [onmouseover], [onclick]").count() == 0
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    assert hrefs and all(h.startswith(("/", "#", "?")) for h in hrefs), hrefs
    assert page.eval_on_selector_all("script", "els => els.filter(e => !e.src).length") == 0
    assert page.locator("img").count() == 0  # the UI has no images; an <img> would be injected


def test_sessions_page_shows_payload_ids_as_text(page: Page, ui: UiServer) -> None:
    page.goto(ui.url(SESSIONS))
    for payload in PAYLOADS:
        expect(page.locator("td.id").get_by_role("link", name=payload, exact=True)).to_be_visible()
        expect(page.locator("td.users").get_by_role("link", name=payload, exact=True)).to_be_visible()
        expect(page.locator("td.text", has_text=f"{payload} asks").first).to_be_visible()
    assert_inert(page)
    page.locator("td.text").first.hover()  # the attribute-breakout payload lives in title attributes
    page.wait_for_timeout(2500)  # let one live poll swap the rows in (fragment rendering)
    assert_inert(page)


def test_conversation_trace_and_user_pages_show_payloads_as_text(page: Page, ui: UiServer) -> None:
    for i, payload in enumerate(PAYLOADS):
        other = PAYLOADS[(i + 1) % len(PAYLOADS)]
        page.goto(ui.url(SESSIONS))
        page.locator("td.id").get_by_role("link", name=payload, exact=True).click()
        expect(page.locator("h1")).to_have_text(payload)
        turn = page.locator("#turns > li").first
        expect(turn.locator(".bubble.user .text")).to_have_text(f"{payload} asks")
        expect(turn.locator(".bubble.user .who")).to_have_text(other)
        expect(turn.locator(".bubble.assistant .text")).to_have_text(f"{other} answers")
        turn.locator("details.calls summary").click()
        expect(turn.locator(".message.role-system .text")).to_have_text(payload)
        expect(turn.locator(".call.tool header strong")).to_have_text(payload)
        expect(turn.locator(".call.tool pre").first).to_contain_text(other.replace('"', '\\"'))
        assert_inert(page)

        turn.get_by_role("link", name="Trace →").click()
        expect(page.locator("table.spans td.name").first).to_have_text(payload)
        expect(page.locator("#span-detail h2")).to_have_text(payload)
        attributes = page.locator("#span-detail pre.json").last
        expect(attributes).to_contain_text(payload.replace('"', '\\"'))  # as a key and as a value
        expect(attributes).to_contain_text(f"key.{other}".replace('"', '\\"'))
        page.locator("table.spans tbody tr").nth(1).get_by_role("link").click()
        expect(page.locator("#span-detail h2")).to_have_text(other)
        assert_inert(page)

        page.goto(ui.url(f"/projects/{XSS_PROJECT}/users"))
        page.locator("td.id").get_by_role("link", name=other, exact=True).click()
        expect(page.locator("h1")).to_have_text(other)
        expect(page.locator("td.id").get_by_role("link", name=payload, exact=True)).to_be_visible()
        assert_inert(page)


def test_project_names_are_text_in_the_picker_and_the_list(page: Page, ui: UiServer) -> None:
    send(ui.endpoint, P_TD, xss_sessions(now_ns())[:1])  # a name with "/": listed as text (it cannot be a path segment)
    page.goto(ui.url("/"))
    for name in [*XSS_PROJECT_NAMES, P_TD]:
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    assert_inert(page)
    for name in XSS_PROJECT_NAMES:
        page.goto(ui.url("/"))
        page.get_by_role("link", name=name, exact=True).click()
        expect(page.get_by_role("heading", name="Sessions")).to_be_visible()
        expect(page.locator("select[data-nav] option:checked")).to_have_text(name)
        assert name in page.title()
        assert_inert(page)


def test_json_and_fragments_escape_too(http: httpx.Client, ui: UiServer) -> None:
    trace_id = ui.trace_ids[PAYLOADS[0]][0]
    body = http.get(f"/projects/{XSS_PROJECT}/fragments/turn/{trace_id}").text
    live = http.get(f"/projects/{XSS_PROJECT}/fragments/sessions").text
    for text in (body, live):
        assert "<script>" not in text and "<img" not in text and "<svg onload" not in text
        assert "&lt;script&gt;" in text
