"""Session, user and project rollups, kept up at ingest as increments.

For each turn a batch changed, :class:`RollupWriter` applies the *difference* between the
turn's old and new state (:class:`~threadline.server.store.turn_state.TurnState`) to its
``sessions`` and ``users`` rows, and each changed trace to ``session_users`` and ``projects``,
as increments (``x = x + delta``),
so concurrent writers on PostgreSQL never lose an update. New rows are created first (on
PostgreSQL with ``INSERT … ON CONFLICT DO NOTHING RETURNING``, which also says exactly which rows
are new; on SQLite, whose writers are serialized, by a lookup inside the transaction).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, String, bindparam, case, func, literal_column, update

from threadline.server.store import schema as t
from threadline.server.store.bulk import Bulk
from threadline.server.store.turn_state import TraceState, TurnState
from threadline.server.store.turns import TurnRows

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
    first: TurnState | None = None
    last: TurnState | None = None

    def add(self, turn: TurnState, sign: int) -> None:
        """Count a turn in (``sign`` 1) or out (``sign`` -1) of this row."""
        self.turns += sign
        self.spans += sign * turn.spans
        self.errors += sign * int(turn.errors > 0)
        self.prompt_tokens += sign * turn.prompt_tokens
        self.completion_tokens += sign * turn.completion_tokens
        self.total_tokens += sign * turn.total_tokens
        self.cost += sign * turn.cost
        if sign < 0:
            return
        self.start_ns = min(self.start_ns, turn.start_ns)
        self.end_ns = max(self.end_ns, turn.end_ns)
        if self.first is None or turn.start_ns < self.first.start_ns:
            self.first = turn
        if self.last is None or turn.start_ns > self.last.start_ns:
            self.last = turn


class RollupWriter:
    """Applies a batch's trace changes to sessions, users and projects (one store dialect)."""

    def __init__(self, bulk: Bulk) -> None:
        self._bulk = bulk
        postgres = bulk.dialect == "postgresql"
        self._greatest = func.greatest if postgres else func.max
        self._least = func.least if postgres else func.min
        self._session_update = bulk.driver_sql(self._build_session_update())
        self._session_ends = _session_ends(postgres)
        self._user_update = bulk.driver_sql(self._build_user_update())
        self._project_update = bulk.driver_sql(self._build_project_update())

    def apply(self, tx: Connection, olds: Olds, news: News, turn_olds: TurnRows, turn_news: TurnRows,
              inserted: set[tuple[int, str, str]], now_ns: int) -> None:
        """Apply every change of one batch: ``olds`` / ``news`` are the changed traces' rows
        before and after it (``None``: a new trace), ``turn_olds`` / ``turn_news`` the changed
        turns' rows, ``inserted`` the keys of its new spans."""
        new_sessions = self._apply_sessions(tx, turn_olds, turn_news, now_ns)
        new_pairs = self._apply_session_users(tx, news)
        new_users = self._apply_users(tx, news, turn_olds, turn_news, new_pairs)
        self._apply_projects(tx, inserted, olds, new_sessions, new_users, now_ns)

    def _apply_sessions(self, tx: Connection, turn_olds: TurnRows, turn_news: TurnRows, now_ns: int
                        ) -> dict[int, int]:
        deltas: dict[tuple[int, str], Delta] = defaultdict(Delta)
        for key, new in turn_news.items():
            old = turn_olds[key]
            if old is not None:
                deltas[key[:2]].add(old, -1)
            if new is not None:
                deltas[key[:2]].add(new, 1)
        if not deltas:
            return {}
        ordered = sorted(deltas.items())
        created = self._bulk.create_missing(tx, t.sessions, ("project_id", "session_id"), [
            {"project_id": pid, "session_id": sid, "start_ns": d.start_ns, "end_ns": d.end_ns, "duration_ns": 0,
             "turns": 0, "spans": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
             "cost": 0.0, "first_turn_key": d.first.turn_key if d.first else None,
             "last_turn_key": d.last.turn_key if d.last else None,
             "last_start_ns": d.last.start_ns if d.last else d.start_ns, "last_activity_ns": now_ns,
             "closed_ns": None}
            for (pid, sid), d in ordered
        ])
        tx.exec_driver_sql(self._session_update, [
            {"b_pid": pid, "b_sid": sid, "d_turns": d.turns, "d_spans": d.spans, "d_errors": d.errors,
             "d_prompt": d.prompt_tokens, "d_completion": d.completion_tokens, "d_total": d.total_tokens,
             "d_cost": d.cost, "d_start": d.start_ns, "d_end": d.end_ns,
             "d_first_start": d.first.start_ns if d.first else d.start_ns,
             "d_first_id": d.first.turn_key if d.first else None,
             "d_last_start": d.last.start_ns if d.last else 0,
             "d_last_id": d.last.turn_key if d.last else None,
             "d_now": now_ns}
            for (pid, sid), d in ordered
        ])
        # A turn that left (its trace moved to another key) may have been the session's first or
        # last, and the turn replacing it may start on the other side of its start: read them again.
        lost = sorted({key[:2] for key, new in turn_news.items() if new is None and turn_olds.get(key) is not None})
        if lost:
            tx.exec_driver_sql(self._session_ends, [{"b_pid": pid, "b_sid": sid} for pid, sid in lost])
        return _count_by_project(created)


    def _build_session_update(self) -> Any:
        """Apply one session's deltas; the first / last turn keys follow the earliest / latest turn
        (the session's first input and last output are theirs: ``schema.sessions_with_text``).

        A changed turn that starts no later than the first (no earlier than the last) takes its
        place: ``<=`` / ``>=``, so a turn rebuilt under another key (its trace changed turns)
        keeps the session's first and last turn right.
        """
        s = t.sessions
        first: Any = bindparam("d_first_id", type_=String)
        last: Any = bindparam("d_last_id", type_=String)
        is_first = first.isnot(None) & ((bindparam("d_first_start") <= s.c.start_ns) | (s.c.first_turn_key == first))
        is_last = last.isnot(None) & ((bindparam("d_last_start") >= s.c.last_start_ns) | (s.c.last_turn_key == last))
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
            first_turn_key=case((is_first, bindparam("d_first_id")), else_=s.c.first_turn_key),
            last_turn_key=case((is_last, bindparam("d_last_id")), else_=s.c.last_turn_key),
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

    def _apply_users(self, tx: Connection, news: News, turn_olds: TurnRows, turn_news: TurnRows,
                     new_pairs: list[tuple[Any, ...]]) -> dict[int, int]:
        deltas: dict[tuple[int, str], Delta] = defaultdict(Delta)
        for key, new in turn_news.items():
            old = turn_olds[key]
            if old is not None and old.user_id is not None:
                deltas[(key[0], old.user_id)].add(old, -1)
            if new is not None and new.user_id is not None:
                deltas[(key[0], new.user_id)].add(new, 1)
        for trace in news.values():  # a user's traces without a session count as activity, not turns
            if trace.user_id is not None:
                delta = deltas[(trace.project_id, trace.user_id)]
                delta.start_ns = min(delta.start_ns, trace.start_ns)
                delta.end_ns = max(delta.end_ns, trace.end_ns)
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


def _session_ends(postgres: bool) -> str:
    """Driver SQL setting one session's first and last turn from its stored turns (in turn order,
    placeholders without traces left out), for ``{"b_pid", "b_sid"}`` parameters."""
    pid, sid = ("%(b_pid)s", "%(b_sid)s") if postgres else (":b_pid", ":b_sid")
    turns = ("FROM turns WHERE turns.project_id = sessions.project_id AND turns.session_id = sessions.session_id "
             "AND turns.traces > 0 ORDER BY turns.start_ns {0}, turns.turn_key {0} LIMIT 1")
    first, last = turns.format("ASC"), turns.format("DESC")
    return (f"UPDATE sessions SET first_turn_key = (SELECT turns.turn_key {first}), "
            f"last_turn_key = (SELECT turns.turn_key {last}), "
            f"last_start_ns = coalesce((SELECT turns.start_ns {last}), sessions.last_start_ns) "
            f"WHERE sessions.project_id = {pid} AND sessions.session_id = {sid}")
