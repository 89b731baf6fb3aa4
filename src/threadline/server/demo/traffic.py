"""Turn planned conversations into OpenTelemetry spans with OpenInference attributes, and send them.

Spans are made with the real OpenTelemetry SDK (explicit start and end times, deterministic ids)
and exported with the real OTLP/HTTP protobuf exporter, so the demo goes through exactly the path
an instrumented application uses. Finished spans are collected and exported in batches by
:class:`DemoSender`, which checks every export (the SDK's batch processor would drop silently).
Ids are drawn per session (:meth:`SeededIds.reseed`), so they depend on the seed and the session
only, never on the order sessions are sent in: a rerun with the same seed adds nothing.

Agent-shaped turns are emitted here; OpenAI-shaped ones by
:mod:`threadline.server.demo.instrumented`.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Sequence
from datetime import datetime, timedelta

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from threadline import conventions as cv
from threadline.server.demo.catalog import OPENAI_SHAPE
from threadline.server.demo.conversations import LlmCall, Retrieval, SessionPlan, ToolRun, TurnPlan
from threadline.server.demo.instrumented import emit_instrumented_turn

BATCH_SPANS = 400
#: Attributes per span the demo's provider keeps (a 15-turn history with tools needs a few hundred).
MAX_ATTRIBUTES = 10_000


class SeededIds(IdGenerator):
    """Trace and span ids drawn from a seeded generator: the same seed sends the same ids."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._rng = random.Random(f"threadline-demo-ids-{seed}")

    def reseed(self, key: str) -> None:
        """Draw the next ids from a generator of the seed and ``key`` (a session id)."""
        self._rng = random.Random(f"threadline-demo-ids-{self._seed}-{key}")

    def generate_span_id(self) -> int:
        return self._rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._rng.getrandbits(128) or 1


class _Collect(SpanProcessor):
    """Keeps finished spans until :class:`DemoSender` exports them."""

    def __init__(self) -> None:
        self.finished: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.finished.append(span)


class DemoExportError(RuntimeError):
    """The endpoint did not accept a batch of demo spans."""


class DemoSender:
    """A tracer whose spans are exported to ``endpoint`` in checked batches."""

    def __init__(self, endpoint: str, project: str, seed: int, timeout: float = 30.0,
                 api_key: str | None = None) -> None:
        self.endpoint = endpoint
        self._collect = _Collect()
        resource = Resource.create({"service.name": "threadline-demo", cv.PROJECT_NAME: project})
        self._ids = SeededIds(seed)
        # No attribute count limit, as under threadline.register(): a long resent history would
        # otherwise evict a span's first attributes (its kind, session and user).
        self._provider = TracerProvider(resource=resource, id_generator=self._ids,
                                        span_limits=SpanLimits(max_span_attributes=MAX_ATTRIBUTES))
        self._provider.add_span_processor(self._collect)
        headers = {cv.PROJECT_HEADER: project, **({"authorization": f"Bearer {api_key}"} if api_key else {})}
        self._exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers, timeout=timeout)
        self.tracer = self._provider.get_tracer("threadline.demo")
        self.sent = 0

    @property
    def pending(self) -> list[ReadableSpan]:
        """Finished spans not exported yet."""
        return list(self._collect.finished)

    def emit(self, plan: SessionPlan) -> int:
        """Create the spans of one conversation, with ids of its own; returns the number of spans made."""
        self._ids.reseed(plan.session_id)
        return emit_session(self.tracer, plan)

    def flush(self, force: bool = False) -> int:
        """Export collected spans (when a batch is full, or all when ``force``); returns spans sent."""
        sent = 0
        while self._collect.finished and (force or len(self._collect.finished) >= BATCH_SPANS):
            batch = self._collect.finished[:BATCH_SPANS]
            if self._exporter.export(batch) is not SpanExportResult.SUCCESS:
                raise DemoExportError(f"{self.endpoint} did not accept {len(batch)} spans (is the server running?)")
            del self._collect.finished[:BATCH_SPANS]
            sent += len(batch)
        self.sent += sent
        return sent

    def close(self) -> None:
        """Shut the exporter down (does not send what is still collected)."""
        self._exporter.shutdown()  # type: ignore[no-untyped-call]
        self._provider.shutdown()


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000) * 1000


def emit_session(tracer: trace.Tracer, plan: SessionPlan) -> int:
    """Create the spans of every turn of ``plan``; returns the number of spans made."""
    count = 0
    for turn in plan.turns:
        if turn.shape == OPENAI_SHAPE:
            emit_instrumented_turn(tracer, plan, turn)
        else:
            emit_turn(tracer, plan, turn)
        count += turn.span_count
    return count


def _common(plan: SessionPlan) -> dict[str, str]:
    return {cv.SESSION_ID: plan.session_id, cv.USER_ID: plan.user_id}


def emit_turn(tracer: trace.Tracer, plan: SessionPlan, turn: TurnPlan) -> None:
    """One trace: the app's root span with retriever, LLM and tool spans beneath it."""
    start = turn.start
    end = start + timedelta(milliseconds=turn.latency_ms)
    attrs: dict[str, str | Sequence[str]] = {
        **_common(plan), cv.SPAN_KIND: plan.app.root_kind, cv.INPUT_VALUE: turn.user_message,
        cv.INPUT_MIME_TYPE: "text/plain", cv.METADATA: json.dumps(plan.metadata), cv.TAG_TAGS: list(plan.tags),
    }
    if turn.reply is not None:
        attrs[cv.OUTPUT_VALUE] = turn.reply
        attrs[cv.OUTPUT_MIME_TYPE] = "text/plain"
    root = tracer.start_span(f"{plan.app.name}.turn", kind=SpanKind.SERVER, attributes=attrs,
                             start_time=_ns(start))
    ctx = trace.set_span_in_context(root)
    at = start + timedelta(milliseconds=8)
    if turn.retrieval is not None:
        at = _retriever(tracer, ctx, plan, turn.retrieval, at)
    for step in turn.steps:
        at = _llm(tracer, ctx, plan, step, at) if isinstance(step, LlmCall) else _tool(tracer, ctx, plan, step, at)
    if turn.error is not None:
        _fail(root, turn.error, end)
    else:
        root.set_status(Status(StatusCode.OK))
    root.end(end_time=_ns(end))


def _fail(span: Span, error: tuple[str, str], at: datetime) -> None:
    kind, message = error
    stack = (f'Traceback (most recent call last):\n  File "app/agent.py", line 118, in run\n'
             f"    return await self._step(messages)\n{kind}: {message}")
    span.add_event("exception", {cv.EXCEPTION_TYPE: kind, cv.EXCEPTION_MESSAGE: message,
                                 cv.EXCEPTION_STACKTRACE: stack, "exception.escaped": "True"}, timestamp=_ns(at))
    span.set_status(Status(StatusCode.ERROR, f"{kind}: {message}"))


def _retriever(tracer: trace.Tracer, ctx: Context, plan: SessionPlan, step: Retrieval,
               at: datetime) -> datetime:
    attrs: dict[str, str | float] = {**_common(plan), cv.SPAN_KIND: "RETRIEVER", cv.INPUT_VALUE: step.query}
    for i, doc in enumerate(step.documents):
        attrs[f"retrieval.documents.{i}.document.id"] = f"kb-{zlib.crc32(doc.encode()) % 10_000:04d}"
        attrs[f"retrieval.documents.{i}.document.content"] = doc
        attrs[f"retrieval.documents.{i}.document.score"] = round(0.92 - 0.07 * i, 2)
    end = at + timedelta(milliseconds=step.latency_ms)
    span = tracer.start_span("retrieve", context=ctx, attributes=attrs, start_time=_ns(at))
    span.end(end_time=_ns(end))
    return end + timedelta(milliseconds=4)


def _llm(tracer: trace.Tracer, ctx: Context, plan: SessionPlan, call: LlmCall, at: datetime) -> datetime:
    attrs: dict[str, str | int] = {
        **_common(plan), cv.SPAN_KIND: "LLM", cv.LLM_MODEL_NAME: call.model, cv.LLM_PROVIDER: call.provider,
        cv.LLM_SYSTEM: call.provider,
        cv.LLM_INVOCATION_PARAMETERS: json.dumps({"temperature": 0.3, "max_tokens": 1024}),
        cv.INPUT_VALUE: json.dumps({"model": call.model, "messages": [
            {"role": m.role, "content": m.content} for m in call.messages]}),
        cv.INPUT_MIME_TYPE: "application/json",
    }
    for i, message in enumerate(call.messages):
        attrs[f"{cv.LLM_INPUT_MESSAGES}.{i}.{cv.MESSAGE_ROLE}"] = message.role
        attrs[f"{cv.LLM_INPUT_MESSAGES}.{i}.{cv.MESSAGE_CONTENT}"] = message.content or ""
    out = f"{cv.LLM_OUTPUT_MESSAGES}.0"
    if call.reply is not None:
        attrs[f"{out}.{cv.MESSAGE_ROLE}"] = "assistant"
        attrs[f"{out}.{cv.MESSAGE_CONTENT}"] = call.reply
        attrs[cv.OUTPUT_VALUE] = json.dumps({"role": "assistant", "content": call.reply})
        attrs[cv.OUTPUT_MIME_TYPE] = "application/json"
    elif call.tool_calls:
        attrs[f"{out}.{cv.MESSAGE_ROLE}"] = "assistant"
        for j, request in enumerate(call.tool_calls):
            attrs[f"{out}.{cv.MESSAGE_TOOL_CALLS}.{j}.{cv.TOOL_CALL_FUNCTION_NAME}"] = request.name
            attrs[f"{out}.{cv.MESSAGE_TOOL_CALLS}.{j}.{cv.TOOL_CALL_FUNCTION_ARGUMENTS}"] = request.arguments
        attrs[cv.OUTPUT_VALUE] = json.dumps({"role": "assistant", "tool_calls": [
            {"type": "function", "function": {"name": r.name, "arguments": r.arguments}} for r in call.tool_calls]})
        attrs[cv.OUTPUT_MIME_TYPE] = "application/json"
    if call.error is None:
        attrs[cv.LLM_TOKEN_PROMPT] = call.prompt_tokens
        attrs[cv.LLM_TOKEN_COMPLETION] = call.completion_tokens
        attrs[cv.LLM_TOKEN_TOTAL] = call.prompt_tokens + call.completion_tokens
    end = at + timedelta(milliseconds=call.latency_ms)
    span = tracer.start_span("ChatCompletion", context=ctx, kind=SpanKind.CLIENT, attributes=attrs,
                             start_time=_ns(at))
    if call.error is not None:
        _fail(span, call.error, end)
    span.end(end_time=_ns(end))
    return end + timedelta(milliseconds=4)


def _tool(tracer: trace.Tracer, ctx: Context, plan: SessionPlan, run: ToolRun, at: datetime) -> datetime:
    attrs: dict[str, str] = {
        **_common(plan), cv.SPAN_KIND: "TOOL", cv.TOOL_NAME: run.name, "tool.description": run.description,
        cv.TOOL_PARAMETERS: run.arguments, cv.INPUT_VALUE: run.arguments, cv.INPUT_MIME_TYPE: "application/json",
    }
    if run.result is not None:
        attrs[cv.OUTPUT_VALUE] = run.result
        attrs[cv.OUTPUT_MIME_TYPE] = "application/json"
    end = at + timedelta(milliseconds=run.latency_ms)
    span = tracer.start_span(run.name, context=ctx, attributes=attrs, start_time=_ns(at))
    if run.error is not None:
        _fail(span, run.error, end)
    span.end(end_time=_ns(end))
    return end + timedelta(milliseconds=4)
