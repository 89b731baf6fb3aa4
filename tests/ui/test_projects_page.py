"""The projects page's turns, error rate and cost per project, checked against the REST API's sessions.

Plain HTTP against the real server of ``conftest.ui``: the page's numbers (from the ``sessions``
rollup, ``query.projects.project_totals``) must equal sums over every session the API lists, and,
for a project sent here, the turns and failures the test sent.
"""

from __future__ import annotations

import time
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from threadline.server.web.ui.render import number, percent, usd

from .conftest import PROJECT, UiServer
from .traffic import SECOND, SessionSpec, TurnSpec, now_ns, send

TOTALS_PROJECT = "totals-lab"
SPECS = [
    SessionSpec("t-1", [TurnSpec("ana", f"q{n}", f"a{n}", 0, fail=(n == 1), prompt_tokens=100 + n) for n in range(3)]),
    SessionSpec("t-2", [TurnSpec("bo", f"q{n}", f"a{n}", 0, prompt_tokens=50) for n in range(2)]),
    SessionSpec("t-3", [TurnSpec("cy", "q", "a", 0, fail=True)]),
]


class _Rows(HTMLParser):
    """The projects table: per row (``data-key``), the text of each cell with a ``data-col``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: dict[str, dict[str, str]] = {}
        self.headers: list[str] = []
        self._row: str | None = None
        self._col: str | None = None
        self._in_th = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-key") is not None:
            self._row = a["data-key"]
            self.rows[self._row or ""] = {}
        elif tag == "td" and self._row is not None and a.get("data-col"):
            self._col = a["data-col"]
            self.rows[self._row][self._col or ""] = ""
        elif tag == "th":
            self._in_th = True
            self.headers.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._col = None
        elif tag == "tr":
            self._row = None
        elif tag == "th":
            self._in_th = False

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._col is not None:
            self.rows[self._row][self._col] += data
        elif self._in_th:
            self.headers[-1] += data


def _page_rows(http: httpx.Client) -> tuple[list[str], dict[str, dict[str, str]]]:
    response = http.get("/")
    assert response.status_code == 200
    parser = _Rows()
    parser.feed(response.text)
    parser.close()
    rows = {key: {col: text.strip() for col, text in row.items()} for key, row in parser.rows.items()}
    return [h.strip() for h in parser.headers], rows


def _sessions(http: httpx.Client, project: str) -> list[dict[str, Any]]:
    """Every session of a project through the API (following the cursors)."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        body = http.get(f"/v1/projects/{project}/sessions", params=params).json()
        found.extend(body["data"])
        cursor = body["next_cursor"]
        if not cursor:
            return found


@pytest.fixture(scope="module")
def totals_project(ui: UiServer) -> None:
    start = now_ns() - 200 * SECOND
    specs = [SessionSpec(s.session_id, [TurnSpec(t.user, t.question, t.answer, start + (i * 10 + n) * SECOND,
                                                 fail=t.fail, prompt_tokens=t.prompt_tokens)
                                        for n, t in enumerate(s.turns)])
             for i, s in enumerate(SPECS)]
    send(ui.endpoint, TOTALS_PROJECT, specs)
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=ui.base_url, timeout=30) as http:
        while sum(s["turns"] for s in _sessions(http, TOTALS_PROJECT)) < sum(len(s.turns) for s in SPECS):
            assert time.monotonic() < deadline, "the sent turns were not stored in time"
            time.sleep(0.1)


def test_projects_page_shows_turns_error_rate_and_cost(http: httpx.Client, totals_project: None) -> None:
    headers, rows = _page_rows(http)
    for label in ("Turns", "Error rate", "Cost", "Traces"):
        assert label in headers, headers

    # The project sent here: the turns and failures the test sent, the cost the API reports.
    sent_turns = sum(len(s.turns) for s in SPECS)
    sent_errors = sum(t.fail for s in SPECS for t in s.turns)
    api = _sessions(http, TOTALS_PROJECT)
    assert sum(s["turns"] for s in api) == sent_turns
    cost = sum(s["cost_usd"] for s in api)
    row = rows[TOTALS_PROJECT]
    assert row["turns"] == number(sent_turns)
    assert row["error-rate"] == percent(sent_errors / sent_turns) == "33%"
    assert row["cost"] == usd(cost)
    assert cost > 0  # the LLM calls are priced, so the column is not a constant "$0"

    # A project with many sessions: sums over every session the API lists.
    sessions = _sessions(http, PROJECT)
    turns = sum(s["turns"] for s in sessions)
    errors = sum(s["errors"] for s in sessions)
    assert turns > 100 and errors > 0
    row = rows[PROJECT]
    assert row["turns"] == number(turns)
    assert row["error-rate"] == percent(errors / turns)
    assert row["cost"] == usd(sum(s["cost_usd"] for s in sessions))


def test_error_rate_cell_explains_itself(http: httpx.Client, totals_project: None) -> None:
    text = http.get("/").text
    sent_turns = sum(len(s.turns) for s in SPECS)
    sent_errors = sum(t.fail for s in SPECS for t in s.turns)
    assert f'title="{sent_errors} failed of {sent_turns} turns"' in text
