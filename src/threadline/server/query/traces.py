"""Traces: one trace with all its spans (the trace view and ``GET …/traces/{trace_id}``)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, select

from threadline.server.model import Span, SpanEvent, TraceDetail
from threadline.server.query.projects import project_id
from threadline.server.query.timeconv import ms, to_datetime
from threadline.server.store import schema as t


def span_from_row(row: Any, session_id: str | None, user_id: str | None) -> Span:
    """A ``Span`` from a ``spans`` row plus the session and user of its trace."""
    try:
        attributes = json.loads(row.attributes)
    except ValueError:
        attributes = {}
    try:
        raw_events = json.loads(row.events)
    except ValueError:
        raw_events = []
    events = [
        SpanEvent(name=str(e.get("name", "")), time=to_datetime(int(e.get("time_ns") or 0)),
                  attributes=e.get("attributes") or {})
        for e in raw_events if isinstance(e, dict)
    ]
    return Span(
        trace_id=row.trace_id, span_id=row.span_id, parent_span_id=row.parent_span_id, name=row.name,
        kind=row.kind, start_time=to_datetime(row.start_ns), end_time=to_datetime(row.end_ns),
        latency_ms=ms(row.end_ns - row.start_ns), status=row.status, status_message=row.status_message,
        session_id=session_id, user_id=user_id, input=row.input, output=row.output, attributes=attributes,
        events=events,
    )


def get_trace(conn: Connection, project: str, trace_id: str) -> TraceDetail | None:
    """All spans of a trace in start order, or ``None`` when the trace is unknown."""
    pid = project_id(conn, project)
    if pid is None:
        return None
    tr, sp = t.traces, t.spans
    trace = conn.execute(
        select(tr.c.session_id, tr.c.user_id).where(tr.c.project_id == pid, tr.c.trace_id == trace_id)
    ).first()
    if trace is None:
        return None
    rows = conn.execute(
        select(sp).where(sp.c.project_id == pid, sp.c.trace_id == trace_id).order_by(sp.c.start_ns, sp.c.span_id)
    ).all()
    return TraceDetail(trace_id=trace_id, session_id=trace.session_id,
                       spans=[span_from_row(r, trace.session_id, trace.user_id) for r in rows])
