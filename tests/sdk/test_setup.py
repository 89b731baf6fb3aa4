"""``register()``: endpoint, protocol, project, headers, environment variables and failure reporting."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from threadline import register, using_attributes
from threadline.sdk import setup
from threadline.sdk.setup import EndpointReportingExporter


def exporter_of(provider: TracerProvider) -> EndpointReportingExporter:
    processors = provider._active_span_processor._span_processors  # the chain register() built
    exporters = [p.span_exporter for p in processors if hasattr(p, "span_exporter")]
    assert len(exporters) == 1
    exporter = exporters[0]
    assert isinstance(exporter, EndpointReportingExporter)
    return exporter


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (setup.ENDPOINT_ENV, setup.PROJECT_ENV, setup.API_KEY_ENV):
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

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).requests.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def capture() -> Iterator[str]:
    _Capture.requests = []
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
