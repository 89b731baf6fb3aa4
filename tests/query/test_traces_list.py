"""The project's trace list (``query.traces.list_traces``) and the sessionless count, on both backends.

The traces go through a real ``threadline serve`` over OTLP/HTTP (the OpenTelemetry SDK's own
exporter); every expected value is recomputed from what the test sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from support.databases import BACKENDS, fresh_database
from support.otlp import BASE_NS, SpanMaker, TurnSpec, export_http, hex_trace_id
from support.server import new_server
from threadline.server.query import traces as trace_queries
from threadline.server.query.errors import InvalidQuery
from threadline.server.query.traces import TraceFilter, count_sessionless_traces, has_sessions, list_traces
from threadline.server.store.engine import Store, open_store

SECOND = 1_000_000_000
PROJECT = "trace list"
SESSIONS = ["s/1", "with space", "ünï/セッション ✓", "plain"]
USERS = ["alice", "bob/2", "carol ü"]
RARE = "zeppelin"


@dataclass(frozen=True)
class Sent:
    """One trace the test sent, with what the list must say about it."""

    trace_id: str
    start_ns: int
    session_id: str | None
    user_id: str | None
    failed: bool
    spec: TurnSpec

    @property
    def key(self) -> tuple[int, str]:
        return (self.start_ns, self.trace_id)


@dataclass
class Loaded:
    store: Store
    sent: list[Sent]


def specs() -> list[tuple[int, TurnSpec]]:
    """120 traces: a third without a session, some without a user, failures, a rare word, and pairs of
    traces that start at the same nanosecond (the order then falls back to the trace id)."""
    out = []
    for i in range(120):
        out.append((BASE_NS + (i // 2) * SECOND, TurnSpec(
            question=f"question {i}" + (f" about the {RARE}" if i % 30 == 7 else ""), answer=f"answer {i}",
            session_id=None if i % 3 == 0 else SESSIONS[i % 4], user_id=None if i % 5 == 0 else USERS[i % 3],
            prompt_tokens=i + 1, completion_tokens=2, fail=i % 8 == 0, tool="weather" if i % 6 == 1 else None,
        )))
    return out


def send(endpoint: str) -> list[Sent]:
    maker = SpanMaker(project=PROJECT)
    other = SpanMaker(project="elsewhere")
    sent, spans = [], []
    for start, spec in specs():
        turn = maker.turn(spec, start)
        spans.extend(turn)
        sent.append(Sent(hex_trace_id(turn[0]), start, spec.session_id, spec.user_id, spec.fail, spec))
    # Another project: the same rare word and no session; none of it may show up in PROJECT.
    for n in range(4):
        spans.extend(other.turn(TurnSpec(question=f"{RARE} elsewhere {n}", answer="no"), BASE_NS + n * SECOND))
    for first in range(0, len(spans), 90):
        assert export_http(spans[first:first + 90], endpoint) == SpanExportResult.SUCCESS
    maker.shutdown()
    other.shutdown()
    return sent


@pytest.fixture(scope="module", params=BACKENDS)
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    tmp = tmp_path_factory.mktemp(f"trace-list-{request.param}")
    with fresh_database(request.param, tmp) as url:
        server = new_server(url, tmp / "home").start()
        try:
            sent = send(server.otlp_http_url)
            store = open_store(url, migrate=False)
            try:
                yield Loaded(store, sent)
            finally:
                store.dispose()
        finally:
            server.stop()


def newest_first(traces: list[Sent]) -> list[str]:
    return [s.trace_id for s in sorted(traces, key=lambda s: s.key, reverse=True)]


def walk(loaded: Loaded, filters: TraceFilter | None = None, limit: int = 7, project: str = PROJECT) -> list[str]:
    """Every trace id of the list, page by page; fails on a repeated id."""
    found: list[str] = []
    cursor = None
    with loaded.store.read() as conn:
        while True:
            page = list_traces(conn, project, filters, limit=limit, cursor=cursor)
            assert len(page.data) <= limit
            ids = [t.trace_id for t in page.data]
            assert not set(ids) & set(found), "a trace was listed twice"
            found.extend(ids)
            if page.next_cursor is None:
                return found
            assert len(page.data) == limit, "a page before the last one is full"
            cursor = page.next_cursor


@pytest.mark.parametrize("limit", [1, 7, 50, 120, 1000])
def test_pages_list_every_trace_once_newest_first(loaded: Loaded, limit: int) -> None:
    assert walk(loaded, limit=limit) == newest_first(loaded.sent)


def test_traces_that_start_together_are_ordered_by_trace_id_across_pages(loaded: Loaded) -> None:
    # Limit 1: every pair of traces sharing a start time is split over two pages.
    ids = walk(loaded, limit=1)
    starts = {s.trace_id: s.start_ns for s in loaded.sent}
    ties = [(first, second) for first, second in pairwise(ids) if starts[first] == starts[second]]
    assert len(ties) == 60
    assert all(first > second for first, second in ties)


def test_summary_fields_describe_the_trace(loaded: Loaded) -> None:
    with loaded.store.read() as conn:
        page = list_traces(conn, PROJECT, limit=1000)
    by_id = {t.trace_id: t for t in page.data}
    assert set(by_id) == {s.trace_id for s in loaded.sent}
    for s in loaded.sent:
        t = by_id[s.trace_id]
        assert (t.session_id, t.user_id, t.name) == (s.session_id, s.user_id, "agent")
        assert (t.input, t.output) == (s.spec.question, s.spec.answer)
        assert t.status == ("error" if s.failed else "ok")
        assert t.spans == (3 if s.spec.tool else 2)
        assert (t.tokens.prompt, t.tokens.completion, t.tokens.total) == (
            s.spec.prompt_tokens, s.spec.completion_tokens, s.spec.total_tokens)
        assert t.start_time == datetime.fromtimestamp(s.start_ns / 1e9, tz=UTC)
        assert t.latency_ms == 300.0
        assert t.cost_usd >= 0


@pytest.mark.parametrize("name, filters, keep", [
    ("no session", TraceFilter(has_session=False), lambda s: s.session_id is None),
    ("with a session", TraceFilter(has_session=True), lambda s: s.session_id is not None),
    ("failed", TraceFilter(status="error"), lambda s: s.failed),
    ("ok", TraceFilter(status="ok"), lambda s: not s.failed),
    ("user", TraceFilter(user_id="bob/2"), lambda s: s.user_id == "bob/2"),
    ("unicode session", TraceFilter(session_id=SESSIONS[2]), lambda s: s.session_id == SESSIONS[2]),
    ("window", TraceFilter(start=datetime.fromtimestamp((BASE_NS + 10 * SECOND) / 1e9, tz=UTC),
                           end=datetime.fromtimestamp((BASE_NS + 20 * SECOND) / 1e9, tz=UTC)),
     lambda s: BASE_NS + 10 * SECOND <= s.start_ns <= BASE_NS + 20 * SECOND),
    ("since", TraceFilter(start=datetime.fromtimestamp((BASE_NS + 50 * SECOND) / 1e9, tz=UTC)),
     lambda s: s.start_ns >= BASE_NS + 50 * SECOND),
    ("rare word", TraceFilter(q=RARE), lambda s: RARE in s.spec.question),
    ("word prefix", TraceFilter(q="zeppel"), lambda s: RARE in s.spec.question),
    ("common word", TraceFilter(q="question"), lambda s: True),
    ("two words", TraceFilter(q="answer 17"), lambda s: s.spec.answer == "answer 17"),
    ("no session, failed, since", TraceFilter(has_session=False, status="error",
                                              start=datetime.fromtimestamp((BASE_NS + 20 * SECOND) / 1e9, tz=UTC)),
     lambda s: s.session_id is None and s.failed and s.start_ns >= BASE_NS + 20 * SECOND),
    ("common word without a session", TraceFilter(q="question", has_session=False), lambda s: s.session_id is None),
    ("session and no session", TraceFilter(session_id="plain", has_session=False), lambda s: False),
])
def test_filters(loaded: Loaded, name: str, filters: TraceFilter, keep: Callable[[Sent], bool]) -> None:
    expected = newest_first([s for s in loaded.sent if keep(s)])
    assert walk(loaded, filters, limit=4) == expected, name


@pytest.mark.parametrize("threshold", [0, 10**9], ids=["walk-in-list-order-plan", "look-up-hits-plan"])
def test_both_search_plans_agree(loaded: Loaded, monkeypatch: pytest.MonkeyPatch, threshold: int) -> None:
    monkeypatch.setattr(trace_queries, "COMMON_SEARCH_HITS", threshold)
    cases: list[tuple[str, Callable[[Sent], bool]]] = [
        (RARE, lambda s: RARE in s.spec.question), ("question", lambda s: True),
        ("answer", lambda s: s.session_id is None)]
    for q, keep in cases:
        filters = TraceFilter(q=q, has_session=False if q == "answer" else None)
        assert walk(loaded, filters, limit=5) == newest_first([s for s in loaded.sent if keep(s)]), q


def test_sessionless_count_and_sessions(loaded: Loaded) -> None:
    sessionless = sum(1 for s in loaded.sent if s.session_id is None)
    assert sessionless == 40
    with loaded.store.read() as conn:
        assert count_sessionless_traces(conn, PROJECT) == sessionless
        assert count_sessionless_traces(conn, PROJECT, at_most=10) == 10
        assert count_sessionless_traces(conn, "elsewhere") == 4
        assert count_sessionless_traces(conn, "no such project") == 0
        assert has_sessions(conn, PROJECT) is True
        assert has_sessions(conn, "elsewhere") is False
        assert has_sessions(conn, "no such project") is False


def test_unknown_project_lists_nothing(loaded: Loaded) -> None:
    with loaded.store.read() as conn:
        page = list_traces(conn, "no such project")
    assert (page.data, page.next_cursor) == ([], None)


@pytest.mark.parametrize("kwargs, message", [
    ({"filters": TraceFilter(status="bogus")}, "status"),
    ({"filters": TraceFilter(start=datetime(2026, 1, 2, tzinfo=UTC), end=datetime(2026, 1, 1, tzinfo=UTC))},
     "start"),
    ({"filters": TraceFilter(q="!!! ...")}, "no word"),
    ({"cursor": "not a cursor"}, "cursor"),
    ({"cursor": "WzEsMiwzXQ"}, "cursor"),  # [1,2,3]: another list's cursor
    ({"limit": 0}, "limit"),
    ({"limit": 1001}, "limit"),
])
@pytest.mark.parametrize("project", [PROJECT, "no such project"])
def test_bad_input_is_an_invalid_query(loaded: Loaded, kwargs: dict[str, object], message: str,
                                       project: str) -> None:
    with loaded.store.read() as conn, pytest.raises(InvalidQuery, match=message):
        list_traces(conn, project, **kwargs)  # type: ignore[arg-type]
