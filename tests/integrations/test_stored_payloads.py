"""Spans stored compactly (issue 14) come back exactly as sent: real OpenInference spans.

The OpenAI instrumentor's spans (a growing chat history, so payloads above the compression
threshold) go through ``register()`` to ``threadline serve``; an in-memory exporter on the same
tracer provider keeps what was sent. The trace API returns byte-identical attributes (same JSON,
same key order) and the same events, and ``threadline export`` the turns the API shows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
from click.testing import CliRunner
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sdk.api_client import ThreadlineApi
from support.fake_providers import FakeProvider
from support.server import ServerProcess
from threadline import using_session, using_user
from threadline.server.cli import cli

QUESTIONS = ("Hello! Where is my parcel? " * 12, "And the invoice — can I get it again? ünïcødé 🙂", "Thanks, bye.")


def _sent(span: ReadableSpan) -> dict[str, Any]:
    """A span's attributes as JSON would carry them (sequences as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()}


def test_trace_api_and_export_return_what_the_instrumentor_sent(
    fake: FakeProvider, tracer_provider: TracerProvider, instrument: Callable[[Any], None], api: ThreadlineApi,
    project: str, server: ServerProcess,
) -> None:
    copy = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(copy))
    instrument(OpenAIInstrumentor())
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0)
    history: list[dict[str, str]] = [{"role": "system", "content": "You are a patient support agent. " * 20}]
    with using_session("stored-payloads"), using_user("ann"):
        for question in QUESTIONS:
            history.append({"role": "user", "content": question})
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=history)  # type: ignore[arg-type]
            history.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
    sent = {(f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}"): s for s in copy.get_finished_spans()}
    assert len(sent) == len(QUESTIONS)
    for trace_id in {trace for trace, _ in sent}:
        for span in api.get(f"/v1/projects/{project}/traces/{trace_id}")["spans"]:
            original = sent[(trace_id, span["span_id"])]
            assert json.dumps(span["attributes"], ensure_ascii=False) == json.dumps(_sent(original), ensure_ascii=False)
            assert [(e["name"], e["attributes"]) for e in span["events"]] == [
                (e.name, dict(e.attributes or {})) for e in original.events]
    assert sum(len(json.dumps(_sent(s))) for s in sent.values()) > 3 * 256  # payloads large enough to compress

    exported = CliRunner().invoke(cli, ["export", "--project", project, "--db", server.db_url],
                                  catch_exceptions=False)
    assert exported.exit_code == 0, exported.output
    [line] = [json.loads(text) for text in exported.stdout.splitlines() if text.startswith("{")]
    detail = api.session(project, "stored-payloads")
    assert line["turns"] == detail["turns"]
    assert [t["input"] for t in line["turns"]] == [q.strip() for q in QUESTIONS]
