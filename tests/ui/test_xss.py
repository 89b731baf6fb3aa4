"""Hostile span data is shown as text on every page and never runs (the page guard fails on any dialog).

The payloads sit in session ids, user ids, span names, attribute keys and values, tool names and
arguments, message content and project names (see ``traffic.xss_sessions``). Message content,
tool arguments and results are rendered as markdown: every payload, and a corpus aimed at
markdown (``MARKDOWN_PAYLOADS``: script links, raw HTML, entities, data: URLs, link titles,
nesting bombs), also goes through that renderer, on its own and in the browser.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import httpx
import pytest
from playwright.sync_api import Page, expect

from threadline.server.model import RequestedTool, Step, Tokens, Turn
from threadline.server.web.ui.fragments import step_views
from threadline.server.web.ui.markdown import LINK_REL, markdown, markdown_or_json
from threadline.server.web.ui.render import render

from .conftest import UiServer
from .test_markdown import assert_safe_html
from .traffic import (
    P_TD,
    PAYLOADS,
    XSS_PROJECT,
    XSS_PROJECT_NAMES,
    SessionSpec,
    TurnSpec,
    now_ns,
    send,
    xss_sessions,
)

SESSIONS = f"/projects/{XSS_PROJECT}/sessions"
MARKDOWN_PROJECT = "xss-markdown"
# Aimed at the markdown renderer: each must stay text or become a harmless element.
MARKDOWN_PAYLOADS = [
    "[x](javascript:alert('xss-md-link'))",
    "[x](JaVaScRiPt:alert('xss-md-case'))",
    "[x](<java\tscript:alert('xss-md-tab')>)",
    "[x](&#106;avascript:alert('xss-md-entity'))",
    "[x](javascript&colon;alert('xss-md-colon'))",
    "[x](%6Aavascript:alert('xss-md-percent'))",
    "<javascript:alert('xss-md-autolink')>",
    "[x][ref]\n\n[ref]: javascript:alert('xss-md-reference')",
    "[x](vbscript:msgbox('xss-md-vb'))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgneHNzLW1kLWRhdGEnKTwvc2NyaXB0Pg==)",
    "![x](data:image/svg+xml,<svg onload=alert('xss-md-svg-data')>)",
    "![x](https://evil.invalid/pixel.png)",
    "![<img src=x onerror=alert('xss-md-alt')>](https://evil.invalid/i.png)",
    "[<script>alert('xss-md-text')</script>](https://example.invalid/)",
    '[x](https://example.invalid/ "t\" onmouseover=\"alert(\'xss-md-title\')")',
    "<https://example.invalid/\" onmouseover=\"alert('xss-md-auto-attr')>",
    "<script>alert('xss-md-script')</script>",
    "<img src=x onerror=alert('xss-md-img')>",
    '<a href="javascript:alert(\'xss-md-a\')">x</a>',
    "<div onmouseover=\"alert('xss-md-div')\">\n\n**x**\n\n</div>",
    "```\"><script>alert('xss-md-fence')</script>\nbody\n```",
    "`<script>alert('xss-md-code')</script>`",
    "&lt;script&gt;alert('xss-md-escaped')&lt;/script&gt; &#60;img src=x onerror=alert(1)&#62;",
    "| a |\n|---|\n| <script>alert('xss-md-table')</script> |",
    "*" * 3000 + "a" + "_" * 3000,
    "[" * 1500 + "x" + "](javascript:alert('xss-md-bomb'))" * 10,
    "> " * 300 + "[x](javascript:alert('xss-md-deep'))",
]
EXTERNAL = re.compile(r"(https?:|mailto:)", re.IGNORECASE)


def assert_inert(page: Page) -> None:
    """No event-handler attribute exists, no link points at a script, no script element is inline.

    Links are same-origin paths, or (from markdown) http(s)/mailto links with our ``rel``.
    """
    assert page.locator("[onerror], [onload], [onmouseover], [onclick]").count() == 0
    links = page.eval_on_selector_all("a[href]", "els => els.map(e => [e.getAttribute('href'), e.rel])")
    assert links, "no links at all"
    for href, rel in links:
        assert href.startswith(("/", "#", "?")) or (EXTERNAL.match(href) and rel == LINK_REL), (href, rel)
        assert not href.startswith("//"), href
    assert page.eval_on_selector_all("script", "els => els.filter(e => !e.src).length") == 0
    assert page.locator("img").count() == 0  # the UI has no images; an <img> would be injected


@pytest.mark.browser
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


@pytest.mark.browser
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
        turn.locator("details.prompt summary").click()
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


@pytest.mark.browser
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


@pytest.mark.browser
def test_json_and_fragments_escape_too(http: httpx.Client, ui: UiServer) -> None:
    trace_id = ui.trace_ids[PAYLOADS[0]][0]
    body = http.get(f"/projects/{XSS_PROJECT}/fragments/turn/{trace_id}").text
    live = http.get(f"/projects/{XSS_PROJECT}/fragments/sessions").text
    for text in (body, live):
        assert "<script>" not in text and "<img" not in text and "<svg onload" not in text
        assert "&lt;script&gt;" in text


# --- the markdown renderer -----------------------------------------------------------------------------

FORBIDDEN_TAGS = {"script", "img", "svg", "iframe", "object", "embed", "style", "link", "meta", "base", "math"}


class _Elements(HTMLParser):
    """Every start tag with its attributes (names and decoded values)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.seen: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, attrs))


ALL_PAYLOADS = [*PAYLOADS, *XSS_PROJECT_NAMES, *MARKDOWN_PAYLOADS]


@pytest.mark.parametrize("payload", ALL_PAYLOADS)
def test_every_payload_through_markdown_is_safe(payload: str) -> None:
    for html in (markdown(payload), markdown_or_json(payload), markdown(f"**{payload}**\n\n- {payload}")):
        assert_safe_html(html)
        assert "<script" not in html.lower() and "<img" not in html.lower() and "<svg" not in html.lower()


@pytest.mark.parametrize("payload", ALL_PAYLOADS)
def test_every_payload_in_a_turn_and_its_steps_renders_as_text(payload: str) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    steps = [
        Step(kind="llm", span_id="s1", trace_id="t1", start_time=start, name=payload, latency_ms=1.0,
             model=payload, tokens=Tokens(), cost_usd=0.0, output=payload,
             tool_calls=[RequestedTool(payload, payload, payload)]),
        Step(kind="tool", span_id="s2", trace_id="t2", start_time=start + timedelta(seconds=1), name=payload,
             latency_ms=1.0, status="error", arguments=payload, result=payload),
    ]
    turn = Turn(trace_id="t1", index=0, start_time=start, end_time=start, latency_ms=1.0, user_id=payload,
                input=payload, output=payload, status="error", error=payload, tokens=Tokens(), cost_usd=0.0,
                llm_calls=[], tool_calls=[], annotations={}, trace_ids=["t1", "t2"], steps=steps)
    for html in (render("_turn.html", project="p", turn=turn),
                 render("fragments/turn.html", project="p", trace_ids=turn.trace_ids,
                        steps=step_views(steps, []))):
        elements = _Elements()
        elements.feed(html)
        elements.close()
        assert not {tag for tag, _ in elements.seen} & FORBIDDEN_TAGS, elements.seen
        assert not [name for _, attrs in elements.seen for name, _ in attrs if name.startswith("on")]
        for _, attrs in elements.seen:
            for name, value in attrs:
                if name == "href":
                    href = value or ""
                    assert href.startswith(("/", "#", "?")) or EXTERNAL.match(href), href
                    assert "javascript" not in href.lower() and not href.lower().startswith("data:"), href


@pytest.mark.browser
def test_markdown_payloads_in_bubbles_and_steps_never_run(page: Page, ui: UiServer) -> None:
    start = now_ns() - 30 * 60 * 1_000_000_000
    turns = [TurnSpec(user="mallory", question=payload, answer=payload, start_ns=start + i * 1_000_000_000,
                      tool="lookup", tool_arguments=payload, system_prompt=payload)
             for i, payload in enumerate(MARKDOWN_PAYLOADS)]
    send(ui.endpoint, MARKDOWN_PROJECT, [SessionSpec("md-corpus", turns)])
    page.goto(ui.url(f"/projects/{MARKDOWN_PROJECT}/sessions/md-corpus"))
    items = page.locator("#turns > li")
    expect(items).to_have_count(len(MARKDOWN_PAYLOADS))
    for i in range(len(MARKDOWN_PAYLOADS)):
        items.nth(i).locator("details.calls summary").click()
        expect(items.nth(i).locator(".steps > li")).to_have_count(2)  # the LLM call, then the tool
        items.nth(i).locator("details.prompt summary").click()
    expect(items.nth(0).locator(".bubble.user .text")).to_have_text(MARKDOWN_PAYLOADS[0])  # text, not a link
    expect(items.nth(16).locator(".bubble.assistant .text")).to_have_text(MARKDOWN_PAYLOADS[16])
    expect(items.nth(11).locator(".bubble.user .text a.md-image")).to_have_attribute("rel", LINK_REL)
    assert_inert(page)
