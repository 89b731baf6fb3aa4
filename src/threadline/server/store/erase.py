"""Erase data (a project, a session or a user's turns) and repair the rollups it touched.

Ingest maintains rollups incrementally; erasing is rare, so it rebuilds the affected turns from
the remaining ``traces`` rows, and the session, user and project rows from those.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Table, delete, func, select, text, update

from threadline.server.store import schema as t
from threadline.server.store.turns import rebuild_turns


@dataclass(frozen=True, slots=True)
class EraseResult:
    """How much was removed."""

    spans: int
    traces: int
    sessions: int
    users: int


def _trace_rows(tx: Connection, pid: int, *, session_id: str | None = None, user_id: str | None = None
                ) -> list[tuple[int, str, str | None, str | None]]:
    tr = t.traces
    query = select(tr.c.id, tr.c.trace_id, tr.c.session_id, tr.c.user_id).where(tr.c.project_id == pid)
    if session_id is not None:
        query = query.where(tr.c.session_id == session_id)
    if user_id is not None:
        query = query.where(tr.c.user_id == user_id)
    return [(r[0], r[1], r[2], r[3]) for r in tx.execute(query)]


def _delete_traces(tx: Connection, pid: int, rows: list[tuple[int, str, str | None, str | None]]) -> int:
    spans = 0
    for start in range(0, len(rows), 500):
        chunk = rows[start:start + 500]
        trace_ids = [r[1] for r in chunk]
        spans += tx.execute(delete(t.spans).where(t.spans.c.project_id == pid, t.spans.c.trace_id.in_(trace_ids))
                            ).rowcount or 0
        tx.execute(delete(t.annotations).where(t.annotations.c.project_id == pid,
                                               t.annotations.c.target_kind == "trace",
                                               t.annotations.c.target_id.in_(trace_ids)))
        if tx.dialect.name == "sqlite":
            tx.execute(text("DELETE FROM trace_text WHERE rowid = :id"), [{"id": r[0]} for r in chunk])
        tx.execute(delete(t.traces).where(t.traces.c.id.in_([r[0] for r in chunk])))
    return spans


def recompute_sessions(tx: Connection, pid: int, session_ids: set[str]) -> int:
    """Rebuild the turns and rollups of these sessions from their traces; delete sessions left empty."""
    tr, tu, s, su = t.traces, t.turns, t.sessions, t.session_users
    removed = 0
    rebuild_turns(tx, pid, session_ids)
    for sid in sorted(session_ids):
        rows = tx.execute(select(tu).where(tu.c.project_id == pid, tu.c.session_id == sid)
                          .order_by(*t.TURN_ORDER)).all()
        if not rows:
            tx.execute(delete(su).where(su.c.project_id == pid, su.c.session_id == sid))
            tx.execute(delete(t.annotations).where(t.annotations.c.project_id == pid,
                                                   t.annotations.c.target_kind == "session",
                                                   t.annotations.c.target_id == sid))
            removed += tx.execute(delete(s).where(s.c.project_id == pid, s.c.session_id == sid)).rowcount or 0
            continue
        start, end = min(r.start_ns for r in rows), max(r.end_ns for r in rows)
        tx.execute(update(s).where(s.c.project_id == pid, s.c.session_id == sid).values(
            start_ns=start, end_ns=end, duration_ns=end - start, turns=len(rows), spans=sum(r.spans for r in rows),
            errors=sum(1 for r in rows if r.errors), prompt_tokens=sum(r.prompt_tokens for r in rows),
            completion_tokens=sum(r.completion_tokens for r in rows), total_tokens=sum(r.total_tokens for r in rows),
            cost=sum(r.cost for r in rows), first_turn_key=rows[0].turn_key, first_input=rows[0].input,
            last_turn_key=rows[-1].turn_key, last_output=rows[-1].output, last_start_ns=rows[-1].start_ns,
        ))
        users = {uid for (uid,) in tx.execute(select(tr.c.user_id).where(
            tr.c.project_id == pid, tr.c.session_id == sid, tr.c.user_id.is_not(None)).distinct())}
        tx.execute(delete(su).where(su.c.project_id == pid, su.c.session_id == sid, su.c.user_id.not_in(users)))
    return removed


def recompute_users(tx: Connection, pid: int, user_ids: set[str]) -> int:
    """Rebuild these users' rollups from their turns (call after :func:`recompute_sessions` for the
    sessions they were in); delete users left with none."""
    tr, tu, u, su = t.traces, t.turns, t.users, t.session_users
    removed = 0
    for uid in sorted(user_ids):
        rows = tx.execute(select(tu).where(tu.c.project_id == pid, tu.c.user_id == uid)).all()
        first_seen, last_seen = tx.execute(select(func.min(tr.c.start_ns), func.max(tr.c.end_ns)).where(
            tr.c.project_id == pid, tr.c.user_id == uid)).one()
        if first_seen is None:
            tx.execute(delete(su).where(su.c.project_id == pid, su.c.user_id == uid))
            tx.execute(delete(t.annotations).where(t.annotations.c.project_id == pid,
                                                   t.annotations.c.target_kind == "user",
                                                   t.annotations.c.target_id == uid))
            removed += tx.execute(delete(u).where(u.c.project_id == pid, u.c.user_id == uid)).rowcount or 0
            continue
        sessions = tx.execute(select(func.count()).select_from(su).where(su.c.project_id == pid, su.c.user_id == uid)
                              ).scalar() or 0
        tx.execute(update(u).where(u.c.project_id == pid, u.c.user_id == uid).values(
            first_seen_ns=first_seen, last_seen_ns=last_seen,
            sessions=sessions, turns=len(rows), errors=sum(1 for r in rows if r.errors),
            prompt_tokens=sum(r.prompt_tokens for r in rows), completion_tokens=sum(r.completion_tokens for r in rows),
            total_tokens=sum(r.total_tokens for r in rows), cost=sum(r.cost for r in rows),
        ))
    return removed


def recompute_project(tx: Connection, pid: int) -> None:
    """Recount a project's spans, traces, sessions and users."""

    def count(table: Table) -> int:
        return int(tx.execute(select(func.count()).select_from(table).where(table.c.project_id == pid)).scalar() or 0)

    tx.execute(update(t.projects).where(t.projects.c.id == pid).values(
        spans=count(t.spans), traces=count(t.traces), sessions=count(t.sessions), users=count(t.users)))


def erase_turns(tx: Connection, pid: int, *, session_id: str | None = None, user_id: str | None = None
                ) -> EraseResult:
    """Erase one session, or every turn of one user, and repair the rollups."""
    rows = _trace_rows(tx, pid, session_id=session_id, user_id=user_id)
    spans = _delete_traces(tx, pid, rows)
    sessions = {r[2] for r in rows if r[2]} | ({session_id} if session_id else set())
    users = {r[3] for r in rows if r[3]} | ({user_id} if user_id else set())
    # A session's turns are rebuilt: every user in those sessions may gain or lose turns.
    su = t.session_users
    ordered = sorted(sessions)
    for start in range(0, len(ordered), 500):
        users |= {u for (u,) in tx.execute(select(su.c.user_id).where(
            su.c.project_id == pid, su.c.session_id.in_(ordered[start:start + 500])))}
    removed_sessions = recompute_sessions(tx, pid, sessions)
    removed_users = recompute_users(tx, pid, users)
    recompute_project(tx, pid)
    return EraseResult(spans=spans, traces=len(rows), sessions=removed_sessions, users=removed_users)


def erase_project(tx: Connection, pid: int) -> EraseResult:
    """Erase a project and everything in it."""
    counts = tx.execute(select(t.projects.c.spans, t.projects.c.traces, t.projects.c.sessions, t.projects.c.users)
                        .where(t.projects.c.id == pid)).one()
    if tx.dialect.name == "sqlite":
        tx.execute(text("DELETE FROM trace_text WHERE rowid IN (SELECT id FROM traces WHERE project_id = :pid)"),
                   {"pid": pid})
    for table in (t.spans, t.traces, t.session_users, t.sessions, t.users, t.annotations):
        tx.execute(delete(table).where(table.c.project_id == pid))
    tx.execute(delete(t.projects).where(t.projects.c.id == pid))
    return EraseResult(spans=counts[0], traces=counts[1], sessions=counts[2], users=counts[3])
