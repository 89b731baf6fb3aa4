"""``threadline demo`` against a real server: what arrives matches the generator's own plan.

A third of the demo's conversations are shaped like the OpenAI instrumentor with no parent span
(one trace per LLM call); they must read back as one turn per user message, tool loops as
LLM call → tool → LLM call, and their spans must be what the real instrumentor sends.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from support.server import ServerProcess, free_port
from threadline.server.demo.catalog import AGENT_SHAPE, OPENAI_SHAPE
from threadline.server.demo.command import default_endpoint
from threadline.server.demo.conversations import LlmCall, SessionPlan, ToolRun, TurnPlan, plan_demo
from threadline.server.demo.instrumented import emit_instrumented_turn
from threadline.server.demo.traffic import DemoSender
from threadline.server.settings import Settings

SESSIONS = 20
SEED = 11
COUNTS = ("spans", "traces", "sessions", "users")


def run_demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "threadline", "demo", *args], capture_output=True, text=True,
                          timeout=240, check=False, env=env)


def _project(client: httpx.Client, name: str) -> dict[str, Any]:
    projects = {p["name"]: p for p in client.get("/v1/projects").json()["data"]}
    return dict(projects[name])


def test_demo_fills_a_project_as_planned(server: ServerProcess) -> None:
    plan = plan_demo(SESSIONS, SEED, 7, datetime.now(UTC))
    turns = [t for p in plan for t in p.turns]
    failed = [t for t in turns if t.error is not None]
    users = {p.user_id for p in plan}
    tokens = sum(t.prompt_tokens + t.completion_tokens for t in turns)
    assert len(users) >= 3 and len(turns) > SESSIONS and failed and tokens > 0  # the plan itself is interesting
    assert {p.app.shape for p in plan} == {AGENT_SHAPE, OPENAI_SHAPE}

    args = ("--endpoint", f"{server.base_url}/v1/traces", "--project", "demo-test", "--sessions", str(SESSIONS),
            "--seed", str(SEED))
    done = run_demo(*args)
    assert done.returncode == 0, done.stderr + done.stdout + server.log()

    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        project = _project(client, "demo-test")
        assert project["sessions"] == SESSIONS
        assert project["traces"] == sum(t.trace_count for t in turns)
        assert project["spans"] == sum(t.span_count for t in turns)
        assert project["users"] == len(users)

        listed = client.get("/v1/projects/demo-test/sessions", params={"limit": 1000}).json()["data"]
        assert {s["session_id"] for s in listed} == {p.session_id for p in plan}
        assert {u for s in listed for u in s["user_ids"]} == users
        assert sum(s["turns"] for s in listed) == len(turns)
        assert sum(s["errors"] for s in listed) == len(failed)
        assert sum(s["tokens"]["total"] for s in listed) == tokens
        assert sum(s["cost_usd"] for s in listed) > 0

        # One conversation in detail: texts, statuses, LLM and tool calls as planned.
        richest = max(plan, key=lambda p: (sum(t.error is not None for t in p.turns), len(p.turns)))
        detail = client.get(f"/v1/projects/demo-test/sessions/{richest.session_id}").json()
        assert [t["input"] for t in detail["turns"]] == [t.user_message for t in richest.turns]
        assert [t["status"] for t in detail["turns"]] == ["error" if t.error else "ok" for t in richest.turns]
        for got, want in zip(detail["turns"], richest.turns, strict=True):
            if want.reply is not None:
                assert got["output"] == want.reply
            assert all(call["model"] for call in got["llm_calls"] if call["status"] == "ok")

        tool_names = {name for p in plan for t in p.turns for name in _tool_names(t)}
        seen_tools = set()
        for p in plan:
            body = client.get(f"/v1/projects/demo-test/sessions/{p.session_id}").json()
            seen_tools |= {call["name"] for t in body["turns"] for call in t["tool_calls"]}
        assert seen_tools == tool_names and tool_names

        frustrated = [p for p in plan if p.frustrated]
        if frustrated:  # the angriest message arrives as the last turn's input
            body = client.get(f"/v1/projects/demo-test/sessions/{frustrated[0].session_id}").json()
            assert body["turns"][-1]["input"] == frustrated[0].turns[-1].user_message

        _check_instrumented_sessions(client, [p for p in plan if p.app.shape == OPENAI_SHAPE])

        # The same seed again: the same ids, so nothing new is stored.
        again = run_demo(*args)
        assert again.returncode == 0, again.stderr + again.stdout
        rerun = _project(client, "demo-test")
        assert [rerun[k] for k in COUNTS] == [project[k] for k in COUNTS]


def _check_instrumented_sessions(client: httpx.Client, plans: list[SessionPlan]) -> None:
    """One turn per user message whatever the LLM calls; tool loops as steps; outputs in words."""
    loops = parallel = two_rounds = 0
    for plan in plans:
        body = client.get(f"/v1/projects/demo-test/sessions/{plan.session_id}").json()
        assert len(body["turns"]) == len(plan.turns), plan.session_id
        for got, want in zip(body["turns"], plan.turns, strict=True):
            assert got["input"] == want.user_message
            assert len(got["trace_ids"]) == len(want.llm_calls)
            assert got["status"] == ("error" if want.error else "ok")
            output = got["output"] or ""
            assert not output.lstrip().startswith(("{", "[")), output  # words, never a response body
            if want.reply is not None:
                assert got["output"] == want.reply
            runs = [s for s in want.steps if isinstance(s, ToolRun)]
            if not runs:
                continue
            loops += 1
            parallel += any(len(c.tool_calls) > 1 for c in want.llm_calls)
            two_rounds += sum(bool(c.tool_calls) for c in want.llm_calls) > 1
            assert [s["kind"] for s in got["steps"]] == ["llm" if isinstance(s, LlmCall) else "tool"
                                                         for s in want.steps]
            tools = [s for s in got["steps"] if s["kind"] == "tool"]
            assert [(s["name"], json.loads(s["arguments"]), json.loads(s["result"])) for s in tools] == [
                (r.name, json.loads(r.arguments), json.loads(r.result or "null")) for r in runs]
    assert loops and parallel and two_rounds  # the demo has every kind of tool loop


def _tool_names(turn: TurnPlan) -> list[str]:
    return [s.name for s in turn.steps if isinstance(s, ToolRun)]


def test_plan_is_deterministic_for_a_seed() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    first, again, other = plan_demo(40, 3, 7, now), plan_demo(40, 3, 7, now), plan_demo(40, 4, 7, now)
    assert first == again
    assert [p.session_id for p in first] != [p.session_id for p in other]
    assert any(p.frustrated for p in plan_demo(300, 7, 7, now))
    assert sum(p.app.shape == OPENAI_SHAPE for p in first) == 40 // 3
    for p in first:
        assert 1 <= len(p.turns) <= 15
        assert all(now.timestamp() - 7 * 86400 <= t.start.timestamp() <= now.timestamp() for t in p.turns)


def test_instrumented_history_is_resent_whole() -> None:
    """Every call of an OpenAI-shaped session starts with all the messages of the call before it."""
    plans = [p for p in plan_demo(60, 5, 7, datetime(2026, 11, 21, tzinfo=UTC)) if p.app.shape == OPENAI_SHAPE]
    markdown = "\n".join(t.reply or "" for p in plans for t in p.turns)
    for needle in ("| Size |", "**", "```sql\n", "\n1. ", "\n- "):
        assert needle in markdown
    for plan in plans:
        calls = [c for t in plan.turns for c in t.llm_calls]
        for before, after in itertools.pairwise(calls):
            assert after.messages[:len(before.messages)] == before.messages
        for call in calls:
            asked = {r.call_id for m in call.messages for r in m.tool_calls}
            answered = [m.tool_call_id for m in call.messages if m.role == "tool"]
            assert set(answered) == asked and len(answered) == len(asked)


def test_long_histories_keep_every_attribute() -> None:
    """The longest OpenAI-shaped conversation of a big demo: no span loses its first attributes
    (kind, session, user) to an attribute count limit, and each span has the whole history."""
    plans = plan_demo(300, 7, 7, datetime(2026, 11, 21, tzinfo=UTC))
    longest = max((p for p in plans if p.app.shape == OPENAI_SHAPE),
                  key=lambda p: len(p.turns[-1].llm_calls[-1].messages))
    sender = DemoSender("http://127.0.0.1:9/v1/traces", "demo", 7)  # nothing is exported
    try:
        assert sender.emit(longest) == len(sender.pending) == sum(t.span_count for t in longest.turns)
        calls = [c for t in longest.turns for c in t.llm_calls]
        for span, call in zip(sender.pending, calls, strict=True):
            attrs = dict(span.attributes or {})
            assert span.dropped_attributes == 0
            assert attrs["openinference.span.kind"] == "LLM" and attrs["session.id"] == longest.session_id
            assert f"llm.input_messages.{len(call.messages) - 1}.message.role" in attrs
        assert len(attrs) > 128  # more than OpenTelemetry's default limit
    finally:
        sender.close()


def _demo_spans(turn: TurnPlan, plan: SessionPlan) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    emit_instrumented_turn(provider.get_tracer("demo"), plan, turn)
    return list(exporter.get_finished_spans())


#: JSON-valued attributes, compared parsed (the client re-serializes what it sends and receives).
JSON_KEYS = ("input.value", "output.value", "llm.invocation_parameters", "metadata")


def test_instrumented_spans_are_what_the_openai_instrumentor_sends() -> None:
    """The real ``openai`` client + OpenInference instrumentor, fed the demo's own request and
    response (an in-process mock transport: nothing leaves the process), make the same span:
    same name, attribute keys and values, status, exception event."""
    openai = pytest.importorskip("openai")
    instrumentor_module = pytest.importorskip("openinference.instrumentation.openai")

    plans = [p for p in plan_demo(60, 7, 7, datetime(2026, 11, 21, tzinfo=UTC)) if p.app.shape == OPENAI_SHAPE]
    chosen = [next((p, t) for p in plans for t in p.turns
                   if t.error is None and any(len(c.tool_calls) > 1 for c in t.llm_calls)),
              next((p, t) for p in plans for t in p.turns
                   if t.error is None and sum(bool(c.tool_calls) for c in t.llm_calls) > 1),
              next((p, t) for p in plans for t in p.turns if t.error is not None)]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = instrumentor_module.OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    compared = 0
    try:
        for plan, turn in chosen:
            for demo in _demo_spans(turn, plan):
                exporter.clear()
                _real_call(openai, demo, plan)
                real = [s for s in exporter.get_finished_spans() if s.name == "ChatCompletion"]
                assert len(real) == 1
                _assert_same_span(demo, real[0])
                compared += 1
    finally:
        instrumentor.uninstrument()
    assert compared >= 5


def _real_call(openai: Any, demo: ReadableSpan, plan: SessionPlan) -> None:
    """Replay the demo span's request through the instrumented client, answered as the demo says."""
    from threadline import using_metadata, using_session, using_tags, using_user

    attrs = dict(demo.attributes or {})
    request = json.loads(str(attrs["input.value"]))
    failure = next((str((e.attributes or {})["exception.type"]) for e in demo.events if e.name == "exception"), None)

    def answer(sent: httpx.Request) -> httpx.Response:
        assert json.loads(sent.content) == request
        if failure is None:
            return httpx.Response(200, json=json.loads(str(attrs["output.value"])))
        if failure == "openai.APITimeoutError":
            raise httpx.ReadTimeout("timed out", request=sent)
        status = 429 if failure == "openai.RateLimitError" else 500
        return httpx.Response(status, json={"error": {"message": "demo", "type": "demo"}})

    # api.openai.com only names the provider (llm.provider); the mock transport answers in-process.
    client = openai.OpenAI(api_key="sk-test", base_url="https://api.openai.com/v1", max_retries=0,
                           http_client=httpx.Client(transport=httpx.MockTransport(answer)))
    with using_session(plan.session_id), using_user(plan.user_id), using_metadata(plan.metadata), \
            using_tags(list(plan.tags)):
        try:
            client.chat.completions.create(**request)
        except openai.APIError as exc:
            assert failure == f"openai.{type(exc).__name__}"
        else:
            assert failure is None


def _assert_same_span(demo: ReadableSpan, real: ReadableSpan) -> None:
    mine, theirs = dict(demo.attributes or {}), dict(real.attributes or {})
    assert sorted(mine) == sorted(theirs)
    for key, value in theirs.items():
        if key in JSON_KEYS or key.endswith(".json_schema"):
            assert json.loads(str(mine[key])) == json.loads(str(value)), key
        else:
            assert mine[key] == value, key
    assert (demo.name, demo.kind, demo.parent, demo.status.status_code) == \
        (real.name, real.kind, real.parent, real.status.status_code)
    assert [e.name for e in demo.events] == [e.name for e in real.events]
    for mine_event, real_event in zip(demo.events, real.events, strict=True):
        assert sorted(mine_event.attributes or {}) == sorted(real_event.attributes or {})
        assert (mine_event.attributes or {}).get("exception.type") == (real_event.attributes or {}).get(
            "exception.type")
    if real.status.description:
        assert str(demo.status.description).split(":")[0] == real.status.description.split(":")[0]


def test_default_endpoint_follows_the_settings() -> None:
    assert default_endpoint(Settings(host="127.0.0.1", port=7123)) == "http://127.0.0.1:7123/v1/traces"
    assert default_endpoint(Settings(host="0.0.0.0", port=7124)) == "http://127.0.0.1:7124/v1/traces"
    assert default_endpoint(Settings(host="::", port=7125)) == "http://[::1]:7125/v1/traces"
    assert default_endpoint(Settings(host="localhost", port=0, otlp_http_port=4319)) == \
        "http://localhost:4319/v1/traces"


def test_demo_reads_the_port_from_the_settings_and_explains_a_wrong_path(server: ServerProcess) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    wrong = run_demo("--endpoint", f"{server.base_url}/v1/trace", "--sessions", "2", "--project", "nowhere", env=env)
    assert wrong.returncode != 0
    assert "404" in wrong.stderr and f"{server.base_url}/v1/traces" in wrong.stderr, wrong.stderr
    assert "is the server running" not in wrong.stderr

    done = run_demo("--sessions", "3", "--project", "by-port",
                    env={**env, "THREADLINE_PORT": str(server.port), "THREADLINE_HOST": "127.0.0.1"})
    assert done.returncode == 0, done.stderr + done.stdout + server.log()
    assert f"127.0.0.1:{server.port}" in done.stdout
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        names = {p["name"] for p in client.get("/v1/projects").json()["data"]}
        assert "by-port" in names and "nowhere" not in names
        assert _project(client, "by-port")["sessions"] == 3


def test_demo_without_a_server_fails_clearly() -> None:
    done = run_demo("--endpoint", f"http://127.0.0.1:{free_port()}/v1/traces", "--sessions", "2")
    assert done.returncode == 1
    assert "cannot reach" in done.stderr
