"""``GET /v1/projects/{project}/sessions`` and one session with its turns."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from threadline.server.auth.roles import Action
from threadline.server.query.conversation import matching_turns, turn_cursor_at
from threadline.server.query.sessions import SESSION_PARAMS, SessionFilter, SessionSort, get_session, list_sessions
from threadline.server.web.access import allow
from threadline.server.web.api.deps import ReadConn, query_dependency
from threadline.server.web.api.errors import ApiError
from threadline.server.web.api.schemas import SessionBody, SessionList
from threadline.server.web.api.serialize import to_json

router = APIRouter(tags=["sessions"], dependencies=[allow(Action.READ)])
Order = Literal["asc", "desc"]


#: The session filters of a query string, declared once (``SESSION_PARAMS``) for every route that
#: lists sessions (the list, score rankings), as the UI's ``session_query`` builds the same model.
SessionFilterParams = Annotated[SessionFilter, Depends(query_dependency(SESSION_PARAMS, SessionFilter.from_params))]


@router.get("/v1/projects/{project}/sessions", summary="List sessions (conversations)",
            response_model=SessionList)
def sessions(
    project: str,
    conn: ReadConn,
    filters: SessionFilterParams,
    sort: SessionSort = "start_time",
    order: Order = "desc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor or prev_cursor of another page")] = None,
) -> JSONResponse:
    """Sessions with turns, tokens, cost, latency, errors, users, first input and last output;
    ``next_cursor`` and ``prev_cursor`` open the pages after and before this one (``null`` at the ends)."""
    page = list_sessions(conn, project, filters, sort=sort, order=order, limit=limit, cursor=cursor)
    return JSONResponse({"data": to_json(page.data), "next_cursor": page.next_cursor,
                         "prev_cursor": page.prev_cursor})


@router.get("/v1/projects/{project}/sessions/{session_id:path}", summary="One session, turn by turn",
            response_model=SessionBody)
def session(
    project: str,
    session_id: str,
    conn: ReadConn,
    turn_limit: Annotated[int | None, Query(ge=1, le=1000, description="Page long sessions")] = None,
    turn_cursor: Annotated[str | None, Query(description="next_turn_cursor of the previous page")] = None,
    turn_at: Annotated[int | None, Query(ge=0, description="Start the turns at this index (0-based)")] = None,
    q: Annotated[str | None, Query(description="Full-text search over every turn of the session: "
                                               "`matching_turns` lists the indexes of the turns that match")] = None,
) -> JSONResponse:
    """The session summary plus ``turns``: input, output, status, tokens, cost, steps (LLM and tool
    calls in the order they ran); with ``q``, ``matching_turns`` over the whole session."""
    if turn_at is not None:
        if turn_cursor is not None:
            raise ApiError(400, "invalid_query", "give turn_at or turn_cursor, not both")
        turn_cursor = turn_cursor_at(conn, project, session_id, turn_at)
    detail = get_session(conn, project, session_id, turn_limit=turn_limit, turn_cursor=turn_cursor)
    if detail is None:
        raise ApiError(404, "session_not_found", f"no session {session_id!r} in project {project!r}")
    body = to_json(detail.summary)
    body["turns"] = to_json(detail.turns)
    body["next_turn_cursor"] = detail.next_turn_cursor
    if q is not None:
        body["matching_turns"] = matching_turns(conn, project, session_id, q)
    return JSONResponse(body)
