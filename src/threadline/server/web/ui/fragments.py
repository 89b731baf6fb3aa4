"""HTML fragments the pages fetch after loading, and the static files.

- ``…/fragments/turn/{trace_id}``: a turn's LLM calls (model, messages, tokens) and tool calls
  (name, arguments, result), fetched when the turn is expanded.
- ``…/fragments/sessions``: the sessions page's header, chart and first page of rows (live).
- ``…/fragments/conversation/{session_id}``: a conversation's header, strip and latest turns (live).

The live fragments take ``v``, the activity token the page last saw, and answer 204 when
nothing changed, so polling every two seconds costs one indexed query. Fragments are rendered
by the same autoescaping templates as the pages; the browser parses them with ``DOMParser``
(inert: no script runs) and moves the nodes in.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from threadline.server.query.errors import InvalidQuery
from threadline.server.query.overview import activity, overview, timeseries, turn_marks, turns_from
from threadline.server.query.sessions import get_session, list_sessions
from threadline.server.query.traces import get_trace
from threadline.server.web.api.deps import ReadConn
from threadline.server.web.ui.charts import activity_chart, timeline_strip
from threadline.server.web.ui.evals import breakdown
from threadline.server.web.ui.params import BadParameter, clean, parse_int, session_query
from threadline.server.web.ui.render import SECURITY_HEADERS, STATIC, html_response, static_version, url_part
from threadline.server.web.ui.spans import turn_calls

router = APIRouter(include_in_schema=False)

STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml", ".png": "image/png"}
LIVE_TURNS_BACK = 3


def _unchanged(request: Request, version: str) -> Response | None:
    if clean(request.query_params).get("v") == version:
        return Response(status_code=204, headers={**SECURITY_HEADERS, "X-Live-Version": version})
    return None


def _fragment_error(message: str, status: int) -> HTMLResponse:
    return html_response("fragments/error.html", status_code=status, message=message)


@router.get("/projects/{project}/fragments/turn/{trace_id}")
def turn_fragment(project: str, trace_id: str, conn: ReadConn) -> HTMLResponse:
    """The LLM calls and tool calls of one turn."""
    detail = get_trace(conn, project, trace_id.lower())
    if detail is None:
        return _fragment_error(f"no trace {trace_id} in project {project}", 404)
    llm_calls, tool_calls = turn_calls(detail.spans)
    return html_response("fragments/turn.html", project=project, trace=detail, llm_calls=llm_calls,
                         tool_calls=tool_calls)


@router.get("/projects/{project}/fragments/sessions", response_model=None)
def sessions_fragment(request: Request, project: str, conn: ReadConn) -> Response:
    """The sessions page's live parts, for the same filters, when the project changed."""
    version = activity(conn, project)
    unchanged = _unchanged(request, version)
    if unchanged is not None:
        return unchanged
    try:
        query = session_query(request.query_params)
        page = list_sessions(conn, project, query.filters, sort=query.sort, order=query.order,
                             limit=min(query.limit, 500))
        totals = overview(conn, project, query.filters)
        chart = activity_chart(timeseries(conn, project, query.filters))
    except (BadParameter, InvalidQuery) as exc:
        return _fragment_error(str(exc), 400)
    names: set[str] = set()
    for row in page.data:
        names.update(row.annotations)
    return html_response("fragments/sessions.html", headers={"X-Live-Version": version}, project=project,
                         page=page, totals=totals, chart=chart, columns=sorted(names))


@router.get("/projects/{project}/fragments/conversation/{session_id:path}", response_model=None)
def conversation_fragment(request: Request, project: str, session_id: str, conn: ReadConn) -> Response:
    """A conversation's header and strip, and its turns from ``from`` on, when the session changed."""
    version = activity(conn, project, session_id)
    unchanged = _unchanged(request, version)
    if unchanged is not None:
        return unchanged
    try:
        first = parse_int("from", clean(request.query_params).get("from")) or 0
    except BadParameter as exc:
        return _fragment_error(str(exc), 400)
    detail = get_session(conn, project, session_id, turn_limit=1)
    if detail is None:
        return _fragment_error(f"no session {session_id} in project {project}", 404)
    turns = turns_from(conn, project, session_id, max(0, first - LIVE_TURNS_BACK))
    marks = turn_marks(conn, project, session_id)
    loaded = {m.trace_id for m in marks[: first]} | {t.trace_id for t in turns}
    return html_response("fragments/conversation.html", headers={"X-Live-Version": version}, project=project,
                         s=detail.summary, turns=turns, strip_count=len(marks),
                         breakdown=breakdown(conn, project, session_id),
                         strip=timeline_strip(marks, loaded, lambda t: f"/projects/{url_part(project)}/traces/{t}"))


@router.get("/static/{name}")
def static_file(name: str, request: Request) -> Response:
    """A file of ``static/`` (no subdirectories); cached for a year when the URL carries the version."""
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
    versioned = request.query_params.get("v") == static_version()
    cache = "public, max-age=31536000, immutable" if versioned else "no-cache"
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix],
                        headers={**SECURITY_HEADERS, "Cache-Control": cache})
