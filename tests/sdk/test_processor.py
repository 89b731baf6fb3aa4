"""The span processor stamps the context's session, user, metadata and tags on every span."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from threadline import ContextAttributesSpanProcessor, using_attributes, using_prompt_template, using_session


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
