"""``GET /v1/projects/{project}/users`` and one user with their sessions."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from threadline.server.auth.roles import Action
from threadline.server.query.users import USER_PARAMS, UserFilter, UserSort, get_user, list_users
from threadline.server.web.access import allow
from threadline.server.web.api.deps import ReadConn, with_query
from threadline.server.web.api.errors import ApiError
from threadline.server.web.api.schemas import UserBody, UserList
from threadline.server.web.api.serialize import to_json

router = APIRouter(tags=["users"], dependencies=[allow(Action.READ)])


@router.get("/v1/projects/{project}/users", summary="List users", response_model=UserList)
@with_query("filters", USER_PARAMS, UserFilter.from_params)
def users(
    project: str,
    conn: ReadConn,
    filters: UserFilter,
    sort: UserSort = "last_seen",
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor or prev_cursor of another page")] = None,
) -> JSONResponse:
    """Users with sessions, turns, errors, tokens, cost, first and last seen; ``next_cursor`` and
    ``prev_cursor`` open the pages after and before this one (``null`` at the ends)."""
    page = list_users(conn, project, q=filters.q, sort=sort, order=order, limit=limit, cursor=cursor)
    return JSONResponse({"data": to_json(page.data), "next_cursor": page.next_cursor,
                         "prev_cursor": page.prev_cursor})


@router.get("/v1/projects/{project}/users/{user_id:path}", summary="One user and their sessions",
            response_model=UserBody)
def user(
    project: str,
    user_id: str,
    conn: ReadConn,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> JSONResponse:
    """The user summary plus ``sessions`` (newest first) and ``next_cursor``."""
    detail = get_user(conn, project, user_id, limit=limit, cursor=cursor)
    if detail is None:
        raise ApiError(404, "user_not_found", f"no user {user_id!r} in project {project!r}")
    body = to_json(detail.summary)
    body["sessions"] = to_json(detail.sessions)
    body["next_cursor"] = detail.next_cursor
    return JSONResponse(body)
