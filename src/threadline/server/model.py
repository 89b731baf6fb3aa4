"""The nouns of Threadline as frozen dataclasses: what the query layer returns and the API shows.

No I/O happens here. Times are timezone-aware UTC ``datetime`` values; the web layer renders
them as RFC 3339 strings. Token counts and costs are summed over LLM spans only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")

TargetKind = Literal["span", "trace", "session", "user"]
AnnotatorKind = Literal["HUMAN", "LLM", "CODE"]
TARGET_KINDS: tuple[TargetKind, ...] = ("span", "trace", "session", "user")
ANNOTATOR_KINDS: tuple[AnnotatorKind, ...] = ("HUMAN", "LLM", "CODE")


@dataclass(frozen=True, slots=True)
class Tokens:
    """Prompt, completion and total token counts."""

    prompt: int = 0
    completion: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class Latency:
    """Latency percentiles in milliseconds (``None`` when there is nothing to measure)."""

    p50: float | None = None
    p99: float | None = None


@dataclass(frozen=True, slots=True)
class AnnotationSummary:
    """Aggregate of the annotations of one name on one target (or a set of targets)."""

    count: int
    mean_score: float | None
    labels: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RequestedTool:
    """A tool call an LLM asked for in its reply (``tool_calls`` of its output message)."""

    id: str | None
    name: str
    arguments: str | None


@dataclass(frozen=True, slots=True)
class LlmCall:
    """One LLM span inside a turn."""

    span_id: str
    model: str | None
    tokens: Tokens
    latency_ms: float
    cost_usd: float = 0.0
    status: str = "ok"
    trace_id: str = ""
    tool_calls: list[RequestedTool] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call inside a turn: a TOOL span, or a call an LLM requested whose result came
    back in the next LLM call's messages (then ``span_id`` is the requesting LLM span)."""

    span_id: str
    name: str
    arguments: str | None
    result: str | None
    status: str = "ok"
    trace_id: str = ""


StepKind = Literal["llm", "tool"]
#: The kinds of step a turn lists, in the order a reader meets them.
STEP_KINDS: tuple[StepKind, ...] = ("llm", "tool")


@dataclass(frozen=True, slots=True)
class Step:
    """One thing the app did inside a turn, in time order: an LLM call or a tool call.

    LLM steps carry ``model``, ``tokens``, ``cost_usd``, ``output`` (the reply's words) and the
    ``tool_calls`` the model requested; tool steps carry ``arguments`` and ``result``.
    """

    kind: StepKind
    span_id: str
    trace_id: str
    start_time: datetime
    name: str
    latency_ms: float | None
    status: str = "ok"
    model: str | None = None
    tokens: Tokens | None = None
    cost_usd: float | None = None
    output: str | None = None
    tool_calls: list[RequestedTool] = field(default_factory=list)
    arguments: str | None = None
    result: str | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """One user message and everything the app did to answer it (one or more traces).

    ``trace_id`` is the turn's first trace, ``trace_ids`` all of them in start order; ``steps``
    are its LLM and tool calls in the order they ran (``llm_calls`` / ``tool_calls`` are the same
    calls grouped by kind).
    """

    trace_id: str
    index: int
    start_time: datetime
    end_time: datetime
    latency_ms: float
    user_id: str | None
    input: str | None
    output: str | None
    status: Literal["ok", "error"]
    error: str | None
    tokens: Tokens
    cost_usd: float
    llm_calls: list[LlmCall]
    tool_calls: list[ToolCall]
    annotations: dict[str, AnnotationSummary]
    trace_ids: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """Rollup of one conversation (all traces sharing a ``session.id``)."""

    session_id: str
    project: str
    user_ids: list[str]
    start_time: datetime
    end_time: datetime
    duration_ms: float
    turns: int
    spans: int
    errors: int
    tokens: Tokens
    cost_usd: float
    latency_ms: Latency
    first_input: str | None
    last_output: str | None
    annotations: dict[str, AnnotationSummary]


@dataclass(frozen=True, slots=True)
class SessionDetail:
    """A session with its turns in order (a page of them for very long sessions)."""

    summary: SessionSummary
    turns: list[Turn]
    next_turn_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class UserSummary:
    """Rollup of everything one ``user.id`` did in a project."""

    user_id: str
    project: str
    first_seen: datetime
    last_seen: datetime
    sessions: int
    turns: int
    errors: int
    tokens: Tokens
    cost_usd: float
    annotations: dict[str, AnnotationSummary]


@dataclass(frozen=True, slots=True)
class UserDetail:
    """A user with (a page of) their sessions."""

    summary: UserSummary
    sessions: list[SessionSummary]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class SpanEvent:
    """A span event (for example an exception with its stack trace)."""

    name: str
    time: datetime
    attributes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Span:
    """One stored span, with the session and user of its trace."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_time: datetime
    end_time: datetime
    latency_ms: float
    status: str
    status_message: str | None
    session_id: str | None
    user_id: str | None
    input: str | None
    output: str | None
    attributes: dict[str, Any]
    events: list[SpanEvent]


@dataclass(frozen=True, slots=True)
class TraceDetail:
    """All spans of one trace, in start order."""

    trace_id: str
    session_id: str | None
    spans: list[Span]


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One trace in the project's trace list (a turn's trace or one without a session)."""

    trace_id: str
    session_id: str | None
    user_id: str | None
    name: str | None
    start_time: datetime
    end_time: datetime
    latency_ms: float
    status: Literal["ok", "error"]
    spans: int
    tokens: Tokens
    cost_usd: float
    input: str | None
    output: str | None


@dataclass(frozen=True, slots=True)
class ProjectSummary:
    """Counts for one project."""

    name: str
    spans: int
    traces: int
    sessions: int
    users: int
    last_seen: datetime | None


@dataclass(frozen=True, slots=True)
class Annotation:
    """A label and/or score on a span, a trace (a turn is annotated on its first trace), a session or a user."""

    id: int
    project: str
    target_kind: TargetKind
    target_id: str
    name: str
    label: str | None
    score: float | None
    explanation: str | None
    annotator_kind: AnnotatorKind
    identifier: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a keyset-paginated list (``prev_cursor``: the page before it, on lists that go back)."""

    data: list[T]
    next_cursor: str | None
    prev_cursor: str | None = None
