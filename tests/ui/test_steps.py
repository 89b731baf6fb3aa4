"""A turn's steps: LLM calls and tool calls in the order they ran, with markdown, over its traces.

Pure tests render the templates from ``Turn``/``Step`` objects built here; browser tests ingest
realistic tool loops over OTLP (one trace with an agent span, and one LLM call per trace).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from opentelemetry import trace as otel
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode
from playwright.sync_api import Page, expect

from threadline.server.model import RequestedTool, Span, Step, Tokens, Turn
from threadline.server.web.ui.fragments import step_views
from threadline.server.web.ui.render import render

from .conftest import UiServer
from .test_markdown import assert_safe_html, text_of
from .traffic import now_ns

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PROJECT = "steps lab"  # a space: every link must percent-encode it
WEATHER_ARGS = '{"city": "Paris"}'
WEATHER_RESULT = '{"sky": "sunny", "temp_c": 21}'
ANSWER = ("It is **sunny** in Paris.\n\n```python\nprint('21 °C')\n```\n\n"
          "<script>alert('md-step')</script> [click](javascript:alert('md-link'))")


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def llm_step(span_id: str, ms: int, trace_id: str = "t1", **extra: Any) -> Step:
    values: dict[str, Any] = dict(kind="llm", span_id=span_id, trace_id=trace_id, start_time=at(ms),
                                  name="ChatCompletion", latency_ms=100.0, model="gpt-4o-mini",
                                  tokens=Tokens(10, 5, 15), cost_usd=0.0002)
    return Step(**{**values, **extra})


def tool_step(span_id: str, ms: int, trace_id: str = "t1", **extra: Any) -> Step:
    values: dict[str, Any] = dict(kind="tool", span_id=span_id, trace_id=trace_id, start_time=at(ms),
                                  name="get_weather", latency_ms=20.0, arguments=WEATHER_ARGS, result=WEATHER_RESULT)
    return Step(**{**values, **extra})


def tool_loop_steps() -> list[Step]:
    return [
        llm_step("a1", 0, tool_calls=[RequestedTool("call_1", "get_weather", WEATHER_ARGS)]),
        tool_step("b2", 150, trace_id="t2"),
        llm_step("c3", 200, trace_id="t3", output=ANSWER),
    ]


def fragment(steps: list[Step], spans: list[Span] | None = None, trace_ids: list[str] | None = None) -> str:
    return render("fragments/turn.html", project=PROJECT, trace_ids=trace_ids or ["t1"],
                  steps=step_views(steps, spans or []))


def step_order(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<li class="call step [^"]*" data-step="(llm|tool)" data-span="([^"]*)"', html)


def test_steps_are_listed_in_the_order_they_ran_not_by_kind() -> None:
    steps = tool_loop_steps()
    for given in (steps, list(reversed(steps)), [steps[2], steps[0], steps[1]]):
        html = fragment(given)
        assert step_order(html) == [("llm", "a1"), ("tool", "b2"), ("llm", "c3")]
        assert re.findall(r'<span class="step-no"[^>]*>(\d+)</span>', html) == ["1", "2", "3"]
        assert "+150 ms" in html and "+200 ms" in html


def test_an_llm_step_shows_model_tokens_cost_its_words_and_the_tools_it_requested() -> None:
    html = fragment(tool_loop_steps())
    first, _, last = re.split(r'(?=<li class="call step)', html)[1:]
    assert "gpt-4o-mini" in first and "10 / 5 / 15 tok" in first and "$0.0002" in first
    assert "Requested 1 tool call" in first and "get_weather" in first and "call_1" in first
    assert '<pre class="json"><code class="language-json">' in first and '"city": "Paris"' in text_of(first)
    assert "<strong>sunny</strong>" in last and '<pre><code class="language-python">' in last
    words = re.search(r'<div class="step-output text md">(.*?)</div>\s*</li>', last, re.S)
    assert words is not None
    assert "&lt;script&gt;" in words.group(1) and "<script" not in words.group(1)
    assert_safe_html(words.group(1))  # the javascript: link stayed text


def test_a_tool_step_shows_name_arguments_result_and_an_error() -> None:
    steps = [tool_step("b2", 0, status="error", result="**timeout** after 30 s")]
    span = Span(trace_id="t1", span_id="b2", parent_span_id=None, name="tool get_weather", kind="TOOL",
                start_time=at(0), end_time=at(20), latency_ms=20.0, status="ERROR",
                status_message="upstream <b>timeout</b>", session_id=None, user_id=None, input=None, output=None,
                attributes={}, events=[])
    html = fragment(steps, [span])
    assert '<li class="call step tool failed"' in html and '<span class="badge err"' in html
    assert "<h4>Arguments</h4>" in html and '"city": "Paris"' in text_of(html)
    assert "<strong>timeout</strong> after 30 s" in html
    assert '<p class="step-error"><strong>Error</strong> <span class="error-text">upstream &lt;b&gt;timeout&lt;/b&gt;' \
        in html


def test_span_links_go_to_each_steps_own_trace_and_several_traces_are_linked() -> None:
    html = fragment(tool_loop_steps(), trace_ids=["t1", "t2", "t3"])
    project = quote(PROJECT, safe="")
    for trace_id, span_id in (("t1", "a1"), ("t2", "b2"), ("t3", "c3")):
        assert f'href="/projects/{project}/traces/{trace_id}?span={span_id}"' in html
    assert "This turn spans 3 traces" in html
    assert re.findall(r'class="trace-link mono" href="([^"]*)"', html) == \
        [f"/projects/{project}/traces/{t}" for t in ("t1", "t2", "t3")]
    single = fragment(tool_loop_steps(), trace_ids=["t1"])
    assert "This turn spans" not in single


def test_no_steps_says_so_with_a_link_to_the_trace() -> None:
    html = render("fragments/turn.html", project=PROJECT, trace_ids=["ab/c"], steps=[], in_turn=True)
    assert "no LLM or tool calls" in html and f'href="/projects/{quote(PROJECT, safe="")}/traces/ab%2Fc"' in html
    alone = render("fragments/turn.html", project=PROJECT, trace_ids=["ab/c"], steps=[], in_turn=False)
    assert "not part of a turn" in alone and "ab%2Fc" in alone


def turn(**changes: Any) -> Turn:
    values: dict[str, Any] = dict(
        trace_id="t1", index=4, start_time=T0, end_time=at(400), latency_ms=400.0, user_id="ann",
        input="Weather in **Paris**?\n- today\n- tomorrow", output=ANSWER, status="ok", error=None,
        tokens=Tokens(20, 10, 30), cost_usd=0.0004, llm_calls=[], tool_calls=[], annotations={},
        trace_ids=["t1", "t2", "t3"], steps=tool_loop_steps(),
    )
    values.update(changes)
    return Turn(**values)


def test_chat_bubbles_render_markdown_and_the_turn_links_its_traces() -> None:
    html = render("_turn.html", project=PROJECT, turn=turn())
    user, assistant = re.findall(r'<div class="text md">(.*?)</div>\n', html, re.S)
    assert "<strong>Paris</strong>" in user and "<li>today</li>" in user
    assert "<strong>sunny</strong>" in assistant and '<pre><code class="language-python">' in assistant
    assert "&lt;script&gt;" in assistant
    assert_safe_html(user)
    assert_safe_html(assistant)
    assert "3 traces:" in html and html.count('class="trace-link mono"') == 3
    assert "2 LLM calls · 1 tool call, in the order they ran" in html
    assert f'data-fragment="/projects/{quote(PROJECT, safe="")}/fragments/turn/t1?index=4"' in html


def test_a_turn_without_steps_counts_its_calls_and_links_its_one_trace() -> None:
    html = render("_turn.html", project=PROJECT, turn=turn(steps=[], trace_ids=[], llm_calls=[], tool_calls=[]))
    assert "0 LLM calls · 0 tool calls</summary>" in html
    assert f'<a class="quiet" href="/projects/{quote(PROJECT, safe="")}/traces/t1">Trace →</a>' in html


def span(span_id: str, kind: str, ms: int, attributes: dict[str, Any], **extra: Any) -> Span:
    values: dict[str, Any] = dict(
        trace_id="t1", span_id=span_id, parent_span_id="root", name=f"{kind.lower()} span", kind=kind,
        start_time=at(ms), end_time=at(ms + 50), latency_ms=50.0, status="OK", status_message=None,
        session_id="s", user_id=None, input=None, output=None, attributes=attributes, events=[],
    )
    values.update(extra)
    return Span(**values)


def test_step_views_take_prompt_and_error_from_their_own_spans() -> None:
    llm = span("l1", "LLM", 0, {"llm.input_messages.0.message.role": "user",
                                "llm.input_messages.0.message.content": "weather?"},
               status="ERROR", status_message="rate limited")
    tool = span("x1", "TOOL", 60, {"tool.name": "get_weather"}, trace_id="t2")
    other_trace = span("l1", "LLM", 0, {"llm.input_messages.0.message.content": "not this one"}, trace_id="t9")
    views = step_views([tool_step("x1", 60, trace_id="t2"), llm_step("l1", 0, status="error")],
                       [other_trace, tool, llm])
    assert [v.step.span_id for v in views] == ["l1", "x1"] and [v.number for v in views] == [1, 2]
    assert [m.content for m in views[0].prompt] == ["weather?"] and views[1].prompt == []
    assert views[0].status_message == "rate limited" and views[0].failed and not views[1].failed
    assert views[1].offset_ms == 60.0


def test_a_tool_step_without_a_tool_span_takes_nothing_from_its_llm_span() -> None:
    llm = span("l1", "LLM", 0, {"llm.input_messages.0.message.role": "user",
                                "llm.input_messages.0.message.content": "hi"}, status_message="llm note")
    requested = tool_step("l1", 10)  # a tool call recovered from messages carries the LLM span's id
    views = step_views([requested], [llm])
    assert views[0].prompt == [] and views[0].status_message is None


# --- in the browser, from spans sent over OTLP --------------------------------------------------------


@dataclass
class Loop:
    session_id: str
    trace_ids: list[str]


def _messages(prefix: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, message in enumerate(messages):
        for key, value in message.items():
            if key == "tool_calls":
                for j, (call_id, name, arguments) in enumerate(value):
                    base = f"{prefix}.{i}.message.tool_calls.{j}.tool_call"
                    out.update({f"{base}.id": call_id, f"{base}.function.name": name,
                                f"{base}.function.arguments": arguments})
            else:
                out[f"{prefix}.{i}.message.{key}"] = value
    return out


def send_tool_loop(endpoint: str, session_id: str, question: str, answer: str, *, one_trace: bool) -> Loop:
    """LLM call (requests get_weather) → get_weather → LLM call (answers), as an app sends it:
    under one AGENT span, or (``one_trace=False``) one trace per LLM call, the tool call known
    only from the messages (OpenAI instrumentation without an agent span)."""
    provider = TracerProvider(resource=Resource.create({"openinference.project.name": PROJECT}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), schedule_delay_millis=100))
    tracer = provider.get_tracer("threadline-ui-steps")
    start = now_ns() - 60 * 1_000_000_000
    ms = 1_000_000
    common = {"session.id": session_id, "user.id": "ann"}
    history = [{"role": "system", "content": "You are a weather bot."}, {"role": "user", "content": question}]
    request = {"role": "assistant", "tool_calls": [("call_1", "get_weather", WEATHER_ARGS)]}
    first_llm = {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.token_count.prompt": 30,
                 "llm.token_count.completion": 8, **_messages("llm.input_messages", history),
                 **_messages("llm.output_messages", [request])}
    second_llm = {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.token_count.prompt": 60,
                  "llm.token_count.completion": 25,
                  **_messages("llm.input_messages", [*history, request, {"role": "tool", "content": WEATHER_RESULT,
                                                                         "tool_call_id": "call_1"}]),
                  **_messages("llm.output_messages", [{"role": "assistant", "content": answer}])}
    roots = []
    if one_trace:
        root = tracer.start_span("weather agent", start_time=start, attributes={
            "openinference.span.kind": "AGENT", **common, "input.value": question, "output.value": answer})
        ctx = otel.set_span_in_context(root)
        tracer.start_span("ChatCompletion", context=ctx, start_time=start + ms, attributes=first_llm) \
            .end(end_time=start + 300 * ms)
        tool = tracer.start_span("get_weather", context=ctx, start_time=start + 310 * ms, attributes={
            "openinference.span.kind": "TOOL", "tool.name": "get_weather", "input.value": WEATHER_ARGS,
            "output.value": WEATHER_RESULT})
        tool.set_status(Status(StatusCode.OK))
        tool.end(end_time=start + 400 * ms)
        tracer.start_span("ChatCompletion", context=ctx, start_time=start + 410 * ms, attributes=second_llm) \
            .end(end_time=start + 800 * ms)
        root.end(end_time=start + 810 * ms)
        roots.append(root)
    else:
        # The second call's span is sent first: the order of arrival must not matter.
        second = tracer.start_span("ChatCompletion", start_time=start + 410 * ms, attributes={**common, **second_llm})
        second.end(end_time=start + 800 * ms)
        first = tracer.start_span("ChatCompletion", start_time=start, attributes={**common, **first_llm})
        first.end(end_time=start + 300 * ms)
        roots.extend([first, second])
    provider.force_flush()
    provider.shutdown()
    return Loop(session_id, [format(r.get_span_context().trace_id, "032x") for r in roots])


def open_turn(page: Page, ui: UiServer, session_id: str) -> Any:
    page.goto(ui.url(f"/projects/{quote(PROJECT, safe='')}/sessions/{quote(session_id, safe='')}"))
    turn = page.locator("#turns > li").first
    turn.locator("details.calls summary").click()
    expect(turn.locator(".steps > li")).not_to_have_count(0)
    return turn


def assert_step_order(turn: Any, expected: list[str]) -> None:
    steps = turn.locator(".steps > li")
    expect(steps).to_have_count(len(expected))
    assert steps.evaluate_all("els => els.map(e => e.dataset.step)") == expected


@pytest.mark.browser
def test_tool_loop_in_one_trace_shows_markdown_and_steps_in_order(page: Page, ui: UiServer) -> None:
    loop = send_tool_loop(ui.endpoint, "loop-one-trace", "What is the **weather** in Paris?", ANSWER, one_trace=True)
    turn = open_turn(page, ui, loop.session_id)
    expect(turn.locator(".bubble.user .text strong")).to_have_text("weather")
    answer = turn.locator(".bubble.assistant .text")
    expect(answer.locator("strong")).to_have_text("sunny")
    expect(answer.locator("pre > code.language-python")).to_have_text("print('21 °C')")
    expect(answer).to_contain_text("<script>alert('md-step')</script>")  # shown, as text
    expect(answer).to_contain_text("[click](javascript:alert('md-link'))")
    assert answer.locator("a").count() == 0 and page.locator("script:not([src])").count() == 0
    assert_step_order(turn, ["llm", "tool", "llm"])
    steps = turn.locator(".steps > li")
    expect(steps.nth(0).locator(".requested-tools")).to_contain_text("get_weather")
    expect(steps.nth(0).locator(".requested-tools pre code.language-json")).to_contain_text('"city": "Paris"')
    expect(steps.nth(1).locator("header")).to_contain_text("get_weather")
    expect(steps.nth(1).locator(".io pre code.language-json").last).to_contain_text('"sky": "sunny"')
    expect(steps.nth(2).locator(".step-output strong")).to_have_text("sunny")
    expect(steps.nth(2).locator("details.prompt .message.role-tool")).to_contain_text("sunny")
    for i in range(3):
        href = steps.nth(i).get_by_role("link", name="Span →").get_attribute("href") or ""
        assert href.startswith(f"/projects/{quote(PROJECT, safe='')}/traces/{loop.trace_ids[0]}?span=")


@pytest.mark.browser
def test_tool_loop_over_two_traces_is_one_turn_with_its_steps_in_order(page: Page, ui: UiServer) -> None:
    loop = send_tool_loop(ui.endpoint, "loop-two-traces", "Weather in Paris?", ANSWER, one_trace=False)
    page.goto(ui.url(f"/projects/{quote(PROJECT, safe='')}/sessions/{loop.session_id}"))
    expect(page.locator("#turns > li")).to_have_count(1)
    turn = open_turn(page, ui, loop.session_id)
    expect(turn.locator(".turn-head .trace-link")).to_have_count(2)
    assert_step_order(turn, ["llm", "tool", "llm"])
    steps = turn.locator(".steps > li")
    expect(steps.nth(1).locator("header")).to_contain_text("get_weather")
    expect(steps.nth(1)).to_contain_text("sunny")
    expect(steps.nth(2).locator(".step-output pre > code.language-python")).to_be_visible()
    expect(turn.locator(".bubble.assistant .text strong")).to_have_text("sunny")
