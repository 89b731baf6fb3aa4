"""Deterministic session traffic as OTLP/HTTP protobuf request bodies.

Conversations of a few hundred users with an agent: every turn is one trace (an AGENT root, an LLM
span carrying the whole chat history so far, and for about half the turns a TOOL span and a second
LLM span), spans carry ``session.id`` / ``user.id`` / token counts, and many conversations are in
flight at once, so one request mixes spans of many sessions, as in production. Messages are built
with the ``opentelemetry.proto`` classes directly (the SDK would be the bottleneck here).

Two words are planted for full-text search benchmarks: :data:`RARE_WORD` in about 1 % of the user
messages and :data:`COMMON_WORD` in about 15 %.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans, Span, Status

RARE_WORD = "zeppelin"
COMMON_WORD = "refund"
PROJECT = "bench"
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet-20241022", "gpt-4.1-mini")
TOOLS = ("lookup_order", "search_docs", "get_weather", "create_ticket", "search_flights")
SYSTEM_PROMPT = ("You are a helpful support assistant for Northwind. Answer concisely, cite the knowledge base, use "
                 "tools to look up orders and tickets, and never make up order data. ") * 3
WORDS = ("order", "shipping", "account", "password", "invoice", "delivery", "package", "subscription", "plan",
         "upgrade", "payment", "card", "address", "warehouse", "tracking", "return", "exchange", "size", "color",
         "discount", "coupon", "email", "login", "error", "screen", "app", "update", "version", "settings",
         "notification", "weekend", "tomorrow", "yesterday", "store", "price", "receipt", "support", "agent",
         "manager", "problem", "question", "issue", "label", "carrier", "customs", "battery", "charger", "cable")


_SYSTEM_JSON = json.dumps({"role": "system", "content": SYSTEM_PROMPT})
_SYSTEM_KVS = [KeyValue(key="llm.input_messages.0.message.role", value=AnyValue(string_value="system")),
               KeyValue(key="llm.input_messages.0.message.content", value=AnyValue(string_value=SYSTEM_PROMPT))]


@dataclass
class Batch:
    """One OTLP request body and how many spans it holds."""

    body: bytes
    spans: int


@dataclass
class _Session:
    session_id: str
    user_id: str
    model: str
    turns_left: int
    next_ns: int
    history: list[tuple[str, str]] = field(default_factory=list)
    #: The history's message attributes and JSON, built once (a prefix of every later LLM span).
    history_kvs: list[KeyValue] = field(default_factory=list)
    history_json: list[str] = field(default_factory=list)

    def remember(self, role: str, content: str) -> None:
        index = len(self.history) + 1  # message 0 is the system prompt
        self.history.append((role, content))
        self.history_kvs += [_kv(f"llm.input_messages.{index}.message.role", role),
                             _kv(f"llm.input_messages.{index}.message.content", content)]
        self.history_json.append(json.dumps({"role": role, "content": content}))


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choices(WORDS, k=words))
    return text[0].upper() + text[1:] + "."


def _paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(_sentence(rng, rng.randint(8, 16)) for _ in range(sentences))


def _user_message(rng: random.Random) -> str:
    text = _paragraph(rng, rng.randint(1, 3))
    if rng.random() < 0.15:
        text += f" I want a {COMMON_WORD} for this."
    if rng.random() < 0.01:
        text += f" It was shipped by {RARE_WORD} express."
    return text


def _kv(key: str, value: str | int | float) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(double_value=value))


class TrafficGenerator:
    """Yields :class:`Batch` objects until ``total_spans`` spans have been produced."""

    def __init__(self, total_spans: int, seed: int = 1, batch_spans: int = 300, concurrent_sessions: int = 200,
                 start_ns: int = 1_790_000_000 * 10**9, mean_turns: float = 6.5, project: str = PROJECT,
                 max_sessions: int | None = None) -> None:
        """``max_sessions``: start no more conversations than this (the traffic ends sooner when they are
        all over); ``project``: the ``openinference.project.name`` resource attribute."""
        self.total_spans = total_spans
        self.project = project
        self.max_sessions = max_sessions
        self.batch_spans = batch_spans
        self.rng = random.Random(seed)
        self.start_ns = start_ns
        self.mean_turns = mean_turns
        self.users = [f"user-{i:05d}@example.com" for i in range(max(10, total_spans // 200))]
        first = concurrent_sessions if max_sessions is None else min(concurrent_sessions, max_sessions)
        self.active = [self._new_session() for _ in range(first)]
        self.sessions_started = len(self.active)
        self.produced = 0

    def _new_session(self) -> _Session:
        rng = self.rng
        turns = max(1, min(30, round(rng.expovariate(1 / self.mean_turns))))
        # Spread conversations over 30 days after start_ns.
        when = self.start_ns + rng.randrange(30 * 86400) * 10**9
        return _Session(f"s-{rng.getrandbits(64):016x}", rng.choice(self.users), rng.choice(MODELS), turns, when)

    def _turn(self, session: _Session) -> list[Span]:
        rng = self.rng
        trace_id = rng.getrandbits(128).to_bytes(16, "big")
        root_id = rng.getrandbits(64).to_bytes(8, "big")
        user_text = _user_message(rng)
        reply = _paragraph(rng, rng.randint(2, 6))
        t0 = session.next_ns
        common = [_kv("session.id", session.session_id), _kv("user.id", session.user_id)]
        extra = [("user", user_text)]
        spans: list[Span] = []
        at = t0 + 5_000_000
        use_tool = rng.random() < 0.5
        if use_tool:
            tool = rng.choice(TOOLS)
            arguments = json.dumps({"query": _sentence(rng, 4), "limit": 5})
            at = self._llm(spans, trace_id, root_id, common, session, extra, None, (tool, arguments), at)
            result = json.dumps({"results": [_sentence(rng, 10) for _ in range(3)]})
            span_id = rng.getrandbits(64).to_bytes(8, "big")
            end = at + rng.randint(30, 600) * 1_000_000
            spans.append(Span(trace_id=trace_id, span_id=span_id, parent_span_id=root_id, name=tool,
                              kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=at, end_time_unix_nano=end,
                              attributes=[*common, _kv("openinference.span.kind", "TOOL"), _kv("tool.name", tool),
                                          _kv("tool.parameters", arguments), _kv("input.value", arguments),
                                          _kv("output.value", result)],
                              status=Status(code=Status.STATUS_CODE_OK)))
            extra.append(("tool", result))
            at = end + 2_000_000
        at = self._llm(spans, trace_id, root_id, common, session, extra, reply, None, at)
        failed = rng.random() < 0.03
        root = Span(trace_id=trace_id, span_id=root_id, name="agent.turn", kind=Span.SPAN_KIND_SERVER,
                    start_time_unix_nano=t0, end_time_unix_nano=at + 3_000_000,
                    attributes=[*common, _kv("openinference.span.kind", "AGENT"), _kv("input.value", user_text),
                                _kv("output.value", reply), _kv("metadata", '{"channel": "web", "ab": "b"}')],
                    status=Status(code=Status.STATUS_CODE_ERROR if failed else Status.STATUS_CODE_OK,
                                  message="TimeoutError: upstream timed out" if failed else ""))
        spans.insert(0, root)
        session.remember("user", user_text)
        session.remember("assistant", reply)
        session.turns_left -= 1
        session.next_ns = at + rng.randint(5, 120) * 10**9
        return spans

    def _llm(self, spans: list[Span], trace_id: bytes, parent: bytes, common: list[KeyValue], session: _Session,
             extra: list[tuple[str, str]], reply: str | None, tool_call: tuple[str, str] | None, at: int) -> int:
        rng = self.rng
        model = session.model
        messages_json = ", ".join([_SYSTEM_JSON, *session.history_json,
                                   *(json.dumps({"role": r, "content": c}) for r, c in extra)])
        attrs = [*common, _kv("openinference.span.kind", "LLM"), _kv("llm.model_name", model),
                 _kv("llm.provider", "openai"), _kv("input.value", '{"messages": [' + messages_json + "]}"),
                 _kv("input.mime_type", "application/json"), *_SYSTEM_KVS, *session.history_kvs]
        first = len(session.history) + 1
        for i, (role, content) in enumerate(extra, start=first):
            attrs.append(_kv(f"llm.input_messages.{i}.message.role", role))
            attrs.append(_kv(f"llm.input_messages.{i}.message.content", content))
        attrs.append(_kv("llm.output_messages.0.message.role", "assistant"))
        if reply is not None:
            attrs.append(_kv("llm.output_messages.0.message.content", reply))
            attrs.append(_kv("output.value", reply))
            completion = len(reply) // 4
        else:
            assert tool_call is not None
            attrs.append(_kv("llm.output_messages.0.message.tool_calls.0.tool_call.function.name", tool_call[0]))
            attrs.append(_kv("llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments",
                             tool_call[1]))
            completion = 20
        prompt = (len(messages_json) - 30 * (first + len(extra))) // 4
        attrs += [_kv("llm.token_count.prompt", prompt), _kv("llm.token_count.completion", completion),
                  _kv("llm.token_count.total", prompt + completion)]
        end = at + (300 + completion * rng.randint(8, 20)) * 1_000_000
        spans.append(Span(trace_id=trace_id, span_id=rng.getrandbits(64).to_bytes(8, "big"), parent_span_id=parent,
                          name="ChatCompletion", kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=at,
                          end_time_unix_nano=end, attributes=attrs, status=Status(code=Status.STATUS_CODE_OK)))
        return end + 2_000_000

    def _spans(self) -> Iterator[Span]:
        while self.produced < self.total_spans and self.active:
            index = self.rng.randrange(len(self.active))
            session = self.active[index]
            for span in self._turn(session):
                if self.produced >= self.total_spans:
                    return
                self.produced += 1
                yield span
            if session.turns_left <= 0:
                if self.max_sessions is not None and self.sessions_started >= self.max_sessions:
                    del self.active[index]
                    continue
                self.active[index] = self._new_session()
                self.sessions_started += 1

    def __iter__(self) -> Iterator[Batch]:
        spans = self._spans()
        while True:
            request = ExportTraceServiceRequest()
            resource_spans = request.resource_spans.add()
            resource_spans.resource.attributes.extend([_kv("service.name", "bench-agent"),
                                                       _kv("openinference.project.name", self.project)])
            scope: ScopeSpans = resource_spans.scope_spans.add()
            scope.scope.name = "bench"
            count = 0
            for span in spans:
                scope.spans.append(span)
                count += 1
                if count >= self.batch_spans:
                    break
            if count == 0:
                return
            yield Batch(request.SerializeToString(), count)


def generate(total_spans: int, seed: int = 1, batch_spans: int = 300) -> list[Batch]:
    """All batches of ``total_spans`` spans in memory (for the ingest benchmark)."""
    return list(TrafficGenerator(total_spans, seed=seed, batch_spans=batch_spans))
