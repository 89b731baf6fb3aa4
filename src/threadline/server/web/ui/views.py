"""The web UI's pages. Each renders from the same ``query`` functions as the JSON API.

``router`` serves ``/`` (projects), a project's sessions, one conversation, its traces, one
trace, the users and one user, plus (included from :mod:`.fragments`) the lazy turn details, the
live updates and the static files. Every response carries the security headers of :mod:`.render`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection

from threadline.server.auth.roles import Action
from threadline.server.evals.lifecycle import idle_timeout_seconds
from threadline.server.model import Page, SessionSummary, UserSummary
from threadline.server.query.conversation import matching_turns, turn_cursor_at
from threadline.server.query.errors import InvalidQuery
from threadline.server.query.labels import known_tags, metadata_param
from threadline.server.query.lifecycle import project_settings, session_state
from threadline.server.query.overview import activity, overview, timeseries, turn_marks
from threadline.server.query.projects import list_projects, project_id, project_totals
from threadline.server.query.ranking import sessions_by_annotation, users_by_annotation
from threadline.server.query.sessions import get_session, list_sessions
from threadline.server.query.timeconv import to_datetime
from threadline.server.query.traces import count_sessionless_traces, get_trace, has_sessions, list_traces
from threadline.server.query.users import get_user, list_users, recent_user_ids
from threadline.server.web.access import allow, principal_of
from threadline.server.web.api.deps import ReadConn
from threadline.server.web.export import EXPORT_FORMATS
from threadline.server.web.ui import exports, fragments
from threadline.server.web.ui.charts import activity_chart, timeline_strip
from threadline.server.web.ui.evals import breakdown, evaluation_columns
from threadline.server.web.ui.params import (
    RANGES,
    USER_SORTS,
    BadParameter,
    ScoreRanking,
    clean,
    link,
    narrow_link,
    parse_choice,
    parse_int,
    parse_sort,
    session_query,
    sort_link,
    trace_query,
    user_filter,
)
from threadline.server.web.ui.render import SECURITY_HEADERS, current_principal, html_response, url_part
from threadline.server.web.ui.spans import exception_events, messages, span_tree


async def remember_principal(request: Request) -> None:
    """Make the request's principal (found by ``allow``) what the templates render for.

    ``async`` on purpose: it runs in the request's own context, which the (sync) page then
    inherits, so :data:`~.render.current_principal` is this request's and nobody else's.
    """
    current_principal.set(principal_of(request))


def reachable(request: Request, names: Iterable[str]) -> list[str]:
    """The project names among ``names`` the request's principal may see."""
    principal = principal_of(request)
    return [name for name in names if principal is None or principal.reaches(name)]


router = APIRouter(include_in_schema=False)
"""Every UI route: :data:`pages` (each needs ``READ``) and the public static files."""
pages = APIRouter(dependencies=[allow(Action.READ), Depends(remember_principal)])
"""The pages and fragments; an unauthenticated browser is sent to ``/login`` (see :mod:`.login`)."""
pages.include_router(fragments.router)
pages.include_router(exports.router)

TURNS_PER_PAGE = 100
#: The sessions page counts traces without a session up to here ("100,000+" beyond).
SESSIONLESS_COUNT_CAP = 100_000
WORD = re.compile(r"\w+", re.UNICODE)


def search_words(q: str | None) -> list[str]:
    """The words of a message search, lower-cased (as the full-text index splits them)."""
    return [w.lower() for w in WORD.findall(q or "")][:16]


def annotation_names(rows: Iterable[SessionSummary | UserSummary]) -> list[str]:
    """The annotation names present on a page of rows (one column each)."""
    names: set[str] = set()
    for row in rows:
        names.update(row.annotations)
    return sorted(names)


def score_columns(rows: Iterable[SessionSummary | UserSummary], ranking: ScoreRanking | None) -> list[str]:
    """The annotation columns of a page, always including the one it is ranked by."""
    names = set(annotation_names(rows))
    if ranking is not None:
        names.add(ranking.name)
    return sorted(names)


@dataclass(frozen=True, slots=True)
class SessionLifecycle:
    """What the conversation page shows of a session's lifecycle, and where its controls send requests."""

    closed_at: datetime | None  # None while the session is open
    last_activity: datetime
    idle_timeout_seconds: float  # the effective timeout (the project's own, else the server default); 0: never
    own_timeout_seconds: float | None  # the project's own setting (None: it follows the server default)
    server_default_seconds: float
    close_url: str
    settings_url: str

    @property
    def closes_at(self) -> datetime | None:
        """When an open session closes if nothing happens before (``None`` when closed or never)."""
        if self.closed_at is not None or self.idle_timeout_seconds <= 0:
            return None
        return self.last_activity + timedelta(seconds=self.idle_timeout_seconds)

    @property
    def overdue(self) -> bool:
        """Open and idle for longer than the timeout already (the server closes it at its next check)."""
        closes_at = self.closes_at
        return closes_at is not None and closes_at <= datetime.now(UTC)


def session_lifecycle(request: Request, conn: Connection, project: str, session_id: str) -> SessionLifecycle | None:
    """Open/closed state of a session and its project's idle timeout (``None`` without such a session)."""
    pid = project_id(conn, project)
    found = session_state(conn, pid, session_id) if pid is not None else None
    if pid is None or found is None:
        return None
    last_activity_ns, closed_ns = found
    stored = project_settings(conn, pid)
    own = stored.get("idle_timeout_seconds")
    return SessionLifecycle(
        closed_at=to_datetime(closed_ns) if closed_ns is not None else None,
        last_activity=to_datetime(last_activity_ns),
        idle_timeout_seconds=idle_timeout_seconds(request.app.state.settings, stored),
        own_timeout_seconds=float(own) if isinstance(own, int | float) and not isinstance(own, bool) else None,
        server_default_seconds=float(request.app.state.settings.session_idle_timeout_seconds),
        close_url=f"/v1/projects/{url_part(project)}/sessions/{url_part(session_id)}/close",
        settings_url=f"/v1/projects/{url_part(project)}/settings",
    )


def base_context(request: Request, conn: Connection, project: str | None, tab: str) -> dict[str, Any]:
    """What every page's layout needs: the project picker, the active tab and URL helpers."""
    params = dict(request.query_params)
    path = request.url.path
    return {
        "project": project, "tab": tab, "projects": reachable(request, (p.name for p in list_projects(conn))),
        "params": params,
        "path": path, "link": lambda **changes: link(params, path, **changes),
        "drop_link": lambda *names: link(params, path, drop=names),
    }


def problem(request: Request, conn: Connection, project: str | None, status: int, title: str,
            message: str, tab: str = "") -> HTMLResponse:
    """An error page (400 for a bad parameter, 404 for something that does not exist)."""
    return html_response("error.html", status_code=status, title=title, message=message,
                         **base_context(request, conn, project, tab))


def unknown_project(request: Request, conn: Connection, project: str) -> HTMLResponse:
    """The 404 page for a project without data."""
    return problem(request, conn, None, 404, "Project not found",
                   f"There is no project named “{project}” yet. It appears as soon as it receives a span.")


@pages.get("/")
def projects_page(request: Request, conn: ReadConn) -> HTMLResponse:
    """Every project with its counts, turns, cost and error rate (from the session rollups)."""
    rows = list_projects(conn)
    visible = set(reachable(request, (p.name for p in rows)))
    return html_response("projects.html", rows=[p for p in rows if p.name in visible], totals=project_totals(conn),
                         otlp_url=f"{request.base_url}v1/traces", **base_context(request, conn, None, "projects"))


@pages.get("/projects/{project}")
def project_home(project: str) -> RedirectResponse:
    """A project's home is its sessions."""
    return RedirectResponse(f"/projects/{url_part(project)}/sessions", status_code=302, headers=SECURITY_HEADERS)


@pages.get("/projects/{project}/sessions")
def sessions_page(request: Request, project: str, conn: ReadConn) -> HTMLResponse:
    """Header numbers, the activity chart and the filtered, sorted, paginated sessions table."""
    if project_id(conn, project) is None:
        return unknown_project(request, conn, project)
    context = base_context(request, conn, project, "sessions")
    params = context["params"]
    try:
        query = session_query(request.query_params, cols=request.query_params.getlist("cols"))
        params.pop("cols", None)  # one canonical cols=…, which every link of the page keeps
        if query.cols_param:
            params["cols"] = query.cols_param
        params["metadata"] = metadata_param(query.filters.metadata)  # every pair (repeated), kept by links
        limit = min(query.limit, 500)
        means: dict[str, float] = {}
        if query.ranking is not None:
            r = query.ranking
            ranked = sessions_by_annotation(conn, project, r.name, order=query.order, limit=limit,
                                            cursor=query.cursor, min_score=r.min_score, max_score=r.max_score,
                                            filters=query.filters)
            page = Page(data=[x.session for x in ranked.data], next_cursor=ranked.next_cursor)
            means = {x.session.session_id: x.mean_score for x in ranked.data}
        else:
            page = list_sessions(conn, project, query.filters, sort=query.sort, order=query.order,
                                 limit=limit, cursor=query.cursor)
        totals = overview(conn, project, query.filters)
        chart = activity_chart(timeseries(conn, project, query.filters),
                               narrow_link(params, f"/projects/{url_part(project)}/sessions"))
    except (BadParameter, InvalidQuery) as exc:
        return problem(request, conn, project, 400, "Cannot show these sessions", str(exc), "sessions")
    export = {fmt: link(params, f"/projects/{url_part(project)}/export/sessions.{fmt}",
                        drop=("cursor", "limit", "cols")) for fmt in EXPORT_FORMATS}
    sessionless = count_sessionless_traces(conn, project, at_most=SESSIONLESS_COUNT_CAP + 1)
    return html_response(
        "sessions.html", query=query, page=page, totals=totals, chart=chart, ranges=RANGES, q=query.filters.q or "",
        sessionless=min(sessionless, SESSIONLESS_COUNT_CAP), sessionless_more=sessionless > SESSIONLESS_COUNT_CAP,
        any_session=has_sessions(conn, project) if not page.data else True,
        traces_url=f"/projects/{url_part(project)}/traces",
        columns=evaluation_columns(conn, project, score_columns(page.data, query.ranking))
        if "evals" in query.columns else [],
        shown=query.columns, column_toggles=query.column_toggles(params, request.url.path),
        user_ids=recent_user_ids(conn, project),
        known_tags=known_tags(conn, project_id(conn, project) or 0),
        metadata_filters=[(key, value, link(params, request.url.path, drop=("cursor",), metadata=metadata_param(
            tuple(pair for pair in query.filters.metadata if pair != (key, value)))))
            for key, value in query.filters.metadata],
        export_links=export, ranking=query.ranking, means=means,
        version=activity(conn, project) if query.live else "",
        sort_link=lambda column, default="desc": sort_link(params, request.url.path, column, query.sort,
                                                           query.order, default),
        live_url=link(params, f"/projects/{url_part(project)}/fragments/sessions") if query.live else "",
        **context,
    )


@pages.get("/projects/{project}/sessions/{session_id:path}", response_model=None)
def session_page(request: Request, project: str, session_id: str, conn: ReadConn) -> Response:
    """One conversation: totals, the timeline strip and the turns as a chat (paged for long sessions)."""
    if not session_id:
        return RedirectResponse(f"/projects/{url_part(project)}/sessions", status_code=302, headers=SECURITY_HEADERS)
    params = clean(request.query_params)
    turn_cursor = params.get("turn_cursor")
    words = search_words(params.get("q"))
    try:
        at = parse_int("at", params.get("at"), minimum=0)
        if at is not None:  # open the session at a turn (a search result, the latest turn)
            turn_cursor = turn_cursor_at(conn, project, session_id, at)
        detail = get_session(conn, project, session_id, turn_limit=TURNS_PER_PAGE, turn_cursor=turn_cursor)
        matches = matching_turns(conn, project, session_id, " ".join(words)) if words and detail else []
    except (BadParameter, InvalidQuery) as exc:
        return problem(request, conn, project, 400, "Cannot show this session", str(exc), "sessions")
    if detail is None:
        return problem(request, conn, project, 404, "Session not found",
                       f"There is no session “{session_id}” in project “{project}”.", "sessions")
    marks = turn_marks(conn, project, session_id)
    loaded = {t.trace_id for t in detail.turns}
    base = f"/projects/{url_part(project)}"
    context = base_context(request, conn, project, "sessions")
    more_url = link(context["params"], request.url.path, drop=("at",), turn_cursor=detail.next_turn_cursor) \
        if detail.next_turn_cursor else ""
    live = detail.next_turn_cursor is None
    shown = {t.index for t in detail.turns}
    total = detail.summary.turns
    latest_at = max(0, total - TURNS_PER_PAGE)
    return html_response(
        "session.html", detail=detail, s=detail.summary, turns=detail.turns,
        strip=timeline_strip(marks, loaded, lambda t: f"{base}/traces/{url_part(t)}"),
        strip_count=len(marks), more_url=more_url, paged=turn_cursor is not None, words=words,
        breakdown=breakdown(conn, project, session_id),
        matches=matches,
        match_links=[(i, f"#turn-{i + 1}" if i in shown else link(context["params"], request.url.path, at=str(i),
                                                                   turn_cursor=None) + f"#turn-{i + 1}")
                     for i in matches],
        latest_url="" if live or total - 1 in shown else
        link(context["params"], request.url.path, at=str(latest_at), turn_cursor=None) + f"#turn-{total}",
        live_url=f"{base}/fragments/conversation/{url_part(session_id)}" if live else "",
        version=activity(conn, project, session_id) if live else "",
        lifecycle=session_lifecycle(request, conn, project, session_id),
        **context,
    )


@pages.get("/projects/{project}/traces")
def traces_page(request: Request, project: str, conn: ReadConn) -> HTMLResponse:
    """Every trace of the project, with or without a session: filtered, newest first, paginated."""
    if project_id(conn, project) is None:
        return unknown_project(request, conn, project)
    try:
        query = trace_query(request.query_params)
        page = list_traces(conn, project, query.filters, limit=min(query.limit, 500), cursor=query.cursor)
    except (BadParameter, InvalidQuery) as exc:
        return problem(request, conn, project, 400, "Cannot show these traces", str(exc), "traces")
    context = base_context(request, conn, project, "traces")
    context["params"]["metadata"] = metadata_param(query.filters.metadata)  # every pair (repeated), kept by links
    return html_response("traces.html", query=query, page=page, ranges=RANGES, **context)


@pages.get("/projects/{project}/traces/{trace_id}")
def trace_page(request: Request, project: str, trace_id: str, conn: ReadConn) -> HTMLResponse:
    """The span tree with a latency waterfall and one span's details."""
    detail = get_trace(conn, project, trace_id.lower())
    if detail is None:
        return problem(request, conn, project, 404, "Trace not found",
                       f"There is no trace “{trace_id}” in project “{project}”.", "sessions")
    rows = span_tree(detail.spans)
    selected = clean(request.query_params).get("span") or (rows[0].span.span_id if rows else "")
    if selected not in {r.span.span_id for r in rows} and rows:
        selected = rows[0].span.span_id
    start = min((s.start_time for s in detail.spans), default=None)
    end = max((s.end_time for s in detail.spans), default=None)
    users = sorted({s.user_id for s in detail.spans if s.user_id})
    return html_response(
        "trace.html", trace=detail, rows=rows, selected=selected, start=start, end=end, users=users,
        duration_ms=(end - start).total_seconds() * 1000 if start and end else None,
        errors=sum(1 for s in detail.spans if s.status == "ERROR"),
        messages=messages, exceptions=exception_events,
        **base_context(request, conn, project, "sessions"),
    )


@pages.get("/projects/{project}/users")
def users_page(request: Request, project: str, conn: ReadConn) -> HTMLResponse:
    """Every user of the project: sortable, searchable, paginated."""
    if project_id(conn, project) is None:
        return unknown_project(request, conn, project)
    params = clean(request.query_params)
    try:
        filters = user_filter(request.query_params)
        sort, ranking = parse_sort(params, USER_SORTS, "last_seen")
        order = parse_choice("order", params.get("order"), ("asc", "desc"), "desc")
        limit = min(parse_int("limit", params.get("limit"), minimum=1) or 50, 500)
        means: dict[str, float] = {}
        if ranking is not None:
            ranked = users_by_annotation(conn, project, ranking.name, order=order, limit=limit,
                                         cursor=params.get("cursor"), min_score=ranking.min_score,
                                         max_score=ranking.max_score, q=filters.q)
            page = Page(data=[x.user for x in ranked.data], next_cursor=ranked.next_cursor)
            means = {x.user.user_id: x.mean_score for x in ranked.data}
        else:
            page = list_users(conn, project, q=filters.q, sort=sort, order=order, limit=limit,
                              cursor=params.get("cursor"))
    except (BadParameter, InvalidQuery) as exc:
        return problem(request, conn, project, 400, "Cannot show these users", str(exc), "users")
    context = base_context(request, conn, project, "users")
    return html_response(
        "users.html", page=page, sort=sort, order=order, q=params.get("q", ""),
        columns=evaluation_columns(conn, project, score_columns(page.data, ranking)), ranking=ranking, means=means,
        sort_link=lambda column, default="desc": sort_link(context["params"], request.url.path, column, sort,
                                                           order, default),
        **context,
    )


@pages.get("/projects/{project}/users/{user_id:path}", response_model=None)
def user_page(request: Request, project: str, user_id: str, conn: ReadConn) -> Response:
    """One user: their totals and their sessions, newest first."""
    if not user_id:
        return RedirectResponse(f"/projects/{url_part(project)}/users", status_code=302, headers=SECURITY_HEADERS)
    try:
        detail = get_user(conn, project, user_id, cursor=clean(request.query_params).get("cursor"))
    except InvalidQuery as exc:
        return problem(request, conn, project, 400, "Cannot show this user", str(exc), "users")
    if detail is None:
        return problem(request, conn, project, 404, "User not found",
                       f"There is no user “{user_id}” in project “{project}”.", "users")
    context = base_context(request, conn, project, "users")
    return html_response("user.html", detail=detail, u=detail.summary, sessions=detail.sessions,
                         columns=evaluation_columns(conn, project, annotation_names(detail.sessions)), **context)


router.include_router(pages)
router.include_router(fragments.static_router)
