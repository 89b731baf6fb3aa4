"""Every page in Chromium: projects, sessions (sort, filter, search, paging), a conversation, a trace, users."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from .conftest import PROJECT, Guard, UiServer, open_page
from .traffic import SEARCH_WORD

pytestmark = pytest.mark.browser

SESSIONS = f"/projects/{PROJECT}/sessions"


def column(page: Page, index: int) -> list[str]:
    """The text of one column of the sessions table (1-based, as in CSS nth-child)."""
    return page.locator(f"#sessions-table tbody tr td:nth-child({index})").all_inner_texts()


def session_ids(page: Page) -> list[str]:
    return column(page, 1)


def stat(page: Page, label: str) -> str:
    return page.locator(".stat", has=page.locator("dt", has_text=re.compile(f"^{label}$", re.I))).locator(
        "dd").inner_text()


def test_projects_page_links_to_the_sessions_of_a_project(page: Page, ui: UiServer) -> None:
    page.goto(ui.url("/"))
    expect(page).to_have_title(re.compile("Projects"))
    row = page.locator("tr", has=page.get_by_role("link", name=PROJECT, exact=True))
    expect(row.locator("td").nth(1)).to_have_text(str(len(ui.sessions) + 1))
    page.get_by_role("link", name=PROJECT, exact=True).click()
    expect(page).to_have_url(ui.url(SESSIONS))
    expect(page.get_by_role("heading", name="Sessions")).to_be_visible()


def test_sessions_header_numbers_match_what_was_sent(page: Page, ui: UiServer) -> None:
    page.goto(ui.url(SESSIONS))
    every = [*ui.sessions, ui.long]
    assert stat(page, "Sessions") == f"{len(every):,}"
    assert stat(page, "Turns") == f"{sum(len(s.turns) for s in every):,}"
    assert stat(page, "Users") == str(len({u for s in every for u in s.users}))
    failed = sum(s.errors for s in every)
    assert stat(page, "Error rate") == f"{failed / sum(len(s.turns) for s in every) * 100:.1f}%"
    assert page.locator("#chart svg rect.bar").count() == 48
    assert page.locator("#chart svg polyline.line").count() == 1


def test_sort_by_clicking_column_headers(page: Page, ui: UiServer) -> None:
    page.goto(ui.url(SESSIONS))
    page.locator("th a[data-sort=turns]").click()
    expect(page).to_have_url(re.compile(r"sort=turns&order=desc"))
    turns = [int(t.replace(",", "")) for t in column(page, 7)]
    assert turns == sorted(turns, reverse=True) and turns[0] == len(ui.long.turns)
    assert session_ids(page)[0] == "long-session"
    expect(page.locator("th[aria-sort=descending]")).to_contain_text("Turns")
    page.locator("th a[data-sort=turns]").click()
    expect(page).to_have_url(re.compile(r"sort=turns&order=asc"))
    turns = [int(t.replace(",", "")) for t in column(page, 7)]
    assert turns == sorted(turns) and turns[0] == 1
    for sort, index in (("errors", 10), ("cost", 9)):
        page.locator(f"th a[data-sort={sort}]").click()
        expect(page.locator(f"th a[data-sort={sort}]")).to_contain_text("▼")
        values = [float(re.sub(r"[^0-9.]", "", v) or 0) for v in column(page, index)]
        assert values == sorted(values, reverse=True), sort


def test_filters_live_in_the_url_and_combine(page: Page, ui: UiServer, browser: Browser) -> None:
    page.goto(ui.url(SESSIONS))
    page.locator("select[name=has_error]").select_option("true")
    page.locator("input[name=min_turns]").fill("2")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"has_error=true"))
    query = parse_qs(urlsplit(page.url).query)
    assert query == {"has_error": ["true"], "min_turns": ["2"]}  # empty fields stay out of the URL
    every = [*ui.sessions, ui.long]
    expected = {s.session_id for s in every if s.errors and len(s.turns) >= 2}
    assert set(session_ids(page)) == expected
    assert all(int(e) > 0 for e in column(page, 10))
    shared_url = page.url
    other_guard = Guard()
    other = open_page(browser, other_guard)
    other.goto(shared_url)  # a shared link shows the same view
    assert set(session_ids(other)) == expected
    expect(other.locator("select[name=has_error]")).to_have_value("true")
    other.context.close()
    other_guard.check()

    page.goto(ui.url(SESSIONS))
    page.locator("input[name=user_id_contains]").fill("USER-SHAR")  # a part of an id, any case
    page.locator("input[name=user_id_contains]").press("Enter")
    assert set(session_ids(page)) == {s.session_id for s in every if any("user-shar" in u.lower() for u in s.users)}


def test_time_range_preset(page: Page, ui: UiServer) -> None:
    page.goto(ui.url(SESSIONS))
    page.locator("select[name=range]").select_option("1h")  # a preset applies at once
    expect(page).to_have_url(re.compile(r"range=1h"))
    assert set(session_ids(page)) == {"sess-000", "long-session"}
    expect(page.locator("label.custom-time").first).to_be_hidden()
    page.locator("select[name=range]").select_option("custom")
    expect(page.locator("label.custom-time").first).to_be_visible()


def test_search_finds_a_word_of_a_later_turn(page: Page, ui: UiServer) -> None:
    page.goto(ui.url(SESSIONS))
    page.get_by_role("searchbox", name="Search messages").fill(SEARCH_WORD)
    page.get_by_role("searchbox", name="Search messages").press("Enter")
    expect(page).to_have_url(re.compile(f"q={SEARCH_WORD}"))
    assert session_ids(page) == ["sess-017"]
    assert stat(page, "Sessions") == "1"
    first_input = column(page, 3)[0]
    assert SEARCH_WORD not in first_input  # found in the third turn, not the first input
    page.get_by_role("link", name="sess-017", exact=True).click()  # the conversation opens at the hit
    expect(page.locator(".search-hits")).to_contain_text("found in 1 turn of this session: #3")
    expect(page.locator("#turns > li.match")).to_have_count(1)
    expect(page.locator("#turn-3 mark")).to_have_text(SEARCH_WORD)
    expect(page.locator("#turn-3")).to_be_in_viewport()


def test_keyset_pagination_walks_every_session_once(page: Page, ui: UiServer, http: httpx.Client) -> None:
    page.goto(ui.url(SESSIONS + "?limit=10&sort=tokens"))
    seen: list[str] = []
    pages = 0
    while True:
        ids = session_ids(page)
        assert 0 < len(ids) <= 10
        seen.extend(ids)
        pages += 1
        following = page.get_by_role("link", name="Next page »")
        if following.count() == 0:
            break
        following.click()
        expect(page.get_by_role("link", name="« First page")).to_be_visible()
    api = http.get(f"/v1/projects/{PROJECT}/sessions", params={"limit": 1000, "sort": "tokens"}).json()["data"]
    assert seen == [s["session_id"] for s in api]
    assert len(set(seen)) == len(ui.sessions) + 1 and pages == 5


def test_conversation_view_shows_turns_errors_and_expands_calls(page: Page, ui: UiServer) -> None:
    spec = next(s for s in ui.sessions if s.session_id == "sess-012")  # 3 turns, first failed with a tool
    page.goto(ui.url(SESSIONS))
    page.get_by_role("link", name="sess-012", exact=True).click()
    expect(page.get_by_role("heading", name="sess-012")).to_be_visible()
    turns = page.locator("#turns > li")
    expect(turns).to_have_count(len(spec.turns))
    for n, turn in enumerate(spec.turns):
        item = turns.nth(n)
        expect(item.locator(".bubble.user .text")).to_have_text(turn.question)
        expect(item.locator(".bubble.user .who")).to_have_text(turn.user)
        expect(item.locator(".bubble.assistant .text")).to_have_text(turn.answer)
    expect(turns.nth(0).locator(".turn-error")).to_contain_text("model timed out")
    expect(turns.nth(0).locator(".badge.err")).to_be_visible()
    expect(page.locator("#strip rect")).to_have_count(len(spec.turns))
    expect(page.locator("#strip rect.error")).to_have_count(1)
    assert stat(page, "Turns") == str(len(spec.turns))

    turns.nth(0).locator("details.calls summary").click()
    calls = turns.nth(0).locator(".call-list")
    expect(calls.locator(".call.llm")).to_have_count(1)
    expect(calls.locator(".call.llm header")).to_contain_text("gpt-4o-mini")
    expect(calls.locator(".message.role-system .text")).to_have_text("You are a helpful assistant.")
    expect(calls.locator(".message.role-user .text")).to_have_text(spec.turns[0].question)
    expect(calls.locator(".call.tool header")).to_contain_text("get_weather")
    expect(calls.locator(".call.tool pre").first).to_contain_text('"city": "Paris"')

    turns.nth(0).get_by_role("link", name="Trace →").click()
    expect(page).to_have_url(re.compile(f"/traces/{ui.trace_ids['sess-012'][0]}$"))


def test_long_session_loads_more_turns_lazily(page: Page, ui: UiServer) -> None:
    page.goto(ui.url(f"{SESSIONS}/long-session"))
    turns = page.locator("#turns > li")
    expect(turns).to_have_count(100)
    expect(page.locator("#strip rect")).to_have_count(len(ui.long.turns))  # the strip shows every turn
    expect(page.locator("#strip rect.error")).to_have_count(1)
    page.get_by_role("link", name="Load more turns").click()
    expect(turns).to_have_count(len(ui.long.turns))
    expect(page.get_by_role("link", name="Load more turns")).to_have_count(0)
    expect(page.locator("#turn-130 .bubble.user .text")).to_have_text("long question 129")
    expect(page.locator("#turn-58")).to_have_class(re.compile("failed"))
    page.locator("#strip a[href='#turn-58']").click()
    expect(page).to_have_url(re.compile("#turn-58$"))


def test_trace_view_tree_and_span_details(page: Page, ui: UiServer) -> None:
    trace_id = ui.trace_ids["sess-012"][0]
    page.goto(ui.url(f"/projects/{PROJECT}/traces/{trace_id}"))
    rows = page.locator("table.spans tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0).locator("td.name")).to_have_text("chat turn")
    expect(rows.nth(1).locator("td.name")).to_have_class(re.compile("depth-1"))
    expect(page.locator("#span-detail h2")).to_have_text("chat turn")
    expect(page.locator("#span-detail")).to_contain_text('"session.id": "sess-012"')
    rows.nth(1).get_by_role("link").click()
    expect(page.locator("#span-detail h2")).to_have_text("ChatCompletion")
    expect(page).to_have_url(re.compile(r"\?span="))
    detail = page.locator("#span-detail")
    expect(detail.locator(".exception")).to_contain_text("TimeoutError")
    expect(detail.locator(".exception .stack")).to_contain_text("Traceback")
    expect(detail.locator(".messages .role-system")).to_contain_text("You are a helpful assistant.")
    expect(detail.locator("pre.json").last).to_contain_text('"llm.model_name": "gpt-4o-mini"')
    expect(rows.nth(1)).to_have_class(re.compile("selected"))
    page.get_by_role("link", name="sess-012").click()
    expect(page).to_have_url(ui.url(f"{SESSIONS}/sess-012"))


def test_users_sort_search_and_user_page(page: Page, ui: UiServer, http: httpx.Client) -> None:
    page.goto(ui.url(f"/projects/{PROJECT}/users"))
    page.locator("th a[data-sort=sessions]").click()
    api = http.get(f"/v1/projects/{PROJECT}/users", params={"sort": "sessions"}).json()["data"]
    names = page.locator("#users-table tbody td.id").all_inner_texts()
    assert names == [u["user_id"] for u in api]
    page.get_by_role("searchbox", name="Search users").fill("bob")
    page.get_by_role("searchbox", name="Search users").press("Enter")
    expect(page.locator("#users-table tbody tr")).to_have_count(1)
    page.get_by_role("link", name="bob/2", exact=True).click()
    expect(page).to_have_url(ui.url(f"/projects/{PROJECT}/users/{quote('bob/2', safe='')}"))
    expect(page.get_by_role("heading", name="bob/2")).to_be_visible()
    sessions = page.locator("table.sessions tbody td.id").all_inner_texts()
    assert sorted(sessions) == sorted(s.session_id for s in ui.sessions if "bob/2" in s.users)
    page.get_by_role("link", name="Filter sessions by this user").click()
    expect(page.locator("input[name=user_id]")).to_have_value("bob/2")
    assert sorted(session_ids(page)) == sorted(sessions)
    page.get_by_role("link", name="ünïcode/セッション", exact=True).click()
    expect(page.get_by_role("heading", name="ünïcode/セッション")).to_be_visible()


def test_tables_are_keyboard_navigable(page: Page, ui: UiServer) -> None:
    page.goto(ui.url(SESSIONS))
    page.keyboard.press("j")  # from the page body: focus the first row
    first, second = session_ids(page)[:2]
    expect(page.locator("#sessions-table tbody tr").nth(0).locator(".row-link")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.locator("#sessions-table tbody tr").nth(1).locator(".row-link")).to_be_focused()
    page.keyboard.press("k")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=second, exact=True)).to_be_visible()
    assert first != second
    page.go_back()
    page.locator("#sessions-table tbody tr").nth(2).locator("td.num").first.click()  # a click on the row opens it
    expect(page.locator("h1.mono")).to_be_visible()


def test_narrow_window_and_dark_mode(browser: Browser, ui: UiServer) -> None:
    guard = Guard()
    narrow = open_page(browser, guard, viewport={"width": 390, "height": 844}, color_scheme="dark")
    for path in (SESSIONS, f"{SESSIONS}/sess-012", f"/projects/{PROJECT}/traces/{ui.trace_ids['sess-012'][0]}",
                 f"/projects/{PROJECT}/users"):
        narrow.goto(ui.url(path))
        overflow = narrow.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at 390px"
    background = narrow.evaluate("getComputedStyle(document.body).backgroundColor")
    channels = [int(c) for c in re.findall(r"\d+", background)[:3]]
    assert sum(channels) < 120, f"dark mode not applied: {background}"
    narrow.context.close()
    guard.check()
