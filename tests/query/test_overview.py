"""The sessions header numbers, the chart series and the timeline strip, on both backends.

Expected values are recomputed independently from the span records the test writes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from threadline.server.query.overview import activity, overview, timeseries, turn_marks, turns_from
from threadline.server.query.sessions import SessionFilter, list_sessions
from threadline.server.query.timeconv import ms, percentile
from threadline.server.store.engine import Store
from threadline.server.store.payload import encode_span
from threadline.server.store.records import SpanRecord
from threadline.server.store.write import BatchWriter

EMPTY = encode_span(None, None, None, "[]", {})  # a span payload with no text

SECOND = 1_000_000_000
BASE = 1_800_000_000 * SECOND


@dataclass
class TurnFact:
    session: str
    user: str
    start: int
    latency: int
    tokens: int
    cost: float
    failed: bool
    text: str


def record(trace: str, span: str, parent: str | None, start: int, end: int, **kw: object) -> SpanRecord:
    base = SpanRecord(
        project="p", trace_id=trace, span_id=span, parent_span_id=parent, name="op", kind="CHAIN",
        start_ns=start, end_ns=end, status="OK", status_message=None, session_id=None, user_id=None,
        input=None, output=None, model=None, is_llm=False, prompt_tokens=0, completion_tokens=0, total_tokens=0,
        cost=0.0, error=None, payload=EMPTY, turn_key=None,
    )
    return base._replace(**kw)  # type: ignore[arg-type]


def build(seed: int = 7) -> tuple[list[SpanRecord], list[TurnFact]]:
    rng = random.Random(seed)
    spans: list[SpanRecord] = []
    facts: list[TurnFact] = []
    for s in range(9):
        users = [f"user {rng.randrange(4)}" for _ in range(rng.randint(1, 2))]
        session_start = BASE + s * 3600 * SECOND
        for n in range(rng.randint(1, 7)):
            trace = f"{s:04x}{n:04x}".ljust(32, "0")
            start = session_start + n * 30 * SECOND
            latency = rng.randint(50, 9000) * 1_000_000
            prompt, completion = rng.randint(1, 400), rng.randint(1, 300)
            failed = rng.random() < 0.25
            user = rng.choice(users)
            text = "needle" if (s, n) == (4, 0) else f"words {s} {n}"
            facts.append(TurnFact(f"s/{s}", user, start, latency, prompt + completion, prompt * 1e-6, failed, text))
            spans.append(record(trace, "a" * 16, None, start, start + latency, input=text, output=f"reply {s} {n}",
                                session_id=f"s/{s}", user_id=user))
            spans.append(record(trace, "b" * 16, "a" * 16, start + 1, start + latency - 1, kind="LLM", is_llm=True,
                                model="m", prompt_tokens=prompt, completion_tokens=completion,
                                total_tokens=prompt + completion, cost=prompt * 1e-6,
                                status="ERROR" if failed else "OK", error="boom" if failed else None))
    return spans, facts


def write(store: Store, spans: list[SpanRecord], now_ns: int = 1) -> None:
    writer = BatchWriter(store.dialect)
    with store.write() as tx:
        writer.write(tx, spans, now_ns=now_ns)


def expected(facts: list[TurnFact]) -> dict[str, object]:
    latencies = [ms(f.latency) for f in facts]
    return {
        "sessions": len({f.session for f in facts}), "turns": len(facts), "users": len({f.user for f in facts}),
        "error_turns": sum(f.failed for f in facts), "total_tokens": sum(f.tokens for f in facts),
        "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
    }


def check(store: Store, filters: SessionFilter, facts: list[TurnFact]) -> None:
    want = expected(facts)
    with store.read() as conn:
        got = overview(conn, "p", filters)
        listed = list_sessions(conn, "p", filters, limit=1000).data
    assert got.sessions == want["sessions"] == len(listed)
    assert got.turns == want["turns"] == sum(s.turns for s in listed)
    assert (got.users, got.error_turns, got.total_tokens) == (want["users"], want["error_turns"], want["total_tokens"])
    assert got.cost_usd == pytest.approx(sum(f.cost for f in facts))
    assert got.latency_p50_ms == pytest.approx(want["p50"])
    assert got.latency_p99_ms == pytest.approx(want["p99"])
    if facts:
        assert got.error_rate == pytest.approx(got.error_turns / got.turns)
        assert got.turns_per_session == pytest.approx(got.turns / got.sessions)


def test_overview_matches_independent_totals_under_every_filter(store: Store) -> None:
    spans, facts = build()
    write(store, spans)
    check(store, SessionFilter(), facts)
    failing = {f.session for f in facts if f.failed}
    check(store, SessionFilter(has_error=True), [f for f in facts if f.session in failing])
    check(store, SessionFilter(has_error=False), [f for f in facts if f.session not in failing])
    user = facts[0].user
    sessions_of_user = {f.session for f in facts if f.user == user}
    check(store, SessionFilter(user_id=user), [f for f in facts if f.session in sessions_of_user])
    counts = {s: sum(f.session == s for f in facts) for s in {f.session for f in facts}}
    check(store, SessionFilter(min_turns=4), [f for f in facts if counts[f.session] >= 4])
    check(store, SessionFilter(q="needle"), [f for f in facts if f.session == "s/4"])
    window_start = datetime.fromtimestamp((BASE + 2 * 3600 * SECOND) / 1e9, tz=UTC)
    window_end = datetime.fromtimestamp((BASE + 5 * 3600 * SECOND) / 1e9, tz=UTC)
    in_window = {"s/2", "s/3", "s/4", "s/5"}
    check(store, SessionFilter(start=window_start, end=window_end), [f for f in facts if f.session in in_window])


def test_overview_of_unknown_project_or_empty_match_is_zero(store: Store) -> None:
    with store.read() as conn:
        assert overview(conn, "nothing").sessions == 0
        assert timeseries(conn, "nothing") is None
        assert turn_marks(conn, "nothing", "s") == []
    write(store, build()[0])
    with store.read() as conn:
        empty = overview(conn, "p", SessionFilter(min_turns=1000))
        assert (empty.sessions, empty.turns, empty.latency_p50_ms, empty.error_rate) == (0, 0, None, None)
        assert timeseries(conn, "p", SessionFilter(min_turns=1000)) is None


def test_timeseries_buckets_add_up_to_the_totals(store: Store) -> None:
    spans, facts = build()
    write(store, spans)
    with store.read() as conn:
        series = timeseries(conn, "p", buckets=10)
        assert series is not None
        assert len(series.buckets) == 10
        assert sum(b.sessions for b in series.buckets) == len({f.session for f in facts})
        assert sum(b.tokens for b in series.buckets) == sum(f.tokens for f in facts)
        assert series.buckets[0].sessions >= 1 and series.buckets[-1].sessions >= 1  # first and last session
        assert [b.start for b in series.buckets] == sorted(b.start for b in series.buckets)
        errors_only = timeseries(conn, "p", SessionFilter(has_error=True), buckets=5)
        failing = {f.session for f in facts if f.failed}
        assert errors_only is not None
        assert sum(b.sessions for b in errors_only.buckets) == len(failing)
        assert sum(b.tokens for b in errors_only.buckets) == sum(f.tokens for f in facts if f.session in failing)


def test_turn_marks_and_turns_from_follow_the_session_order(store: Store) -> None:
    spans, facts = build()
    write(store, spans)
    session = max({f.session for f in facts}, key=lambda s: sum(f.session == s for f in facts))
    mine = sorted((f for f in facts if f.session == session), key=lambda f: f.start)
    with store.read() as conn:
        marks = turn_marks(conn, "p", session)
        assert [m.index for m in marks] == list(range(len(mine)))
        assert [m.latency_ms for m in marks] == [ms(f.latency) for f in mine]
        assert [m.error for m in marks] == [f.failed for f in mine]
        tail = turns_from(conn, "p", session, first_index=1)
        assert [t.index for t in tail] == list(range(1, len(mine)))
        assert [t.input for t in tail] == [f.text for f in mine[1:]]
        assert turns_from(conn, "p", session, first_index=len(mine)) == []


def test_activity_changes_when_a_session_receives_a_turn(store: Store) -> None:
    spans, _ = build()
    write(store, spans)
    with store.read() as conn:
        before_project, before_session = activity(conn, "p"), activity(conn, "p", "s/1")
        other = activity(conn, "p", "s/2")
    extra = record("f" * 32, "a" * 16, None, BASE + 99 * SECOND, BASE + 100 * SECOND, session_id="s/1", input="new")
    write(store, [extra], now_ns=2)
    with store.read() as conn:
        assert activity(conn, "p") != before_project
        assert activity(conn, "p", "s/1") != before_session
        assert activity(conn, "p", "s/2") == other
