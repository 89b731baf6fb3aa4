"""Conversations for the eval tests, sent through the real OpenTelemetry SDK, and expectations computed
independently from what was sent."""

from __future__ import annotations

from dataclasses import dataclass, field

from opentelemetry import trace as otel
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from support.fake_judge import FRUSTRATED_WORDS

BASE_NS = 1_763_700_000_000_000_000  # 2025-11-21T04:40:00Z
DAY_NS = 86_400 * 1_000_000_000


@dataclass
class Say:
    user: str
    question: str
    answer: str
    prompt_tokens: int = 10
    completion_tokens: int = 5
    latency_ms: int = 400
    fail: bool = False
    tool: str | None = None
    model: str = "gpt-4o-mini"
    tags: tuple[str, ...] = ()
    trace_id: str = ""
    start_ns: int = 0

    @property
    def frustrated(self) -> bool:
        text = f"{self.question} {self.answer}".lower()
        return any(w in text for w in FRUSTRATED_WORDS)


@dataclass
class Conversation:
    session_id: str
    start_ns: int
    turns: list[Say] = field(default_factory=list)

    @property
    def users(self) -> set[str]:
        return {t.user for t in self.turns}


def conversations() -> list[Conversation]:
    """Five sessions: calm, escalating frustration, a failure before frustration, long, tools + tags."""
    calm = Conversation("calm-1", BASE_NS, [
        Say("alice", "How do I reset my password?", "Use the reset link on the login page.", 12, 7, 300),
        Say("alice", "Thanks, and my username?", "It is your email address.", 20, 6, 500),
        Say("alice", "Great, thank you", "You are welcome.", 25, 4, 200),
    ])
    angry = Conversation("angry/2 ü", BASE_NS + 3_600 * 10**9, [
        Say("bob", "Where is my order 42?", "Let me check that for you.", 15, 8, 700),
        Say("bob", "You said that already, this is useless", "Sorry, order 42 ships tomorrow.", 30, 9, 900),
        Say("bob", "Ridiculous!!! Cancel it", "The order is cancelled.", 40, 5, 650, model="gpt-4o"),
    ])
    failing = Conversation("fail then angry", BASE_NS + DAY_NS, [
        Say("carol ü", "Book a table for two", "Which restaurant?", 11, 3, 350),
        Say("carol ü", "Chez Paul at 8pm", "", 17, 0, 1200, fail=True),
        Say("carol ü", "That is not what I asked for", "Booked Chez Paul at 8pm.", 22, 6, 800),
    ])
    long = Conversation("long", BASE_NS + DAY_NS + 7_200 * 10**9, [
        Say("alice", f"step {n} please", f"step {n} done", 10 + n, 2 + n, 100 + 10 * n) for n in range(8)
    ])
    long.turns[5].question = "step 5 is so frustrating"
    tools = Conversation("tools", BASE_NS + 2 * DAY_NS, [
        Say("bob", "Weather in Paris?", "Sunny, 21C.", 50, 10, 1500, tool="weather", model="gpt-4o",
            tags=("vip", "beta")),
        Say("bob", "And in Rome?", "Cloudy, 18C.", 55, 12, 1700, tool="weather", model="gpt-4o", tags=("vip",)),
    ])
    return [calm, angry, failing, long, tools]


def send(endpoint: str, project: str, convs: list[Conversation], *, only_turns: slice | None = None) -> None:
    """Export each turn as AGENT root → LLM (+ TOOL) spans; fills in trace ids and start times."""
    provider = TracerProvider(resource=Resource.create({"openinference.project.name": project}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    tracer = provider.get_tracer("evals")
    for conv in convs:
        for n, turn in enumerate(conv.turns):
            if only_turns is not None and n not in range(len(conv.turns))[only_turns]:
                continue
            start = conv.start_ns + n * 60 * 10**9
            attributes: dict[str, object] = {
                "openinference.span.kind": "AGENT", "session.id": conv.session_id, "user.id": turn.user,
                "input.value": turn.question, "output.value": turn.answer,
            }
            if turn.tags:
                attributes["tag.tags"] = list(turn.tags)
            root = tracer.start_span("agent", start_time=start, attributes=attributes)  # type: ignore[arg-type]
            ctx = otel.set_span_in_context(root)
            llm = tracer.start_span("llm", context=ctx, start_time=start + 1_000_000, attributes={
                "openinference.span.kind": "LLM", "llm.model_name": turn.model,
                "llm.token_count.prompt": turn.prompt_tokens, "llm.token_count.completion": turn.completion_tokens,
                "llm.token_count.total": turn.prompt_tokens + turn.completion_tokens,
            })
            if turn.fail:
                llm.set_status(Status(StatusCode.ERROR, "model timed out"))
            llm.end(end_time=start + 2_000_000)
            if turn.tool:
                tool = tracer.start_span("tool", context=ctx, start_time=start + 3_000_000, attributes={
                    "openinference.span.kind": "TOOL", "tool.name": turn.tool,
                    "input.value": '{"city": "Paris"}', "output.value": "sunny",
                })
                tool.end(end_time=start + 4_000_000)
            root.end(end_time=start + turn.latency_ms * 1_000_000)
            turn.trace_id = format(root.get_span_context().trace_id, "032x")
            turn.start_ns = start
    provider.shutdown()
