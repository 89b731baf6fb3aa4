"""``register()``: one call that sends an app's traces to Threadline.

It builds an OpenTelemetry ``TracerProvider`` with the project name as a resource attribute,
an OTLP exporter (HTTP/protobuf or gRPC) pointed at Threadline, and, in front of the export
processor, :class:`~threadline.sdk.processor.ContextAttributesSpanProcessor` so the session,
user, metadata and tags of the context land on every span.

Span limits: OpenTelemetry keeps at most 128 attributes per span by default and evicts the
*oldest* first — the context attributes, once an LLM span lists a long chat history. So the
provider has no span attribute count limit, unless ``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`` or
``OTEL_ATTRIBUTE_COUNT_LIMIT`` is set: then that limit holds, and
:class:`~threadline.sdk.processor.ContextAttributesKeeper` puts evicted context attributes back
before export. Attribute *length* limits are OpenTelemetry's (none unless set).

The SDK reads three environment variables, declared here and only here:
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import trace
from opentelemetry.sdk.environment_variables import (
    OTEL_ATTRIBUTE_COUNT_LIMIT,
    OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from threadline import conventions
from threadline.sdk.processor import ContextAttributesKeeper, ContextAttributesSpanProcessor

__all__ = [
    "API_KEY_ENV",
    "ATTRIBUTE_COUNT_LIMIT_ENVS",
    "DEFAULT_GRPC_ENDPOINT",
    "DEFAULT_HTTP_ENDPOINT",
    "DEFAULT_PROJECT",
    "DEFAULT_TIMEOUT_SECONDS",
    "ENDPOINT_ENV",
    "PROJECT_ENV",
    "Protocol",
    "register",
    "span_limits",
]

Protocol = Literal["http/protobuf", "grpc"]

#: Where spans go when ``register(endpoint=...)`` is not given: an OTLP/HTTP URL such as
#: ``http://localhost:6006/v1/traces`` (a bare ``http://host:port`` gets ``/v1/traces`` appended),
#: or, with ``protocol="grpc"``, a gRPC target such as ``http://localhost:4317``.
ENDPOINT_ENV: Final = "THREADLINE_ENDPOINT"
#: The project the spans belong to when ``register(project_name=...)`` is not given.
PROJECT_ENV: Final = "THREADLINE_PROJECT"
#: Sent as ``authorization: Bearer <key>`` with every export when set (for a server behind a proxy).
API_KEY_ENV: Final = "THREADLINE_API_KEY"

DEFAULT_HTTP_ENDPOINT: Final = "http://localhost:6006/v1/traces"
DEFAULT_GRPC_ENDPOINT: Final = "http://localhost:4317"
DEFAULT_PROJECT: Final = "default"
#: Upper bound of one export (retries included), so an unreachable server never hangs shutdown.
DEFAULT_TIMEOUT_SECONDS: Final = 5.0

_PROTOCOLS: Final = ("http/protobuf", "grpc")
#: OpenTelemetry's own variables that set a span attribute count limit; either one set means the
#: user chose, and ``register()`` leaves the limit to OpenTelemetry (set but empty: no limit).
ATTRIBUTE_COUNT_LIMIT_ENVS: Final = (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, OTEL_ATTRIBUTE_COUNT_LIMIT)
_logger = logging.getLogger("threadline")

__doc__ = (__doc__ or "") + "".join(
    f"\n- ``{name}``" for name in (ENDPOINT_ENV, PROJECT_ENV, API_KEY_ENV)
)


def register(
    project_name: str | None = None,
    endpoint: str | None = None,
    protocol: Protocol | None = None,
    batch: bool = True,
    headers: Mapping[str, str] | None = None,
    set_global: bool = True,
    api_key: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> TracerProvider:
    """Create (and by default install) a TracerProvider that exports to Threadline.

    Args:
        project_name: project of every span (resource attribute ``openinference.project.name`` and
            header ``x-project-name``); default ``$THREADLINE_PROJECT`` or ``"default"``.
        endpoint: OTLP endpoint; default ``$THREADLINE_ENDPOINT``, else
            ``http://localhost:6006/v1/traces`` (``http://localhost:4317`` for gRPC).
        protocol: ``"http/protobuf"`` or ``"grpc"``; inferred from the endpoint when omitted
            (a bare ``…:4317`` means gRPC).
        batch: export in the background in batches (``BatchSpanProcessor``); ``False`` exports
            each span as it ends, which suits scripts and tests.
        headers: extra headers sent with every export.
        set_global: install the provider as OpenTelemetry's global tracer provider.
        api_key: sent as ``authorization: Bearer …``; default ``$THREADLINE_API_KEY``.
        timeout: seconds one export may take, retries included. A failed export is logged on the
            ``threadline`` logger with the endpoint it could not reach.

    Returns:
        The provider; call ``force_flush()`` / ``shutdown()`` on it before a short script exits,
        and pass it as ``tracer_provider=`` to OpenInference instrumentors. Its ``force_flush()``
        returns ``False`` when a span ended since the previous flush could not be exported.
    """
    project = project_name if project_name is not None else os.environ.get(PROJECT_ENV) or DEFAULT_PROJECT
    if not isinstance(project, str) or not project.strip():
        raise ValueError(f"project_name must be a non-empty string, got {project!r}")
    raw_endpoint = endpoint if endpoint is not None else os.environ.get(ENDPOINT_ENV) or None
    resolved_protocol = _protocol(protocol, raw_endpoint)
    url = _endpoint(raw_endpoint, resolved_protocol)
    if timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")

    export_headers = {key.lower(): value for key, value in (headers or {}).items()}
    export_headers.setdefault(conventions.PROJECT_HEADER, project)
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if key:
        export_headers.setdefault("authorization", f"Bearer {key}")

    exporter = EndpointReportingExporter(
        _exporter(resolved_protocol, url, export_headers, timeout), url, resolved_protocol
    )
    limits = span_limits()
    provider = _ReportingTracerProvider(
        exporter, resource=Resource.create({conventions.PROJECT_NAME: project}), span_limits=limits
    )
    provider.add_span_processor(ContextAttributesSpanProcessor())
    export: SpanProcessor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    if limits.max_span_attributes is not None:
        export = ContextAttributesKeeper(export, limits.max_span_attributes)
    provider.add_span_processor(export)
    if set_global:
        trace.set_tracer_provider(provider)
    _logger.debug("threadline: exporting project %r to %s (%s)", project, url, resolved_protocol)
    return provider


def span_limits() -> SpanLimits:
    """The span limits ``register()`` gives its provider.

    OpenTelemetry's defaults, except that a span may hold any number of attributes — unless
    ``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`` or ``OTEL_ATTRIBUTE_COUNT_LIMIT`` is set, which then
    decides as usual (OpenTelemetry reads and validates it). With the default limit of 128, a
    chat history of 64 messages already evicts ``session.id`` and ``user.id``.
    """
    if any(name in os.environ for name in ATTRIBUTE_COUNT_LIMIT_ENVS):
        return SpanLimits()
    return SpanLimits(max_span_attributes=SpanLimits.UNSET)


class EndpointReportingExporter(SpanExporter):
    """Wraps an OTLP exporter and logs a failed export with the endpoint it could not reach."""

    def __init__(self, inner: SpanExporter, endpoint: str, protocol: str) -> None:
        self.inner = inner
        self.endpoint = endpoint
        self.protocol = protocol
        #: The outcome of the last export (``None`` before the first one).
        self.last_result: SpanExportResult | None = None
        #: How many exports have failed so far.
        self.failures = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export through the wrapped exporter; log clearly when it fails."""
        try:
            result = self.inner.export(spans)
        except Exception:
            _logger.exception("threadline: exporting %d span(s) to %s raised", len(spans), self.endpoint)
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.FAILURE:
            self.failures += 1
            _logger.error(
                "threadline: could not export %d span(s) to %s (%s); is Threadline running there "
                "(`threadline serve`), and is THREADLINE_ENDPOINT right?",
                len(spans), self.endpoint, self.protocol,
            )
        self.last_result = result
        return result

    def shutdown(self) -> None:
        """Shut the wrapped exporter down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the wrapped exporter."""
        return self.inner.force_flush(timeout_millis)


class _ReportingTracerProvider(TracerProvider):
    """A TracerProvider whose ``force_flush()`` also says whether the exports since the last one worked."""

    def __init__(self, exporter: EndpointReportingExporter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._exporter = exporter
        self._failures_seen = 0

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush every processor; ``False`` if that timed out or any export since the last flush failed."""
        flushed = super().force_flush(timeout_millis)
        failures = self._exporter.failures
        new_failures = failures - self._failures_seen
        self._failures_seen = failures
        return flushed and new_failures == 0


def _protocol(protocol: str | None, endpoint: str | None) -> Protocol:
    if protocol is None:
        if endpoint:
            parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
            if parts.port == 4317 and parts.path in ("", "/"):
                return "grpc"
        return "http/protobuf"
    if protocol not in _PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(_PROTOCOLS)}; got {protocol!r}")
    return "grpc" if protocol == "grpc" else "http/protobuf"


def _endpoint(endpoint: str | None, protocol: Protocol) -> str:
    if not endpoint:
        return DEFAULT_GRPC_ENDPOINT if protocol == "grpc" else DEFAULT_HTTP_ENDPOINT
    if "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint must be an http(s) URL such as {DEFAULT_HTTP_ENDPOINT}; got {endpoint!r}")
    if protocol == "grpc":
        return urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    if parts.path in ("", "/"):
        return urlunsplit((parts.scheme, parts.netloc, "/v1/traces", parts.query, ""))
    return endpoint


def _exporter(protocol: Protocol, url: str, headers: dict[str, str], timeout: float) -> SpanExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=url, headers=headers, timeout=timeout, insecure=url.startswith("http://"))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=url, headers=headers, timeout=timeout)
