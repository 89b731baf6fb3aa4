"""Traces: the project's trace list (``GET …/traces``, the Traces tab) and one trace with its spans.

The list reads the ``traces`` rollup (one row per trace, turn or not), newest first, keyset
paginated on ``(start_ns, trace_id)``. Every filter keeps the walk on an index of ``traces``:
``ix_traces_start`` (project, start), ``ix_traces_session`` (project, session, start) for
``has_session=false`` and ``session_id``, ``ix_traces_user`` for ``user_id``, the full-text
index for ``q``, and the primary keys of ``trace_tags`` / ``trace_metadata`` for ``tag`` and
``metadata`` — never a scan of spans.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, and_, func, literal_column, or_, select

from threadline.server.model import Page, Span, SpanEvent, Tokens, TraceDetail, TraceSummary
from threadline.server.query import cursor as cursors
from threadline.server.query.errors import InvalidQuery
from threadline.server.query.labels import MetadataFilter, parse_metadata_filter, trace_label_conditions
from threadline.server.query.parameters import Param, Timestamp
from threadline.server.query.projects import project_id
from threadline.server.query.timeconv import ms, to_datetime, to_ns
from threadline.server.store import schema as t
from threadline.server.store.fulltext import EmptySearch, count_hits, fts_hits, matching_traces, terms
from threadline.server.store.payload import read_span

TraceStatus = Literal["ok", "error"]
TRACE_STATUSES: tuple[TraceStatus, ...] = ("ok", "error")


def span_from_row(row: Any, session_id: str | None, user_id: str | None) -> Span:
    """A ``Span`` from a ``spans`` row plus the session and user of its trace."""
    payload = read_span(row.payload)
    events = [
        SpanEvent(name=str(e.get("name", "")), time=to_datetime(int(e.get("time_ns") or 0)),
                  attributes=e.get("attributes") or {})
        for e in payload.events() if isinstance(e, dict)
    ]
    return Span(
        trace_id=row.trace_id, span_id=row.span_id, parent_span_id=row.parent_span_id, name=row.name,
        kind=row.kind, start_time=to_datetime(row.start_ns), end_time=to_datetime(row.end_ns),
        latency_ms=ms(row.end_ns - row.start_ns), status=row.status, status_message=row.status_message,
        session_id=session_id, user_id=user_id, input=payload.input, output=payload.output,
        attributes=payload.attributes(), events=events,
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
    # No ORDER BY: SQLite would walk the project's time index (every span of the project) instead
    # of the primary key; a trace has few spans, so they are sorted here.
    rows = sorted(conn.execute(select(sp).where(sp.c.project_id == pid, sp.c.trace_id == trace_id)).all(),
                  key=lambda r: (r.start_ns, r.span_id))
    return TraceDetail(trace_id=trace_id, session_id=trace.session_id,
                       spans=[span_from_row(r, trace.session_id, trace.user_id) for r in rows])


@dataclass(frozen=True, slots=True)
class TraceFilter:
    """Which traces to list (all optional, combined with AND).

    ``has_session``: ``True`` only traces of a session, ``False`` only those without one;
    ``status``: ``"error"`` when a span of the trace failed, else ``"ok"``; ``start``/``end``: the
    trace *started* in that window (inclusive); ``q``: full text over the trace's input and output.
    """

    has_session: bool | None = None
    status: str | None = None
    q: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    user_id: str | None = None
    session_id: str | None = None
    #: The trace has this tag, and every one of these metadata pairs (:mod:`.labels`).
    tag: str | None = None
    metadata: MetadataFilter = ()

    @classmethod
    def from_params(cls, values: Mapping[str, Any]) -> TraceFilter:
        """The filter of :data:`TRACE_PARAMS` values (:func:`~.parameters.parse_params`, or the API's);
        the ``metadata`` texts ``key:value`` become pairs."""
        return cls(**{**values, "metadata": parse_metadata_filter(values.get("metadata") or ())})


#: The query parameters of the trace list (the API's ``GET …/traces`` and the UI's Traces tab).
TRACE_PARAMS: tuple[Param, ...] = (
    Param("has_session", bool | None, "true: only traces of a session; false: only traces without a session.id"),
    Param("status", TraceStatus | None, "error: a span of the trace failed; ok: none did"),
    Param("q", str | None, "Full-text search over the trace's input and output"),
    Param("start", Timestamp | None, "Traces started at or after this time (RFC 3339)"),
    Param("end", Timestamp | None, "Traces started at or before this time (RFC 3339)"),
    Param("user_id", str | None, "Only this user's traces"),
    Param("session_id", str | None, "Only the traces of this session"),
    Param("tag", str | None, "Only traces tagged so (tag.tags)"),
    Param("metadata", list[str] | None,
          "key:value (repeatable, all must match): only traces whose metadata has that top-level key "
          "with that value (non-string values as compact JSON: plan:3, beta:true)"),
)
assert [p.name for p in TRACE_PARAMS] == [f.name for f in fields(TraceFilter)]  # one parameter per field


#: Above this many full-text hits the list walks the project's traces newest first and tests each
#: against the hits (a page fills quickly); below it, it looks the few hits up by id and sorts them.
COMMON_SEARCH_HITS = 2000

_COLUMNS = [t.traces.c[name] for name in (
    "trace_id", "session_id", "user_id", "root_name", "start_ns", "end_ns", "spans", "errors",
    "prompt_tokens", "completion_tokens", "total_tokens", "cost", "input", "output")]


def check_filters(filters: TraceFilter) -> None:
    """Raise :class:`InvalidQuery` for a filter no trace list can use."""
    if filters.status is not None and filters.status not in TRACE_STATUSES:
        raise InvalidQuery(f"status must be 'ok' or 'error', not {filters.status!r}")
    if filters.start is not None and filters.end is not None and filters.start > filters.end:
        raise InvalidQuery("start must not be after end")
    if filters.q is not None and filters.q.strip() and not terms(filters.q):
        raise InvalidQuery(f"the search {filters.q!r} has no word to look for")


def _search_conditions(conn: Connection, pid: int, q: str) -> list[Any]:
    """The conditions of a full-text search; they replace the plain ``project_id`` condition.

    A rare word (at most :data:`COMMON_SEARCH_HITS` hits) drives the query: the project's hits
    are read first and the list looks them up by primary key, then sorts them (no condition on
    the project's indexes is left for the planner to walk instead). A common word is tested row by
    row while the walk stays on the project's index in list order, so a page fills after a few
    rows; the unary plus keeps the planner from looking every hit up instead, and the hits tested
    against are the full-text index's own row ids where the store has them (SQLite: no trace row
    is read to build the list).
    """
    dialect = conn.dialect.name
    tr = t.traces
    try:
        if count_hits(conn, pid, q, at_most=COMMON_SEARCH_HITS + 1) <= COMMON_SEARCH_HITS:
            ids = list(conn.execute(matching_traces(dialect, pid, q)).scalars())
            return [tr.c.id.in_(ids)]  # ids of this project only
        hits = fts_hits(dialect, q, pid)
        if hits is None:
            hits = matching_traces(dialect, pid, q)
    except EmptySearch as exc:  # pragma: no cover - check_filters refused it already
        raise InvalidQuery(str(exc)) from exc
    return [tr.c.project_id == pid, literal_column("+traces.id").in_(hits)]


def trace_conditions(conn: Connection, pid: int, filters: TraceFilter) -> list[Any]:
    """WHERE conditions on ``traces`` for ``filters`` (raise :class:`InvalidQuery` for bad values)."""
    check_filters(filters)
    tr = t.traces
    if filters.q is not None and filters.q.strip():
        conditions = _search_conditions(conn, pid, filters.q)
    else:
        conditions = [tr.c.project_id == pid]
    if filters.has_session is True:
        # A filter on the walk in time order (no index has a useful "not null" range).
        conditions.append(tr.c.session_id.is_not(None))
    elif filters.has_session is False:
        conditions.append(tr.c.session_id.is_(None))
    if filters.session_id is not None:
        conditions.append(tr.c.session_id == filters.session_id)
    if filters.user_id is not None:
        conditions.append(tr.c.user_id == filters.user_id)
    if filters.status == "error":
        conditions.append(tr.c.errors > 0)
    elif filters.status == "ok":
        conditions.append(tr.c.errors == 0)
    if filters.start is not None:
        conditions.append(tr.c.start_ns >= to_ns(filters.start))
    if filters.end is not None:
        conditions.append(tr.c.start_ns <= to_ns(filters.end))
    conditions.extend(trace_label_conditions(pid, filters.tag, filters.metadata))
    return conditions


def _summary(row: Any) -> TraceSummary:
    return TraceSummary(
        trace_id=row.trace_id, session_id=row.session_id, user_id=row.user_id, name=row.root_name,
        start_time=to_datetime(row.start_ns), end_time=to_datetime(row.end_ns),
        latency_ms=ms(row.end_ns - row.start_ns), status="error" if row.errors else "ok", spans=row.spans,
        tokens=Tokens(row.prompt_tokens, row.completion_tokens, row.total_tokens), cost_usd=round(row.cost, 8),
        input=row.input, output=row.output,
    )


def list_traces(
    conn: Connection, project: str, filters: TraceFilter | None = None, limit: int = 50, cursor: str | None = None
) -> Page[TraceSummary]:
    """One page of a project's traces (with or without a session), newest first, keyset-paginated."""
    filters = filters or TraceFilter()
    if not 1 <= limit <= 1000:  # as query.sessions.check_limit (not imported: sessions imports turns)
        raise InvalidQuery(f"limit must be between 1 and 1000, not {limit}")
    check_filters(filters)
    last = cursors.decode(cursor, (int, str)) if cursor else None
    pid = project_id(conn, project)
    if pid is None:
        return Page(data=[], next_cursor=None)
    tr = t.traces
    conditions = trace_conditions(conn, pid, filters)
    if last is not None:
        start_ns, trace_id = last
        # Spelled out (not a row value) so that both backends bound the index range on start_ns.
        conditions.append(tr.c.start_ns <= start_ns)
        conditions.append(or_(tr.c.start_ns < start_ns, tr.c.trace_id < trace_id))
    rows = conn.execute(
        select(*_COLUMNS).where(and_(*conditions)).order_by(tr.c.start_ns.desc(), tr.c.trace_id.desc())
        .limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = cursors.encode(rows[-1].start_ns, rows[-1].trace_id) if more else None
    return Page(data=[_summary(r) for r in rows], next_cursor=next_cursor)


def count_sessionless_traces(conn: Connection, project: str, at_most: int = 100_000) -> int:
    """How many of the project's traces carry no session, counting no further than ``at_most``.

    Reads only the ``(project_id, session_id IS NULL)`` range of ``ix_traces_session``.
    """
    pid = project_id(conn, project)
    if pid is None:
        return 0
    tr = t.traces
    sessionless = select(tr.c.start_ns).where(tr.c.project_id == pid, tr.c.session_id.is_(None)).limit(at_most)
    return int(conn.execute(select(func.count()).select_from(sessionless.subquery())).scalar() or 0)


def has_sessions(conn: Connection, project: str) -> bool:
    """Whether any trace of the project belongs to a session."""
    pid = project_id(conn, project)
    if pid is None:
        return False
    s = t.sessions
    return conn.execute(select(s.c.session_id).where(s.c.project_id == pid).limit(1)).first() is not None
