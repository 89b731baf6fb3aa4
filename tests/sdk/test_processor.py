"""The span processor stamps the context's session, user, metadata and tags on every span."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from threadline import ContextAttributesSpanProcessor, using_attributes, using_prompt_template, using_session
from threadline.sdk.processor import ContextAttributesKeeper


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(ContextAttributesSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def test_plain_spans_get_the_context_values(traced: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = traced
    tracer = provider.get_tracer("t")
    with (
        using_attributes(session_id="s", user_id="u", metadata={"k": 1}, tags=["x", "y"]),
        tracer.start_as_current_span("root"),
        tracer.start_as_current_span("child"),
    ):
        pass
    with tracer.start_as_current_span("outside"):
        pass
    spans = {s.name: dict(s.attributes or {}) for s in exporter.get_finished_spans()}
    for name in ("root", "child"):
        assert spans[name]["session.id"] == "s"
        assert spans[name]["user.id"] == "u"
        assert json.loads(str(spans[name]["metadata"])) == {"k": 1}
        assert list(spans[name]["tag.tags"]) == ["x", "y"]  # type: ignore[arg-type]
    assert spans["outside"] == {}


def test_a_span_that_sets_its_own_value_keeps_it(traced: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = traced
    tracer = provider.get_tracer("t")
    with using_session("from-context"):
        with tracer.start_as_current_span("own", attributes={"session.id": "own-at-start"}):
            pass
        with tracer.start_as_current_span("later") as span:
            span.set_attribute("session.id", "set-later")
    spans = {s.name: dict(s.attributes or {}) for s in exporter.get_finished_spans()}
    assert spans["own"]["session.id"] == "own-at-start"
    assert spans["later"]["session.id"] == "set-later"


def test_an_explicit_parent_context_is_used(traced: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = traced
    tracer = provider.get_tracer("t")
    with using_session("captured"):
        captured = otel_context.get_current()
    with using_session("current"):
        tracer.start_span("explicit", context=captured).end()
    (span,) = exporter.get_finished_spans()
    assert (span.attributes or {})["session.id"] == "captured"


def test_prompt_templates_are_left_to_the_instrumentors(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    with using_prompt_template(template="t {x}", variables={"x": 1}):
        provider.get_tracer("t").start_span("plain").end()
    (span,) = exporter.get_finished_spans()
    assert not any(key.startswith("llm.prompt_template") for key in span.attributes or {})


def test_openinference_tracer_and_processor_agree(traced: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    from openinference.instrumentation import OITracer, TraceConfig

    provider, exporter = traced
    tracer = OITracer(provider.get_tracer("oi"), config=TraceConfig())
    with (
        using_attributes(session_id="oi-s", user_id="oi-u", tags=["t"]),
        tracer.start_as_current_span("llm", openinference_span_kind="llm"),
    ):
        pass
    (span,) = exporter.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert attrs["session.id"] == "oi-s"
    assert attrs["user.id"] == "oi-u"
    assert list(attrs["tag.tags"]) == ["t"]  # type: ignore[arg-type]


def limited(max_attributes: int, keeper: bool) -> tuple[TracerProvider, InMemorySpanExporter]:
    """A provider with a span attribute count limit, the stamping processor and, if asked, the keeper."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=max_attributes, max_events=2))
    provider.add_span_processor(ContextAttributesSpanProcessor())
    export: SpanProcessor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(ContextAttributesKeeper(export, max_attributes) if keeper else export)
    return provider, exporter


def test_context_set_at_start_becomes_the_newest_attribute() -> None:
    provider, exporter = limited(10, keeper=False)
    with using_session("s"):
        span = provider.get_tracer("t").start_span(
            "start-heavy", attributes={"session.id": "own", **{f"a{i}": i for i in range(8)}}
        )
        for i in range(5):  # evicts the five oldest: a0..a4, not session.id
            span.set_attribute(f"later{i}", i)
        span.end()
    (done,) = exporter.get_finished_spans()
    attrs = dict(done.attributes or {})
    assert attrs["session.id"] == "own"
    assert len(attrs) == 10
    assert done.dropped_attributes == 4
    assert "a3" not in attrs and "a4" in attrs
    provider.shutdown()


def test_the_keeper_puts_evicted_context_back_as_the_newest() -> None:
    provider, exporter = limited(20, keeper=True)
    with using_attributes(session_id="s", user_id="u", tags=["x"]):
        span = provider.get_tracer("t").start_span("llm")
        for i in range(3):
            span.add_event(f"event {i}")  # one more than max_events: one dropped
        for i in range(100):
            span.set_attribute(f"llm.input_messages.{i}.message.content", f"m{i}")
        span.end()
    (done,) = exporter.get_finished_spans()
    attrs = dict(done.attributes or {})
    assert len(attrs) == 20
    assert (attrs["session.id"], attrs["user.id"], attrs["tag.tags"]) == ("s", "u", ("x",))
    assert "metadata" not in attrs  # not in the context, so nothing to keep
    assert done.dropped_attributes == 103 - 20
    assert [key for key in attrs if key.startswith("llm.")] == [
        f"llm.input_messages.{i}.message.content" for i in range(83, 100)
    ]
    assert done.dropped_events == 1
    assert [e.name for e in done.events] == ["event 1", "event 2"]
    assert done.name == "llm" and done.end_time is not None and done.context is not None
    provider.shutdown()


def test_the_keeper_passes_untouched_spans_on_as_they_are() -> None:
    seen: list[ReadableSpan] = []

    class Recorder(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            seen.append(span)

    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=5))
    provider.add_span_processor(ContextAttributesSpanProcessor())
    provider.add_span_processor(ContextAttributesKeeper(Recorder(), 5))
    tracer = provider.get_tracer("t")
    with using_session("s"):
        with tracer.start_as_current_span("fits") as fits:
            fits.set_attribute("a", 1)
        with tracer.start_as_current_span("sets-its-own-later") as later:
            for i in range(6):
                later.set_attribute(f"b{i}", i)
            later.set_attribute("session.id", "later")
    fitting, own = seen
    assert type(fitting) is ReadableSpan  # as the SDK made it
    assert dict(fitting.attributes or {}) == {"session.id": "s", "a": 1}
    assert own.dropped_attributes == 3  # the stamped session.id, b0, b1
    assert dict(own.attributes or {}) == {"b2": 2, "b3": 3, "b4": 4, "b5": 5, "session.id": "later"}
    provider.shutdown()
