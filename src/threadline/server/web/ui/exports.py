"""Downloads of the sessions page's current view: ``/projects/{project}/export/sessions.{csv,jsonl}``.

The query string is the sessions page's own (filters, ``range``, ``sort``/``order``, a
``score:<name>`` ranking with its bounds), parsed by the same :func:`~.params.session_query`, so a
download holds exactly the rows of the view, in its order: every matching row, not only the
visible page (``cursor`` and ``limit`` are ignored; ``cols`` too: an export has every column of
:mod:`threadline.server.web.export`). The rows are streamed a page at a time. A bad parameter is a
400 before anything is sent, like the page.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from sqlalchemy import Connection

from threadline.server.model import Page, SessionSummary
from threadline.server.query.errors import InvalidQuery
from threadline.server.query.projects import project_id
from threadline.server.query.ranking import sessions_by_annotation
from threadline.server.query.sessions import list_sessions
from threadline.server.web.api.deps import ReadConn
from threadline.server.web.export import (
    EXPORT_FORMATS,
    EXPORT_PAGE_SIZE,
    LINES,
    content_disposition,
    every_row,
)
from threadline.server.web.ui.params import BadParameter, SessionQuery, session_query
from threadline.server.web.ui.render import SECURITY_HEADERS

router = APIRouter(include_in_schema=False)


def _refusal(status: int, message: str) -> PlainTextResponse:
    return PlainTextResponse(message, status_code=status, headers=SECURITY_HEADERS)


def _page(conn: Connection, project: str, query: SessionQuery, cursor: str | None) -> Page[SessionSummary]:
    """One page of the view's rows (the ranking when the view is ranked by a score)."""
    if query.ranking is not None:
        r = query.ranking
        ranked = sessions_by_annotation(conn, project, r.name, order=query.order, limit=EXPORT_PAGE_SIZE,
                                        cursor=cursor, min_score=r.min_score, max_score=r.max_score,
                                        filters=query.filters)
        return Page(data=[x.session for x in ranked.data], next_cursor=ranked.next_cursor)
    return list_sessions(conn, project, query.filters, sort=query.sort, order=query.order, limit=EXPORT_PAGE_SIZE,
                         cursor=cursor)


@router.get("/projects/{project}/export/sessions.{fmt}", response_model=None)
def export_sessions(request: Request, project: str, fmt: str, conn: ReadConn) -> Response:
    """Every session of the view as CSV or JSON Lines, streamed, with a download file name."""
    if fmt not in EXPORT_FORMATS:
        return _refusal(400, f"format: {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
    if project_id(conn, project) is None:
        return _refusal(404, f"There is no project named {project!r}.")
    try:
        query = session_query(request.query_params, cols=request.query_params.getlist("cols"))
        first = _page(conn, project, query, None)
    except (BadParameter, InvalidQuery) as exc:
        return _refusal(400, str(exc))

    def more(other: Connection, cursor: str) -> Page[SessionSummary]:
        return _page(other, project, query, cursor)

    rows: Iterator[SessionSummary] = every_row(first, more, request.app.state.store)
    return StreamingResponse(
        LINES[fmt](rows), media_type=EXPORT_FORMATS[fmt].media_type,
        headers={**SECURITY_HEADERS,
                 "Content-Disposition": content_disposition("sessions", project, fmt, datetime.now(UTC))},
    )
