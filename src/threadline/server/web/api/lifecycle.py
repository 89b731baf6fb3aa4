"""Session lifecycle API: close a session now; a project's idle timeout and online evaluators."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from threadline.server.auth.roles import Action
from threadline.server.evals.evaluators import get_evaluator
from threadline.server.evals.lifecycle import idle_timeout_seconds, retention_days
from threadline.server.query.lifecycle import project_settings, session_state
from threadline.server.query.projects import project_id
from threadline.server.query.timeconv import to_datetime
from threadline.server.settings import Settings
from threadline.server.store.engine import Store
from threadline.server.store.lifecycle import close_session, write_project_settings
from threadline.server.web.access import allow
from threadline.server.web.api.deps import ReadConn
from threadline.server.web.api.errors import ApiError
from threadline.server.web.api.guards import check_json_text
from threadline.server.web.api.schemas import ProjectSettings, SessionClosed, SessionState
from threadline.server.web.api.serialize import rfc3339

router = APIRouter(tags=["lifecycle"], dependencies=[allow(Action.READ)])


class ProjectSettingsIn(BaseModel):
    """A project's session settings."""

    model_config = ConfigDict(extra="forbid")

    idle_timeout_seconds: float | None = Field(
        default=None, ge=0, description="Idle time after which a session closes; 0: never; null: server default")
    online_evaluators: list[str] = Field(
        default_factory=list, max_length=20, description="Evaluators run on every session when it closes")
    retention_days: float | None = Field(
        default=None, ge=0, description="Sessions whose latest span ended more than this many days ago are "
        "purged; 0: keep forever; null: server default (THREADLINE_RETENTION_DAYS)")

    @model_validator(mode="after")
    def _storable(self) -> ProjectSettingsIn:
        check_json_text(self.online_evaluators, "online_evaluators")
        return self


def _body(settings: Settings, stored: dict[str, Any]) -> dict[str, Any]:
    return {
        "idle_timeout_seconds": stored.get("idle_timeout_seconds"),
        "online_evaluators": list(stored.get("online_evaluators") or []),
        "effective_idle_timeout_seconds": idle_timeout_seconds(settings, stored),
        "retention_days": stored.get("retention_days"),
        "effective_retention_days": retention_days(settings, stored),
    }


@router.post("/v1/projects/{project}/sessions/{session_id:path}/close",
             dependencies=[allow(Action.WRITE)], summary="Close a session now", response_model=SessionClosed)
def close(project: str, session_id: str, request: Request) -> JSONResponse:
    """Close a session (a new turn re-opens it); the project's online evaluators then run on it."""
    store: Store = request.app.state.store
    with store.write() as tx:
        pid = project_id(tx, project)
        outcome = close_session(tx, pid, session_id, time.time_ns()) if pid is not None else None
    if outcome is None:
        raise ApiError(404, "session_not_found", f"no session {session_id!r} in project {project!r}")
    runtime = getattr(request.app.state, "runtime", None)
    lifecycle = getattr(runtime, "lifecycle", None)
    if lifecycle is not None:
        lifecycle.wake()
    return JSONResponse({"session_id": session_id, "closed": True, "already_closed": not outcome})


@router.get("/v1/projects/{project}/sessions/{session_id:path}/state", summary="Is a session open or closed",
            response_model=SessionState)
def state(project: str, session_id: str, conn: ReadConn) -> JSONResponse:
    """``{session_id, closed, closed_at, last_activity_at}`` (times RFC 3339; ``closed_at`` null when open)."""
    pid = project_id(conn, project)
    found = session_state(conn, pid, session_id) if pid is not None else None
    if found is None:
        raise ApiError(404, "session_not_found", f"no session {session_id!r} in project {project!r}")
    activity, closed = found
    return JSONResponse({"session_id": session_id, "closed": closed is not None,
                         "closed_at": rfc3339(to_datetime(closed)) if closed is not None else None,
                         "last_activity_at": rfc3339(to_datetime(activity))})


@router.get("/v1/projects/{project}/settings", summary="A project's session settings",
            response_model=ProjectSettings)
def get_settings(project: str, request: Request) -> JSONResponse:
    """Idle timeout and retention (own and effective) and online evaluators."""
    store: Store = request.app.state.store
    with store.read() as conn:
        pid = project_id(conn, project)
        if pid is None:
            raise ApiError(404, "project_not_found", f"no project {project!r}")
        stored = project_settings(conn, pid)
    return JSONResponse(_body(request.app.state.settings, stored))


@router.put("/v1/projects/{project}/settings",
            dependencies=[allow(Action.ADMIN)], summary="Change a project's session settings",
            response_model=ProjectSettings)
def put_settings(project: str, body: ProjectSettingsIn, request: Request) -> JSONResponse:
    """Replace the idle timeout, the retention and the online evaluators (unknown evaluators: 400)."""
    for name in body.online_evaluators:
        try:
            get_evaluator(name, builtin_only=True)
        except KeyError as exc:
            raise ApiError(400, "unknown_evaluator", str(exc.args[0])) from exc
    store: Store = request.app.state.store
    with store.write() as tx:
        pid = project_id(tx, project)
        if pid is None:
            raise ApiError(404, "project_not_found", f"no project {project!r}")
        stored = project_settings(tx, pid)
        stored["idle_timeout_seconds"] = body.idle_timeout_seconds
        stored["online_evaluators"] = list(dict.fromkeys(body.online_evaluators))
        stored["retention_days"] = body.retention_days
        write_project_settings(tx, pid, stored)
    runtime = getattr(request.app.state, "runtime", None)
    lifecycle = getattr(runtime, "lifecycle", None)
    if lifecycle is not None:
        lifecycle.wake()
    return JSONResponse(_body(request.app.state.settings, stored))
