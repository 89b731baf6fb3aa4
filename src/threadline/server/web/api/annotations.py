"""Annotations REST API: upsert (one or many), list, get, delete; rankings; a session's breakdown."""

from __future__ import annotations

import math
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from threadline.server.auth.roles import Action
from threadline.server.model import Annotation
from threadline.server.query.annotation_configs import list_annotation_configs
from threadline.server.query.annotations import (
    AnnotationFilter,
    first_broken_turn,
    get_annotation,
    get_annotations,
    list_annotations,
    missing_targets,
    rank_by_annotation,
    turn_scores,
)
from threadline.server.query.projects import project_id
from threadline.server.query.ranking import sessions_by_annotation, users_by_annotation
from threadline.server.store.annotations import AnnotationWrite, delete_annotation, upsert_annotations
from threadline.server.store.engine import Store
from threadline.server.web.access import allow
from threadline.server.web.api.deps import ReadConn
from threadline.server.web.api.errors import ApiError
from threadline.server.web.api.guards import check_json_text
from threadline.server.web.api.schemas import AnnotationList, Breakdown, Rankings, WrittenAnnotations
from threadline.server.web.api.serialize import to_json
from threadline.server.web.api.sessions import SessionFilterParams

router = APIRouter(tags=["annotations"], dependencies=[allow(Action.READ)])
TargetKind = Literal["span", "trace", "session", "user"]
AnnotatorKind = Literal["HUMAN", "LLM", "CODE"]
MAX_BULK = 1000
#: A stored row id (an INTEGER column): a larger number is a 400, not an overflow in the database.
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class AnnotationIn(BaseModel):
    """An annotation to create, or to update when (target, name, identifier) already has one."""

    model_config = ConfigDict(extra="forbid")

    target_kind: TargetKind = Field(description="span, trace (a turn), session or user")
    target_id: str = Field(min_length=1, max_length=1024, description="span id, trace id, session id or user id")
    name: str = Field(min_length=1, max_length=200, description="what is judged, e.g. user_frustration")
    label: str | None = Field(default=None, min_length=1, max_length=200)
    score: float | None = None
    explanation: str | None = Field(default=None, max_length=20_000)
    annotator_kind: AnnotatorKind = "HUMAN"
    identifier: str = Field(default="", max_length=200,
                            description="who annotates; several identifiers may annotate the same target")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("score")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("score must be a finite number")
        return value

    @model_validator(mode="after")
    def _check(self) -> AnnotationIn:
        if self.label is None and self.score is None:
            raise ValueError("an annotation needs a label, a score or both")
        for name in ("target_id", "name", "label", "explanation", "identifier", "metadata"):
            check_json_text(getattr(self, name), name)
        return self


class AnnotationBatch(BaseModel):
    """Several annotations at once (all or nothing)."""

    model_config = ConfigDict(extra="forbid")
    data: list[AnnotationIn] = Field(min_length=1, max_length=MAX_BULK)


def _shape(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "data" in value else "annotation"


#: One annotation, or ``{"data": [...]}``; validation errors speak of the shape that was sent only.
OneOrBatch = Annotated[
    Annotated[AnnotationIn, Tag("annotation")] | Annotated[AnnotationBatch, Tag("batch")], Discriminator(_shape)
]


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


@router.post("/v1/projects/{project}/annotations",
             dependencies=[allow(Action.WRITE)], summary="Create or update annotations (one or a batch)",
             response_model=WrittenAnnotations)
def upsert(
    project: str, request: Request,
    body: Annotated[OneOrBatch, Body(
        description="One annotation, or {\"data\": [annotation, …]} (up to 1000) written in one transaction")],
) -> JSONResponse:
    """Upsert on (target_kind, target_id, name, identifier); every target must exist (else 404)."""
    items = body.data if isinstance(body, AnnotationBatch) else [body]
    store = _store(request)
    with store.read() as conn:  # look targets up before taking the write lock
        pid = project_id(conn, project)
        if pid is None:
            raise ApiError(404, "project_not_found", f"no project {project!r}")
        missing = missing_targets(conn, pid, [(i.target_kind, i.target_id) for i in items])
        configs = {c.name: c for c in list_annotation_configs(conn, pid, sorted({i.name for i in items}))}
    if missing:
        listed = ", ".join(f"{kind} {target_id!r}" for kind, target_id in missing[:20])
        raise ApiError(404, "target_not_found", f"not found in project {project!r}: {listed}")
    for item in items:  # a configured name takes only its own labels (and scores in its range)
        config = configs.get(item.name)
        problem = config.problem(item.label, item.score) if config is not None else None
        if problem:
            raise ApiError(400, "annotation_config_mismatch", problem)
    with store.write() as tx:
        ids = upsert_annotations(tx, pid, [AnnotationWrite(
            target_kind=i.target_kind, target_id=i.target_id, name=i.name, annotator_kind=i.annotator_kind,
            label=i.label, score=i.score, explanation=i.explanation, identifier=i.identifier, metadata=i.metadata,
        ) for i in items], time.time_ns())
    with store.read() as conn:
        written = get_annotations(conn, project, ids)
    return JSONResponse({"data": to_json(written)})


@router.get("/v1/projects/{project}/annotations", summary="List annotations", response_model=AnnotationList)
def annotation_list(
    project: str, conn: ReadConn,
    target_kind: TargetKind | None = None,
    target_id: str | None = None,
    name: str | None = None,
    identifier: str | None = None,
    annotator_kind: AnnotatorKind | None = None,
    label: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> JSONResponse:
    """Annotations matching every given field, oldest first."""
    page = list_annotations(conn, project, AnnotationFilter(
        target_kind=target_kind, target_id=target_id, name=name, identifier=identifier,
        annotator_kind=annotator_kind, label=label), limit=limit, cursor=cursor)
    return JSONResponse({"data": to_json(page.data), "next_cursor": page.next_cursor})


@router.get("/v1/projects/{project}/annotations/{annotation_id}", summary="One annotation",
            response_model=Annotation)
def annotation(project: str, annotation_id: RowId, conn: ReadConn) -> JSONResponse:
    """An annotation by id."""
    found = get_annotation(conn, project, annotation_id)
    if found is None:
        raise ApiError(404, "annotation_not_found", f"no annotation {annotation_id} in project {project!r}")
    return JSONResponse(to_json(found))


@router.delete("/v1/projects/{project}/annotations/{annotation_id}",
               dependencies=[allow(Action.WRITE)], status_code=204,
               summary="Delete an annotation")
def remove(project: str, annotation_id: RowId, request: Request) -> Response:
    """Delete an annotation by id (404 when there is none)."""
    with _store(request).write() as tx:
        pid = project_id(tx, project)
        if pid is None or not delete_annotation(tx, pid, annotation_id):
            raise ApiError(404, "annotation_not_found", f"no annotation {annotation_id} in project {project!r}")
    return Response(status_code=204)


@router.get("/v1/projects/{project}/rankings", summary="Sessions, turns or users ranked by an annotation score",
            response_model=Rankings)
def rankings(
    project: str, conn: ReadConn,
    name: Annotated[str, Query(min_length=1, description="annotation name, e.g. user_frustration")],
    filters: SessionFilterParams,
    target_kind: Annotated[Literal["session", "trace", "user"], Query(
        description="users count their own annotations plus those of their sessions")] = "session",
    order: Literal["asc", "desc"] = "desc",
    min_score: float | None = None,
    max_score: float | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
    user_q: Annotated[str | None, Query(
        alias="user_q", description="target_kind=user: users whose id contains this text")] = None,
) -> JSONResponse:
    """``{target_id, mean_score, count}`` best or worst first, plus the ``session`` or ``user`` summary.

    Sessions are ranked among those matching the sessions list's filters (``start``, ``end``,
    ``user_id``, ``user_id_contains``, ``q``, ``has_error``, ``min_turns``, …); users among those
    whose id contains ``user_q``."""
    if target_kind == "session":
        sessions = sessions_by_annotation(conn, project, name, order, limit, cursor, min_score, max_score, filters)
        return JSONResponse({"data": [
            {"target_id": r.session.session_id, "mean_score": r.mean_score, "count": r.count,
             "session": to_json(r.session)} for r in sessions.data], "next_cursor": sessions.next_cursor})
    if target_kind == "user":
        users = users_by_annotation(conn, project, name, order, limit, cursor, min_score, max_score, user_q)
        return JSONResponse({"data": [
            {"target_id": r.user.user_id, "mean_score": r.mean_score, "count": r.count,
             "user": to_json(r.user)} for r in users.data], "next_cursor": users.next_cursor})
    pid = project_id(conn, project)
    if pid is None:
        return JSONResponse({"data": [], "next_cursor": None})
    page = rank_by_annotation(conn, pid, target_kind, name, order=order, limit=limit, cursor=cursor,
                              min_score=min_score, max_score=max_score)
    return JSONResponse({"data": to_json(page.data), "next_cursor": page.next_cursor})


@router.get("/v1/projects/{project}/sessions/{session_id:path}/breakdown",
            summary="Where a conversation breaks: first broken turn and per-turn scores",
            response_model=Breakdown)
def breakdown(project: str, session_id: str, conn: ReadConn) -> JSONResponse:
    """The first failed or badly-labelled turn (``null`` when none) and every turn's annotation summaries."""
    turns = turn_scores(conn, project, session_id)
    if not turns:
        raise ApiError(404, "session_not_found", f"no session {session_id!r} in project {project!r}")
    broken = first_broken_turn(conn, project, session_id)
    first = None
    if broken is not None:
        index = next(t.index for t in turns if t.trace_id == broken.trace_id)
        first = {"trace_id": broken.trace_id, "index": index, "reason": broken.reason}
    return JSONResponse({"session_id": session_id, "first_broken_turn": first, "turns": to_json(turns)})
