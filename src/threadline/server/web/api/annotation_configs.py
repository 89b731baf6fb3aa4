"""Annotation configs API: ``GET``/``PUT``/``DELETE /v1/projects/{project}/annotation-configs[/{name}]``.

A config says how an annotation name is scored and shown in a project: its kind (categorical,
continuous, freeform), its labels with their polarity (good, bad, neutral) and score, its
direction and score range, and a description. Names without a stored config fall back to the
config their built-in evaluator declares (``source: "evaluator"``).
"""

from __future__ import annotations

import math
import time
from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Connection

from threadline.server.auth.roles import Action
from threadline.server.evals.configs import effective_config, effective_configs
from threadline.server.evals.scales import ConfigKind, Direction, Polarity
from threadline.server.query.projects import project_id
from threadline.server.store.annotation_configs import delete_annotation_config, put_annotation_config
from threadline.server.store.engine import Store
from threadline.server.web.access import allow
from threadline.server.web.api.deps import ReadConn
from threadline.server.web.api.errors import ApiError
from threadline.server.web.api.guards import check_json_text
from threadline.server.web.api.schemas import AnnotationConfigList, AnnotationConfigOut

router = APIRouter(tags=["annotations"], dependencies=[allow(Action.READ)])
MAX_NAME = 200
MAX_LABELS = 100


class LabelIn(BaseModel):
    """One label of a categorical config."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, max_length=200)
    polarity: Polarity = "neutral"
    score: float | None = None


def _finite(value: float | None, what: str) -> None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number")


class AnnotationConfigIn(BaseModel):
    """How an annotation name is scored and shown."""

    model_config = ConfigDict(extra="forbid")

    kind: ConfigKind = Field(description="categorical (labels), continuous (a score in a range) or freeform")
    labels: list[LabelIn] = Field(default_factory=list, max_length=MAX_LABELS)
    direction: Direction = "higher_is_better"
    min_score: float | None = None
    max_score: float | None = None
    description: str = Field(default="", max_length=2000)

    @field_validator("min_score", "max_score")
    @classmethod
    def _finite_bounds(cls, value: float | None) -> float | None:
        _finite(value, "min_score and max_score")
        return value

    @model_validator(mode="after")
    def _check(self) -> AnnotationConfigIn:
        check_json_text([spec.label for spec in self.labels], "labels")
        check_json_text(self.description, "description")
        for spec in self.labels:
            _finite(spec.score, f"the score of label {spec.label!r}")
        names = [spec.label for spec in self.labels]
        if len(set(names)) != len(names):
            raise ValueError("labels must be distinct")
        if self.kind == "categorical" and not self.labels:
            raise ValueError("a categorical config needs at least one label")
        if self.kind != "categorical" and self.labels:
            raise ValueError(f"a {self.kind} config has no labels")
        if self.min_score is not None and self.max_score is not None and self.min_score >= self.max_score:
            raise ValueError("min_score must be below max_score")
        return self


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _project(conn: Connection, project: str) -> int:
    pid = project_id(conn, project)
    if pid is None:
        raise ApiError(404, "project_not_found", f"no project {project!r}")
    return pid


def _name(name: str) -> str:
    if not name or len(name) > MAX_NAME:
        raise ApiError(400, "invalid_request", f"an annotation name is 1 to {MAX_NAME} characters")
    return name


@router.get("/v1/projects/{project}/annotation-configs", summary="Annotation configs of a project",
            response_model=AnnotationConfigList)
def config_list(project: str, conn: ReadConn) -> JSONResponse:
    """Every stored config, plus the default config of every built-in evaluator not configured."""
    pid = _project(conn, project)
    return JSONResponse({"data": [c.as_dict() for c in effective_configs(conn, pid).values()]})


@router.get("/v1/projects/{project}/annotation-configs/{name:path}", summary="One annotation config",
            response_model=AnnotationConfigOut)
def config(project: str, name: str, conn: ReadConn) -> JSONResponse:
    """The stored config of ``name``, else its evaluator's default (404 when neither exists)."""
    found = effective_config(conn, _project(conn, project), _name(name))
    if found is None:
        raise ApiError(404, "annotation_config_not_found", f"no annotation config {name!r} in project {project!r}")
    return JSONResponse(found.as_dict())


@router.put("/v1/projects/{project}/annotation-configs/{name:path}",
            dependencies=[allow(Action.ADMIN)], summary="Create or replace an annotation config",
            response_model=AnnotationConfigOut)
def put_config(
    project: str, name: str, request: Request,
    body: Annotated[AnnotationConfigIn, Body(description="kind, labels, direction, min/max score, description")],
) -> JSONResponse:
    """Create or replace the config of ``name`` (the project must exist)."""
    _name(name)
    with _store(request).write() as tx:
        pid = _project(tx, project)
        put_annotation_config(
            tx, pid, name, kind=body.kind, labels=[spec.model_dump() for spec in body.labels],
            direction=body.direction, min_score=body.min_score, max_score=body.max_score,
            description=body.description, now_ns=time.time_ns())
        stored = effective_config(tx, pid, name)
    assert stored is not None
    return JSONResponse(stored.as_dict())


@router.delete("/v1/projects/{project}/annotation-configs/{name:path}",
               dependencies=[allow(Action.ADMIN)], status_code=204,
               summary="Delete an annotation config")
def remove_config(project: str, name: str, request: Request) -> Response:
    """Delete the stored config of ``name`` (an evaluator's default then applies again); 404 when none."""
    _name(name)
    with _store(request).write() as tx:
        if not delete_annotation_config(tx, _project(tx, project), name):
            raise ApiError(404, "annotation_config_not_found",
                           f"no stored annotation config {name!r} in project {project!r}")
    return Response(status_code=204)
