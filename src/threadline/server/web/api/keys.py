"""API keys over the API (admin, every project): ``GET``/``POST /v1/keys``, ``DELETE /v1/keys/{name}``.

The same store functions as ``threadline keys``; the secret is in the ``POST`` answer only.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from threadline.server.auth.roles import KEY_ROLES, Action, Role
from threadline.server.store.credentials import ApiKey, KeyExists, create_key, list_keys, revoke_key
from threadline.server.store.engine import Store
from threadline.server.web.access import allow
from threadline.server.web.api.deps import ReadConn
from threadline.server.web.api.errors import ApiError, error_responses
from threadline.server.web.api.guards import text_problem
from threadline.server.web.api.schemas import ApiKeyList, CreatedKey
from threadline.server.web.api.serialize import rfc3339

router = APIRouter(tags=["keys"], dependencies=[allow(Action.ADMIN, global_scope=True)])
MAX_NAME = 200


class KeyIn(BaseModel):
    """A key to create."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_NAME, description="Unique name, to list and revoke the key")
    role: Role = Field(description=f"One of {', '.join(KEY_ROLES)}")
    projects: list[str] | None = Field(
        default=None, max_length=100, description="Limit the key to these projects; null or absent: every project")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        problem = text_problem(value)
        if not value or problem:
            raise ValueError(problem or "must not be blank")
        return value

    @field_validator("projects")
    @classmethod
    def _projects(cls, value: list[str] | None) -> list[str] | None:
        for project in value or []:
            problem = text_problem(project)
            if not project.strip() or problem:
                raise ValueError(f"project {problem or 'must not be blank'}")
        return value or None


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {"name": key.name, "role": key.role, "projects": list(key.projects) if key.projects else None,
            "hint": key.hint, "created_at": rfc3339(datetime.fromtimestamp(key.created_ns / 1e9, UTC))}


@router.get("/v1/keys", summary="List API keys (without their secrets)", response_model=ApiKeyList)
def keys(conn: ReadConn) -> JSONResponse:
    """Every key: name, role, projects, the key's first characters, creation time."""
    return JSONResponse({"data": [_key_json(key) for key in list_keys(conn)], "next_cursor": None})


@router.post("/v1/keys", status_code=201, summary="Create an API key (the secret is shown once)",
             response_model=CreatedKey, responses=error_responses(409))
def create(body: KeyIn, request: Request) -> JSONResponse:
    """Create a key; the answer's ``key`` is the secret, which is not stored and never shown again."""
    store: Store = request.app.state.store
    try:
        with store.write() as tx:
            key, secret = create_key(tx, body.name, body.role.value, body.projects, time.time_ns())
    except KeyExists as exc:
        raise ApiError(409, "key_exists", str(exc)) from exc
    return JSONResponse({**_key_json(key), "key": secret}, status_code=201)


@router.delete("/v1/keys/{name:path}", status_code=204, summary="Revoke an API key",
               responses=error_responses(404))
def revoke(name: str, request: Request) -> Response:
    """Revoke the key at once (every server sharing the database stops accepting it)."""
    store: Store = request.app.state.store
    with store.write() as tx:
        found = revoke_key(tx, name)
    if not found:
        raise ApiError(404, "key_not_found", f"no API key named {name!r}")
    return Response(status_code=204)
