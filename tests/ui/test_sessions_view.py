"""The sessions page's view tools in a real browser: Previous page over 50-row pages, a chart bar
narrowing the time range, the CSV / JSON Lines export of the view, the column chooser kept in the
URL, and the user filter by a part of an id with suggestions."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from opentelemetry.sdk.trace.export import SpanExportResult
from playwright.sync_api import Page, expect

from support.databases import fresh_database
from support.otlp import BASE_NS, SpanMaker, TurnSpec, export_http
from support.server import ServerProcess, new_server

PROJECT = "views"
SESSIONS = 163
SECOND = 1_000_000_000
USERS = ["Alice-Smith", "alice.jones", "BOB", "carol"]


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with 163 one- or two-turn sessions, a minute apart over two and a half hours."""
    tmp = tmp_path_factory.mktemp("views")
    with fresh_database("sqlite", tmp) as url:
        server = new_server(url, tmp / "home").start()
        try:
            maker = SpanMaker(project=PROJECT)
            spans = []
            for i in range(SESSIONS):
                for turn in range(1 + i % 2):
                    spec = TurnSpec(question=f"question {i}.{turn}", answer=f"answer {i}", session_id=f"s-{i:03d}",
                                    user_id=USERS[i % 4], prompt_tokens=i % 7, completion_tokens=1 + turn,
                                    fail=i % 9 == 0)
                    spans.extend(maker.turn(spec, BASE_NS + i * 60 * SECOND + turn * SECOND))
            assert export_http(spans, server.base_url + "/v1/traces") == SpanExportResult.SUCCESS
            maker.shutdown()
            yield server
        finally:
            server.stop()


def url(server: ServerProcess, path: str = "") -> str:
    return f"{server.base_url}/projects/{PROJECT}/sessions{path}"


def ids(page: Page) -> list[str]:
    return page.locator("#sessions-table tbody tr td.id").all_inner_texts()


def api_ids(server: ServerProcess, **params: Any) -> list[str]:
    out, cursor = [], None
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        while True:
            body = client.get(f"/v1/projects/{PROJECT}/sessions",
                              params={**params, "limit": 1000, **({"cursor": cursor} if cursor else {})}).json()
            out += [row["session_id"] for row in body["data"]]
            cursor = body["next_cursor"]
            if cursor is None:
                return out


def query(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def test_previous_page_returns_exactly_the_page_before(page: Page, many: ServerProcess) -> None:
    page.goto(url(many, "?sort=tokens&order=asc"))  # many ties: the session id breaks them
    expect(page.get_by_role("link", name="‹ Previous page")).to_have_count(0)
    pages = [ids(page)]
    for _ in range(3):
        page.get_by_role("link", name="Next page »").click()
        expect(page.locator("#sessions-table tbody tr").first).not_to_have_attribute("data-key", pages[-1][0])
        pages.append(ids(page))
    assert [len(p) for p in pages] == [50, 50, 50, 13]
    assert [s for p in pages for s in p] == api_ids(many, sort="tokens", order="asc")
    for index in (2, 1, 0):
        page.get_by_role("link", name="‹ Previous page").click()
        expect(page.locator("#sessions-table tbody tr").first).to_have_attribute("data-key", pages[index][0])
        assert ids(page) == pages[index]
        assert query(page)["sort"] == ["tokens"]
    expect(page.get_by_role("link", name="‹ Previous page")).to_have_count(0)
    expect(page.get_by_role("link", name="Next page »")).to_be_visible()


def test_a_chart_bar_narrows_the_time_range(page: Page, many: ServerProcess) -> None:
    page.goto(url(many, "?has_error=false"))
    bars = page.locator("#chart a.bar-link")
    expect(bars).to_have_count(48)
    bars.nth(10).click()
    expect(page).to_have_url(re.compile(r"start=.*end="))
    params = query(page)
    assert params["has_error"] == ["false"] and "range" not in params and "cursor" not in params
    start, end = params["start"][0], params["end"][0]
    expect(page.locator("select[name=range]")).to_have_value("custom")
    expect(page.locator("input[name=start]")).to_have_value(start)
    expect(page.locator("input[name=end]")).to_have_value(end)
    shown = ids(page)
    assert shown and len(shown) < 10
    assert shown == api_ids(many, has_error="false", start=start + "Z", end=end + "Z")
    # Each session in the window started (or was active) within it: a minute apart, so few.
    expect(page.locator("#chart a.bar-link")).to_have_count(48)  # the chart now spans that interval


def test_export_downloads_the_view_with_its_filters_and_sort(page: Page, many: ServerProcess,
                                                              tmp_path: Path) -> None:
    page.goto(url(many, "?user_id_contains=ALICE&sort=duration&order=asc&cols=tokens"))
    expected = api_ids(many, user_id_contains="ALICE", sort="duration", order="asc")
    assert len(expected) > 50  # more than the visible page
    with page.expect_download() as info:
        page.locator("a[data-export=csv]").click()
    download = info.value
    assert re.fullmatch(r"sessions-views-\d{8}T\d{4}Z\.csv", download.suggested_filename)
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert [r["session_id"] for r in rows] == expected
    assert all("alice" in json.loads(r["user_ids"])[0].lower() for r in rows)
    with page.expect_download() as info:
        page.locator("a[data-export=jsonl]").click()
    lines = Path(info.value.path()).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["session_id"] for line in lines] == expected
    assert info.value.suggested_filename.endswith(".jsonl")


def test_column_chooser_is_kept_by_sorting_paging_and_filters(page: Page, many: ServerProcess) -> None:
    page.goto(url(many))
    headers = page.locator("#sessions-table thead tr:last-child th")
    expect(headers.filter(has_text="Tokens")).to_have_count(1)
    page.locator("details[data-column-chooser] > summary").click()
    for name in ("tokens", "cost", "latency", "users"):  # the chooser stays open between toggles
        toggle = page.locator(f"details[data-column-chooser] a[data-col={name}]")
        expect(toggle).to_have_attribute("aria-pressed", "true")
        toggle.click()
        expect(page.locator(f"details[data-column-chooser] a[data-col={name}]")).to_have_attribute(
            "aria-pressed", "false")
    expect(page).to_have_url(re.compile(r"cols=duration%2Cturns%2Cerrors%2Cevals"))

    def check() -> None:
        assert query(page)["cols"] == ["duration,turns,errors,evals"]
        expect(headers.filter(has_text="Tokens")).to_have_count(0)
        expect(headers.filter(has_text="Users")).to_have_count(0)
        expect(headers.filter(has_text="Turns")).to_have_count(1)
        first_row = page.locator("#sessions-table tbody tr").first.locator("td")
        expect(first_row).to_have_count(headers.count())

    check()
    page.locator("#sessions-table thead a[data-sort=turns]").click()
    expect(page).to_have_url(re.compile(r"sort=turns"))
    check()
    page.get_by_role("link", name="Next page »").click()
    expect(page).to_have_url(re.compile(r"cursor="))
    check()
    page.get_by_role("link", name="‹ Previous page").click()
    check()
    page.locator("select[name=has_error]").select_option("true")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"has_error=true"))
    check()
    page.locator("details[data-column-chooser] > summary").click()
    page.get_by_role("link", name="All columns").click()
    expect(headers.filter(has_text="Tokens")).to_have_count(1)
    assert "cols" not in query(page) and query(page)["has_error"] == ["true"]


def test_user_filter_matches_part_of_an_id_and_suggests_ids(page: Page, many: ServerProcess) -> None:
    page.goto(url(many))
    field = page.locator("input[name=user_id_contains]")
    expect(field).to_have_attribute("list", "user-ids")
    options = page.locator("datalist#user-ids option")
    assert sorted(options.evaluate_all("els => els.map(e => e.value)")) == sorted(USERS)
    field.fill("ice.JO")
    field.press("Enter")
    expect(page).to_have_url(re.compile(r"user_id_contains=ice.JO"))
    expect(page.locator("#sessions-table tbody tr")).to_have_count(41)
    users = page.locator("#sessions-table tbody td.users").all_inner_texts()
    assert set(users) == {"alice.jones"}
    # An exact user (the user page's link) stays exact, and can be dropped.
    page.goto(url(many, f"?user_id={quote('BOB')}"))
    expect(page.locator("[data-exact-user]")).to_contain_text("BOB")
    assert set(page.locator("#sessions-table tbody td.users").all_inner_texts()) == {"BOB"}
    page.get_by_role("link", name="any user").click()
    expect(page.locator("[data-exact-user]")).to_have_count(0)


def test_users_page_goes_back_a_page(page: Page, many: ServerProcess) -> None:
    order = [u["user_id"] for u in httpx.get(f"{many.base_url}/v1/projects/{PROJECT}/users",
                                             params={"sort": "sessions", "limit": 10}).json()["data"]]
    first_row = page.locator("#users-table tbody tr").first
    page.goto(f"{many.base_url}/projects/{PROJECT}/users?limit=1&sort=sessions")
    expect(first_row).to_have_attribute("data-key", order[0])
    for index in (1, 2):
        page.get_by_role("link", name="Next page »").click()
        expect(first_row).to_have_attribute("data-key", order[index])
    for index in (1, 0):
        page.get_by_role("link", name="‹ Previous page").click()
        expect(first_row).to_have_attribute("data-key", order[index])
    expect(page.get_by_role("link", name="‹ Previous page")).to_have_count(0)
