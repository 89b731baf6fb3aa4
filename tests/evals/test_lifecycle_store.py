"""The lifecycle pass on the store (both backends), at chosen wall-clock times: idle close at the
project's timeout, 0 = never, the server default, and re-opening by a new turn."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from threadline.server.evals.lifecycle import Lifecycle
from threadline.server.settings import Settings
from threadline.server.store import schema as t
from threadline.server.store.engine import Store
from threadline.server.store.lifecycle import close_session, write_project_settings
from threadline.server.store.records import SpanRecord
from threadline.server.store.write import BatchWriter

S = 1_000_000_000


def turn(project: str, session: str, trace: str) -> SpanRecord:
    return SpanRecord(
        project=project, trace_id=trace.ljust(32, "0"), span_id="a" * 16, parent_span_id=None, name="turn",
        kind="AGENT", start_ns=5 * S, end_ns=6 * S, status="OK", status_message=None, session_id=session,
        user_id="u", input="hi", output="hello", model=None, is_llm=False, prompt_tokens=0, completion_tokens=0,
        total_tokens=0, cost=0.0, error=None, attributes_json="{}", events_json="[]", turn_key=None, detail_json=None)


def closed(store: Store) -> dict[tuple[str, str], int | None]:
    s, p = t.sessions, t.projects
    with store.read() as conn:
        rows = conn.execute(select(p.c.name, s.c.session_id, s.c.closed_ns).join(p, p.c.id == s.c.project_id))
        return {(r.name, r.session_id): r.closed_ns for r in rows}


def test_idle_close_and_reopen(store: Store, tmp_path: Path) -> None:
    writer = BatchWriter(store.dialect)
    with store.write() as tx:
        writer.write(tx, [turn("p", "s1", "1"), turn("p", "s2", "2"), turn("never", "s1", "3"),
                          turn("default", "s1", "4")], now_ns=1000 * S)
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
        writer.write(tx, [turn("p", "s1", "5")], now_ns=2000 * S)
    assert closed(store)[("p", "s1")] is None and closed(store)[("p", "s2")] == 1060 * S
    assert lifecycle.tick(now_ns=2059 * S).closed == {}
    assert lifecycle.tick(now_ns=2060 * S).closed == {"p": ["s1"]}

    # Explicit close: True once, then False; None for an unknown session.
    with store.write() as tx:
        writer.write(tx, [turn("p", "s2", "6")], now_ns=3000 * S)
        assert close_session(tx, pids["p"], "s2", 3001 * S) is True
        assert close_session(tx, pids["p"], "s2", 3002 * S) is False
        assert close_session(tx, pids["p"], "nope", 3002 * S) is None
    assert closed(store)[("p", "s2")] == 3001 * S
