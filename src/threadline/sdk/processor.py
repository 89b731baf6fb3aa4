"""A span processor that stamps the context's session, user, metadata and tags on every span.

OpenInference instrumentors copy these context values onto their own spans; this processor
makes plain OpenTelemetry spans (``tracer.start_as_current_span(...)``, HTTP server spans, spans
of libraries without an OpenInference instrumentor) carry them too. A value the span sets itself
at start is never overwritten, and a value it sets later wins over the stamped one.
"""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from threadline import conventions

__all__ = ["STAMPED_KEYS", "ContextAttributesSpanProcessor"]

#: Context keys stamped on every span: the ones that group spans into sessions and users.
STAMPED_KEYS: tuple[str, ...] = (
    conventions.SESSION_ID,
    conventions.USER_ID,
    conventions.METADATA,
    conventions.TAG_TAGS,
)


class ContextAttributesSpanProcessor(SpanProcessor):
    """Copy ``session.id``, ``user.id``, ``metadata`` and ``tag.tags`` from the context onto spans."""

    def __init__(self, keys: tuple[str, ...] = STAMPED_KEYS) -> None:
        self._keys = keys

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        """Stamp the values of the span's (parent) context that the span does not set itself."""
        existing = span.attributes or {}
        for key in self._keys:
            if key in existing:
                continue
            value = otel_context.get_value(key, parent_context)
            if isinstance(value, str):
                span.set_attribute(key, value)
            elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                span.set_attribute(key, list(value))

    def on_end(self, span: ReadableSpan) -> None:
        """Nothing to do when a span ends."""

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here."""
        return True
