"""What the UI tests send to the server, through the real OpenTelemetry SDK and OTLP/HTTP exporter."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from opentelemetry import trace as otel
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

# Hostile strings: each must show up as text, never run, never become markup or a link target.
P_SCRIPT = "<script>alert('xss-script')</script>"
P_IMG = "<img src=http://evil.invalid/x.png onerror=alert('xss-img')>"
P_SVG = "<svg onload=alert('xss-svg')>"
P_JS = "javascript:alert('xss-js')"
P_TD = "</td><script>alert('xss-td')</script>"
P_ATTR = "\" onmouseover=\"alert('xss-attr')\" x=\""
PAYLOADS = [P_SCRIPT, P_IMG, P_SVG, P_JS, P_TD, P_ATTR]
XSS_PROJECT = "xss-lab"
# Project names are path segments of the UI's URLs: these have no "/" (see test_xss).
XSS_PROJECT_NAMES = ["<img src=x onerror=alert('xss-project')>", P_SVG]
SEARCH_WORD = "zanzibar"


@dataclass
class TurnSpec:
    user: str
    question: str
    answer: str
    start_ns: int
    latency_ns: int = 800_000_000
    prompt_tokens: int = 20
    completion_tokens: int = 10
    fail: bool = False
    tool: str | None = None
    tool_arguments: str = '{"city": "Paris"}'
    root_name: str = "chat turn"
    llm_name: str = "ChatCompletion"
    extra_attributes: dict[str, str] = field(default_factory=dict)
    system_prompt: str = "You are a helpful assistant."


@dataclass
class SessionSpec:
    session_id: str
    turns: list[TurnSpec]

    @property
    def users(self) -> list[str]:
        return sorted({t.user for t in self.turns})

    @property
    def errors(self) -> int:
        return sum(t.fail for t in self.turns)

    @property
    def tokens(self) -> int:
        return sum(t.prompt_tokens + t.completion_tokens for t in self.turns)


def standard_sessions(now_ns: int) -> list[SessionSpec]:
    """40 sessions spread over ~3 days, awkward ids, failures, tools, and one searchable word deep inside."""
    sessions = []
    for i in range(40):
        sid = f"sess-{i:03d}"
        start = now_ns - i * 2 * HOUR - 5 * MINUTE
        users = [f"user-{i % 7}"] + (["user-shared"] if i % 5 == 1 else [])
        turns = []
        for n in range(1 + i % 5):
            turns.append(TurnSpec(
                user=users[n % len(users)], question=f"question {n} of {sid}", answer=f"answer {n} for {sid}",
                start_ns=start + n * 20 * SECOND, latency_ns=(300 + 97 * ((i * 7 + n) % 23)) * 1_000_000,
                prompt_tokens=10 * (i + 1) + n, completion_tokens=5 + n, fail=(i % 6 == 0 and n == 0),
                tool="get_weather" if i % 4 == 0 and n == 0 else None,
            ))
        if sid == "sess-017":
            turns[2].question = f"and what about the ferry to {SEARCH_WORD} tomorrow?"
        sessions.append(SessionSpec(sid, turns))
    for sid, user in [("with/slash/id", "bob/2"), ("with space id", "carol ü"), ("ünïcode/セッション", "bob/2")]:
        sessions.append(SessionSpec(sid, [TurnSpec(user=user, question=f"hello from {sid}", answer="hi",
                                                   start_ns=now_ns - 3 * HOUR)]))
    return sessions


def long_session(now_ns: int, turns: int = 130) -> SessionSpec:
    """One conversation of many turns (the conversation view pages them)."""
    start = now_ns - 40 * MINUTE
    return SessionSpec("long-session", [
        TurnSpec(user="marathon", question=f"long question {n}", answer=f"long answer {n}",
                 start_ns=start + n * 10 * SECOND, latency_ns=(200 + (n % 9) * 150) * 1_000_000,
                 fail=(n == 57))
        for n in range(turns)
    ])


def xss_sessions(now_ns: int) -> list[SessionSpec]:
    """Every payload as a session id, a user id, span names, attribute keys and values, and message text."""
    out = []
    for i, payload in enumerate(PAYLOADS):
        other = PAYLOADS[(i + 1) % len(PAYLOADS)]
        out.append(SessionSpec(payload, [TurnSpec(
            user=other, question=f"{payload} asks", answer=f"{other} answers", start_ns=now_ns - (i + 1) * MINUTE,
            fail=(i == 0), tool=payload, tool_arguments=json.dumps({"q": other}), root_name=payload,
            llm_name=other, extra_attributes={payload: other, f"key.{other}": payload}, system_prompt=payload,
        )]))
    return out


def send(endpoint: str, project: str, sessions: list[SessionSpec]) -> list[list[str]]:
    """Export every turn (AGENT root → LLM child with messages, + TOOL child); return trace ids per session."""
    provider = TracerProvider(resource=Resource.create({"openinference.project.name": project}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), max_export_batch_size=512,
                                                   schedule_delay_millis=200))
    tracer = provider.get_tracer("threadline-ui-tests")
    trace_ids: list[list[str]] = []
    for session in sessions:
        ids = []
        for turn in session.turns:
            start, end = turn.start_ns, turn.start_ns + turn.latency_ns
            root = tracer.start_span(turn.root_name, start_time=start, attributes={
                "openinference.span.kind": "AGENT", "session.id": session.session_id, "user.id": turn.user,
                "input.value": turn.question, "output.value": turn.answer, **turn.extra_attributes,
            })
            ctx = otel.set_span_in_context(root)
            llm = tracer.start_span(turn.llm_name, context=ctx, start_time=start + 1_000_000, attributes={
                "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
                "llm.token_count.prompt": turn.prompt_tokens, "llm.token_count.completion": turn.completion_tokens,
                "llm.input_messages.0.message.role": "system",
                "llm.input_messages.0.message.content": turn.system_prompt,
                "llm.input_messages.1.message.role": "user", "llm.input_messages.1.message.content": turn.question,
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": turn.answer,
            })
            if turn.fail:
                try:
                    raise TimeoutError("model timed out")
                except TimeoutError as exc:
                    llm.record_exception(exc, timestamp=start + 2_000_000)
                llm.set_status(Status(StatusCode.ERROR, "model timed out"))
            llm.end(end_time=start + turn.latency_ns // 2)
            if turn.tool:
                tool = tracer.start_span(f"tool {turn.tool}", context=ctx, start_time=start + turn.latency_ns // 2,
                                         attributes={"openinference.span.kind": "TOOL", "tool.name": turn.tool,
                                                     "input.value": turn.tool_arguments, "output.value": "sunny"})
                tool.end(end_time=start + turn.latency_ns * 3 // 4)
            root.end(end_time=end)
            ids.append(format(root.get_span_context().trace_id, "032x"))
        trace_ids.append(ids)
    provider.force_flush()
    provider.shutdown()
    return trace_ids


def now_ns() -> int:
    """The wall clock, for data that time-range filters should see as recent."""
    return time.time_ns()
