"""Make spans with the real OpenTelemetry SDK and send them over OTLP, every which way.

* :class:`SpanMaker` records finished SDK spans in memory (nothing is exported on its own), so a
  test decides how they travel: the SDK's own exporters (:func:`export_http`, :func:`export_grpc`),
  or hand-built bodies (:func:`protobuf_body`, :func:`json_body`) for raw requests.
* :func:`encode_request` is the SDK's own encoder (what its exporters put on the wire);
  :func:`to_otlp_json` turns that message into OTLP/JSON as the spec defines it (hex ids,
  lowerCamelCase keys, 64-bit integers as strings, enums as integers), which the Python SDK
  cannot produce itself.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from opentelemetry import trace as otel
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span, Status, StatusCode

from threadline import conventions as cv

BASE_NS = 1_763_700_000_000_000_000  # 2025-11-21T04:26:40Z: fixed, so times are predictable
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@dataclass(frozen=True)
class TurnSpec:
    """One conversational turn: an AGENT root span with one LLM child (and optionally a TOOL)."""

    question: str
    answer: str
    session_id: str | None = None
    user_id: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = "gpt-4o-mini"
    fail: bool = False
    tool: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def hex_trace_id(span: ReadableSpan) -> str:
    """The span's trace id as 32 lower-case hex digits."""
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def hex_span_id(span: ReadableSpan) -> str:
    """The span's id as 16 lower-case hex digits."""
    assert span.context is not None
    return format(span.context.span_id, "016x")


class SpanMaker:
    """Finished spans from a real SDK ``TracerProvider`` with the given resource, kept in memory."""

    def __init__(self, project: str | None = None, resource: Mapping[str, Any] | None = None) -> None:
        attributes: dict[str, Any] = dict(resource or {})
        if project is not None:
            attributes[cv.PROJECT_NAME] = project
        self._memory = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create(attributes))
        self.provider.add_span_processor(SimpleSpanProcessor(self._memory))
        self.tracer = self.provider.get_tracer("threadline-tests")

    def take(self) -> list[ReadableSpan]:
        """The spans finished since the last call (in end order: children before parents)."""
        spans = list(self._memory.get_finished_spans())
        self._memory.clear()
        return spans

    def span(self, name: str, *, parent: Span | None = None, start_ns: int = BASE_NS,
             attributes: Mapping[str, Any] | None = None) -> Span:
        """Start a span (end it yourself), optionally as a child of ``parent``."""
        context = otel.set_span_in_context(parent) if parent is not None else None
        return self.tracer.start_span(name, context=context, start_time=start_ns, attributes=dict(attributes or {}))

    def turn(self, spec: TurnSpec, start_ns: int = BASE_NS) -> list[ReadableSpan]:
        """Record one turn and return its spans (LLM first, then TOOL, then the AGENT root)."""
        root_attrs: dict[str, Any] = {cv.SPAN_KIND: "AGENT", cv.INPUT_VALUE: spec.question,
                                      cv.OUTPUT_VALUE: spec.answer}
        if spec.session_id is not None:
            root_attrs[cv.SESSION_ID] = spec.session_id
        if spec.user_id is not None:
            root_attrs[cv.USER_ID] = spec.user_id
        root = self.span("agent", start_ns=start_ns, attributes=root_attrs)
        llm = self.span("llm", parent=root, start_ns=start_ns + 1_000_000, attributes={
            cv.SPAN_KIND: "LLM", cv.LLM_MODEL_NAME: spec.model,
            cv.LLM_TOKEN_PROMPT: spec.prompt_tokens, cv.LLM_TOKEN_COMPLETION: spec.completion_tokens,
            cv.LLM_TOKEN_TOTAL: spec.total_tokens,
            "llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": spec.question,
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": spec.answer,
        })
        if spec.fail:
            llm.set_status(Status(StatusCode.ERROR, "model timed out"))
        llm.end(end_time=start_ns + 200_000_000)
        if spec.tool:
            tool = self.span("tool", parent=root, start_ns=start_ns + 210_000_000, attributes={
                cv.SPAN_KIND: "TOOL", cv.TOOL_NAME: spec.tool, cv.INPUT_VALUE: '{"city": "Paris"}',
                cv.OUTPUT_VALUE: "sunny",
            })
            tool.end(end_time=start_ns + 220_000_000)
        root.end(end_time=start_ns + 300_000_000)
        return self.take()

    def turns(self, specs: Sequence[TurnSpec], start_ns: int = BASE_NS, step_ns: int = 1_000_000_000
              ) -> list[list[ReadableSpan]]:
        """Record several turns, ``step_ns`` apart; one span list per turn."""
        return [self.turn(spec, start_ns + i * step_ns) for i, spec in enumerate(specs)]

    def shutdown(self) -> None:
        """Shut the provider down (nothing is exported, this only releases it)."""
        self.provider.shutdown()


def encode_request(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """The ``ExportTraceServiceRequest`` the SDK's exporters would send for ``spans``."""
    return encode_spans(spans)


def protobuf_body(spans: Sequence[ReadableSpan]) -> bytes:
    """A binary protobuf OTLP body for ``spans``."""
    return bytes(encode_request(spans).SerializeToString())


def to_otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP/JSON of ``request``: the protobuf JSON mapping with trace/span ids as hex, enums as ints."""
    document: dict[str, Any] = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                _ids_to_hex(span)
                for link in span.get("links", []):
                    _ids_to_hex(link)
    return document


def _ids_to_hex(obj: dict[str, Any]) -> None:
    for key in ("traceId", "spanId", "parentSpanId"):
        if obj.get(key):
            obj[key] = base64.b64decode(obj[key]).hex()


def json_body(spans: Sequence[ReadableSpan]) -> bytes:
    """An OTLP/JSON body for ``spans``."""
    return json.dumps(to_otlp_json(encode_request(spans))).encode()


def gzipped(body: bytes) -> bytes:
    """``body`` gzip-compressed (for ``Content-Encoding: gzip``)."""
    return gzip.compress(body)


def export_http(spans: Sequence[ReadableSpan], endpoint: str, *, headers: Mapping[str, str] | None = None,
                gzip_body: bool = False) -> SpanExportResult:
    """Send ``spans`` with the SDK's OTLP/HTTP protobuf exporter to ``endpoint`` (…/v1/traces)."""
    exporter = HttpSpanExporter(endpoint=endpoint, headers=dict(headers or {}), timeout=30,
                                compression=HttpCompression.Gzip if gzip_body else HttpCompression.NoCompression)
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]


def export_grpc(spans: Sequence[ReadableSpan], target: str, *, headers: Mapping[str, str] | None = None,
                gzip_body: bool = False) -> SpanExportResult:
    """Send ``spans`` with the SDK's OTLP/gRPC exporter (insecure) to ``target`` (host:port)."""
    from grpc import Compression

    exporter = GrpcSpanExporter(endpoint=target, insecure=True, headers=dict(headers or {}), timeout=30,
                                compression=Compression.Gzip if gzip_body else Compression.NoCompression)
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()
