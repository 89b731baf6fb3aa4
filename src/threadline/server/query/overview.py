"""The numbers above the sessions table, the chart beside them and the conversation timeline.

Everything here reads the rollup tables (``sessions``, ``traces``, ``session_users``) with the
same filter conditions as :func:`threadline.server.query.sessions.list_sessions`, so the header
always describes exactly the sessions the table lists. Turn latency percentiles are exact and
computed like the sessions' own (``timeconv.percentile``) from one read of the turns' latencies
(the ``traces`` rollup), the same on both dialects (no dialect-specific percentile function).
Cost grows linearly with the matching turns: about 0.1 s for 20k turns on SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, select

from threadline.server.model import Turn
from threadline.server.query.projects import project_id
from threadline.server.query.sessions import SessionFilter, session_conditions
from threadline.server.query.timeconv import ms, percentile, to_datetime, to_ns
from threadline.server.query.turns import load_turns
from threadline.server.store import schema as t

MAX_BUCKETS = 200


@dataclass(frozen=True, slots=True)
class Overview:
    """Totals over the sessions matching a filter."""

    sessions: int
    turns: int
    users: int
    error_turns: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None

    @property
    def error_rate(self) -> float | None:
        """Failed turns / turns (``None`` without turns)."""
        return self.error_turns / self.turns if self.turns else None

    @property
    def turns_per_session(self) -> float | None:
        """Average number of turns per session (``None`` without sessions)."""
        return self.turns / self.sessions if self.sessions else None


@dataclass(frozen=True, slots=True)
class Bucket:
    """One time bucket of the chart: sessions started and tokens used by turns started in it."""

    start: datetime
    sessions: int
    tokens: int


@dataclass(frozen=True, slots=True)
class TimeSeries:
    """Equal-width buckets covering ``start``..``end``."""

    start: datetime
    end: datetime
    bucket_seconds: float
    buckets: list[Bucket]


@dataclass(frozen=True, slots=True)
class TurnMark:
    """A turn as a point of the conversation timeline strip."""

    trace_id: str
    index: int
    start: datetime
    latency_ms: float
    error: bool


EMPTY = Overview(0, 0, 0, 0, 0, 0, 0, 0.0, None, None)


def _matching_sessions(conn: Connection, pid: int, filters: SessionFilter) -> Any:
    """``SELECT session_id`` of the sessions matching ``filters`` (a subquery)."""
    s = t.sessions
    return select(s.c.session_id).where(and_(*session_conditions(conn, pid, filters)))


def _turn_latencies(conn: Connection, pid: int, filters: SessionFilter) -> list[float]:
    """Latency (ms) of every turn of the matching sessions."""
    tu = t.turns
    scope = tu.c.session_id.in_(_matching_sessions(conn, pid, filters))
    rows = conn.execute(select(tu.c.end_ns - tu.c.start_ns).where(tu.c.project_id == pid, scope)).scalars()
    return [ms(int(value)) for value in rows]


def overview(conn: Connection, project: str, filters: SessionFilter | None = None) -> Overview:
    """Sessions, turns, users, tokens, cost, error rate and turn latency over the matching sessions."""
    filters = filters or SessionFilter()
    pid = project_id(conn, project)
    if pid is None:
        return EMPTY
    s, su = t.sessions, t.session_users
    conditions = session_conditions(conn, pid, filters)
    totals = conn.execute(
        select(
            func.count(), func.coalesce(func.sum(s.c.turns), 0), func.coalesce(func.sum(s.c.errors), 0),
            func.coalesce(func.sum(s.c.prompt_tokens), 0), func.coalesce(func.sum(s.c.completion_tokens), 0),
            func.coalesce(func.sum(s.c.total_tokens), 0), func.coalesce(func.sum(s.c.cost), 0.0),
        ).where(and_(*conditions))
    ).one()
    sessions, _, error_turns, prompt, completion, total, cost = totals
    if not sessions:
        return EMPTY
    matching = _matching_sessions(conn, pid, filters)
    users = conn.execute(
        select(func.count(func.distinct(su.c.user_id))).where(su.c.project_id == pid, su.c.session_id.in_(matching))
    ).scalar_one()
    latencies = _turn_latencies(conn, pid, filters)
    return Overview(
        sessions=int(sessions), turns=len(latencies), users=int(users), error_turns=int(error_turns),
        prompt_tokens=int(prompt), completion_tokens=int(completion), total_tokens=int(total),
        cost_usd=round(float(cost), 8),
        latency_p50_ms=percentile(latencies, 0.5), latency_p99_ms=percentile(latencies, 0.99),
    )


def timeseries(
    conn: Connection, project: str, filters: SessionFilter | None = None, buckets: int = 48
) -> TimeSeries | None:
    """Sessions started and tokens used per time bucket; ``None`` when nothing matches.

    The range is the filter's ``start``..``end`` when given, else the span of the matching data.
    """
    filters = filters or SessionFilter()
    buckets = max(1, min(buckets, MAX_BUCKETS))
    pid = project_id(conn, project)
    if pid is None:
        return None
    s, tu = t.sessions, t.turns
    conditions = session_conditions(conn, pid, filters)
    low, high = conn.execute(select(func.min(s.c.start_ns), func.max(s.c.end_ns)).where(and_(*conditions))).one()
    if low is None:
        return None
    start_ns = to_ns(filters.start) if filters.start is not None else int(low)
    end_ns = to_ns(filters.end) if filters.end is not None else int(high)
    end_ns = max(end_ns, start_ns + 1)
    width = max(1, -(-(end_ns - start_ns) // buckets))  # ceiling division: the last bucket holds end_ns
    session_counts: dict[int, int] = {}
    # Integer floor division (operands are non-negative here) renders the same on both dialects.
    bucket_of_session = ((s.c.start_ns - start_ns) // width).label("slot")
    for index, count in conn.execute(
        select(bucket_of_session, func.count()).where(
            and_(*conditions), s.c.start_ns >= start_ns, s.c.start_ns <= end_ns
        ).group_by(bucket_of_session)
    ):
        slot = min(int(index), buckets - 1)
        session_counts[slot] = session_counts.get(slot, 0) + int(count)
    token_counts: dict[int, int] = {}
    bucket_of_turn = ((tu.c.start_ns - start_ns) // width).label("slot")
    for index, tokens in conn.execute(
        select(bucket_of_turn, func.coalesce(func.sum(tu.c.total_tokens), 0)).where(
            tu.c.project_id == pid, tu.c.session_id.in_(_matching_sessions(conn, pid, filters)),
            tu.c.start_ns >= start_ns, tu.c.start_ns <= end_ns,
        ).group_by(bucket_of_turn)
    ):
        slot = min(int(index), buckets - 1)
        token_counts[slot] = token_counts.get(slot, 0) + int(tokens)
    return TimeSeries(
        start=to_datetime(start_ns), end=to_datetime(end_ns), bucket_seconds=width / 1e9,
        buckets=[
            Bucket(start=to_datetime(start_ns + i * width),
                   sessions=session_counts.get(i, 0), tokens=token_counts.get(i, 0))
            for i in range(buckets)
        ],
    )


def turn_marks(conn: Connection, project: str, session_id: str, limit: int = 2000) -> list[TurnMark]:
    """Every turn of a session (up to ``limit``) as a point of the timeline strip, in order."""
    pid = project_id(conn, project)
    if pid is None:
        return []
    tu = t.turns
    rows = conn.execute(
        select(tu.c.first_trace_id, tu.c.turn_key, tu.c.start_ns, tu.c.end_ns, tu.c.errors)
        .where(tu.c.project_id == pid, tu.c.session_id == session_id)
        .order_by(*t.TURN_ORDER).limit(limit)
    ).all()
    return [
        TurnMark(trace_id=r.first_trace_id or r.turn_key, index=i, start=to_datetime(r.start_ns),
                 latency_ms=ms(r.end_ns - r.start_ns), error=bool(r.errors))
        for i, r in enumerate(rows)
    ]


def turns_from(conn: Connection, project: str, session_id: str, first_index: int, limit: int = 200) -> list[Turn]:
    """The turns of a session from position ``first_index`` on (the live view's refresh)."""
    pid = project_id(conn, project)
    if pid is None:
        return []
    tu = t.turns
    first_index = max(0, first_index)
    rows = conn.execute(
        t.turns_with_text().where(tu.c.project_id == pid, tu.c.session_id == session_id)
        .order_by(*t.TURN_ORDER).offset(first_index).limit(limit)
    ).all()
    return load_turns(conn, pid, rows, first_index)


def activity(conn: Connection, project: str, session_id: str | None = None) -> str:
    """A number that changes whenever the project (or one session) receives data: for live polling."""
    pid = project_id(conn, project)
    if pid is None:
        return "0"
    s = t.sessions
    conditions: list[Any] = [s.c.project_id == pid]
    if session_id is not None:
        conditions.append(s.c.session_id == session_id)
    latest, count, turns = conn.execute(
        select(func.max(s.c.last_activity_ns), func.count(), func.coalesce(func.sum(s.c.turns), 0)).where(*conditions)
    ).one()
    return f"{int(latest or 0)}-{int(count)}-{int(turns)}"
