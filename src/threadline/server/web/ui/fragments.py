"""HTML fragments the pages fetch after loading, and the static files.

- ``…/fragments/turn/{trace_id}``: a turn's steps, its LLM calls (model, tokens, cost, reply,
  requested tool calls, prompt) and tool calls (name, arguments, result) in the order they ran,
  over every trace of the turn; fetched when the turn is expanded.
- ``…/fragments/sessions``: the sessions page's header, chart and first page of rows (live).
- ``…/fragments/conversation/{session_id}``: a conversation's header, strip and latest turns (live).

The live fragments take ``v``, the activity token the page last saw, and answer 204 when
nothing changed, so polling every two seconds costs one indexed query. Fragments are rendered
by the same autoescaping templates as the pages; the browser parses them with ``DOMParser``
(inert: no script runs) and moves the nodes in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy import Connection

from threadline import conventions as cv
from threadline.server.model import Span, Step, TraceDetail, Turn
from threadline.server.query.errors import InvalidQuery
from threadline.server.query.labels import metadata_param
from threadline.server.query.overview import activity, overview, timeseries, turn_marks, turns_from
from threadline.server.query.sessions import get_session, list_sessions
from threadline.server.query.traces import get_trace
from threadline.server.web.api.deps import ReadConn
from threadline.server.web.ui.charts import activity_chart, timeline_strip
from threadline.server.web.ui.evals import breakdown, evaluation_columns
from threadline.server.web.ui.params import BadParameter, clean, narrow_link, parse_int, session_query
from threadline.server.web.ui.render import SECURITY_HEADERS, STATIC, html_response, static_version, url_part
from threadline.server.web.ui.spans import Message, messages

router = APIRouter(include_in_schema=False)
#: The static files: public (the login page needs them), so kept apart from the fragments.
static_router = APIRouter(include_in_schema=False)

STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml", ".png": "image/png"}
LIVE_TURNS_BACK = 3
#: Traces of one turn whose spans the turn details load (a tool loop has a few).
MAX_TURN_TRACES = 20


# --- a turn's steps -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StepView:
    """A step as the turn details show it: numbered, placed in the turn, with what its span adds."""

    step: Step
    number: int
    #: Milliseconds from the turn's first step to this one's start.
    offset_ms: float
    #: The input messages of an LLM call (when its span was loaded).
    prompt: list[Message]
    #: The span's status message (the error), when its span was loaded.
    status_message: str | None

    @property
    def failed(self) -> bool:
        """Whether the step ended in an error."""
        return self.step.status.lower() == "error"


def step_views(steps: Sequence[Step], spans: Iterable[Span]) -> list[StepView]:
    """``steps`` in the order they ran (start time; ties keep the given order), numbered from 1,
    with the prompt messages and status message of their spans among ``spans``."""
    by_key = {(s.trace_id, s.span_id): s for s in spans}
    ordered = sorted(steps, key=lambda s: s.start_time)
    views: list[StepView] = []
    for number, step in enumerate(ordered, 1):
        span = by_key.get((step.trace_id, step.span_id))
        if span is not None and span.kind != step.kind.upper():
            span = None  # a tool call without a TOOL span carries its requesting LLM span's id
        prompt = messages(span.attributes, cv.LLM_INPUT_MESSAGES) if span is not None and step.kind == "llm" else []
        offset = (step.start_time - ordered[0].start_time).total_seconds() * 1000
        views.append(StepView(step=step, number=number, offset_ms=offset, prompt=prompt,
                              status_message=span.status_message if span is not None else None))
    return views


def _turn_of(conn: Connection, project: str, trace: TraceDetail, index: int | None) -> Turn | None:
    """The turn ``trace`` belongs to, looked for around ``index`` (its position in the session,
    which the conversation page knows; else found when ``trace`` is the first trace of a turn)."""
    if trace.session_id is None:
        return None
    if index is None:
        positions = [m.trace_id for m in turn_marks(conn, project, trace.session_id)]
        if trace.trace_id not in positions:
            return None
        index = positions.index(trace.trace_id)
    for turn in turns_from(conn, project, trace.session_id, max(0, index - 1), limit=3):
        if trace.trace_id in (turn.trace_ids or [turn.trace_id]):
            return turn
    return None


def _unchanged(request: Request, version: str) -> Response | None:
    if clean(request.query_params).get("v") == version:
        return Response(status_code=204, headers={**SECURITY_HEADERS, "X-Live-Version": version})
    return None


def _fragment_error(message: str, status: int) -> HTMLResponse:
    return html_response("fragments/error.html", status_code=status, message=message)


@router.get("/projects/{project}/fragments/turn/{trace_id}")
def turn_fragment(request: Request, project: str, trace_id: str, conn: ReadConn) -> HTMLResponse:
    """The steps of the turn of trace ``trace_id`` (``Turn.steps``, over all its traces) in the
    order they ran, with the prompt messages of its LLM calls from their spans.

    ``?index=`` is the turn's position in its session (the conversation page knows it; without
    it only a turn's first trace is found). A trace outside any turn gets a link to its page.
    """
    detail = get_trace(conn, project, trace_id.lower())
    if detail is None:
        return _fragment_error(f"no trace {trace_id} in project {project}", 404)
    try:
        index = parse_int("index", clean(request.query_params).get("index"))
    except BadParameter as exc:
        return _fragment_error(str(exc), 400)
    turn = _turn_of(conn, project, detail, index)
    if turn is None:
        return html_response("fragments/turn.html", project=project, trace_ids=[detail.trace_id], steps=[],
                             in_turn=False)
    trace_ids = turn.trace_ids or [turn.trace_id]
    traces = [detail]
    for other in trace_ids[:MAX_TURN_TRACES]:
        loaded = get_trace(conn, project, other) if other != detail.trace_id else None
        if loaded is not None:
            traces.append(loaded)
    spans = [s for t in traces for s in t.spans]
    return html_response("fragments/turn.html", project=project, trace_ids=trace_ids,
                         steps=step_views(turn.steps, spans), in_turn=True)


@router.get("/projects/{project}/fragments/sessions", response_model=None)
def sessions_fragment(request: Request, project: str, conn: ReadConn) -> Response:
    """The sessions page's live parts, for the same filters, when the project changed."""
    version = activity(conn, project)
    unchanged = _unchanged(request, version)
    if unchanged is not None:
        return unchanged
    try:
        query = session_query(request.query_params, cols=request.query_params.getlist("cols"))
        page = list_sessions(conn, project, query.filters, sort=query.sort, order=query.order,
                             limit=min(query.limit, 500))
        totals = overview(conn, project, query.filters)
        params: dict[str, str | list[str]] = {**clean(request.query_params),
                                               "metadata": metadata_param(query.filters.metadata)}
        params.pop("v", None)
        chart = activity_chart(timeseries(conn, project, query.filters),
                               narrow_link(params, f"/projects/{url_part(project)}/sessions"))
    except (BadParameter, InvalidQuery) as exc:
        return _fragment_error(str(exc), 400)
    names: set[str] = set()
    for row in page.data:
        names.update(row.annotations)
    return html_response("fragments/sessions.html", headers={"X-Live-Version": version}, project=project,
                         page=page, totals=totals, chart=chart, shown=query.columns,
                         columns=evaluation_columns(conn, project, sorted(names)) if "evals" in query.columns else [])


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


@static_router.get("/static/{name}")
def static_file(name: str, request: Request) -> Response:
    """A file of ``static/`` (no subdirectories); cached for a year when the URL carries the version."""
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
    versioned = request.query_params.get("v") == static_version()
    cache = "public, max-age=31536000, immutable" if versioned else "no-cache"
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix],
                        headers={**SECURITY_HEADERS, "Cache-Control": cache})
