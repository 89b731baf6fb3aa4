"""The UI over plain HTTP: security headers, no inline code, ids in URLs, and clear 4xx pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import quote

import httpx
import pytest

from .conftest import PROJECT, UiServer
from .traffic import PAYLOADS, XSS_PROJECT

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_STYLE = re.compile(r"<style\b|\sstyle\s*=", re.I)


class UrlAttributes(HTMLParser):
    """Collects the values of every URL-bearing attribute of the real (parsed) elements."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.urls.extend(v or "" for k, v in attrs if k in ("src", "href", "action", "data-href", "poster"))


def external_urls(html: str) -> list[str]:
    parser = UrlAttributes()
    parser.feed(html)
    return [u for u in parser.urls if not u.startswith(("/", "#", "?"))]


def pages(ui: UiServer) -> list[str]:
    trace = ui.trace_ids["sess-012"][0]
    return [
        "/", f"/projects/{PROJECT}/sessions", f"/projects/{PROJECT}/sessions?q=zanzibar&has_error=false",
        f"/projects/{PROJECT}/sessions/sess-012", f"/projects/{PROJECT}/sessions/long-session",
        f"/projects/{PROJECT}/traces/{trace}", f"/projects/{PROJECT}/users", f"/projects/{PROJECT}/users/user-1",
        f"/projects/{XSS_PROJECT}/sessions", f"/projects/{XSS_PROJECT}/sessions/{quote(PAYLOADS[0], safe='')}",
        f"/projects/{PROJECT}/sessions/no-such-session", "/projects/no-such-project/sessions",
        f"/projects/{PROJECT}/sessions?min_turns=many",
    ]


def test_every_html_response_has_a_strict_csp_and_no_inline_code(http: httpx.Client, ui: UiServer) -> None:
    for path in pages(ui):
        response = http.get(path)
        assert response.headers["content-type"].startswith("text/html"), path
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp, path
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        html = response.text
        assert not INLINE_SCRIPT.search(html), path
        assert not INLINE_STYLE.search(html), path
        assert external_urls(html) == [], path


@pytest.mark.parametrize("session_id", ["with/slash/id", "with space id", "ünïcode/セッション"])
def test_awkward_ids_round_trip_through_urls(http: httpx.Client, session_id: str) -> None:
    listing = http.get(f"/projects/{PROJECT}/sessions").text
    encoded = quote(session_id, safe="")
    assert f'href="/projects/{PROJECT}/sessions/{encoded}"' in listing
    page = http.get(f"/projects/{PROJECT}/sessions/{encoded}")
    assert page.status_code == 200
    assert f"hello from {session_id}" in page.text


def test_missing_things_are_404_pages_and_bad_parameters_400_pages(http: httpx.Client, ui: UiServer) -> None:
    cases = {
        f"/projects/{PROJECT}/sessions/nope": 404, "/projects/nope/sessions": 404, "/projects/nope/users": 404,
        f"/projects/{PROJECT}/users/nobody": 404, f"/projects/{PROJECT}/traces/{'0' * 32}": 404,
        f"/projects/{PROJECT}/sessions?min_turns=many": 400, f"/projects/{PROJECT}/sessions?sort=bogus": 400,
        f"/projects/{PROJECT}/sessions?cursor=garbage": 400, f"/projects/{PROJECT}/sessions?start=yesterday": 400,
        f"/projects/{PROJECT}/sessions?start=2026-01-02T00:00&end=2026-01-01T00:00": 400,
        f"/projects/{PROJECT}/sessions?q=%21%21%21": 400, f"/projects/{PROJECT}/users?sort=bogus": 400,
        f"/projects/{PROJECT}/users?cursor=garbage": 400,
        f"/projects/{PROJECT}/sessions/sess-012?turn_cursor=garbage": 400,
    }
    for path, status in cases.items():
        response = http.get(path)
        assert response.status_code == status, (path, response.status_code, response.text[:300])
        assert response.headers["content-type"].startswith("text/html"), path
        assert 'class="problem"' in response.text


def test_empty_form_fields_mean_no_filter(http: httpx.Client, ui: UiServer) -> None:
    empty = http.get(f"/projects/{PROJECT}/sessions?q=&range=&start=&end=&user_id=&has_error=&min_turns=")
    plain = http.get(f"/projects/{PROJECT}/sessions")
    assert empty.status_code == 200
    rows = re.compile(r'data-key="([^"]*)"')
    assert rows.findall(empty.text) == rows.findall(plain.text)
    assert len(rows.findall(plain.text)) == len(ui.sessions) + 1


def test_static_files_and_fragments(http: httpx.Client, ui: UiServer) -> None:
    css = http.get("/static/app.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert http.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    for bad in ("/static/nope.css", "/static/..%2Fviews.py", "/static/views.py", "/static/.hidden.css"):
        assert http.get(bad).status_code == 404, bad
    version = re.search(r'/static/app\.css\?v=([0-9a-f]+)', http.get("/").text)
    assert version is not None
    assert "immutable" in http.get(f"/static/app.css?v={version.group(1)}").headers["cache-control"]

    live = http.get(f"/projects/{PROJECT}/fragments/sessions")
    assert live.status_code == 200 and live.headers["x-live-version"]
    same = http.get(f"/projects/{PROJECT}/fragments/sessions", params={"v": live.headers["x-live-version"]})
    assert same.status_code == 204  # nothing changed: polling costs one query
    conv = f"/projects/{PROJECT}/fragments/conversation/sess-012"
    first = http.get(conv, params={"from": 0})
    assert first.status_code == 200 and first.text.count('<li class="turn') == 3
    assert http.get(conv, params={"v": first.headers["x-live-version"]}).status_code == 204
    assert http.get(f"/projects/{PROJECT}/fragments/conversation/nope").status_code == 404
    assert http.get(f"/projects/{PROJECT}/fragments/turn/{'0' * 32}").status_code == 404
    turn = http.get(f"/projects/{PROJECT}/fragments/turn/{ui.trace_ids['sess-012'][0]}")
    assert turn.status_code == 200 and "get_weather" in turn.text


def test_custom_time_window_from_the_form(http: httpx.Client) -> None:
    now = datetime.now(UTC)
    start = (now - timedelta(minutes=150)).strftime("%Y-%m-%dT%H:%M:%S")  # datetime-local values, read as UTC
    end = (now - timedelta(minutes=100)).strftime("%Y-%m-%dT%H:%M")
    page = http.get(f"/projects/{PROJECT}/sessions", params={"range": "custom", "start": start, "end": end})
    assert page.status_code == 200
    assert re.findall(r'<tr data-href="[^"]*" data-key="([^"]*)"', page.text) == ["sess-001"]
    assert '<option value="custom" selected>' in page.text


def test_search_finds_turns_beyond_the_loaded_page_and_opens_them(http: httpx.Client, ui: UiServer) -> None:
    path = f"/projects/{PROJECT}/sessions/long-session"
    first = http.get(path, params={"q": "question 121"})
    assert first.status_code == 200
    assert 'id="turn-122"' not in first.text  # the first page shows turns 1-100 only
    links = re.findall(r'<a href="([^"]+)" data-match-turn="(\d+)"', first.text)
    assert [n for _, n in links] == ["122"]
    opened = http.get(links[0][0].replace("&amp;", "&"))
    assert opened.status_code == 200
    assert 'id="turn-122"' in opened.text and "long question 121" in opened.text
    assert 'id="turn-1"' not in opened.text
    # Every match across the session is listed, loaded or not: "question 1" prefixes 1, 10-19, 100-129.
    every = http.get(path, params={"q": "question 1"})
    numbers = [int(n) for n in re.findall(r'data-match-turn="(\d+)"', every.text)]
    expected = [n + 1 for n in range(len(ui.long.turns)) if str(n).startswith("1")]
    assert numbers == expected


def test_jump_to_the_latest_turn_of_a_long_session(http: httpx.Client, ui: UiServer) -> None:
    path = f"/projects/{PROJECT}/sessions/long-session"
    page = http.get(path)
    [latest] = re.findall(r'<a class="button" href="([^"]+)" data-jump-latest', page.text)
    last = len(ui.long.turns)
    assert latest.endswith(f"#turn-{last}")
    opened = http.get(latest.replace("&amp;", "&"))
    assert f'id="turn-{last}"' in opened.text and f"long question {last - 1}" in opened.text
    assert "data-jump-latest" not in opened.text
    assert http.get(path, params={"at": "999"}).status_code == 400
    assert http.get(path, params={"at": "-1"}).status_code == 400
