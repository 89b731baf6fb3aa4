"""``register()``: endpoint, protocol, project, headers, environment variables and failure reporting."""

from __future__ import annotations

import gzip
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from threadline import register, using_attributes
from threadline.sdk import setup
from threadline.sdk.processor import ContextAttributesKeeper
from threadline.sdk.setup import EndpointReportingExporter

CONTEXT_KEYS = ("session.id", "user.id", "metadata", "tag.tags")


def exporter_of(provider: TracerProvider) -> EndpointReportingExporter:
    processors = provider._active_span_processor._span_processors  # the chain register() built
    processors = tuple(p.inner if isinstance(p, ContextAttributesKeeper) else p for p in processors)
    exporters = [p.span_exporter for p in processors if hasattr(p, "span_exporter")]
    assert len(exporters) == 1
    exporter = exporters[0]
    assert isinstance(exporter, EndpointReportingExporter)
    return exporter


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (setup.ENDPOINT_ENV, setup.PROJECT_ENV, setup.API_KEY_ENV, *setup.ATTRIBUTE_COUNT_LIMIT_ENVS):
        monkeypatch.delenv(name, raising=False)


def test_env_var_names_are_the_documented_ones() -> None:
    assert (setup.ENDPOINT_ENV, setup.PROJECT_ENV, setup.API_KEY_ENV) == (
        "THREADLINE_ENDPOINT", "THREADLINE_PROJECT", "THREADLINE_API_KEY",
    )
    for name in (setup.ENDPOINT_ENV, setup.PROJECT_ENV, setup.API_KEY_ENV):
        assert name in (setup.__doc__ or "")


@pytest.mark.parametrize(
    ("endpoint", "protocol", "expected_url", "expected_protocol"),
    [
        (None, None, "http://localhost:6006/v1/traces", "http/protobuf"),
        (None, "grpc", "http://localhost:4317", "grpc"),
        ("http://collector:4318", None, "http://collector:4318/v1/traces", "http/protobuf"),
        ("http://h:6006/v1/traces", "http/protobuf", "http://h:6006/v1/traces", "http/protobuf"),
        ("http://h:4317", None, "http://h:4317", "grpc"),
        ("localhost:4317", None, "http://localhost:4317", "grpc"),
        ("https://h/otel/v1/traces", None, "https://h/otel/v1/traces", "http/protobuf"),
    ],
)
def test_endpoint_and_protocol_resolution(
    endpoint: str | None, protocol: setup.Protocol | None, expected_url: str, expected_protocol: str
) -> None:
    provider = register(endpoint=endpoint, protocol=protocol, set_global=False, batch=False)
    exporter = exporter_of(provider)
    assert (exporter.endpoint, exporter.protocol) == (expected_url, expected_protocol)
    provider.shutdown()


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(setup.ENDPOINT_ENV, "http://example.invalid:7000")
    monkeypatch.setenv(setup.PROJECT_ENV, "from-env")
    provider = register(set_global=False, batch=False)
    assert exporter_of(provider).endpoint == "http://example.invalid:7000/v1/traces"
    assert provider.resource.attributes["openinference.project.name"] == "from-env"
    provider.shutdown()
    explicit = register(project_name="explicit", endpoint="http://h:1/v1/traces", set_global=False, batch=False)
    assert explicit.resource.attributes["openinference.project.name"] == "explicit"
    assert exporter_of(explicit).endpoint == "http://h:1/v1/traces"
    explicit.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "http/json"}, "protocol"),
        ({"project_name": ""}, "project_name"),
        ({"endpoint": "ftp://h/x"}, "endpoint"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        register(set_global=False, **kwargs)  # type: ignore[arg-type]


def test_the_provider_stamps_context_on_every_span() -> None:
    provider = register(project_name="p", endpoint="http://127.0.0.1:9/v1/traces", set_global=False, batch=False)
    memory = InMemorySpanExporter()
    # inspect what the provider's processors produce without a server
    provider._active_span_processor._span_processors = tuple(
        p for p in provider._active_span_processor._span_processors if not hasattr(p, "span_exporter")
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with using_attributes(session_id="s", user_id="u", tags=["t"]):
        provider.get_tracer("plain").start_span("plain").end()
    (span,) = memory.get_finished_spans()
    assert span.attributes == {"session.id": "s", "user.id": "u", "tag.tags": ("t",)}
    assert span.resource.attributes["openinference.project.name"] == "p"
    provider.shutdown()


class _Capture(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, str]]] = []
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        type(self).requests.append({k.lower(): v for k, v in self.headers.items()})
        type(self).bodies.append(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def capture() -> Iterator[str]:
    _Capture.requests = []
    _Capture.bodies = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/traces"
    httpd.shutdown()
    httpd.server_close()


def test_project_header_api_key_and_extra_headers(capture: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(setup.API_KEY_ENV, "secret-key")
    provider = register(project_name="hdr", endpoint=capture, headers={"X-Extra": "1"}, set_global=False)
    provider.get_tracer("t").start_span("s").end()
    assert provider.force_flush()
    provider.shutdown()
    (headers,) = _Capture.requests
    assert headers["x-project-name"] == "hdr"
    assert headers["authorization"] == "Bearer secret-key"
    assert headers["x-extra"] == "1"
    assert headers["content-type"] == "application/x-protobuf"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.timeout(60)
def test_an_unreachable_endpoint_is_reported_not_hung(
    protocol: setup.Protocol, caplog: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    endpoint = f"http://127.0.0.1:{port}" + ("/v1/traces" if protocol == "http/protobuf" else "")
    provider = register(endpoint=endpoint, protocol=protocol, set_global=False, timeout=1)
    provider.get_tracer("t").start_span("lost").end()
    with caplog.at_level(logging.ERROR, logger="threadline"):
        assert provider.force_flush() is False
        assert provider.force_flush() is True  # nothing new failed since
        provider.shutdown()
    messages = [r.getMessage() for r in caplog.records if r.name == "threadline"]
    assert any(endpoint in m and "could not export 1 span" in m for m in messages), messages
    assert exporter_of(provider).last_result is not None
    assert exporter_of(provider).last_result.name == "FAILURE"  # type: ignore[union-attr]


def exported_spans() -> list[tuple[dict[str, Any], int]]:
    """(attributes, dropped attribute count) of every span the capture server received."""
    spans = []
    for body in _Capture.bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attrs = {kv.key: _plain(kv.value) for kv in span.attributes}
                    spans.append((attrs, span.dropped_attributes_count))
    return spans


def _plain(value: AnyValue) -> Any:
    if value.HasField("array_value"):
        return [_plain(v) for v in value.array_value.values]
    return getattr(value, str(value.WhichOneof("value")))


def send_long_history_span(provider: TracerProvider, messages: int) -> None:
    """An LLM span as OpenInference's OpenAI instrumentor makes one: the context attributes at
    start, then the response, then (deferred to the end) one role and one content attribute per
    message of the history resent with the call."""
    with using_attributes(session_id="long-chat", user_id="ann", metadata={"k": 1}, tags=["t"]):
        span = provider.get_tracer("llm").start_span(
            "ChatCompletion", attributes={"openinference.span.kind": "LLM", "llm.model_name": "m"}
        )
        span.set_attribute("llm.output_messages.0.message.content", "the answer")
        for i in range(messages):
            span.set_attribute(f"llm.input_messages.{i}.message.role", "user" if i % 2 == 0 else "assistant")
            span.set_attribute(f"llm.input_messages.{i}.message.content", f"message {i}")
        span.end()


def test_by_default_a_long_history_evicts_nothing(capture: str) -> None:
    provider = register(project_name="long", endpoint=capture, set_global=False, batch=False)
    send_long_history_span(provider, 300)
    provider.shutdown()
    ((attrs, dropped),) = exported_spans()
    assert dropped == 0
    assert attrs["session.id"] == "long-chat"
    assert attrs["user.id"] == "ann"
    assert attrs["metadata"] == '{"k": 1}'
    assert attrs["tag.tags"] == ["t"]
    assert len(attrs) == 3 + 4 + 600
    assert attrs["llm.input_messages.0.message.content"] == "message 0"
    assert attrs["llm.input_messages.299.message.content"] == "message 299"


@pytest.mark.parametrize("variable", ["OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT"])
def test_an_explicit_count_limit_holds_and_still_keeps_the_context(
    variable: str, capture: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "50")
    provider = register(project_name="limited", endpoint=capture, set_global=False, batch=False)
    send_long_history_span(provider, 300)
    provider.shutdown()
    ((attrs, dropped),) = exported_spans()
    assert len(attrs) == 50
    assert dropped == 3 + 4 + 600 - 50
    assert {key: attrs.get(key) for key in CONTEXT_KEYS} == {
        "session.id": "long-chat", "user.id": "ann", "metadata": '{"k": 1}', "tag.tags": ["t"],
    }
    # the oldest others made room: the newest messages are kept
    assert attrs["llm.input_messages.299.message.content"] == "message 299"
    assert "llm.input_messages.0.message.content" not in attrs


def test_span_limits_lift_only_the_attribute_count(monkeypatch: pytest.MonkeyPatch) -> None:
    default = SpanLimits()
    lifted = setup.span_limits()
    assert lifted.max_span_attributes is None
    assert (lifted.max_attribute_length, lifted.max_span_attribute_length) == (
        default.max_attribute_length, default.max_span_attribute_length)
    assert (lifted.max_events, lifted.max_links, lifted.max_event_attributes) == (
        default.max_events, default.max_links, default.max_event_attributes)
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "")  # OpenTelemetry: set but empty = no limit
    assert setup.span_limits().max_span_attributes is None
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "64")
    assert setup.span_limits().max_span_attributes == 64
    monkeypatch.delenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT")
    monkeypatch.setenv("OTEL_ATTRIBUTE_COUNT_LIMIT", "200")
    assert setup.span_limits().max_span_attributes == 200
