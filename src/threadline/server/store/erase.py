"""Erase data (a project, a session or a user's turns) and repair the rollups it touched.

Everything that holds the erased text goes: spans, traces, their full-text rows, tags and metadata
pairs (``trace_tags``, ``trace_metadata``), turns,
annotations on every target kind (the erased spans, traces, sessions and users), and the
session, user and project rollups are repaired.

* :func:`purge_sessions` removes whole sessions (an erase by session, and the retention purge):
  the rollups of their users and of the project are *decremented* by exactly what went, so a
  batch costs what it removes, never a recount of the project.
* :func:`purge_traces` removes traces without a session (retention).
* :func:`erase_turns` removes one user's turns from sessions that may be shared: the touched
  sessions' turns are rebuilt from their remaining ``traces`` rows and the sessions and users
  recomputed from those (erasing is rare).
* :func:`erase_project` removes a whole project.
* :func:`erase` is what the CLI and the REST API call: it looks the target up, erases it in one
  transaction and then, on SQLite, makes the erased text unrecoverable from the files
  (:func:`scrub_sqlite`).

Row locks (PostgreSQL, where the ingest writer writes concurrently) are taken in the writer's
order: ``traces`` (by trace id), ``turns`` (by session and turn key), ``sessions``, ``users``,
``projects``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import Connection, Table, delete, func, select, text, update

from threadline.server.store import schema as t
from threadline.server.store.engine import Store
from threadline.server.store.fulltext import drop_search_table, search_table
from threadline.server.store.turns import rebuild_turns
from threadline.server.store.wal import truncate_wal

log = logging.getLogger("threadline.store")

_CHUNK = 500
#: A trace row as erase handles it: (id, trace_id, session_id, user_id).
TraceRow = tuple[int, str, str | None, str | None]


@dataclass(frozen=True, slots=True)
class EraseResult:
    """How much was removed (``checkpointed``: SQLite's write-ahead log was truncated afterwards;
    ``None`` where that does not apply)."""

    spans: int
    traces: int
    sessions: int
    users: int
    annotations: int = 0
    checkpointed: bool | None = None

    def counts(self) -> dict[str, int | bool | None]:
        """The counts as a JSON-ready mapping."""
        return asdict(self)


@dataclass(slots=True)
class _Tally:
    """Running counts of one erase."""

    spans: int = 0
    traces: int = 0
    sessions: int = 0
    users: int = 0
    annotations: int = 0

    def result(self) -> EraseResult:
        return EraseResult(spans=self.spans, traces=self.traces, sessions=self.sessions, users=self.users,
                           annotations=self.annotations)


class EraseTargetMissing(LookupError):
    """The project, session or user to erase does not exist (``kind``: project, session or user)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _chunks(values: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield list(values[start:start + _CHUNK])


def _delete_annotations(tx: Connection, pid: int, kind: str, target_ids: Iterable[str]) -> int:
    """Delete the annotations whose target is one of these (of one kind); return how many."""
    a = t.annotations
    removed = 0
    for chunk in _chunks(sorted(set(target_ids))):
        removed += tx.execute(delete(a).where(a.c.project_id == pid, a.c.target_kind == kind,
                                              a.c.target_id.in_(chunk))).rowcount or 0
    return removed


def _trace_rows(tx: Connection, pid: int, *, session_ids: Sequence[str] | None = None, user_id: str | None = None
                ) -> list[TraceRow]:
    """The traces of these sessions (or of this user), locked on PostgreSQL in trace id order."""
    tr = t.traces
    query = select(tr.c.id, tr.c.trace_id, tr.c.session_id, tr.c.user_id).where(tr.c.project_id == pid)
    if user_id is not None:
        query = query.where(tr.c.user_id == user_id)
    chunks = list(_chunks(sorted(session_ids))) if session_ids is not None else [[]]
    rows: list[TraceRow] = []
    for chunk in chunks:
        q = query.where(tr.c.session_id.in_(chunk)) if session_ids is not None else query
        if tx.dialect.name == "postgresql":
            q = q.order_by(tr.c.trace_id).with_for_update()
        rows.extend((r[0], r[1], r[2], r[3]) for r in tx.execute(q))
    return rows


def _delete_traces(tx: Connection, pid: int, rows: Sequence[TraceRow], tally: _Tally) -> None:
    """Delete these traces with their spans, full-text rows, tags and metadata pairs, and the
    annotations on them or their spans."""
    sp = t.spans
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start:start + _CHUNK]
        trace_ids = sorted(r[1] for r in chunk)
        span_ids = [s for (s,) in tx.execute(select(sp.c.span_id).where(sp.c.project_id == pid,
                                                                        sp.c.trace_id.in_(trace_ids)))]
        tally.spans += tx.execute(delete(sp).where(sp.c.project_id == pid, sp.c.trace_id.in_(trace_ids))
                                  ).rowcount or 0
        tally.annotations += _delete_annotations(tx, pid, "span", span_ids)
        tally.annotations += _delete_annotations(tx, pid, "trace", trace_ids)
        for labels in (t.trace_tags, t.trace_metadata):
            tx.execute(delete(labels).where(labels.c.project_id == pid, labels.c.trace_id.in_(trace_ids)))
        if tx.dialect.name == "sqlite":
            tx.execute(text(f"DELETE FROM {search_table(pid)} WHERE rowid = :id"), [{"id": r[0]} for r in chunk])
        tally.traces += tx.execute(delete(t.traces).where(t.traces.c.id.in_([r[0] for r in chunk]))).rowcount or 0


def _lock_turns(tx: Connection, pid: int, session_ids: Sequence[str]) -> None:
    """PostgreSQL: lock the sessions' turn rows, then their session rows (the ingest writer's order)."""
    if tx.dialect.name != "postgresql" or not session_ids:
        return
    tu, s = t.turns, t.sessions
    for chunk in _chunks(sorted(session_ids)):
        tx.execute(select(tu.c.turn_key).where(tu.c.project_id == pid, tu.c.session_id.in_(chunk))
                   .order_by(tu.c.session_id, tu.c.turn_key).with_for_update())
    for chunk in _chunks(sorted(session_ids)):
        tx.execute(select(s.c.session_id).where(s.c.project_id == pid, s.c.session_id.in_(chunk))
                   .order_by(s.c.session_id).with_for_update())


def _decrement_project(tx: Connection, pid: int, tally: _Tally) -> None:
    """Take what was removed off the project's counters (increments, like ingest: safe beside it)."""
    p = t.projects
    tx.execute(update(p).where(p.c.id == pid).values(
        spans=p.c.spans - tally.spans, traces=p.c.traces - tally.traces,
        sessions=p.c.sessions - tally.sessions, users=p.c.users - tally.users))


def _settle_users(tx: Connection, pid: int, user_ids: Iterable[str], tally: _Tally,
                  deltas: dict[str, dict[str, float]] | None = None) -> None:
    """Apply ``deltas`` (turn counts and totals taken away) to these users, refresh their first and
    last seen from their remaining traces, and delete those left with none (and their annotations)."""
    tr, u, su = t.traces, t.users, t.session_users
    gone: list[str] = []
    for uid in sorted(set(user_ids)):
        first_seen, last_seen = tx.execute(select(func.min(tr.c.start_ns), func.max(tr.c.end_ns)).where(
            tr.c.project_id == pid, tr.c.user_id == uid)).one()
        if first_seen is None:
            gone.append(uid)
            continue
        d = (deltas or {}).get(uid, {})
        tx.execute(update(u).where(u.c.project_id == pid, u.c.user_id == uid).values(
            first_seen_ns=first_seen, last_seen_ns=last_seen,
            sessions=u.c.sessions - int(d.get("sessions", 0)), turns=u.c.turns - int(d.get("turns", 0)),
            errors=u.c.errors - int(d.get("errors", 0)),
            prompt_tokens=u.c.prompt_tokens - int(d.get("prompt_tokens", 0)),
            completion_tokens=u.c.completion_tokens - int(d.get("completion_tokens", 0)),
            total_tokens=u.c.total_tokens - int(d.get("total_tokens", 0)), cost=u.c.cost - d.get("cost", 0.0)))
    for chunk in _chunks(gone):
        tx.execute(delete(su).where(su.c.project_id == pid, su.c.user_id.in_(chunk)))
        tally.users += tx.execute(delete(u).where(u.c.project_id == pid, u.c.user_id.in_(chunk))).rowcount or 0
    tally.annotations += _delete_annotations(tx, pid, "user", gone)


def purge_sessions(tx: Connection, pid: int, session_ids: Sequence[str]) -> EraseResult:
    """Remove these whole sessions: traces, spans, turns, search rows, annotations on the sessions and
    on everything in them; users left with no data go too. Rollups are decremented by what went."""
    tally = _Tally()
    sessions = sorted(set(session_ids))
    if not sessions:
        return tally.result()
    tu, s, su = t.turns, t.sessions, t.session_users
    rows = _trace_rows(tx, pid, session_ids=sessions)
    _lock_turns(tx, pid, sessions)
    deltas: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    users: set[str] = {r[3] for r in rows if r[3]}
    for chunk in _chunks(sessions):
        for turn in tx.execute(select(tu.c.user_id, tu.c.errors, tu.c.prompt_tokens, tu.c.completion_tokens,
                                      tu.c.total_tokens, tu.c.cost).where(tu.c.project_id == pid,
                                                                          tu.c.session_id.in_(chunk))):
            if turn.user_id is None:
                continue
            d = deltas[turn.user_id]
            d["turns"] += 1
            d["errors"] += int(turn.errors > 0)
            d["prompt_tokens"] += turn.prompt_tokens
            d["completion_tokens"] += turn.completion_tokens
            d["total_tokens"] += turn.total_tokens
            d["cost"] += turn.cost
        for (uid,) in tx.execute(select(su.c.user_id).where(su.c.project_id == pid, su.c.session_id.in_(chunk))):
            deltas[uid]["sessions"] += 1
    users |= set(deltas)
    _delete_traces(tx, pid, rows, tally)
    for chunk in _chunks(sessions):
        tx.execute(delete(tu).where(tu.c.project_id == pid, tu.c.session_id.in_(chunk)))
        tx.execute(delete(su).where(su.c.project_id == pid, su.c.session_id.in_(chunk)))
        tally.sessions += tx.execute(delete(s).where(s.c.project_id == pid, s.c.session_id.in_(chunk))
                                     ).rowcount or 0
    tally.annotations += _delete_annotations(tx, pid, "session", sessions)
    _settle_users(tx, pid, users, tally, deltas)
    _decrement_project(tx, pid, tally)
    return tally.result()


def purge_traces(tx: Connection, pid: int, trace_ids: Sequence[str]) -> EraseResult:
    """Remove these traces *without a session* (traces in a session are ignored: purge their session)."""
    tally = _Tally()
    tr = t.traces
    rows: list[TraceRow] = []
    for chunk in _chunks(sorted(set(trace_ids))):
        q = select(tr.c.id, tr.c.trace_id, tr.c.session_id, tr.c.user_id).where(
            tr.c.project_id == pid, tr.c.trace_id.in_(chunk), tr.c.session_id.is_(None))
        if tx.dialect.name == "postgresql":
            q = q.order_by(tr.c.trace_id).with_for_update()
        rows.extend((r[0], r[1], r[2], r[3]) for r in tx.execute(q))
    _delete_traces(tx, pid, rows, tally)
    _settle_users(tx, pid, {r[3] for r in rows if r[3]}, tally)
    _decrement_project(tx, pid, tally)
    return tally.result()


def recompute_sessions(tx: Connection, pid: int, session_ids: set[str], tally: _Tally | None = None) -> int:
    """Rebuild the turns and rollups of these sessions from their traces; delete sessions left empty."""
    tr, tu, s, su = t.traces, t.turns, t.sessions, t.session_users
    removed = 0
    rebuild_turns(tx, pid, session_ids)
    for sid in sorted(session_ids):
        rows = tx.execute(t.turns_with_text().where(tu.c.project_id == pid, tu.c.session_id == sid)
                          .order_by(*t.TURN_ORDER)).all()
        if not rows:
            tx.execute(delete(su).where(su.c.project_id == pid, su.c.session_id == sid))
            gone = _delete_annotations(tx, pid, "session", [sid])
            if tally is not None:
                tally.annotations += gone
            removed += tx.execute(delete(s).where(s.c.project_id == pid, s.c.session_id == sid)).rowcount or 0
            continue
        start, end = min(r.start_ns for r in rows), max(r.end_ns for r in rows)
        tx.execute(update(s).where(s.c.project_id == pid, s.c.session_id == sid).values(
            start_ns=start, end_ns=end, duration_ns=end - start, turns=len(rows), spans=sum(r.spans for r in rows),
            errors=sum(1 for r in rows if r.errors), prompt_tokens=sum(r.prompt_tokens for r in rows),
            completion_tokens=sum(r.completion_tokens for r in rows), total_tokens=sum(r.total_tokens for r in rows),
            cost=sum(r.cost for r in rows), first_turn_key=rows[0].turn_key,
            last_turn_key=rows[-1].turn_key, last_start_ns=rows[-1].start_ns,
        ))
        users = {uid for (uid,) in tx.execute(select(tr.c.user_id).where(
            tr.c.project_id == pid, tr.c.session_id == sid, tr.c.user_id.is_not(None)).distinct())}
        tx.execute(delete(su).where(su.c.project_id == pid, su.c.session_id == sid, su.c.user_id.not_in(users)))
    return removed


def recompute_users(tx: Connection, pid: int, user_ids: set[str], tally: _Tally | None = None) -> int:
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
            gone = _delete_annotations(tx, pid, "user", [uid])
            if tally is not None:
                tally.annotations += gone
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
    """Recount a project's spans, traces, sessions and users (a full count: for repairs, not for erase)."""

    def count(table: Table) -> int:
        return int(tx.execute(select(func.count()).select_from(table).where(table.c.project_id == pid)).scalar() or 0)

    tx.execute(update(t.projects).where(t.projects.c.id == pid).values(
        spans=count(t.spans), traces=count(t.traces), sessions=count(t.sessions), users=count(t.users)))


def erase_turns(tx: Connection, pid: int, *, session_id: str | None = None, user_id: str | None = None
                ) -> EraseResult:
    """Erase one session, or every trace of one user, and repair the rollups."""
    if session_id is not None and user_id is None:
        return purge_sessions(tx, pid, [session_id])
    tally = _Tally()
    rows = _trace_rows(tx, pid, session_ids=[session_id] if session_id is not None else None, user_id=user_id)
    sessions = sorted({r[2] for r in rows if r[2]} | ({session_id} if session_id else set()))
    _lock_turns(tx, pid, sessions)
    _delete_traces(tx, pid, rows, tally)
    users = {r[3] for r in rows if r[3]} | ({user_id} if user_id else set())
    # A session's turns are rebuilt: every user in those sessions may gain or lose turns.
    su = t.session_users
    for chunk in _chunks(sessions):
        users |= {u for (u,) in tx.execute(select(su.c.user_id).where(su.c.project_id == pid,
                                                                      su.c.session_id.in_(chunk)))}
    tally.sessions = recompute_sessions(tx, pid, set(sessions), tally)
    tally.users = recompute_users(tx, pid, users, tally)
    _decrement_project(tx, pid, tally)
    return tally.result()


def erase_project(tx: Connection, pid: int) -> EraseResult:
    """Erase a project and everything in it."""
    counts = tx.execute(select(t.projects.c.spans, t.projects.c.traces, t.projects.c.sessions, t.projects.c.users)
                        .where(t.projects.c.id == pid)).one()
    drop_search_table(tx, pid)
    annotations = tx.execute(delete(t.annotations).where(t.annotations.c.project_id == pid)).rowcount or 0
    for table in (t.spans, t.traces, t.trace_tags, t.trace_metadata,
                  t.turns, t.session_users, t.sessions, t.users, t.annotation_configs,
                  t.eval_runs):
        tx.execute(delete(table).where(table.c.project_id == pid))
    tx.execute(delete(t.projects).where(t.projects.c.id == pid))
    return EraseResult(spans=counts[0], traces=counts[1], sessions=counts[2], users=counts[3],
                       annotations=annotations)


# --- the whole operation (CLI and REST API) ---------------------------------------------------------

def _project_id(conn: Connection, project: str) -> int | None:
    return conn.execute(select(t.projects.c.id).where(t.projects.c.name == project)).scalar()


def find_target(conn: Connection, project: str, *, session_id: str | None = None, user_id: str | None = None
                ) -> int:
    """The project id, once the project (and the session or user) is known to exist.

    Raises :class:`EraseTargetMissing` naming what does not exist.
    """
    pid = _project_id(conn, project)
    if pid is None:
        raise EraseTargetMissing("project", f"no project {project!r}")
    s, u = t.sessions, t.users
    if session_id is not None and conn.execute(select(s.c.session_id).where(
            s.c.project_id == pid, s.c.session_id == session_id)).first() is None:
        raise EraseTargetMissing("session", f"no session {session_id!r} in project {project!r}")
    if user_id is not None and conn.execute(select(u.c.user_id).where(
            u.c.project_id == pid, u.c.user_id == user_id)).first() is None:
        raise EraseTargetMissing("user", f"no user {user_id!r} in project {project!r}")
    return pid


def scrub_sqlite(store: Store, project_id: int | None = None) -> bool:
    """After an erase on SQLite: rewrite the project's full-text index without the erased terms (FTS5
    keeps a deleted row's terms in older index segments until they are merged; ``project_id`` is
    ``None`` after a whole project's erase, whose index was dropped) and truncate the write-ahead
    log, so no erased byte stays in the database, ``-wal`` or ``-shm`` file. Every connection runs
    with ``secure_delete``, so freed space is zeroed. Returns whether the log was truncated
    (``False``: another connection kept it busy past the retries; the next checkpoint copies it)."""
    database = store.sqlite_path
    if database is None:
        return False
    if project_id is not None:  # the project's own index (an erased project's is dropped)
        table = search_table(project_id)
        with store.write() as tx:
            tx.exec_driver_sql(f"INSERT INTO {table}({table}) VALUES ('optimize')")
    return truncate_wal(database)


def erase(store: Store, project: str, *, session_id: str | None = None, user_id: str | None = None
          ) -> EraseResult:
    """Erase a project, one session, or every trace of one user, in one transaction; on SQLite then
    scrub the files (:func:`scrub_sqlite`). Raises :class:`EraseTargetMissing` (nothing is done)."""
    if session_id is not None and user_id is not None:
        raise ValueError("erase a session or a user, not both")
    with store.write() as tx:
        pid = find_target(tx, project, session_id=session_id, user_id=user_id)
        partial = session_id is not None or user_id is not None
        result = erase_turns(tx, pid, session_id=session_id, user_id=user_id) if partial else erase_project(tx, pid)
    checkpointed = scrub_sqlite(store, pid if partial else None) if store.dialect == "sqlite" else None
    # The log names what kind of thing was erased, never its id (often personal data).
    log.info("erased %s of project %s: %d spans, %d traces, %d sessions, %d users, %d annotations%s",
             "a session" if session_id is not None else "a user" if user_id is not None else "everything",
             project, result.spans, result.traces, result.sessions, result.users, result.annotations,
             "" if checkpointed is not False else " (write-ahead log busy: not truncated yet)")
    return EraseResult(spans=result.spans, traces=result.traces, sessions=result.sessions, users=result.users,
                       annotations=result.annotations, checkpointed=checkpointed)
