"""The batch writer's rollups equal an independent computation from the spans (both backends)."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from sqlalchemy import select

from threadline.server.store import schema as t
from threadline.server.store.engine import Store
from threadline.server.store.payload import encode_span
from threadline.server.store.records import SpanRecord
from threadline.server.store.write import BatchWriter

EMPTY = encode_span(None, None, None, "[]", {})  # a span payload with no text


def record(trace: str, span: str, parent: str | None, start: int, **kw: object) -> SpanRecord:
    base = SpanRecord(
        project="p", trace_id=trace, span_id=span, parent_span_id=parent, name="op", kind="CHAIN",
        start_ns=start, end_ns=start + 100, status="OK", status_message=None, session_id=None, user_id=None,
        input=None, output=None, model=None, is_llm=False, prompt_tokens=0, completion_tokens=0, total_tokens=0,
        cost=0.0, error=None, payload=EMPTY, turn_key=None,
    )
    return base._replace(**kw)


def generate(seed: int) -> list[SpanRecord]:
    """Conversations: a root per turn (text), an LLM child (tokens), the session id on a random span."""
    rng = random.Random(seed)
    spans: list[SpanRecord] = []
    for s in range(12):
        users = [f"u{rng.randrange(5)}" for _ in range(rng.randint(1, 2))]
        for turn in range(rng.randint(1, 6)):
            trace = f"{s:04x}{turn:04x}".ljust(32, "0")
            start = 1_000_000 * (s * 10 + turn) + rng.randrange(1000)
            carrier = rng.randrange(3)
            user = rng.choice(users)
            failed = rng.random() < 0.2
            prompt, completion = rng.randint(1, 500), rng.randint(1, 200)
            spans.append(record(trace, "a" * 16, None, start, input=f"question {s}-{turn}", output=f"answer {s}-{turn}",
                                session_id=f"s{s}" if carrier == 0 else None, user_id=user if carrier == 0 else None))
            spans.append(record(trace, "b" * 16, "a" * 16, start + 10, kind="LLM", is_llm=True, model="m",
                                prompt_tokens=prompt, completion_tokens=completion,
                                total_tokens=prompt + completion, cost=prompt * 1e-6,
                                session_id=f"s{s}" if carrier == 1 else None, user_id=user if carrier == 1 else None,
                                status="ERROR" if failed else "OK", error="boom" if failed else None))
            spans.append(record(trace, "c" * 16, "b" * 16, start + 20, kind="TOOL",
                                session_id=f"s{s}" if carrier == 2 else None, user_id=user if carrier == 2 else None))
    return spans


def expected_rollups(spans: list[SpanRecord]) -> tuple[dict[str, dict[str, object]], dict[str, dict[str, object]]]:
    traces: dict[str, list[SpanRecord]] = defaultdict(list)
    for sp in spans:
        traces[sp.trace_id].append(sp)
    sessions: dict[str, dict[str, object]] = {}
    users: dict[str, dict[str, object]] = {}
    for members in traces.values():
        session = next(s.session_id for s in members if s.session_id)
        user = next(s.user_id for s in members if s.user_id)
        root = next(s for s in members if s.parent_span_id is None)
        tokens = sum(s.total_tokens for s in members if s.is_llm)
        error = any(s.status == "ERROR" for s in members)
        start, end = min(s.start_ns for s in members), max(s.end_ns for s in members)
        row = sessions.setdefault(session, {"turns": 0, "spans": 0, "errors": 0, "total_tokens": 0, "start": start,
                                            "end": end, "users": set(), "first": (start, root.input),
                                            "last": (start, root.output)})
        row["turns"] += 1  # type: ignore[operator]
        row["spans"] += len(members)  # type: ignore[operator]
        row["errors"] += int(error)  # type: ignore[operator]
        row["total_tokens"] += tokens  # type: ignore[operator]
        row["start"], row["end"] = min(row["start"], start), max(row["end"], end)  # type: ignore[type-var]
        row["users"].add(user)  # type: ignore[attr-defined]
        row["first"] = min(row["first"], (start, root.input))  # type: ignore[type-var]
        row["last"] = max(row["last"], (start, root.output))  # type: ignore[type-var]
        urow = users.setdefault(user, {"turns": 0, "errors": 0, "total_tokens": 0, "sessions": set()})
        urow["turns"] += 1  # type: ignore[operator]
        urow["errors"] += int(error)  # type: ignore[operator]
        urow["total_tokens"] += tokens  # type: ignore[operator]
        urow["sessions"].add(session)  # type: ignore[attr-defined]
    return sessions, users


def write_in_batches(store: Store, spans: list[SpanRecord], batch_size: int) -> None:
    writer = BatchWriter(store.dialect)
    for i in range(0, len(spans), batch_size):
        with store.write() as tx:
            writer.write(tx, spans[i:i + batch_size], now_ns=1)


@pytest.mark.parametrize("seed", [1, 2])
def test_rollups_match_independent_computation_in_any_order(store: Store, seed: int) -> None:
    spans = generate(seed)
    shuffled = spans[:]
    random.Random(seed).shuffle(shuffled)
    write_in_batches(store, shuffled, batch_size=7)
    write_in_batches(store, shuffled[::-1], batch_size=11)  # a full resend: nothing may change
    sessions, users = expected_rollups(spans)
    with store.read() as conn:
        rows = {r.session_id: r for r in conn.execute(t.sessions_with_text())}
        user_rows = {r.user_id: r for r in conn.execute(select(t.users))}
        pairs = {(r.session_id, r.user_id) for r in conn.execute(select(t.session_users))}
        project = conn.execute(select(t.projects)).one()
    assert set(rows) == set(sessions)
    for sid, exp in sessions.items():
        row = rows[sid]
        assert (row.turns, row.spans, row.errors, row.total_tokens) == (
            exp["turns"], exp["spans"], exp["errors"], exp["total_tokens"]), sid
        assert (row.start_ns, row.end_ns, row.duration_ns) == (exp["start"], exp["end"], exp["end"] - exp["start"])  # type: ignore[operator]
        assert row.first_input == exp["first"][1]  # type: ignore[index]
        assert row.last_output == exp["last"][1]  # type: ignore[index]
        assert {u for s, u in pairs if s == sid} == exp["users"]
    assert set(user_rows) == set(users)
    for uid, exp in users.items():
        row = user_rows[uid]
        assert (row.turns, row.errors, row.total_tokens, row.sessions) == (
            exp["turns"], exp["errors"], exp["total_tokens"], len(exp["sessions"])), uid  # type: ignore[arg-type]
    assert (project.spans, project.sessions, project.users) == (len(spans), len(sessions), len(users))
    assert project.traces == len({s.trace_id for s in spans})


def test_trace_joins_a_session_when_a_late_child_names_it(store: Store) -> None:
    trace = "f" * 32
    root = record(trace, "1" * 16, None, 100, input="hi", output="hello")
    llm = record(trace, "2" * 16, "1" * 16, 110, kind="LLM", is_llm=True, prompt_tokens=3, completion_tokens=2,
                 total_tokens=5)
    late = record(trace, "3" * 16, "2" * 16, 120, session_id="late", user_id="u")
    write_in_batches(store, [root, llm], batch_size=10)
    with store.read() as conn:
        assert conn.execute(select(t.sessions)).first() is None
    write_in_batches(store, [late], batch_size=10)
    with store.read() as conn:
        row = conn.execute(t.sessions_with_text()).one()
    assert (row.session_id, row.turns, row.spans, row.total_tokens, row.first_input, row.last_output) == (
        "late", 1, 3, 5, "hi", "hello")


def test_root_text_wins_over_earlier_descendant_text(store: Store) -> None:
    trace = "e" * 32
    child = record(trace, "2" * 16, "1" * 16, 110, input="child in", output="child out", session_id="s")
    write_in_batches(store, [child], batch_size=10)
    with store.read() as conn:
        assert conn.execute(t.sessions_with_text()).one().first_input == "child in"
    root = record(trace, "1" * 16, None, 100, input="root in", output="root out")
    write_in_batches(store, [root], batch_size=10)
    with store.read() as conn:
        trace_row = conn.execute(select(t.traces)).one()
        session_row = conn.execute(t.sessions_with_text()).one()
    assert (trace_row.input, trace_row.output) == ("root in", "root out")
    assert (session_row.first_input, session_row.last_output) == ("root in", "root out")


def test_new_turn_reopens_a_closed_session(store: Store) -> None:
    write_in_batches(store, [record("d" * 32, "1" * 16, None, 100, session_id="s", input="hi")], batch_size=10)
    with store.write() as tx:
        tx.execute(t.sessions.update().values(closed_ns=5))
    write_in_batches(store, [record("d" * 32, "2" * 16, "1" * 16, 105)], batch_size=10)
    with store.read() as conn:
        assert conn.execute(select(t.sessions.c.closed_ns)).scalar() == 5  # same turn: stays closed
    write_in_batches(store, [record("c" * 32, "1" * 16, None, 200, session_id="s", input="again")], batch_size=10)
    with store.read() as conn:
        assert conn.execute(select(t.sessions.c.closed_ns)).scalar() is None
