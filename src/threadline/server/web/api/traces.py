"""``GET /v1/projects/{project}/traces`` (the trace list), ``…/traces/{trace_id}`` and ``…/spans``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from threadline.server.auth.roles import Action
from threadline.server.query.parameters import Timestamp
from threadline.server.query.spans import SpanFilter, list_spans
from threadline.server.query.traces import TRACE_PARAMS, TraceFilter, get_trace, list_traces
from threadline.server.web.access import allow
from threadline.server.web.api.deps import ReadConn, with_query
from threadline.server.web.api.errors import ApiError
from threadline.server.web.api.schemas import SpanList, TraceDetail, TraceList
from threadline.server.web.api.serialize import to_json

router = APIRouter(tags=["traces"], dependencies=[allow(Action.READ)])


@router.get("/v1/projects/{project}/traces", summary="List traces (with or without a session)",
            response_model=TraceList)
@with_query("filters", TRACE_PARAMS, TraceFilter.from_params)
def trace_list(
    project: str,
    conn: ReadConn,
    filters: TraceFilter,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> JSONResponse:
    """Every trace of the project, turn or not, newest first: ``[TraceSummary]``."""
    page = list_traces(conn, project, filters, limit=limit, cursor=cursor)
    return JSONResponse({"data": to_json(page.data), "next_cursor": page.next_cursor})


@router.get("/v1/projects/{project}/traces/{trace_id}", summary="One trace with all its spans",
            response_model=TraceDetail)
def trace(project: str, trace_id: str, conn: ReadConn) -> JSONResponse:
    """``{trace_id, session_id, spans: [Span]}`` in start order."""
    detail = get_trace(conn, project, trace_id.lower())
    if detail is None:
        raise ApiError(404, "trace_not_found", f"no trace {trace_id!r} in project {project!r}")
    return JSONResponse(to_json(detail))


@router.get("/v1/projects/{project}/spans", summary="List spans", response_model=SpanList)
def spans(
    project: str,
    conn: ReadConn,
    session_id: str | None = None,
    user_id: str | None = None,
    trace_id: str | None = None,
    kind: Annotated[str | None, Query(description="OpenInference span kind, e.g. LLM, TOOL, CHAIN")] = None,
    q: Annotated[str | None, Query(description="Full-text search over the turn text of the span's trace")] = None,
    start: Timestamp | None = None,
    end: Timestamp | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> JSONResponse:
    """Spans, newest first."""
    filters = SpanFilter(session_id=session_id, user_id=user_id, trace_id=trace_id.lower() if trace_id else None,
                         kind=kind, q=q, start=start, end=end)
    page = list_spans(conn, project, filters, limit=limit, cursor=cursor)
    return JSONResponse({"data": to_json(page.data), "next_cursor": page.next_cursor})
