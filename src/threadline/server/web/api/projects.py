"""``GET /v1/projects``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from threadline.server.auth.roles import Action, Principal
from threadline.server.query.projects import list_projects
from threadline.server.web.access import allow
from threadline.server.web.api.deps import ReadConn
from threadline.server.web.api.schemas import ProjectList
from threadline.server.web.api.serialize import to_json

router = APIRouter(tags=["projects"])


@router.get("/v1/projects", summary="List projects with their counts", response_model=ProjectList)
def projects(conn: ReadConn, principal: Annotated[Principal, allow(Action.READ)]) -> JSONResponse:
    """Every project the caller may read: name, spans, traces, sessions, users, last_seen."""
    reachable = [project for project in list_projects(conn) if principal.reaches(project.name)]
    return JSONResponse({"data": to_json(reachable), "next_cursor": None})
