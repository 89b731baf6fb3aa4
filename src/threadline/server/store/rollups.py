"""Session, user and project rollups, kept up at ingest as increments.

For each trace a batch changed, :class:`RollupWriter` applies the *difference* between the
trace's old and new state (:class:`~threadline.server.store.turn_state.TraceState`) to its
``sessions``, ``users``, ``session_users`` and ``projects`` rows as increments (``x = x + delta``),
so concurrent writers on PostgreSQL never lose an update. New rows are created first (on
PostgreSQL with ``INSERT … ON CONFLICT DO NOTHING RETURNING``, which also says exactly which rows
are new; on SQLite, whose writers are serialized, by a lookup inside the transaction).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, literal_column, update

from threadline.server.store import schema as t
from threadline.server.store.bulk import Bulk
from threadline.server.store.turn_state import TraceState

Olds = dict[tuple[int, str], TraceState | None]
News = dict[tuple[int, str], TraceState]


@dataclass(slots=True)
class Delta:
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


class RollupWriter:
    """Applies a batch's trace changes to sessions, users and projects (one store dialect)."""

    def __init__(self, bulk: Bulk) -> None:
        self._bulk = bulk
        postgres = bulk.dialect == "postgresql"
        self._greatest = func.greatest if postgres else func.max
        self._least = func.least if postgres else func.min
        self._session_update = bulk.driver_sql(self._build_session_update())
        self._user_update = bulk.driver_sql(self._build_user_update())
        self._project_update = bulk.driver_sql(self._build_project_update())

    def apply(self, tx: Connection, olds: Olds, news: News, inserted: set[tuple[int, str, str]], now_ns: int) -> None:
        """Apply every change of one batch: ``olds`` / ``news`` are the changed traces' rows
        before and after it (``None``: a new trace), ``inserted`` the keys of its new spans."""
        new_sessions = self._apply_sessions(tx, olds, news, now_ns)
        new_pairs = self._apply_session_users(tx, news)
        new_users = self._apply_users(tx, olds, news, new_pairs)
        self._apply_projects(tx, inserted, olds, new_sessions, new_users, now_ns)

    def _apply_sessions(
        self, tx: Connection, olds: Olds, news: News,
        now_ns: int,
    ) -> dict[int, int]:
        deltas: dict[tuple[int, str], Delta] = defaultdict(Delta)
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
        tx.exec_driver_sql(self._session_update, [
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
        self, tx: Connection, news: News
    ) -> list[tuple[Any, ...]]:
        pairs = sorted({(n.project_id, n.session_id, n.user_id) for n in news.values() if n.session_id and n.user_id})
        if not pairs:
            return []
        return self._bulk.create_missing(tx, t.session_users, ("project_id", "session_id", "user_id"),
                                 [{"project_id": p, "session_id": s, "user_id": u} for p, s, u in pairs])

    def _apply_users(
        self, tx: Connection, olds: Olds, news: News,
        new_pairs: list[tuple[Any, ...]],
    ) -> dict[int, int]:
        deltas: dict[tuple[int, str], Delta] = defaultdict(Delta)
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
        tx.exec_driver_sql(self._user_update, [
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
        self, tx: Connection, inserted: set[tuple[int, str, str]], olds: Olds,
        new_sessions: dict[int, int], new_users: dict[int, int], now_ns: int,
    ) -> None:
        spans: dict[int, int] = defaultdict(int)
        traces: dict[int, int] = defaultdict(int)
        for pid, _tid, _sid in inserted:
            spans[pid] += 1
        for (pid, _tid), old in olds.items():
            if old is None:
                traces[pid] += 1
        tx.exec_driver_sql(self._project_update, [
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


def _count_by_project(created: list[tuple[Any, ...]]) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    for key in created:
        counts[key[0]] += 1
    return counts
