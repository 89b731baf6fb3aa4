"""``GET /v1/projects``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from threadline.server.query.projects import list_projects
from threadline.server.web.api.deps import ReadConn
from threadline.server.web.api.serialize import to_json

router = APIRouter(tags=["projects"])


@router.get("/v1/projects", summary="List projects with their counts")
def projects(conn: ReadConn) -> JSONResponse:
    """Every project: name, spans, traces, sessions, users, last_seen."""
    return JSONResponse({"data": to_json(list_projects(conn)), "next_cursor": None})
