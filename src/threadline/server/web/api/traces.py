"""``GET /v1/projects/{project}/traces/{trace_id}`` and ``GET /v1/projects/{project}/spans``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from threadline.server.query.spans import SpanFilter, list_spans
from threadline.server.query.traces import get_trace
from threadline.server.web.api.deps import ReadConn
from threadline.server.web.api.errors import ApiError
from threadline.server.web.api.serialize import to_json

router = APIRouter(tags=["traces"])


@router.get("/v1/projects/{project}/traces/{trace_id}", summary="One trace with all its spans")
def trace(project: str, trace_id: str, conn: ReadConn) -> JSONResponse:
    """``{trace_id, session_id, spans: [Span]}`` in start order."""
    detail = get_trace(conn, project, trace_id.lower())
    if detail is None:
        raise ApiError(404, "trace_not_found", f"no trace {trace_id!r} in project {project!r}")
    return JSONResponse(to_json(detail))


@router.get("/v1/projects/{project}/spans", summary="List spans")
def spans(
    project: str,
    conn: ReadConn,
    session_id: str | None = None,
    user_id: str | None = None,
    trace_id: str | None = None,
    kind: Annotated[str | None, Query(description="OpenInference span kind, e.g. LLM, TOOL, CHAIN")] = None,
    q: Annotated[str | None, Query(description="Full-text search over the turn text of the span's trace")] = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> JSONResponse:
    """Spans, newest first."""
    filters = SpanFilter(session_id=session_id, user_id=user_id, trace_id=trace_id.lower() if trace_id else None,
                         kind=kind, q=q, start=start, end=end)
    page = list_spans(conn, project, filters, limit=limit, cursor=cursor)
    return JSONResponse({"data": to_json(page.data), "next_cursor": page.next_cursor})
