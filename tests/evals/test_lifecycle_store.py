"""The lifecycle pass on the store (both backends), at chosen wall-clock times: idle close at the
project's timeout, 0 = never, the server default, re-opening by a new turn, and idle time counted
from a session's latest span (capped at the time it arrived), while its last activity stays the
arrival time that makes it due for evaluation again."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select

from threadline.server.evals.lifecycle import Lifecycle
from threadline.server.evals.runner import RunOptions, run_evaluations
from threadline.server.query.lifecycle import session_state
from threadline.server.query.overview import activity
from threadline.server.settings import Settings
from threadline.server.store import schema as t
from threadline.server.store.engine import Store
from threadline.server.store.lifecycle import close_session, write_project_settings
from threadline.server.store.payload import encode_span
from threadline.server.store.records import SpanRecord
from threadline.server.store.write import BatchWriter

EMPTY = encode_span(None, None, None, "[]", {})  # a span payload with no text

S = 1_000_000_000
DAY = 86_400 * S


def turn(project: str, session: str, trace: str, end_ns: int) -> SpanRecord:
    """One single-span turn of ``session`` that lasted a second and ended at ``end_ns``."""
    return SpanRecord(
        project=project, trace_id=trace.ljust(32, "0"), span_id="a" * 16, parent_span_id=None, name="turn",
        kind="AGENT", start_ns=end_ns - S, end_ns=end_ns, status="OK", status_message=None, session_id=session,
        user_id="u", input="hi", output="hello", model=None, is_llm=False, prompt_tokens=0, completion_tokens=0,
        total_tokens=0, cost=0.0, error=None, payload=EMPTY, turn_key=None)


def closed(store: Store) -> dict[tuple[str, str], int | None]:
    s, p = t.sessions, t.projects
    with store.read() as conn:
        rows = conn.execute(select(p.c.name, s.c.session_id, s.c.closed_ns).join(p, p.c.id == s.c.project_id))
        return {(r.name, r.session_id): r.closed_ns for r in rows}


def test_idle_close_and_reopen(store: Store, tmp_path: Path) -> None:
    writer = BatchWriter(store.dialect)
    with store.write() as tx:
        writer.write(tx, [turn("p", "s1", "1", 1000 * S), turn("p", "s2", "2", 1000 * S),
                          turn("never", "s1", "3", 1000 * S), turn("default", "s1", "4", 1000 * S)], now_ns=1000 * S)
        pids = dict(tx.execute(select(t.projects.c.name, t.projects.c.id)).all())
        write_project_settings(tx, pids["p"], {"idle_timeout_seconds": 60})
        write_project_settings(tx, pids["never"], {"idle_timeout_seconds": 0})
    lifecycle = Lifecycle(Settings(home=tmp_path, session_idle_timeout_seconds=600), store)

    assert lifecycle.tick(now_ns=1059 * S).closed == {}
    assert lifecycle.tick(now_ns=1060 * S).closed == {"p": ["s1", "s2"]}
    assert closed(store)[("p", "s1")] == 1060 * S
    assert lifecycle.tick(now_ns=1061 * S).closed == {}  # already closed: not closed again
    assert lifecycle.tick(now_ns=1600 * S).closed == {"default": ["s1"]}
    assert lifecycle.tick(now_ns=10**6 * S).closed == {}
    assert closed(store)[("never", "s1")] is None

    # A new turn re-opens s1; it closes again one idle timeout after that activity.
    with store.write() as tx:
        writer.write(tx, [turn("p", "s1", "5", 2000 * S)], now_ns=2000 * S)
    assert closed(store)[("p", "s1")] is None and closed(store)[("p", "s2")] == 1060 * S
    assert lifecycle.tick(now_ns=2059 * S).closed == {}
    assert lifecycle.tick(now_ns=2060 * S).closed == {"p": ["s1"]}

    # Explicit close: True once, then False; None for an unknown session.
    with store.write() as tx:
        writer.write(tx, [turn("p", "s2", "6", 3000 * S)], now_ns=3000 * S)
        assert close_session(tx, pids["p"], "s2", 3001 * S) is True
        assert close_session(tx, pids["p"], "s2", 3002 * S) is False
        assert close_session(tx, pids["p"], "nope", 3002 * S) is None
    assert closed(store)[("p", "s2")] == 3001 * S


def _state(store: Store, project: str, session: str) -> tuple[int, int | None]:
    with store.read() as conn:
        pid = conn.execute(select(t.projects.c.id).where(t.projects.c.name == project)).scalar_one()
        found = session_state(conn, pid, session)
    assert found is not None
    return found


def test_an_old_session_closes_by_the_time_of_its_last_turn(store: Store, tmp_path: Path) -> None:
    """Sessions from days ago arrive idle (closed by the next pass); one from a minute ago stays open."""
    now = 1_800_000_000 * S
    writer = BatchWriter(store.dialect)
    with store.write() as tx:
        writer.write(tx, [turn("demo", "old", "1", now - 3 * DAY), turn("demo", "old", "2", now - 3 * DAY + 60 * S),
                          turn("demo", "current", "3", now - 60 * S)], now_ns=now)
    assert _state(store, "demo", "old") == (now, None)  # last activity: when its data arrived
    lifecycle = Lifecycle(Settings(home=tmp_path, session_idle_timeout_seconds=1800), store)

    assert lifecycle.tick(now_ns=now + S).closed == {"demo": ["old"]}
    assert _state(store, "demo", "old")[1] == now + S
    assert _state(store, "demo", "current")[1] is None
    assert lifecycle.tick(now_ns=now + 1739 * S).closed == {}
    assert lifecycle.tick(now_ns=now + 1740 * S).closed == {"demo": ["current"]}


def test_a_clock_ahead_cannot_keep_a_session_open(store: Store, tmp_path: Path) -> None:
    """A span dated in the future counts as activity at the time it arrived, no later."""
    now = 1_800_000_000 * S
    writer = BatchWriter(store.dialect)
    with store.write() as tx:
        writer.write(tx, [turn("skew", "ahead", "1", now + 30 * DAY)], now_ns=now)
    lifecycle = Lifecycle(Settings(home=tmp_path, session_idle_timeout_seconds=1800), store)
    assert lifecycle.tick(now_ns=now + 1799 * S).closed == {}
    assert lifecycle.tick(now_ns=now + 1800 * S).closed == {"skew": ["ahead"]}

    # More data later re-opens it; idle again one timeout after that arrival.
    with store.write() as tx:
        writer.write(tx, [turn("skew", "ahead", "2", now + 10 * S)], now_ns=now + 2 * DAY)
    assert _state(store, "skew", "ahead") == (now + 2 * DAY, None)
    assert lifecycle.tick(now_ns=now + 2 * DAY + 1799 * S).closed == {}
    assert lifecycle.tick(now_ns=now + 2 * DAY + 1800 * S).closed == {"skew": ["ahead"]}


def test_a_late_turn_of_an_old_session_reopens_it_changes_the_live_version_and_makes_it_due(
        store: Store, tmp_path: Path) -> None:
    """A turn dated days ago still counts as new data: the session re-opens (and closes again at the
    next pass), live pages see a new version, and its evaluation is due again."""
    now = time.time_ns()
    writer = BatchWriter(store.dialect)
    with store.write() as tx:
        writer.write(tx, [turn("late", "old", "1", now - 3 * DAY), turn("late", "other", "2", now - 60 * S)],
                     now_ns=now)
    settings = Settings(home=tmp_path, session_idle_timeout_seconds=1800)
    lifecycle = Lifecycle(settings, store)
    assert lifecycle.tick(now_ns=now + S).closed == {"late": ["old"]}
    options = RunOptions(project="late", evaluators=["errors"], closed_only=True)
    assert run_evaluations(store, settings, options).sessions_evaluated == 1
    assert run_evaluations(store, settings, options).sessions_evaluated == 0
    with store.read() as conn:
        project_version, session_version = activity(conn, "late"), activity(conn, "late", "old")

    arrival = time.time_ns()
    with store.write() as tx:
        writer.write(tx, [turn("late", "old", "3", now - 4 * DAY)], now_ns=arrival)
    with store.read() as conn:
        assert activity(conn, "late") != project_version
        assert activity(conn, "late", "old") != session_version
    assert _state(store, "late", "old") == (arrival, None)
    assert lifecycle.tick(now_ns=arrival + S).closed == {"late": ["old"]}
    assert run_evaluations(store, settings, options).sessions_evaluated == 1
