"""Spans: the filtered span list (``GET …/spans``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select, tuple_

from threadline.server.model import Page, Span
from threadline.server.query import cursor as cursors
from threadline.server.query.errors import InvalidQuery
from threadline.server.query.projects import project_id
from threadline.server.query.sessions import check_limit
from threadline.server.query.timeconv import to_ns
from threadline.server.query.traces import span_from_row
from threadline.server.store import schema as t
from threadline.server.store.fulltext import EmptySearch, matching_traces


@dataclass(frozen=True, slots=True)
class SpanFilter:
    """Which spans to list (all optional, combined with AND)."""

    session_id: str | None = None
    user_id: str | None = None
    trace_id: str | None = None
    kind: str | None = None
    q: str | None = None
    start: datetime | None = None
    end: datetime | None = None


def list_spans(
    conn: Connection, project: str, filters: SpanFilter | None = None, limit: int = 50, cursor: str | None = None
) -> Page[Span]:
    """Spans matching ``filters``, newest first, with keyset pagination."""
    filters = filters or SpanFilter()
    check_limit(limit)
    pid = project_id(conn, project)
    if pid is None:
        return Page(data=[], next_cursor=None)
    sp, tr = t.spans, t.traces
    conditions: list[Any] = [sp.c.project_id == pid]
    trace_conditions: list[Any] = []
    if filters.session_id is not None:
        trace_conditions.append(tr.c.session_id == filters.session_id)
    if filters.user_id is not None:
        trace_conditions.append(tr.c.user_id == filters.user_id)
    if filters.q is not None and filters.q.strip():
        try:
            trace_conditions.append(tr.c.id.in_(matching_traces(conn.dialect.name, pid, filters.q)))
        except EmptySearch as exc:
            raise InvalidQuery(str(exc)) from exc
    if trace_conditions:
        conditions.append(sp.c.trace_id.in_(select(tr.c.trace_id).where(tr.c.project_id == pid, *trace_conditions)))
    if filters.trace_id is not None:
        conditions.append(sp.c.trace_id == filters.trace_id)
    if filters.kind is not None:
        conditions.append(sp.c.kind == filters.kind.upper())
    if filters.start is not None:
        conditions.append(sp.c.start_ns >= to_ns(filters.start))
    if filters.end is not None:
        conditions.append(sp.c.start_ns <= to_ns(filters.end))
    if cursor:
        start_ns, trace_id, span_id = cursors.decode(cursor, (int, str, str))
        key = tuple_(sp.c.start_ns, sp.c.trace_id, sp.c.span_id)
        conditions.append(key < tuple_(start_ns, trace_id, span_id))
    rows = conn.execute(
        select(sp, tr.c.session_id.label("t_session_id"), tr.c.user_id.label("t_user_id"))
        .join(tr, and_(tr.c.project_id == sp.c.project_id, tr.c.trace_id == sp.c.trace_id))
        .where(*conditions)
        .order_by(sp.c.start_ns.desc(), sp.c.trace_id.desc(), sp.c.span_id.desc())
        .limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = cursors.encode(rows[-1].start_ns, rows[-1].trace_id, rows[-1].span_id) if more and rows else None
    return Page(data=[span_from_row(r, r.t_session_id, r.t_user_id) for r in rows], next_cursor=next_cursor)


