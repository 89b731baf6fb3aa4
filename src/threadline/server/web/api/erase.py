"""Erasure over the API (admin): a user's data, one session, or a whole project.

Each route calls :func:`threadline.server.store.erase.erase`, the same function as
``threadline erase``, and answers the counts of what was removed. An unknown project, session or
user is a 404: a typo must never look like a successful erase.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from threadline.server.auth.roles import Action
from threadline.server.store.engine import Store
from threadline.server.store.erase import EraseTargetMissing, erase
from threadline.server.web.access import allow
from threadline.server.web.api.errors import ApiError
from threadline.server.web.api.schemas import Erased

router = APIRouter(tags=["erase"])


async def _erase(request: Request, project: str, *, session_id: str | None = None, user_id: str | None = None
                 ) -> JSONResponse:
    store: Store = request.app.state.store
    try:
        result = await run_in_threadpool(erase, store, project, session_id=session_id, user_id=user_id)
    except EraseTargetMissing as exc:
        raise ApiError(404, f"{exc.kind}_not_found", exc.message) from exc
    body: dict[str, object] = {"project": project}
    if session_id is not None:
        body["session_id"] = session_id
    if user_id is not None:
        body["user_id"] = user_id
    body["erased"] = result.counts()
    return JSONResponse(body)


@router.delete("/v1/projects/{project}/users/{user_id:path}", dependencies=[allow(Action.ADMIN)],
               summary="Erase a user's data", response_model=Erased)
async def erase_user(project: str, user_id: str, request: Request) -> JSONResponse:
    """Erase every trace of the user (spans, turns, search rows, annotations on any of them and on the
    user; sessions left empty go too) and repair the rollups. Body: ``{project, user_id, erased:
    {spans, traces, sessions, users, annotations, checkpointed}}``."""
    return await _erase(request, project, user_id=user_id)


@router.delete("/v1/projects/{project}/sessions/{session_id:path}", dependencies=[allow(Action.ADMIN)],
               summary="Erase a session", response_model=Erased)
async def erase_session(project: str, session_id: str, request: Request) -> JSONResponse:
    """Erase one session and everything in it (users left with no data go too)."""
    return await _erase(request, project, session_id=session_id)


@router.delete("/v1/projects/{project}", dependencies=[allow(Action.ADMIN)], summary="Erase a project",
                response_model=Erased)
async def erase_project(project: str, request: Request) -> JSONResponse:
    """Erase a whole project: its data, annotations, annotation configs, eval runs and settings."""
    return await _erase(request, project)
