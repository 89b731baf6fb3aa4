"""Conversations sent through the real OpenTelemetry SDK, and what the API should then show."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

BASE_NS = 1_763_700_000_000_000_000  # 2025-11-21


@dataclass
class TurnSpec:
    user: str
    question: str
    answer: str
    prompt_tokens: int
    completion_tokens: int
    fail: bool = False
    tool: str | None = None


@dataclass
class Conversation:
    session_id: str
    start_ns: int
    turns: list[TurnSpec] = field(default_factory=list)
    trace_ids: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(t.prompt_tokens + t.completion_tokens for t in self.turns)

    @property
    def errors(self) -> int:
        return sum(t.fail for t in self.turns)

    @property
    def users(self) -> list[str]:
        return sorted({t.user for t in self.turns})


def standard_conversations() -> list[Conversation]:
    """Seven sessions with awkward ids, several users, failures, tools, and searchable words."""
    ids = ["plain-1", "with/slash", "with space", "ünïcode/セッション", "plain-2", "plain-3", "long"]
    conversations = []
    for i, sid in enumerate(ids):
        turns = []
        count = 12 if sid == "long" else 1 + i % 4
        for n in range(count):
            user = ["alice", "bob/2", "carol ü"][(i + n) % 3] if i % 2 else "alice"
            turns.append(TurnSpec(
                user=user, question=f"question {n} of {sid}", answer=f"answer {n} for {sid}",
                prompt_tokens=10 * (i + 1) + n, completion_tokens=5 + n, fail=(i == 2 and n == 1),
                tool="weather" if n == 0 and i % 3 == 0 else None,
            ))
        if sid == "plain-3":
            turns[-1].answer = "the zebrafish migration answer"
        conversations.append(Conversation(sid, BASE_NS + i * 60_000_000_000, turns))
    return conversations


def send_conversations(endpoint: str, project: str, conversations: list[Conversation]) -> None:
    """Export every turn as AGENT root → LLM (+ TOOL) spans with explicit timestamps."""
    provider = TracerProvider(resource=Resource.create({"openinference.project.name": project}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    tracer = provider.get_tracer("contract")
    from opentelemetry import trace as otel

    for conv in conversations:
        for n, turn in enumerate(conv.turns):
            start = conv.start_ns + n * 2_000_000_000
            root = tracer.start_span("agent", start_time=start, attributes={
                "openinference.span.kind": "AGENT", "session.id": conv.session_id, "user.id": turn.user,
                "input.value": turn.question, "output.value": json.dumps({"output": turn.answer}),
            })
            ctx = otel.set_span_in_context(root)
            llm = tracer.start_span("llm", context=ctx, start_time=start + 1_000_000, attributes={
                "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
                "llm.token_count.prompt": turn.prompt_tokens, "llm.token_count.completion": turn.completion_tokens,
                "llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": turn.question,
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": turn.answer,
            })
            if turn.fail:
                llm.record_exception(TimeoutError("model timed out"), timestamp=start + 2_000_000)
                llm.set_status(Status(StatusCode.ERROR, "model timed out"))
            llm.end(end_time=start + 300_000_000 + n * 1_000_000)
            if turn.tool:
                tool = tracer.start_span("tool", context=ctx, start_time=start + 310_000_000, attributes={
                    "openinference.span.kind": "TOOL", "tool.name": turn.tool,
                    "input.value": json.dumps({"city": "Paris"}), "output.value": "sunny",
                })
                tool.end(end_time=start + 320_000_000)
            root.end(end_time=start + 400_000_000 + n * 1_000_000)
            conv.trace_ids.append(format(root.get_span_context().trace_id, "032x"))
    provider.shutdown()
