"""Span processors that put the context's session, user, metadata and tags on every span, and keep them.

:class:`ContextAttributesSpanProcessor` stamps them. OpenInference instrumentors copy these
context values onto their own spans; this processor makes plain OpenTelemetry spans
(``tracer.start_as_current_span(...)``, HTTP server spans, spans of libraries without an
OpenInference instrumentor) carry them too. A value the span sets itself at start is never
overwritten, and a value it sets later wins over the stamped one.

An OpenTelemetry span holds at most ``SpanLimits.max_span_attributes`` attributes and, when full,
evicts the *oldest* one. The context attributes are set when a span starts, and an LLM span
adds one attribute per message role and content afterwards, so a long chat history evicts
``session.id`` and ``user.id`` first and the trace falls out of its conversation. Two defences:
``register()`` lifts the count limit unless the user set one, and, when a limit is set,
:class:`ContextAttributesKeeper` wraps the export processor and puts an evicted context
attribute back (as the newest one, so the limit still holds) before the span is exported.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.util import types

from threadline import conventions

__all__ = ["STAMPED_KEYS", "ContextAttributesKeeper", "ContextAttributesSpanProcessor"]

#: Context keys stamped on every span: the ones that group spans into sessions and users.
STAMPED_KEYS: tuple[str, ...] = (
    conventions.SESSION_ID,
    conventions.USER_ID,
    conventions.METADATA,
    conventions.TAG_TAGS,
)
#: Spans started but not yet ended whose context values a keeper remembers; beyond this many
#: (spans that are never ended) it stops remembering rather than grow without bound.
MAX_OPEN_SPANS: Final = 100_000


class ContextAttributesSpanProcessor(SpanProcessor):
    """Copy ``session.id``, ``user.id``, ``metadata`` and ``tag.tags`` from the context onto spans.

    A context attribute the span already carries at start is set again, unchanged, so it becomes
    the span's newest attribute: attributes the span adds later (message lists) evict older
    ones first when a span attribute count limit is reached.
    """

    def __init__(self, keys: tuple[str, ...] = STAMPED_KEYS) -> None:
        self._keys = keys

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        """Stamp the values of the span's (parent) context that the span does not set itself."""
        existing = span.attributes or {}
        for key in self._keys:
            own = existing.get(key)
            if own is not None:
                span.set_attribute(key, own)  # re-set: now the newest, the last to be evicted
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


class ContextAttributesKeeper(SpanProcessor):
    """Wrap an export processor so a span attribute count limit never evicts a context attribute.

    Add it *after* :class:`ContextAttributesSpanProcessor`, in place of the export processor::

        provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=128))
        provider.add_span_processor(ContextAttributesSpanProcessor())
        provider.add_span_processor(ContextAttributesKeeper(BatchSpanProcessor(exporter), 128))

    When a span starts it remembers the span's context attributes (``session.id``, ``user.id``,
    ``metadata``, ``tag.tags``). When the span ends having dropped attributes, those of them that
    were evicted are put back as the newest attributes, evicting the oldest others instead, so
    the span still holds at most ``max_attributes`` and its dropped count stays right. A span
    that dropped nothing is passed on as it is.

    Args:
        inner: the processor that exports (``BatchSpanProcessor`` / ``SimpleSpanProcessor``).
        max_attributes: the provider's ``SpanLimits.max_span_attributes`` (``None``: no limit,
            nothing can be evicted and spans are passed on untouched).
        keys: the attributes to keep.
    """

    def __init__(
        self, inner: SpanProcessor, max_attributes: int | None, keys: tuple[str, ...] = STAMPED_KEYS
    ) -> None:
        self.inner = inner
        self.max_attributes = max_attributes
        self._keys = keys
        self._open: dict[tuple[int, int], dict[str, types.AttributeValue]] = {}
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        """Remember the span's context attributes, then let the wrapped processor see the start."""
        if self.max_attributes is not None:
            attributes = span.attributes or {}
            values = {key: attributes[key] for key in self._keys if key in attributes}
            if values:
                context = span.get_span_context()
                with self._lock:
                    if len(self._open) < MAX_OPEN_SPANS:
                        self._open[(context.trace_id, context.span_id)] = values
        self.inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        """Put evicted context attributes back, then hand the span to the wrapped processor."""
        if self.max_attributes is not None:
            context = span.get_span_context()
            values = None
            if context is not None:
                with self._lock:
                    values = self._open.pop((context.trace_id, context.span_id), None)
            if values and span.dropped_attributes:
                attributes = span.attributes or {}
                missing = {key: value for key, value in values.items() if key not in attributes}
                if missing:
                    span = _with_attributes(span, attributes, missing, self.max_attributes)
        self.inner.on_end(span)

    def shutdown(self) -> None:
        """Shut the wrapped processor down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the wrapped processor."""
        return self.inner.force_flush(timeout_millis)


def _with_attributes(
    span: ReadableSpan,
    attributes: Mapping[str, types.AttributeValue],
    missing: dict[str, types.AttributeValue],
    max_attributes: int,
) -> ReadableSpan:
    """``span`` with ``missing`` added as its newest attributes, at most ``max_attributes`` in all."""
    kept = BoundedAttributes(max_attributes, {**attributes, **missing}, immutable=True)
    # The restored ones were counted as dropped when evicted; the ones evicted now are counted by
    # ``kept`` itself.
    kept.dropped += span.dropped_attributes - len(missing)
    return _RestoredSpan(span, kept)


class _RestoredSpan(ReadableSpan):
    """An ended span with other attributes; everything else (dropped events and links too) as it was."""

    def __init__(self, span: ReadableSpan, attributes: BoundedAttributes) -> None:
        super().__init__(
            name=span.name,
            context=span.get_span_context(),
            parent=span.parent,
            resource=span.resource,
            attributes=attributes,
            events=span.events,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )
        self._original = span

    @property
    def dropped_events(self) -> int:
        """As the original span counted them."""
        return self._original.dropped_events

    @property
    def dropped_links(self) -> int:
        """As the original span counted them."""
        return self._original.dropped_links
