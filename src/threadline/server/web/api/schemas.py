"""The shapes of the API's success bodies, for the OpenAPI document (DESIGN §5).

Endpoints build their JSON by hand (``to_json`` of the model dataclasses, returned as a
``JSONResponse`` for speed), so FastAPI never validates these: they *describe* what the code
returns, from the same dataclasses in :mod:`threadline.server.model`, and the schemathesis test
(tests/api/test_schemathesis.py) checks that every answer conforms.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, Field, create_model

from threadline.server.evals.scales import ConfigKind, Direction, Polarity
from threadline.server.model import (
    Annotation,
    ProjectSummary,
    SessionSummary,
    Span,
    TraceDetail,
    TraceSummary,
    Turn,
    UserSummary,
)
from threadline.server.query.annotations import RankedTarget, TurnScores
from threadline.server.query.metrics import MetricsGroup

__all__ = ["TraceDetail"]  # a route body as it is in the model


class Health(BaseModel):
    """``GET /healthz``."""

    status: Literal["ok"]


class ProjectList(BaseModel):
    """``GET /v1/projects``: every project the caller may read (never paged)."""

    data: list[ProjectSummary]
    next_cursor: None


class SessionList(BaseModel):
    """A page of sessions; ``prev_cursor`` opens the page before (``null`` at the ends)."""

    data: list[SessionSummary]
    next_cursor: str | None
    prev_cursor: str | None


def extended(name: str, base: type[Any], doc: str, **fields: Any) -> type[BaseModel]:
    """A body model: the fields of the model dataclass ``base``, with ``fields`` (``(type, default)``)
    replacing or added to them (a detail body's ``turns`` is a list where the summary's is a count)."""
    hints = get_type_hints(base)
    own: dict[str, Any] = {f.name: (hints[f.name], ...) for f in dataclasses.fields(base) if f.name not in fields}
    model: type[BaseModel] = create_model(name, __doc__=doc, **own, **fields)
    return model


SessionBody = extended(
    "SessionBody", SessionSummary,
    "A session summary with (a page of) its turns; ``matching_turns`` only with ``q``.",
    turns=(list[Turn], ...), next_turn_cursor=(str | None, ...), matching_turns=(list[int] | None, None))


class UserList(BaseModel):
    """A page of users."""

    data: list[UserSummary]
    next_cursor: str | None
    prev_cursor: str | None


UserBody = extended(
    "UserBody", UserSummary, "A user summary with a page of their sessions (newest first).",
    sessions=(list[SessionSummary], ...), next_cursor=(str | None, ...))


class TraceList(BaseModel):
    """A page of traces, newest first."""

    data: list[TraceSummary]
    next_cursor: str | None


class SpanList(BaseModel):
    """A page of spans, newest first."""

    data: list[Span]
    next_cursor: str | None


class AnnotationList(BaseModel):
    """A page of annotations, oldest first."""

    data: list[Annotation]
    next_cursor: str | None


class WrittenAnnotations(BaseModel):
    """The annotations an upsert wrote, in the order sent."""

    data: list[Annotation]


class RankedSessionItem(BaseModel):
    """A ranked session (``target_kind=session``)."""

    target_id: str
    mean_score: float
    count: int
    session: SessionSummary


class RankedUserItem(BaseModel):
    """A ranked user (``target_kind=user``)."""

    target_id: str
    mean_score: float
    count: int
    user: UserSummary


class Rankings(BaseModel):
    """Targets best or worst first: sessions and users carry their summary, turns (traces) do not."""

    data: list[RankedSessionItem] | list[RankedUserItem] | list[RankedTarget]
    next_cursor: str | None


class BrokenTurnOut(BaseModel):
    """The first failed or badly-labelled turn of a session."""

    trace_id: str
    index: int
    reason: str


class Breakdown(BaseModel):
    """Where a conversation breaks, and every turn's annotation summaries."""

    session_id: str
    first_broken_turn: BrokenTurnOut | None
    turns: list[TurnScores]


class MetricsRow(BaseModel):
    """One group and its metric values (``null`` when the group has no value of a metric)."""

    group: str | None
    values: dict[str, float | None]


class Metrics(BaseModel):
    """``GET …/metrics``."""

    group_by: MetricsGroup
    metrics: list[str]
    data: list[MetricsRow]


class LabelOut(BaseModel):
    """One label of a categorical scale."""

    label: str
    polarity: Polarity
    score: float | None


class AnnotationConfigOut(BaseModel):
    """How an annotation name is scored and shown (``source``: stored, or an evaluator's default)."""

    name: str
    kind: ConfigKind
    labels: list[LabelOut]
    direction: Direction
    min_score: float | None
    max_score: float | None
    description: str
    source: Literal["project", "evaluator"]


class AnnotationConfigList(BaseModel):
    """Every annotation config of a project."""

    data: list[AnnotationConfigOut]


class EvaluatorOut(BaseModel):
    """A built-in evaluator."""

    name: str
    annotator_kind: Literal["LLM", "CODE"]
    judges_session: bool
    judges_turns: bool
    direction: Direction
    labels: list[str]
    label_details: list[LabelOut]
    good_label: str | None
    bad_label: str | None
    description: str


class EvaluatorList(BaseModel):
    """``GET /v1/evaluators``."""

    data: list[EvaluatorOut]


class EvalRun(BaseModel):
    """An evaluation run: its state, progress and (when finished) report."""

    id: int
    project: str
    evaluators: list[str]
    filters: dict[str, Any] | None
    state: str = Field(description="queued, running, done, failed or interrupted")
    done: int
    total: int | None
    error: str | None
    report: dict[str, Any] | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


class SessionClosed(BaseModel):
    """``POST …/close``."""

    session_id: str
    closed: Literal[True]
    already_closed: bool


class SessionState(BaseModel):
    """Is a session open or closed."""

    session_id: str
    closed: bool
    closed_at: datetime | None
    last_activity_at: datetime


class ProjectSettings(BaseModel):
    """A project's session settings, own and effective."""

    idle_timeout_seconds: float | None
    online_evaluators: list[str]
    effective_idle_timeout_seconds: float
    retention_days: float | None
    effective_retention_days: float


class ApiKeyOut(BaseModel):
    """An API key without its secret."""

    name: str
    role: str
    projects: list[str] | None
    hint: str
    created_at: datetime


class ApiKeyList(BaseModel):
    """Every API key."""

    data: list[ApiKeyOut]
    next_cursor: None


class CreatedKey(ApiKeyOut):
    """A new key: ``key`` is the secret, shown once."""

    key: str


class ErasedCounts(BaseModel):
    """What an erase removed."""

    spans: int
    traces: int
    sessions: int
    users: int
    annotations: int
    checkpointed: bool | None = None


class Erased(BaseModel):
    """``DELETE`` of a project, session or user (``session_id`` / ``user_id`` when one was named)."""

    project: str
    session_id: str | None = Field(default=None)
    user_id: str | None = Field(default=None)
    erased: ErasedCounts

