"""The sessions list as the page uses it, on both backends: paging back (``prev_cursor``), the
partial user filter (``user_id_contains``), and the export of a view (CSV / JSON Lines)."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from support.otlp import BASE_NS, SpanMaker, TurnSpec, export_http
from threadline.server.web.export import EXPORT_PAGE_SIZE, SESSION_CSV_COLUMNS

from .conftest import Filled

PROJECT = "view ü/1"
P = quote(PROJECT, safe="")
SESSIONS = 163  # four pages of 50, the last one short
SECOND = 1_000_000_000
HOSTILE_TEXT = "=HYPERLINK(\"http://evil.example\",\"click\")"


@dataclass(frozen=True)
class Sent:
    session_id: str
    user_id: str
    tokens: int


def user_of(i: int) -> str:
    """Several users per case, one with LIKE wildcards in its id, one that looks like a formula."""
    if i % 11 == 0:
        return "Odd_%User"
    if i % 13 == 0:
        return "@admin"
    return ["Alice-Smith", "alice.jones", "BOB", "carol"][i % 4]


@pytest.fixture(scope="module")
def sent(filled: Filled) -> list[Sent]:
    maker = SpanMaker(project=PROJECT)
    spans, out = [], []
    for i in range(SESSIONS):
        sid = f"view-{i:03d}" if i != 7 else "-1+2"
        spec = TurnSpec(question=HOSTILE_TEXT if i == 7 else f"question {i}", answer=f"answer {i}",
                        session_id=sid, user_id=user_of(i), prompt_tokens=i % 7, completion_tokens=1,
                        fail=i % 9 == 0)
        spans.extend(maker.turn(spec, BASE_NS + i * SECOND))
        out.append(Sent(sid, user_of(i), i % 7 + 1))
    assert export_http(spans, filled.server.base_url + "/v1/traces") == SpanExportResult.SUCCESS
    maker.shutdown()
    return out


def get(filled: Filled, path: str, **params: Any) -> Any:
    response = filled.client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def ids(body: Any, key: str = "session_id") -> list[str]:
    return [row[key] for row in body["data"]]


def walk_forward(filled: Filled, path: str, key: str, **params: Any) -> list[tuple[list[str], Any]]:
    pages, cursor = [], None
    while True:
        body = get(filled, path, **params, **({"cursor": cursor} if cursor else {}))
        pages.append((ids(body, key), body))
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


@pytest.mark.parametrize(("sort", "order"), [("start_time", "desc"), ("tokens", "asc"), ("errors", "desc")])
def test_prev_cursor_returns_exactly_the_previous_page(filled: Filled, sent: list[Sent], sort: str,
                                                       order: str) -> None:
    path = f"/v1/projects/{P}/sessions"
    pages = walk_forward(filled, path, "session_id", sort=sort, order=order, limit=50)
    assert [len(p) for p, _ in pages] == [50, 50, 50, 13]
    assert sorted(s for p, _ in pages for s in p) == sorted(s.session_id for s in sent)
    assert pages[0][1]["prev_cursor"] is None
    # From the last page back to the first, each prev_cursor opens exactly the page before.
    body = pages[-1][1]
    for index in range(len(pages) - 2, -1, -1):
        assert body["prev_cursor"] is not None
        body = get(filled, path, sort=sort, order=order, limit=50, cursor=body["prev_cursor"])
        assert ids(body) == pages[index][0]
        # … and that page's next_cursor opens the page after it again.
        assert body["next_cursor"] is not None
        assert ids(get(filled, path, sort=sort, order=order, limit=50, cursor=body["next_cursor"])) \
            == pages[index + 1][0]
    assert body["prev_cursor"] is None  # back at the first page


def test_prev_cursor_with_filters_and_users_list(filled: Filled, sent: list[Sent]) -> None:
    path = f"/v1/projects/{P}/sessions"
    pages = walk_forward(filled, path, "session_id", has_error="false", limit=20)
    assert len(pages) >= 3
    back = get(filled, path, has_error="false", limit=20, cursor=pages[2][1]["prev_cursor"])
    assert ids(back) == pages[1][0]
    users = walk_forward(filled, f"/v1/projects/{P}/users", "user_id", limit=2, sort="sessions")
    assert len(users) == 3
    back = get(filled, f"/v1/projects/{P}/users", limit=2, sort="sessions", cursor=users[2][1]["prev_cursor"])
    assert ids(back, "user_id") == users[1][0]
    assert back["prev_cursor"] is None or ids(get(filled, f"/v1/projects/{P}/users", limit=2, sort="sessions",
                                                  cursor=back["prev_cursor"]), "user_id") == users[0][0]


def test_a_mangled_cursor_is_a_400(filled: Filled, sent: list[Sent]) -> None:
    response = filled.client.get(f"/v1/projects/{P}/sessions", params={"cursor": "bm90LWEtY3Vyc29y"})
    assert response.status_code == 400
    assert response.json()["error"]["code"]


def test_user_id_contains_matches_part_of_an_id_case_insensitively(filled: Filled, sent: list[Sent]) -> None:
    path = f"/v1/projects/{P}/sessions"
    expect = sorted(s.session_id for s in sent if "alice" in s.user_id.lower())
    found = [i for p, _ in walk_forward(filled, path, "session_id", user_id_contains="ALIC", limit=100) for i in p]
    assert sorted(found) == expect
    # Wildcards are literal text: "_%" matches only the id that contains it.
    found = ids(get(filled, path, user_id_contains="d_%u", limit=1000))
    assert sorted(found) == sorted(s.session_id for s in sent if s.user_id == "Odd_%User")
    # user_id stays exact.
    assert ids(get(filled, path, user_id="alice", limit=1000)) == []
    assert len(ids(get(filled, path, user_id="BOB", limit=1000))) == sum(s.user_id == "BOB" for s in sent)
    # The users list's q finds the same users (one query, one rule).
    users = {u["user_id"] for u in get(filled, f"/v1/projects/{P}/users", q="ALIC", limit=100)["data"]}
    assert users == {"Alice-Smith", "alice.jones"}


def export(filled: Filled, fmt: str, **params: Any) -> Any:
    return filled.client.get(f"/projects/{P}/export/sessions.{fmt}", params=params)


def api_rows(filled: Filled, **params: Any) -> list[dict[str, Any]]:
    return [row for _, body in walk_forward(filled, f"/v1/projects/{P}/sessions", "session_id", limit=1000,
                                            **params) for row in body["data"]]


@pytest.mark.parametrize("params", [
    {},
    {"sort": "tokens", "order": "asc"},
    {"user_id_contains": "alice", "has_error": "false", "sort": "duration"},
    {"start": "2025-11-21T04:41:00Z", "end": "2025-11-21T04:42:10Z", "sort": "errors", "order": "desc"},
])
def test_jsonl_export_is_the_api_list_with_the_same_filters(filled: Filled, sent: list[Sent],
                                                            params: dict[str, str]) -> None:
    response = export(filled, "jsonl", **params, cursor="ignored", limit="5")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["content-disposition"].startswith('attachment; filename="sessions-view_1-')
    assert ".jsonl\"" in response.headers["content-disposition"]
    assert "filename*=UTF-8''sessions-view%20%C3%BC%2F1-" in response.headers["content-disposition"]
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines == api_rows(filled, **params)
    assert lines  # every case matches something


def test_csv_export_has_every_row_escaped_columns_and_the_api_order(filled: Filled, sent: list[Sent]) -> None:
    response = export(filled, "csv", sort="tokens", order="desc")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == [name for name, _ in SESSION_CSV_COLUMNS]
    api = api_rows(filled, sort="tokens", order="desc")
    assert len(rows) == 1 + SESSIONS == 1 + len(api)
    header = rows[0]
    by_id = {r[header.index("session_id")].lstrip("'"): dict(zip(header, r, strict=True)) for r in rows[1:]}
    assert [r[header.index("session_id")] for r in rows[1:]] == [
        "'" + a["session_id"] if a["session_id"].startswith(("-", "=", "+", "@")) else a["session_id"] for a in api]
    hostile = by_id["-1+2"]
    assert hostile["session_id"] == "'-1+2"
    assert hostile["first_input"] == "'" + HOSTILE_TEXT
    assert json.loads(hostile["user_ids"]) == [user_of(7)]
    first = api[0]
    row = by_id[first["session_id"]]
    assert int(row["total_tokens"]) == first["tokens"]["total"]
    assert int(row["turns"]) == first["turns"]
    assert row["start_time"] == first["start_time"]
    assert float(row["cost_usd"]) == first["cost_usd"]


def test_export_refuses_bad_parameters_like_the_page(filled: Filled, sent: list[Sent]) -> None:
    for params in ({"sort": "nope"}, {"has_error": "maybe"}, {"start": "yesterday"}, {"cols": "tokens,nope"}):
        assert export(filled, "csv", **params).status_code == 400
        listed = filled.client.get(f"/projects/{P}/sessions", params=params)
        assert listed.status_code == 400
    assert "cols: &#39;nope&#39; is not one of users, duration" in listed.text
    assert export(filled, "xlsx").status_code == 400
    assert filled.client.get("/projects/no-such-project/export/sessions.csv").status_code == 404


def test_columns_and_chart_links_keep_the_view(filled: Filled, sent: list[Sent]) -> None:
    page = filled.client.get(f"/projects/{P}/sessions", params=[("cols", "none"), ("cols", "tokens"),
                                                                  ("cols", "users"), ("limit", "50")])
    assert page.status_code == 200
    html = page.text
    assert "cols=users%2Ctokens" in html  # one canonical value, in every link
    assert "<th scope=\"col\" class=\"c-users\">Users</th>" in html
    assert "data-sort=\"cost\"" not in html and "data-sort=\"tokens\"" in html
    bars = re.findall(r'<a class="bar-link" href="([^"]+)" data-narrow>', html)
    assert len(bars) == 48
    for href in bars:
        assert href.startswith(f"/projects/{P}/sessions?limit=50&amp;cols=users%2Ctokens&amp;start=2025-11-21T04%3A")
        assert "&amp;end=2025-11-21T04%3A" in href and "range=" not in href and "cursor=" not in href
    assert page.text.count('<a class="button" rel="next"') == 1


def test_export_streams_every_row_past_one_read_page(filled: Filled) -> None:
    """More sessions than one read of the stream (EXPORT_PAGE_SIZE): the rest come from later pages."""
    bulk = "export bulk"
    count = EXPORT_PAGE_SIZE + 12
    maker = SpanMaker(project=bulk)
    spans = []
    for i in range(count):
        spans.extend(maker.turn(TurnSpec(question=f"q {i}", answer="a", session_id=f"b-{i:04d}", user_id="u",
                                         prompt_tokens=i % 5), BASE_NS + i * SECOND))
    assert export_http(spans, filled.server.base_url + "/v1/traces") == SpanExportResult.SUCCESS
    maker.shutdown()
    response = filled.client.get(f"/projects/{quote(bulk, safe='')}/export/sessions.csv",
                                 params={"sort": "tokens", "order": "asc"})
    assert response.status_code == 200
    exported = [row["session_id"] for row in csv.DictReader(io.StringIO(response.text))]
    listed = []
    cursor = None
    while True:
        body = filled.client.get(f"/v1/projects/{quote(bulk, safe='')}/sessions",
                                 params={"sort": "tokens", "order": "asc", "limit": 1000,
                                         **({"cursor": cursor} if cursor else {})}).json()
        listed += [row["session_id"] for row in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(exported) == count and exported == listed
