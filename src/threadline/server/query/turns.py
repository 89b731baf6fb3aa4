"""Turns: a session's ``turns`` rows with their traces, LLM calls, tool calls and steps.

What a step shows was derived at ingest (the ``detail`` of a span's payload: the tool calls an LLM
requested, the tool results its input carried, a tool's name, arguments and result); nothing here
parses span attributes (:func:`~threadline.server.store.payload.read_steps`). A tool call the app
ran without a TOOL span (the OpenAI tool loop) becomes a step from the requesting LLM call and the
result the next LLM call was given.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import Connection, Row, select

from threadline.server.model import AnnotationSummary, LlmCall, RequestedTool, Step, Tokens, ToolCall, Turn
from threadline.server.query.annotations import summarize
from threadline.server.query.timeconv import ms, to_datetime
from threadline.server.store import schema as t
from threadline.server.store.payload import read_steps


class _StepSpan(NamedTuple):
    """What a step needs of an LLM or TOOL span (its payload read)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    model: str | None
    start_ns: int
    end_ns: int
    status: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float
    output: str | None
    detail: str | None


def _detail(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _requested(detail: dict[str, Any]) -> list[RequestedTool]:
    calls = detail.get("tool_calls")
    return [RequestedTool(id=_text(c.get("id")), name=str(c.get("name") or "tool"), arguments=_text(c.get("arguments")))
            for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def _answers(tool: dict[str, Any], span_name: str, call: RequestedTool) -> bool:
    """Whether a TOOL span (its detail) ran this requested call: the same call id when both say
    one, else the same tool name."""
    if call.id and tool.get("id"):
        return str(tool["id"]) == call.id
    return str(tool.get("name") or span_name) == call.name


def _status(row: Any) -> str:
    return "error" if row.status == "ERROR" else "ok"


@dataclass(slots=True)
class _TurnSteps:
    """The calls of one turn as they are assembled (spans in start order)."""

    llm_calls: list[LlmCall] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)


def _assemble(rows: list[Any]) -> _TurnSteps:
    """LLM calls, tool calls and steps of one turn from its LLM and TOOL spans (start order)."""
    out = _TurnSteps()
    results: dict[str, str | None] = {}
    tool_spans = [r for r in rows if r.kind == "TOOL"]
    for row in rows:
        if row.kind == "LLM":
            for result in _detail(row.detail).get("tool_results") or []:
                if isinstance(result, dict) and result.get("id"):
                    results.setdefault(str(result["id"]), _text(result.get("content")))
    # A wrapper LLM span around another (LlamaIndex's ``predict`` around ``chat``) is one call.
    wrappers = {r.parent_span_id for r in rows if r.kind == "LLM" and r.parent_span_id}
    matched: set[str] = set()
    for row in rows:
        if row.kind == "LLM" and row.span_id in wrappers and not row.total_tokens:
            continue
        start = to_datetime(row.start_ns)
        latency = ms(row.end_ns - row.start_ns)
        detail = _detail(row.detail)
        if row.kind == "TOOL":
            name = str(detail.get("name") or row.name)
            call = ToolCall(span_id=row.span_id, name=name, arguments=_text(detail.get("arguments")),
                            result=_text(detail.get("result")), status=_status(row), trace_id=row.trace_id)
            out.tool_calls.append(call)
            out.steps.append(Step(kind="tool", span_id=row.span_id, trace_id=row.trace_id, start_time=start, name=name,
                                  latency_ms=latency, status=call.status, arguments=call.arguments,
                                  result=call.result))
            continue
        requested = _requested(detail)
        tokens = Tokens(row.prompt_tokens, row.completion_tokens, row.total_tokens)
        out.llm_calls.append(LlmCall(span_id=row.span_id, model=row.model, tokens=tokens, latency_ms=latency,
                                     cost_usd=round(row.cost, 8), status=_status(row), trace_id=row.trace_id,
                                     tool_calls=requested))
        out.steps.append(Step(kind="llm", span_id=row.span_id, trace_id=row.trace_id, start_time=start,
                              name=row.model or row.name, latency_ms=latency, status=_status(row), model=row.model,
                              tokens=tokens, cost_usd=round(row.cost, 8), output=row.output, tool_calls=requested))
        for req in requested:  # a call the app ran without a TOOL span: a step from the messages
            span = next((s for s in tool_spans if s.span_id not in matched and s.start_ns >= row.start_ns
                         and _answers(_detail(s.detail), s.name, req)), None)
            if span is not None:
                matched.add(span.span_id)
                continue
            result = results.get(req.id) if req.id else None
            call = ToolCall(span_id=row.span_id, name=req.name, arguments=req.arguments, result=result,
                            trace_id=row.trace_id)
            out.tool_calls.append(call)
            out.steps.append(Step(kind="tool", span_id=row.span_id, trace_id=row.trace_id,
                                  start_time=to_datetime(row.end_ns), name=req.name, latency_ms=None,
                                  arguments=req.arguments, result=result))
    out.steps.sort(key=lambda s: s.start_time)  # stable: a derived tool step stays after its LLM call
    return out


def _merge(summaries: list[dict[str, AnnotationSummary]]) -> dict[str, AnnotationSummary]:
    """Annotation summaries of several traces as one (a turn of several traces)."""
    if len(summaries) <= 1:
        return summaries[0] if summaries else {}
    merged: dict[str, AnnotationSummary] = {}
    for part in summaries:
        for name, s in part.items():
            have = merged.get(name)
            if have is None:
                merged[name] = s
                continue
            labels = dict(have.labels)
            for label, n in s.labels.items():
                labels[label] = labels.get(label, 0) + n
            scored = [(x.mean_score, x.count) for x in (have, s) if x.mean_score is not None]
            mean = sum(m * c for m, c in scored) / sum(c for _, c in scored) if scored else None
            merged[name] = AnnotationSummary(count=have.count + s.count, mean_score=mean, labels=labels)
    return merged


def load_turns(conn: Connection, pid: int, turn_rows: Sequence[Row[Any]], first_index: int = 0) -> list[Turn]:
    """``Turn`` objects for ``turns`` rows of one session (in the given order, numbered from
    ``first_index``)."""
    if not turn_rows:
        return []
    session_id = turn_rows[0].session_id
    keys = [r.turn_key for r in turn_rows]
    tr, sp = t.traces, t.spans
    traces: dict[str, list[str]] = defaultdict(list)
    key_of: dict[str, str] = {}
    for trace_id, key in conn.execute(
        select(tr.c.trace_id, tr.c.turn_key).where(tr.c.project_id == pid, tr.c.session_id == session_id,
                                                   tr.c.turn_key.in_(keys)).order_by(tr.c.start_ns, tr.c.trace_id)
    ):
        traces[key].append(trace_id)
        key_of[trace_id] = key
    # No ORDER BY: SQLite would then walk the project's time index instead of the primary key;
    # a turn has few spans, so they are sorted here. Only LLM and TOOL spans are steps.
    spans: dict[str, list[Any]] = defaultdict(list)
    stored = conn.execute(
        select(sp.c.trace_id, sp.c.span_id, sp.c.parent_span_id, sp.c.name, sp.c.kind, sp.c.model, sp.c.start_ns,
               sp.c.end_ns, sp.c.status, sp.c.prompt_tokens, sp.c.completion_tokens, sp.c.total_tokens, sp.c.cost,
               sp.c.payload)
        .where(sp.c.project_id == pid, sp.c.trace_id.in_(list(key_of)), sp.c.kind.in_(("LLM", "TOOL")))
    ).all() if key_of else []
    rows = [_StepSpan._make((*row[:-1], *read_steps(row.payload))) for row in stored]
    for row in sorted(rows, key=lambda r: (r.start_ns, r.span_id)):
        spans[key_of[row.trace_id]].append(row)
    notes = summarize(conn, pid, "trace", list(key_of))
    turns = []
    for i, r in enumerate(turn_rows):
        trace_ids = traces.get(r.turn_key) or ([r.first_trace_id] if r.first_trace_id else [])
        calls = _assemble(spans.get(r.turn_key, []))
        turns.append(Turn(
            trace_id=trace_ids[0] if trace_ids else r.turn_key, index=first_index + i,
            start_time=to_datetime(r.start_ns), end_time=to_datetime(r.end_ns), latency_ms=ms(r.end_ns - r.start_ns),
            user_id=r.user_id, input=r.input, output=r.output, status="error" if r.errors else "ok",
            error=(r.error or "error") if r.errors else None,
            tokens=Tokens(r.prompt_tokens, r.completion_tokens, r.total_tokens), cost_usd=round(r.cost, 8),
            llm_calls=calls.llm_calls, tool_calls=calls.tool_calls,
            annotations=_merge([notes[tid] for tid in trace_ids if tid in notes]),
            trace_ids=trace_ids, steps=calls.steps,
        ))
    return turns
