"""Retention: purge whole sessions (and traces without a session) whose last activity is too old.

A session's last activity is the end of its latest span (``sessions.end_ns``), not when it was
ingested, so conversations sent late with old timestamps are judged by their own time. Each batch
is one short transaction of at most ``batch`` sessions (or traces), removed through
:func:`~threadline.server.store.erase.purge_sessions` / :func:`~.erase.purge_traces`: the same
code as an erase, so turns, search rows, annotations on every target kind and every rollup stay
consistent, and row locks follow the ingest writer's order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, select

from threadline.server.store import schema as t
from threadline.server.store.engine import Store
from threadline.server.store.erase import purge_sessions, purge_traces


@dataclass(slots=True)
class PurgeReport:
    """What the purge of one project removed."""

    sessions: int = 0
    traces: int = 0
    spans: int = 0
    users: int = 0
    annotations: int = 0
    batches: int = 0

    @property
    def removed_anything(self) -> bool:
        """Whether anything was removed."""
        return bool(self.sessions or self.traces or self.spans)


def expired_sessions(conn: Connection, project_id: int, cutoff_ns: int, limit: int) -> list[str]:
    """Up to ``limit`` sessions of the project whose latest span ended before ``cutoff_ns``, oldest first."""
    s = t.sessions
    return [r.session_id for r in conn.execute(
        select(s.c.session_id).where(s.c.project_id == project_id, s.c.end_ns < cutoff_ns)
        .order_by(s.c.end_ns, s.c.session_id).limit(limit))]


def expired_traces(conn: Connection, project_id: int, cutoff_ns: int, limit: int) -> list[str]:
    """Up to ``limit`` traces without a session that ended before ``cutoff_ns`` (oldest first)."""
    tr = t.traces
    return [r.trace_id for r in conn.execute(
        select(tr.c.trace_id).where(tr.c.project_id == project_id, tr.c.start_ns < cutoff_ns,
                                    tr.c.end_ns < cutoff_ns, tr.c.session_id.is_(None))
        .order_by(tr.c.start_ns, tr.c.trace_id).limit(limit))]


def purge_project(store: Store, project_id: int, cutoff_ns: int, *, batch: int, max_batches: int | None = None,
                  should_stop: Callable[[], bool] | None = None) -> PurgeReport:
    """Purge the project's sessions and session-less traces that ended before ``cutoff_ns``, ``batch``
    at a time, one transaction per batch, until none is left (or ``max_batches`` were done, or
    ``should_stop()`` says so). Candidates are read before the write lock is taken, and chosen
    again inside the transaction, so a pass with nothing to do never blocks a writer."""
    report = PurgeReport()
    for finder, purge in ((expired_sessions, purge_sessions), (expired_traces, purge_traces)):
        while max_batches is None or report.batches < max_batches:
            if should_stop is not None and should_stop():
                return report
            with store.read() as conn:
                if not finder(conn, project_id, cutoff_ns, 1):
                    break
            with store.write() as tx:
                ids = finder(tx, project_id, cutoff_ns, batch)
                if not ids:
                    break
                result = purge(tx, project_id, ids)
            report.batches += 1
            report.sessions += result.sessions
            report.traces += result.traces
            report.spans += result.spans
            report.users += result.users
            report.annotations += result.annotations
    return report
