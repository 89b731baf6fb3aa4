"""The Traces tab and the sessions page's count of traces without a session.

A server of this module's own (SQLite) receives, through the OpenTelemetry SDK's OTLP/HTTP
exporter, a "mixed" project (traces with and without a session, hostile ids, failures, a rare
word, recent and older starts) and a "loose" project whose traces carry no session at all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from opentelemetry.sdk.trace.export import SpanExportResult
from playwright.sync_api import Page, expect

from support.databases import fresh_database
from support.otlp import SpanMaker, TurnSpec, export_http, hex_trace_id
from support.server import ServerProcess, new_server

MINUTE = 60_000_000_000
MIXED, LOOSE = "mixed", "loose"
SESSION_IDS = ["s/ü 1", "with space", "セッション/2"]
RARE = "quokka"


@dataclass(frozen=True)
class Sent:
    trace_id: str
    start_ns: int
    spec: TurnSpec


@dataclass
class Served:
    server: ServerProcess
    sent: dict[str, list[Sent]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.server.base_url + path

    def newest_first(self, project: str, keep: Callable[[Sent], bool] | None = None) -> list[str]:
        rows = sorted(self.sent[project], key=lambda s: (s.start_ns, s.trace_id), reverse=True)
        return [s.trace_id for s in rows if keep is None or keep(s)]


def mixed_specs(now: int) -> list[tuple[int, TurnSpec]]:
    """130 traces, one every 13 minutes back from now (the first 5 in the last hour, with minutes to spare
    either side); every third without a session, every seventh failed, two with a rare word."""
    return [(now - i * 13 * MINUTE - MINUTE // 2, TurnSpec(
        question=f"question {i}" + (f" about a {RARE}" if i in (4, 77) else ""), answer=f"answer {i}",
        session_id=None if i % 3 == 0 else SESSION_IDS[(i // 3) % 3], user_id=f"user/{i % 4} ü",
        prompt_tokens=10 + i, completion_tokens=5, fail=i % 7 == 0)) for i in range(130)]


def send(endpoint: str, project: str, specs: list[tuple[int, TurnSpec]]) -> list[Sent]:
    maker = SpanMaker(project=project)
    sent, spans = [], []
    for start, spec in specs:
        turn = maker.turn(spec, start)
        spans.extend(turn)
        sent.append(Sent(hex_trace_id(turn[0]), start, spec))
    for first in range(0, len(spans), 100):
        assert export_http(spans[first:first + 100], endpoint) == SpanExportResult.SUCCESS
    maker.shutdown()
    return sent


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("traces-page")
    with fresh_database("sqlite", tmp) as url:
        server = new_server(url, tmp / "home").start()
        try:
            now = time.time_ns()
            state = Served(server)
            state.sent[MIXED] = send(server.base_url + "/v1/traces", MIXED, mixed_specs(now))
            state.sent[LOOSE] = send(server.base_url + "/v1/traces", LOOSE, [
                (now - i * MINUTE, TurnSpec(question=f"loose question {i}", answer=f"loose answer {i}"))
                for i in range(5)])
            yield state
        finally:
            server.stop()


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.server.base_url, timeout=30) as c:
        yield c


@dataclass
class Row:
    key: str
    href: str
    links: list[str] = field(default_factory=list)
    text: str = ""


class TraceRows(HTMLParser):
    """The rows of ``tbody#trace-rows`` (their key, link target, every href inside, their text), the
    "Next page" link and every ``href`` of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Row] = []
        self.in_body = False
        self.next: str | None = None
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tbody" and a.get("id") == "trace-rows":
            self.in_body = True
        elif tag == "tr" and self.in_body:
            self.rows.append(Row(a.get("data-key") or "", a.get("data-href") or ""))
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"] or "")
            if self.in_body and self.rows:
                self.rows[-1].links.append(a["href"] or "")
            if a.get("rel") == "next":
                self.next = a["href"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self.in_body = False

    def handle_data(self, data: str) -> None:
        if self.in_body and self.rows:
            self.rows[-1].text += data


def parse(html: str) -> TraceRows:
    parser = TraceRows()
    parser.feed(html)
    return parser


def get_page(client: httpx.Client, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, (path, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    return response.text


def walk(client: httpx.Client, path: str) -> tuple[list[str], int]:
    """Every row key of a traces view, following "Next page"; and the number of pages."""
    keys: list[str] = []
    pages = 0
    next_path: str | None = path
    while next_path:
        parsed = parse(get_page(client, unescape(next_path)))
        pages += 1
        page_keys = [r.key for r in parsed.rows]
        assert not set(page_keys) & set(keys), "a trace was listed twice"
        keys.extend(page_keys)
        next_path = parsed.next
    return keys, pages


def test_traces_tab_lists_every_trace_50_rows_a_page(served: Served, client: httpx.Client) -> None:
    html = get_page(client, f"/projects/{MIXED}/traces")
    first = parse(html)
    assert len(first.rows) == 50 and first.next is not None
    assert f'href="/projects/{MIXED}/traces" aria-current="page"' in html  # the active tab
    assert "style=" not in html and "<script>" not in html
    keys, pages = walk(client, f"/projects/{MIXED}/traces")
    assert keys == served.newest_first(MIXED)
    assert pages == 3
    for row in first.rows:
        assert row.href == f"/projects/{MIXED}/traces/{row.key}"
        assert row.href in row.links


def test_rows_show_the_trace_and_link_its_session_and_user(served: Served, client: httpx.Client) -> None:
    rows = {r.key: r for r in parse(get_page(client, f"/projects/{MIXED}/traces?limit=500")).rows}
    assert len(rows) == 130
    for s in served.sent[MIXED]:
        row = rows[s.trace_id]
        assert s.spec.question in row.text and s.spec.answer in row.text
        assert ("error" if s.spec.fail else "ok") in row.text
        user = f"/projects/{MIXED}/users/{quote(s.spec.user_id or '', safe='')}"
        assert user in row.links
        if s.spec.session_id is None:
            assert "no session" in row.text
            assert not any("/sessions/" in link for link in row.links)
        else:
            assert f"/projects/{MIXED}/sessions/{quote(s.spec.session_id, safe='')}" in row.links
    hostile = next(s for s in served.sent[MIXED] if s.spec.session_id == "s/ü 1")
    session_link = f"/projects/{MIXED}/sessions/{quote('s/ü 1', safe='')}"
    assert session_link in rows[hostile.trace_id].links and "%2F" in session_link
    assert "s/ü 1" in get_page(client, session_link)  # the encoded link opens the session
    assert hostile.trace_id in get_page(client, rows[hostile.trace_id].href)  # and the row opens the trace


@pytest.mark.parametrize("query, keep", [
    ("has_session=false", lambda s: s.spec.session_id is None),
    ("has_session=true", lambda s: s.spec.session_id is not None),
    ("status=error", lambda s: s.spec.fail),
    ("status=ok&has_session=false", lambda s: not s.spec.fail and s.spec.session_id is None),
    (f"q={RARE}", lambda s: RARE in s.spec.question),
    ("range=1h", lambda s: s.start_ns > time.time_ns() - 60 * MINUTE),
    (f"user_id={quote('user/1 ü', safe='')}", lambda s: s.spec.user_id == "user/1 ü"),
    (f"session_id={quote('with space', safe='')}", lambda s: s.spec.session_id == "with space"),
])
def test_filters(served: Served, client: httpx.Client, query: str, keep: Callable[[Sent], bool]) -> None:
    keys, _ = walk(client, f"/projects/{MIXED}/traces?{query}&limit=20")
    expected = served.newest_first(MIXED, keep)
    assert keys == expected and expected
    if "range=1h" in query:
        assert len(keys) == 5


def test_the_form_shows_the_filters_in_the_url(client: httpx.Client) -> None:
    html = get_page(client, f"/projects/{MIXED}/traces?has_session=false&status=error&range=24h&q={RARE}")
    assert '<option value="false" selected>Without a session</option>' in html
    assert '<option value="error" selected>Error</option>' in html
    assert '<option value="24h" selected>' in html
    assert f'name="q" value="{RARE}"' in html


def test_sessions_page_counts_the_traces_without_a_session(served: Served, client: httpx.Client) -> None:
    sessionless = sum(1 for s in served.sent[MIXED] if s.spec.session_id is None)
    html = get_page(client, f"/projects/{MIXED}/sessions")
    assert f'data-sessionless="{sessionless}"' in html
    assert f"{sessionless} traces have no session" in html and "session.id" in html
    assert f'href="/projects/{MIXED}/traces?has_session=false"' in html
    assert "No session matches these filters." not in html  # it has sessions
    assert "has no sessions yet" not in html
    empty = get_page(client, f"/projects/{MIXED}/sessions?q=nothingmatchesthis")
    assert "No session matches these filters." in empty and "has no sessions yet" not in empty


def test_a_project_without_sessions_points_to_its_traces(served: Served, client: httpx.Client) -> None:
    html = get_page(client, f"/projects/{LOOSE}/sessions")
    assert 'data-sessionless="5"' in html and "5 traces have no session" in html
    assert "has no sessions yet" in html and "No session matches these filters." not in html
    links = parse(html).hrefs
    assert f"/projects/{LOOSE}/traces" in links  # the tab and the empty state
    assert f"/projects/{LOOSE}/traces?has_session=false" in links
    keys, _ = walk(client, f"/projects/{LOOSE}/traces")
    assert keys == served.newest_first(LOOSE)
    assert all("no session" in r.text for r in parse(get_page(client, f"/projects/{LOOSE}/traces")).rows)


@pytest.mark.parametrize("query, words", [
    ("status=bogus", "status"),
    ("has_session=maybe", "has_session"),
    ("range=fortnight", "range"),
    ("cursor=not-a-cursor", "cursor"),
    ("start=2026-01-02T00:00&end=2026-01-01T00:00", "start must not be after end"),
    ("q=%21%21%21", "no word"),
    ("limit=0", "limit"),
])
def test_bad_parameters_are_a_400_page(client: httpx.Client, query: str, words: str) -> None:
    html = get_page(client, f"/projects/{MIXED}/traces?{query}", status=400)
    assert "Cannot show these traces" in html and words in unescape(html)


def test_unknown_project_is_a_404_page(client: httpx.Client) -> None:
    assert "Project not found" in get_page(client, "/projects/no-such-project/traces", status=404)


@pytest.mark.browser
def test_traces_tab_is_reachable_from_the_sessions_page_and_filters(page: Page, served: Served) -> None:
    assert Path("/usr/bin/chromium").exists()
    page.goto(served.url(f"/projects/{MIXED}/sessions"))
    page.get_by_role("navigation", name="Project pages").get_by_role("link", name="Traces").click()
    expect(page).to_have_url(re.compile(f"/projects/{MIXED}/traces$"))
    expect(page.locator("#trace-rows tr")).to_have_count(50)
    page.locator("select[name=has_session]").select_option("false")
    page.locator("select[name=status]").select_option("error")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"has_session=false"))
    assert parse_qs(urlsplit(page.url).query) == {"has_session": ["false"], "status": ["error"]}
    expected = served.newest_first(MIXED, lambda s: s.spec.session_id is None and s.spec.fail)
    expect(page.locator("#trace-rows tr")).to_have_count(len(expected))
    assert page.locator("#trace-rows tr").evaluate_all("rows => rows.map(r => r.dataset.key)") == expected
    expect(page.locator("#trace-rows tr .no-session")).to_have_count(len(expected))
    page.locator("#trace-rows tr").first.locator("td").nth(5).click()  # a click anywhere on the row opens it
    expect(page).to_have_url(re.compile(f"/projects/{MIXED}/traces/{expected[0]}$"))

    page.goto(served.url(f"/projects/{MIXED}/sessions"))
    page.locator("p.sessionless a").click()  # the notice leads to the traces without a session
    expect(page).to_have_url(re.compile(r"/traces\?has_session=false$"))
    expect(page.locator("select[name=has_session]")).to_have_value("false")
    sessionless = served.newest_first(MIXED, lambda s: s.spec.session_id is None)
    expect(page.locator("#trace-rows tr")).to_have_count(len(sessionless))
