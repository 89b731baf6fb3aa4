"""Idempotent, set-based writes of span batches and of the rollups they change.

One call of :meth:`BatchWriter.write` runs inside one transaction (the writer's group commit):

1. insert the spans, ``ON CONFLICT DO NOTHING RETURNING`` their keys — only spans that are new
   contribute to anything, so a resent batch changes no count;
2. merge the new spans into their ``traces`` rows (a turn: time span, counts, tokens, cost,
   session, user, input/output text by rank: the root span first, else the earliest descendant);
3. apply the *difference* between each trace's old and new row to ``sessions``, ``users``,
   ``session_users`` and ``projects`` as increments (``x = x + delta``), so concurrent writers on
   PostgreSQL never lose an update. New rollup rows are created first with
   ``INSERT … ON CONFLICT DO NOTHING RETURNING`` (which also tells exactly which rows are new);
4. refresh the full-text index of the traces whose text changed (SQLite FTS5; PostgreSQL keeps a
   generated ``tsvector`` column up to date by itself).
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, literal_column, select, update

from threadline.server.store import schema as t
from threadline.server.store.bulk import Bulk
from threadline.server.store.records import SPAN_COLUMNS_AT, SpanRecord

_TEXT_MAX_RANK = 2**62
#: The columns of ``spans``: the project, then the record's fields from ``trace_id`` on.
_SPAN_COLUMNS = ("project_id", *(f.removesuffix("_json") for f in SpanRecord._fields[SPAN_COLUMNS_AT:]))
_SQLITE_INSERT_SPAN = (
    f"INSERT INTO spans ({', '.join(_SPAN_COLUMNS)}) VALUES ({', '.join('?' * len(_SPAN_COLUMNS))})"
)


@dataclass(slots=True)
class TraceState:
    """The rollup of one trace (a row of ``traces``), mutable while a batch is merged in."""

    id: int
    project_id: int
    trace_id: str
    session_id: str | None = None
    user_id: str | None = None
    root_span_id: str | None = None
    root_name: str | None = None
    start_ns: int = 0
    end_ns: int = 0
    spans: int = 0
    errors: int = 0
    error: str | None = None
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float = 0.0
    input: str | None = None
    output: str | None = None
    input_rank: int | None = None
    output_rank: int | None = None

    def copy(self) -> TraceState:
        return TraceState(*(getattr(self, name) for name in _TRACE_COLUMNS))


#: The ``traces`` columns a :class:`TraceState` holds, in field order.
_TRACE_COLUMNS = tuple(f.name for f in fields(TraceState))
#: A :class:`TraceState` as a row of ``traces`` (all its fields, in order).
_trace_row = operator.attrgetter(*_TRACE_COLUMNS)
#: What a batch can change in a trace's row: every field after the key.
_TRACE_FIELDS = _TRACE_COLUMNS[3:]
_SQLITE_INSERT_TRACE = (
    f"INSERT INTO traces ({', '.join(_TRACE_COLUMNS)}) VALUES ({', '.join('?' * len(_TRACE_COLUMNS))})"
)
_UPDATE_TRACE = f"UPDATE traces SET {', '.join(f'{n} = ?' for n in _TRACE_FIELDS)} WHERE id = ?"


@dataclass(slots=True)
class _Delta:
    """Increments for one session or user row."""

    turns: int = 0
    spans: int = 0
    errors: int = 0
    sessions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float = 0.0
    start_ns: int = 2**63 - 1
    end_ns: int = 0
    first: TraceState | None = None
    last: TraceState | None = None

    def add(self, new: TraceState, old: TraceState | None, *, count_spans: bool) -> None:
        """Add the change from ``old`` (``None``: not counted here yet) to ``new``."""
        base = old or TraceState(id=0, project_id=0, trace_id="")
        self.turns += 0 if old else 1
        if count_spans:
            self.spans += new.spans - base.spans
        self.errors += int(new.errors > 0) - int(base.errors > 0)
        self.prompt_tokens += new.prompt_tokens - base.prompt_tokens
        self.completion_tokens += new.completion_tokens - base.completion_tokens
        self.total_tokens += new.total_tokens - base.total_tokens
        self.cost += new.cost - base.cost
        self.start_ns = min(self.start_ns, new.start_ns)
        self.end_ns = max(self.end_ns, new.end_ns)
        if self.first is None or new.start_ns < self.first.start_ns:
            self.first = new
        if self.last is None or new.start_ns > self.last.start_ns:
            self.last = new


@dataclass(slots=True)
class BatchResult:
    """What one batch changed (for logs, tests and the live UI)."""

    spans: int = 0
    duplicates: int = 0
    new_traces: int = 0
    sessions: set[tuple[int, str]] = field(default_factory=set)


class BatchWriter:
    """Writes span batches for one store dialect."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._bulk = Bulk(dialect)
        self._insert = self._bulk.insert
        self._greatest = func.greatest if dialect == "postgresql" else func.max
        self._least = func.least if dialect == "postgresql" else func.min
        self._session_update = self._build_session_update()
        self._project_id_sql = self._bulk.driver_sql(select(t.projects.c.id).where(
            t.projects.c.name == bindparam("name")))
        self._project_update_sql = self._bulk.driver_sql(self._build_project_update())
        self._update_trace_sql = _UPDATE_TRACE.replace("?", "%s") if dialect == "postgresql" else _UPDATE_TRACE
        self._user_update = self._build_user_update()

    # --- projects ---------------------------------------------------------------------------------
    def project_ids(self, tx: Connection, names: Iterable[str], now_ns: int) -> dict[str, int]:
        """Ids of the named projects, creating missing ones.

        Looked up on every batch (one indexed query), never cached: another process may have
        erased a project since the last batch.
        """
        wanted = sorted(set(names))
        p = t.projects
        if len(wanted) == 1:  # the common case, as one compiled statement
            row = tx.exec_driver_sql(self._project_id_sql, {"name": wanted[0]}).first()
            found = {wanted[0]: row[0]} if row else {}
        else:
            found = {name: pid for name, pid in tx.execute(select(p.c.name, p.c.id).where(p.c.name.in_(wanted)))}
        missing = [n for n in wanted if n not in found]
        if missing:
            tx.execute(
                self._insert(p).on_conflict_do_nothing(index_elements=["name"]),
                [{"name": n, "spans": 0, "traces": 0, "sessions": 0, "users": 0, "created_ns": now_ns,
                  "settings": "{}"} for n in missing],
            )
            for name, pid in tx.execute(select(p.c.name, p.c.id).where(p.c.name.in_(missing))):
                found[name] = pid
        return found

    # --- the batch --------------------------------------------------------------------------------
    def write(self, tx: Connection, records: Sequence[SpanRecord], now_ns: int) -> BatchResult:
        """Store ``records`` and update every rollup, inside the caller's transaction."""
        result = BatchResult()
        if not records:
            return result
        pids = self.project_ids(tx, (r.project for r in records), now_ns)
        unique: dict[tuple[int, str, str], SpanRecord] = {}
        for r in records:
            unique.setdefault((pids[r.project], r.trace_id, r.span_id), r)
        stored = self._stored_traces(tx, sorted({(key[0], key[1]) for key in unique}))
        inserted = self._insert_spans(tx, unique, stored)
        result.spans = len(inserted)
        result.duplicates = len(records) - len(inserted)
        if not inserted:
            return result
        grouped: dict[tuple[int, str], list[SpanRecord]] = defaultdict(list)
        for key in inserted:
            grouped[(key[0], key[1])].append(unique[key])
        by_trace = {key: sorted(grouped[key], key=_start) for key in sorted(grouped)}  # a fixed lock order
        olds, news = self._merge_traces(tx, by_trace, stored)
        result.new_traces = sum(1 for old in olds.values() if old is None)
        self._update_search(tx, olds, news)
        new_sessions = self._apply_sessions(tx, olds, news, now_ns)
        result.sessions = {(n.project_id, n.session_id) for n in news.values() if n.session_id}
        new_pairs = self._apply_session_users(tx, news)
        new_users = self._apply_users(tx, olds, news, new_pairs)
        self._apply_projects(tx, inserted, olds, new_sessions, new_users, now_ns)
        return result

    def _stored_traces(self, tx: Connection, keys: list[tuple[int, str]]) -> dict[tuple[int, str], TraceState]:
        """The stored rollups of these traces (on PostgreSQL locked until commit, in key order)."""
        found: dict[tuple[int, str], TraceState] = {}
        per_project: dict[int, list[str]] = defaultdict(list)
        for pid, tid in keys:
            per_project[pid].append(tid)
        for pid, tids in per_project.items():
            for row in self._bulk.rows_in(tx, "traces", _TRACE_COLUMNS, "trace_id", pid, tids,
                                          lock=self.dialect == "postgresql"):
                state = TraceState(*row)
                found[(pid, state.trace_id)] = state
        return found

    def _insert_spans(
        self, tx: Connection, unique: dict[tuple[int, str, str], SpanRecord],
        stored: dict[tuple[int, str], TraceState],
    ) -> set[tuple[int, str, str]]:
        """Insert the spans that are not stored yet; return the keys of those inserted."""
        if self.dialect == "sqlite":
            return self._insert_spans_sqlite(tx, unique, stored)
        rows = [dict(zip(_SPAN_COLUMNS, (key[0], *r[SPAN_COLUMNS_AT:]), strict=True)) for key, r in unique.items()]
        # RETURNING is exact even with concurrent writers: a conflicting row waits for the other
        # transaction and is then skipped.
        stmt = self._insert(t.spans).on_conflict_do_nothing(
            index_elements=["project_id", "trace_id", "span_id"]
        ).returning(t.spans.c.project_id, t.spans.c.trace_id, t.spans.c.span_id)
        return {(row[0], row[1], row[2]) for row in self._bulk.returning(tx, stmt, rows)}

    def _insert_spans_sqlite(
        self, tx: Connection, unique: dict[tuple[int, str, str], SpanRecord],
        stored: dict[tuple[int, str], TraceState],
    ) -> set[tuple[int, str, str]]:
        # A span is stored in the transaction that creates or updates its trace's row, and SQLite
        # serializes writers: only spans of traces that have a row can be stored already, and
        # which of those are, read inside the transaction, is exact. A plain executemany is much
        # cheaper than INSERT … RETURNING.
        maybe_stored = [key for key in unique if (key[0], key[1]) in stored]
        existing = self._bulk.existing(tx, "spans", ("project_id", "trace_id", "span_id"), maybe_stored) \
            if maybe_stored else set()
        fresh = [key for key in unique if key not in existing] if existing else list(unique)
        if fresh:
            tx.exec_driver_sql(_SQLITE_INSERT_SPAN, [(key[0], *unique[key][SPAN_COLUMNS_AT:]) for key in fresh])
        return set(fresh)

    def _merge_traces(
        self, tx: Connection, by_trace: dict[tuple[int, str], list[SpanRecord]],
        stored: dict[tuple[int, str], TraceState],
    ) -> tuple[dict[tuple[int, str], TraceState | None], dict[tuple[int, str], TraceState]]:
        """Fold the new spans into their traces' rows: stored rows are updated, new rows inserted whole.

        Returns each trace's row before this batch (``None`` for a new trace) and after it.
        """
        olds: dict[tuple[int, str], TraceState | None] = {}
        news: dict[tuple[int, str], TraceState] = {}
        created: list[TraceState] = []
        for key, spans in by_trace.items():
            state = stored.get(key)
            if state is None:
                state = TraceState(0, key[0], key[1])
                _merge_spans(state, spans, fresh=True)
                created.append(state)
            else:
                olds[key] = state.copy()
                _merge_spans(state, spans, fresh=False)
                news[key] = state
        conflicts = self._insert_traces(tx, created)
        for state in created:
            key = (state.project_id, state.trace_id)
            if key in conflicts:  # PostgreSQL: another process created it meanwhile; merge into its row
                row = conflicts[key]
                olds[key] = row.copy()
                _merge_spans(row, by_trace[key], fresh=False)
                news[key] = row
            else:
                olds[key] = None
                news[key] = state
        changed = [s for k, s in news.items() if olds[k] is not None]
        if changed:
            tx.exec_driver_sql(self._update_trace_sql, [(*(getattr(s, n) for n in _TRACE_FIELDS), s.id)
                                                        for s in changed])
        return olds, news

    def _insert_traces(self, tx: Connection, created: list[TraceState]) -> dict[tuple[int, str], TraceState]:
        """Insert new trace rows, giving each its id. On PostgreSQL, returns the stored rows (locked)
        of those another process created since they were looked up: the batch merges into them."""
        if not created:
            return {}
        if self.dialect == "sqlite":
            # Writers are serialized: the ids after the largest one are free (they become the
            # rowids of the full-text index too).
            first = (tx.exec_driver_sql("SELECT max(id) FROM traces").scalar() or 0) + 1
            for offset, state in enumerate(created):
                state.id = first + offset
            tx.exec_driver_sql(_SQLITE_INSERT_TRACE, [_trace_row(s) for s in created])
            return {}
        stmt = self._insert(t.traces).on_conflict_do_nothing(index_elements=["project_id", "trace_id"]).returning(
            t.traces.c.project_id, t.traces.c.trace_id, t.traces.c.id)
        ids = {(row[0], row[1]): row[2] for row in self._bulk.returning(tx, stmt, [
            {"project_id": s.project_id, "trace_id": s.trace_id, **{n: getattr(s, n) for n in _TRACE_FIELDS}}
            for s in created])}
        for state in created:
            state.id = ids.get((state.project_id, state.trace_id), 0)
        missing = sorted((s.project_id, s.trace_id) for s in created if s.id == 0)
        return self._stored_traces(tx, missing) if missing else {}

    def _update_search(
        self, tx: Connection, olds: dict[tuple[int, str], TraceState | None], news: dict[tuple[int, str], TraceState]
    ) -> None:
        if self.dialect != "sqlite":
            return  # PostgreSQL: generated tsvector column
        changed = [s for k, s in news.items() if olds[k] is None or (olds[k].input, olds[k].output) != (  # type: ignore[union-attr]
            s.input, s.output)]
        stale = [(s.id,) for s in changed if olds[(s.project_id, s.trace_id)] is not None]
        if stale:
            tx.exec_driver_sql("DELETE FROM trace_text WHERE rowid = ?", stale)
        fresh = [(s.id, s.input or "", s.output or "") for s in changed if s.input or s.output]
        if fresh:
            tx.exec_driver_sql("INSERT INTO trace_text (rowid, input, output) VALUES (?, ?, ?)", fresh)

    def _apply_sessions(
        self, tx: Connection, olds: dict[tuple[int, str], TraceState | None], news: dict[tuple[int, str], TraceState],
        now_ns: int,
    ) -> dict[int, int]:
        deltas: dict[tuple[int, str], _Delta] = defaultdict(_Delta)
        for key, new in news.items():
            if new.session_id is None:
                continue
            old = olds[key]
            counted = old if old is not None and old.session_id == new.session_id else None
            deltas[(new.project_id, new.session_id)].add(new, counted, count_spans=True)
        if not deltas:
            return {}
        ordered = sorted(deltas.items())
        created = self._bulk.create_missing(tx, t.sessions, ("project_id", "session_id"), [
            {"project_id": pid, "session_id": sid, "start_ns": d.start_ns, "end_ns": d.end_ns, "duration_ns": 0,
             "turns": 0, "spans": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
             "cost": 0.0, "first_trace_id": d.first.trace_id if d.first else None, "first_input": None,
             "last_trace_id": d.last.trace_id if d.last else None, "last_output": None,
             "last_start_ns": d.last.start_ns if d.last else d.start_ns, "last_activity_ns": now_ns,
             "closed_ns": None}
            for (pid, sid), d in ordered
        ])
        tx.exec_driver_sql(self._bulk.driver_sql(self._session_update), [
            {"b_pid": pid, "b_sid": sid, "d_turns": d.turns, "d_spans": d.spans, "d_errors": d.errors,
             "d_prompt": d.prompt_tokens, "d_completion": d.completion_tokens, "d_total": d.total_tokens,
             "d_cost": d.cost, "d_start": d.start_ns, "d_end": d.end_ns,
             "d_first_start": d.first.start_ns if d.first else d.start_ns,
             "d_first_id": d.first.trace_id if d.first else None, "d_first_input": d.first.input if d.first else None,
             "d_last_start": d.last.start_ns if d.last else d.start_ns,
             "d_last_id": d.last.trace_id if d.last else None, "d_last_output": d.last.output if d.last else None,
             "d_now": now_ns}
            for (pid, sid), d in ordered
        ])
        return _count_by_project(created)

    def _build_session_update(self) -> Any:
        """Apply one session's deltas; first input / last output follow the earliest / latest turn."""
        s = t.sessions
        is_first = (bindparam("d_first_start") < s.c.start_ns) | (s.c.first_trace_id == bindparam("d_first_id"))
        is_last = (bindparam("d_last_start") > s.c.last_start_ns) | (s.c.last_trace_id == bindparam("d_last_id"))
        return update(s).where(s.c.project_id == bindparam("b_pid"), s.c.session_id == bindparam("b_sid")).values(
            turns=s.c.turns + bindparam("d_turns"),
            spans=s.c.spans + bindparam("d_spans"),
            errors=s.c.errors + bindparam("d_errors"),
            prompt_tokens=s.c.prompt_tokens + bindparam("d_prompt"),
            completion_tokens=s.c.completion_tokens + bindparam("d_completion"),
            total_tokens=s.c.total_tokens + bindparam("d_total"),
            cost=s.c.cost + bindparam("d_cost"),
            start_ns=self._least(s.c.start_ns, bindparam("d_start")),
            end_ns=self._greatest(s.c.end_ns, bindparam("d_end")),
            duration_ns=self._greatest(s.c.end_ns, bindparam("d_end"))
            - self._least(s.c.start_ns, bindparam("d_start")),
            first_input=case((is_first, bindparam("d_first_input")), else_=s.c.first_input),
            first_trace_id=case((is_first, bindparam("d_first_id")), else_=s.c.first_trace_id),
            last_output=case((is_last, bindparam("d_last_output")), else_=s.c.last_output),
            last_trace_id=case((is_last, bindparam("d_last_id")), else_=s.c.last_trace_id),
            last_start_ns=case((is_last, bindparam("d_last_start")), else_=s.c.last_start_ns),
            last_activity_ns=bindparam("d_now"),
            closed_ns=case((bindparam("d_turns") > literal_column("0"), None), else_=s.c.closed_ns),
        )

    def _apply_session_users(
        self, tx: Connection, news: dict[tuple[int, str], TraceState]
    ) -> list[tuple[Any, ...]]:
        pairs = sorted({(n.project_id, n.session_id, n.user_id) for n in news.values() if n.session_id and n.user_id})
        if not pairs:
            return []
        return self._bulk.create_missing(tx, t.session_users, ("project_id", "session_id", "user_id"),
                                 [{"project_id": p, "session_id": s, "user_id": u} for p, s, u in pairs])

    def _apply_users(
        self, tx: Connection, olds: dict[tuple[int, str], TraceState | None], news: dict[tuple[int, str], TraceState],
        new_pairs: list[tuple[Any, ...]],
    ) -> dict[int, int]:
        deltas: dict[tuple[int, str], _Delta] = defaultdict(_Delta)
        for key, new in news.items():
            if new.user_id is None:
                continue
            old = olds[key]
            counted = old if old is not None and old.user_id == new.user_id else None
            deltas[(new.project_id, new.user_id)].add(new, counted, count_spans=False)
        for pid, _sid, uid in new_pairs:
            deltas[(pid, uid)].sessions += 1
        if not deltas:
            return {}
        ordered = sorted(deltas.items())
        created = self._bulk.create_missing(tx, t.users, ("project_id", "user_id"), [
            {"project_id": pid, "user_id": uid, "first_seen_ns": d.start_ns, "last_seen_ns": d.end_ns,
             "sessions": 0, "turns": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
             "cost": 0.0}
            for (pid, uid), d in ordered
        ])
        tx.exec_driver_sql(self._bulk.driver_sql(self._user_update), [
            {"b_pid": pid, "b_uid": uid, "d_sessions": d.sessions, "d_turns": d.turns, "d_errors": d.errors,
             "d_prompt": d.prompt_tokens, "d_completion": d.completion_tokens, "d_total": d.total_tokens,
             "d_cost": d.cost, "d_start": min(d.start_ns, 2**62), "d_end": d.end_ns}
            for (pid, uid), d in ordered
        ])
        return _count_by_project(created)

    def _build_user_update(self) -> Any:
        """Apply one user's deltas."""
        u = t.users
        return update(u).where(u.c.project_id == bindparam("b_pid"), u.c.user_id == bindparam("b_uid")).values(
            sessions=u.c.sessions + bindparam("d_sessions"),
            turns=u.c.turns + bindparam("d_turns"),
            errors=u.c.errors + bindparam("d_errors"),
            prompt_tokens=u.c.prompt_tokens + bindparam("d_prompt"),
            completion_tokens=u.c.completion_tokens + bindparam("d_completion"),
            total_tokens=u.c.total_tokens + bindparam("d_total"),
            cost=u.c.cost + bindparam("d_cost"),
            first_seen_ns=self._least(u.c.first_seen_ns, bindparam("d_start")),
            last_seen_ns=self._greatest(u.c.last_seen_ns, bindparam("d_end")),
        )

    def _apply_projects(
        self, tx: Connection, inserted: set[tuple[int, str, str]], olds: dict[tuple[int, str], TraceState | None],
        new_sessions: dict[int, int], new_users: dict[int, int], now_ns: int,
    ) -> None:
        spans: dict[int, int] = defaultdict(int)
        traces: dict[int, int] = defaultdict(int)
        for pid, _tid, _sid in inserted:
            spans[pid] += 1
        for (pid, _tid), old in olds.items():
            if old is None:
                traces[pid] += 1
        tx.exec_driver_sql(self._project_update_sql, [
            {"b_pid": pid, "d_spans": n, "d_traces": traces[pid], "d_sessions": new_sessions.get(pid, 0),
             "d_users": new_users.get(pid, 0), "d_now": now_ns}
            for pid, n in sorted(spans.items())
        ])

    def _build_project_update(self) -> Any:
        p = t.projects
        return update(p).where(p.c.id == bindparam("b_pid")).values(
            spans=p.c.spans + bindparam("d_spans"), traces=p.c.traces + bindparam("d_traces"),
            sessions=p.c.sessions + bindparam("d_sessions"), users=p.c.users + bindparam("d_users"),
            last_seen_ns=bindparam("d_now"),
        )


def _start(record: SpanRecord) -> int:
    return record.start_ns


def _merge_spans(state: TraceState, spans: list[SpanRecord], *, fresh: bool) -> None:
    """Fold new spans (sorted by start) into a trace's rollup."""
    if fresh:
        state.start_ns, state.end_ns = spans[0].start_ns, spans[0].end_ns
    for r in spans:
        state.spans += 1
        state.start_ns = min(state.start_ns, r.start_ns)
        state.end_ns = max(state.end_ns, r.end_ns)
        if state.session_id is None and r.session_id:
            state.session_id = r.session_id
        if state.user_id is None and r.user_id:
            state.user_id = r.user_id
        if r.status == "ERROR":
            state.errors += 1
            if state.error is None:
                state.error = r.error
        if r.is_llm:
            state.llm_calls += 1
            state.prompt_tokens += r.prompt_tokens
            state.completion_tokens += r.completion_tokens
            state.total_tokens += r.total_tokens
            state.cost += r.cost
        is_root = r.parent_span_id is None
        if is_root:
            state.root_span_id, state.root_name = r.span_id, r.name
        rank = 0 if is_root else 1 + r.start_ns
        if r.input and rank < (state.input_rank if state.input_rank is not None else _TEXT_MAX_RANK):
            state.input, state.input_rank = r.input, rank
        if r.output and rank < (state.output_rank if state.output_rank is not None else _TEXT_MAX_RANK):
            state.output, state.output_rank = r.output, rank


def _count_by_project(created: list[tuple[Any, ...]]) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    for key in created:
        counts[key[0]] += 1
    return counts
