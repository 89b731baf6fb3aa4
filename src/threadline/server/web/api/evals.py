"""Evaluators and evaluation runs: ``GET /v1/evaluators``, ``POST``/``GET /v1/projects/{project}/eval-runs``.

Runs are recorded in the store (:mod:`threadline.server.evals.jobs`), so their status outlives the server.
"""

from __future__ import annotations

import threading

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from threadline.server.auth.roles import Action
from threadline.server.evals.evaluators import BUILTIN, get_evaluator
from threadline.server.evals.jobs import EvalJobs
from threadline.server.evals.runner import DEFAULT_IDENTIFIER, RunOptions
from threadline.server.query.parameters import Timestamp
from threadline.server.query.projects import project_id
from threadline.server.store.engine import Store
from threadline.server.web.access import allow
from threadline.server.web.api.annotations import RowId
from threadline.server.web.api.deps import ReadConn
from threadline.server.web.api.errors import ApiError, error_responses
from threadline.server.web.api.guards import check_json_text
from threadline.server.web.api.schemas import EvalRun, EvaluatorList
from threadline.server.web.api.serialize import to_json

router = APIRouter(tags=["evals"], dependencies=[allow(Action.READ)])
_lock = threading.Lock()


class EvalRunIn(BaseModel):
    """Which evaluators to run on which sessions."""

    model_config = ConfigDict(extra="forbid")

    evaluators: list[str] = Field(min_length=1, max_length=20, description="Evaluator names (GET /v1/evaluators)")
    session_ids: list[str] | None = Field(default=None, max_length=10_000, description="Only these sessions")
    since: Timestamp | None = Field(default=None, description="Only sessions active since (RFC 3339)")
    identifier: str = Field(default=DEFAULT_IDENTIFIER, max_length=200)
    closed_only: bool = False

    @model_validator(mode="after")
    def _storable(self) -> EvalRunIn:
        check_json_text([*self.evaluators, *(self.session_ids or []), self.identifier], "text")
        return self


def _jobs(request: Request) -> EvalJobs:
    with _lock:
        jobs: EvalJobs | None = getattr(request.app.state, "eval_jobs", None)
        if jobs is None:
            store: Store = request.app.state.store
            jobs = EvalJobs(request.app.state.settings, store)
            request.app.state.eval_jobs = jobs
        return jobs


@router.get("/v1/evaluators", summary="Built-in evaluators", response_model=EvaluatorList)
def evaluators() -> JSONResponse:
    """Name, kind (LLM or CODE), what they judge, direction, labels (with polarity and score), description."""
    out = []
    for name, ev in sorted(BUILTIN.items()):
        specs = ev.labels()
        out.append({"name": name, "annotator_kind": ev.annotator_kind, "judges_session": ev.judges_session,
                    "judges_turns": ev.judges_turns, "direction": ev.direction,
                    "labels": [spec.label for spec in specs], "label_details": [spec.as_dict() for spec in specs],
                    "good_label": ev.good_label, "bad_label": ev.bad_label, "description": ev.description})
    return JSONResponse({"data": out})


@router.post("/v1/projects/{project}/eval-runs",
             dependencies=[allow(Action.WRITE)], status_code=202, summary="Start an evaluation run",
             response_model=EvalRun, responses=error_responses(404, 409))
def start_run(project: str, body: EvalRunIn, request: Request, conn: ReadConn) -> JSONResponse:
    """Start evaluating in the background (only what is due); poll ``GET …/eval-runs/{id}`` for progress."""
    for name in body.evaluators:
        try:
            evaluator = get_evaluator(name, builtin_only=True)
        except KeyError as exc:
            raise ApiError(400, "unknown_evaluator", str(exc.args[0])) from exc
        if evaluator.annotator_kind == "LLM" and not request.app.state.settings.judge_base_url:
            raise ApiError(409, "judge_not_configured",
                           f"evaluator {name} needs an LLM judge: set THREADLINE_JUDGE_BASE_URL on the server")
    pid = project_id(conn, project)
    if pid is None:
        raise ApiError(404, "project_not_found", f"no project {project!r}")
    jobs = _jobs(request)
    run_id = jobs.start(pid, RunOptions(
        project=project, evaluators=body.evaluators, since=body.since, session_ids=body.session_ids,
        identifier=body.identifier, closed_only=body.closed_only, builtin_only=True))
    return JSONResponse(to_json(jobs.get(project, pid, run_id)), status_code=202)


@router.get("/v1/projects/{project}/eval-runs/{run_id}", summary="Progress and report of an evaluation run",
            response_model=EvalRun, responses=error_responses(404))
def get_run(project: str, run_id: RowId, request: Request, conn: ReadConn) -> JSONResponse:
    """``state`` (queued, running, done, failed, interrupted), ``done``/``total`` and, when finished, the report.

    Runs are stored: this answers after a restart too (a run whose server stopped reads ``interrupted``).
    """
    pid = project_id(conn, project)
    found = _jobs(request).get(project, pid, run_id) if pid is not None else None
    if found is None:
        raise ApiError(404, "eval_run_not_found", f"no evaluation run {run_id} in project {project!r}")
    return JSONResponse(to_json(found))
