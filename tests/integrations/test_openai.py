"""OpenAI: the ``openai`` client + OpenInference's OpenAIInstrumentor against a fake endpoint.

The tool-loop rows follow the issue "Conversations as the user had them": an app that calls
``client.chat.completions.create`` once per model call, resending the whole history, with no
span of its own around a user message, still reads as one turn per user message (DESIGN §3).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageFunctionToolCall
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, Tracer

from integrations.conftest import assert_conversation
from sdk.api_client import ThreadlineApi
from support.fake_providers import Exchange, FakeProvider, ToolRequest
from threadline import using_session, using_user

MODEL = "gpt-4o-mini"

ORDERS = {1234: "shipped on 20 November", 5678: "waiting for stock"}
TOOLS: list[Any] = [{
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "Where an order is.",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "integer"}}, "required": ["order_id"]},
    },
}]
#: Five user messages; the 2nd and 3rd make the model call lookup_order.
CHAT = (
    "Hi, I need help with a delivery.",
    "Where is order 1234?",
    "Thanks. Can you also check order 5678?",
    "What is your return policy?",
    "Great, bye!",
)


def lookup_order(order_id: int) -> str:
    """The app's tool."""
    return f"Order {order_id} is {ORDERS[order_id]}."


def order_rule(question: str) -> ToolRequest | None:
    """The fake model calls lookup_order for a message that names an order number."""
    found = re.search(r"order (\d+)", question)
    return ToolRequest("lookup_order", {"order_id": int(found.group(1))}) if found else None


@pytest.fixture
def tool_fake() -> Iterator[FakeProvider]:
    with FakeProvider(tool_rule=order_rule) as provider:
        yield provider


@dataclass
class ToolRun:
    """A tool call the app ran: the model's call id, its arguments, the result, the TOOL span (if any)."""

    call_id: str
    name: str
    arguments: dict[str, Any]
    result: str
    span_id: str | None = None


@dataclass
class Answered:
    """One user message as the app handled it."""

    question: str
    answer: str
    exchanges: list[Exchange]
    tool_runs: list[ToolRun] = field(default_factory=list)
    trace_id: str | None = None  # of the app's AGENT span, when there is one


def _hex_span_id(span: Span) -> str:
    return format(span.get_span_context().span_id, "016x")


def run_chat(client: openai.OpenAI, fake: FakeProvider, questions: tuple[str, ...], tracer: Tracer | None = None,
             stream: bool = False, run_tools: bool = True) -> list[Answered]:
    """A chat app with a tool loop: the whole history is resent on every call.

    With a ``tracer`` each user message runs inside an AGENT span (plain-text ``input.value``)
    and each tool inside a TOOL span; without one only the instrumentor's LLM spans exist.
    With ``run_tools=False`` the app gives up when the model asks for a tool.
    """
    history: list[Any] = []
    answered: list[Answered] = []
    for question in questions:
        first = len(fake.exchanges)
        history.append({"role": "user", "content": question})
        runs: list[ToolRun] = []
        with _span(tracer, "support-agent", "AGENT", question) as agent:
            message = _complete(client, history, stream)
            while message["tool_calls"] and run_tools:
                history.append(message)
                for call in message["tool_calls"]:
                    arguments = json.loads(call["function"]["arguments"])
                    with _span(tracer, call["function"]["name"], "TOOL", call["function"]["arguments"]) as span:
                        result = lookup_order(**arguments)
                        if span is not None:
                            span.set_attribute("tool.name", call["function"]["name"])
                            span.set_attribute("output.value", result)
                    runs.append(ToolRun(call["id"], call["function"]["name"], arguments, result,
                                        _hex_span_id(span) if span is not None else None))
                    history.append({"role": "tool", "tool_call_id": call["id"], "content": result})
                message = _complete(client, history, stream)
            history.append(message)
            answer = message["content"] or ""
            if agent is not None:
                agent.set_attribute("output.value", answer)
        trace_id = format(agent.get_span_context().trace_id, "032x") if agent is not None else None
        answered.append(Answered(question, answer, fake.exchanges[first:], runs, trace_id))
    return answered


@contextlib.contextmanager
def _span(tracer: Tracer | None, name: str, kind: str, input_value: str) -> Iterator[Span | None]:
    if tracer is None:
        yield None
        return
    attributes = {"openinference.span.kind": kind, "input.value": input_value}
    with tracer.start_as_current_span(name, attributes=attributes) as span:
        yield span


def _complete(client: openai.OpenAI, history: list[Any], stream: bool) -> dict[str, Any]:
    """One chat-completions call; the assistant message as the app appends it to the history."""
    if not stream:
        response: ChatCompletion = client.chat.completions.create(model=MODEL, messages=history, tools=TOOLS)
        reply = response.choices[0].message
        calls = [c for c in reply.tool_calls or [] if isinstance(c, ChatCompletionMessageFunctionToolCall)]
        return {"role": "assistant", "content": reply.content,
                "tool_calls": [{"id": c.id, "type": "function",
                                "function": {"name": c.function.name, "arguments": c.function.arguments}}
                               for c in calls] or None}
    text: list[str] = []
    streamed: dict[int, dict[str, Any]] = {}
    chunks = client.chat.completions.create(model=MODEL, messages=history, tools=TOOLS, stream=True,
                                            stream_options={"include_usage": True})
    for chunk in chunks:
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            for piece in choice.delta.tool_calls or []:
                call = streamed.setdefault(piece.index, {"id": "", "type": "function",
                                                         "function": {"name": "", "arguments": ""}})
                call["id"] = piece.id or call["id"]
                if piece.function is not None:
                    call["function"]["name"] += piece.function.name or ""
                    call["function"]["arguments"] += piece.function.arguments or ""
    return {"role": "assistant", "content": "".join(text) or None,
            "tool_calls": [streamed[i] for i in sorted(streamed)] or None}


def assert_tool_loop_turn(turn: dict[str, Any], answered: Answered) -> None:
    """llm → tool → llm in time order; the tool step names the tool, its arguments and result."""
    (run,) = answered.tool_runs
    (requested,) = answered.exchanges[0].tool_calls
    steps = turn["steps"]
    assert [s["kind"] for s in steps] == ["llm", "tool", "llm"], steps
    assert [s["start_time"] for s in steps] == sorted(s["start_time"] for s in steps)
    asked, tool, answered_step = steps
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in asked["tool_calls"]] == [
        (requested.id, requested.name, json.loads(requested.arguments))]
    assert tool["name"] == run.name == requested.name
    assert json.loads(tool["arguments"]) == run.arguments == json.loads(requested.arguments)
    assert tool["result"] == run.result
    if run.span_id is not None:  # a real TOOL span: the step is that span, listed once
        assert tool["span_id"] == run.span_id
    assert answered_step["output"] == answered.answer
    assert answered_step["tool_calls"] == []
    assert [(c["name"], c["result"]) for c in turn["tool_calls"]] == [(run.name, run.result)]


def test_openai_chat_completions(
    fake: FakeProvider, instrument: Callable[[Any], None], api: ThreadlineApi, project: str
) -> None:
    instrument(OpenAIInstrumentor())
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0)
    history: list[dict[str, str]] = []
    with using_session("openai-conv"), using_user("ann"):
        for question in ("What is the capital of France?", "And of Italy?"):
            history.append({"role": "user", "content": question})
            reply = client.chat.completions.create(model=MODEL, messages=history)  # type: ignore[arg-type]
            history.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
    assert_conversation(api, project, "openai-conv", "ann", fake.exchanges)


def test_openai_streaming_and_async(
    fake: FakeProvider, instrument: Callable[[Any], None], api: ThreadlineApi, project: str
) -> None:
    instrument(OpenAIInstrumentor())
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0)
    aclient = openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0)

    with using_session("openai-stream"), using_user("bo"):
        stream = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "stream me a reply"}], stream=True,
            stream_options={"include_usage": True},
        )
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

        async def ask() -> str:
            response = await aclient.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "now asynchronously"}]
            )
            return response.choices[0].message.content or ""

        answered = asyncio.run(ask())
    assert streamed == fake.exchanges[0].answer
    assert answered == fake.exchanges[1].answer
    assert_conversation(api, project, "openai-stream", "bo", fake.exchanges)


def test_tool_loops_without_a_parent_span_are_one_turn_per_user_message(
    tool_fake: FakeProvider, instrument: Callable[[Any], None], api: ThreadlineApi, project: str
) -> None:
    """The issue's case: 5 user messages, two tool loops, only the instrumentor's LLM spans → 5 turns."""
    instrument(OpenAIInstrumentor())
    client = openai.OpenAI(base_url=tool_fake.openai_base_url, api_key="sk-fake", max_retries=0)
    with using_session("orders"), using_user("ann"):
        chat = run_chat(client, tool_fake, CHAT)
    assert [len(a.exchanges) for a in chat] == [1, 2, 2, 1, 1]  # the fake asked for the tool twice
    assert [a.answer for a in chat] == [a.exchanges[-1].answer for a in chat]

    detail = assert_conversation(api, project, "orders", "ann", [a.exchanges for a in chat], model=MODEL)
    summary = api.sessions(project)["orders"]
    assert summary["turns"] == 5
    assert summary["first_input"] == CHAT[0]
    assert summary["last_output"] == chat[-1].answer
    for turn, answered in zip(detail["turns"], chat, strict=True):
        # one trace per LLM call (no parent span), all of them in the turn, in start order
        assert turn["trace_ids"] == [c["trace_id"] for c in turn["llm_calls"]]
        assert len(set(turn["trace_ids"])) == len(answered.exchanges)
        if answered.tool_runs:
            assert_tool_loop_turn(turn, answered)
        else:
            assert [s["kind"] for s in turn["steps"]] == ["llm"]
            assert turn["steps"][0]["output"] == answered.answer
            assert turn["tool_calls"] == []


def test_parent_agent_span_keeps_one_turn_per_trace(
    tool_fake: FakeProvider, instrument: Callable[[Any], None], tracer_provider: TracerProvider,
    api: ThreadlineApi, project: str,
) -> None:
    """The agent-span pattern: an AGENT span per user message, a real TOOL span per tool run."""
    instrument(OpenAIInstrumentor())
    client = openai.OpenAI(base_url=tool_fake.openai_base_url, api_key="sk-fake", max_retries=0)
    tracer = tracer_provider.get_tracer("support-app")
    with using_session("orders-agent"), using_user("ann"):
        chat = run_chat(client, tool_fake, CHAT, tracer=tracer)
    assert [len(a.tool_runs) for a in chat] == [0, 1, 1, 0, 0]

    detail = assert_conversation(api, project, "orders-agent", "ann", [a.exchanges for a in chat], model=MODEL)
    for turn, answered in zip(detail["turns"], chat, strict=True):
        assert turn["trace_ids"] == [turn["trace_id"]] == [answered.trace_id]
        if answered.tool_runs:
            assert_tool_loop_turn(turn, answered)
        else:
            assert [s["kind"] for s in turn["steps"]] == ["llm"]


def test_streamed_tool_loop_is_one_turn(
    tool_fake: FakeProvider, instrument: Callable[[Any], None], api: ThreadlineApi, project: str
) -> None:
    """The same tool loop with streamed responses (tool calls arrive in pieces)."""
    instrument(OpenAIInstrumentor())
    client = openai.OpenAI(base_url=tool_fake.openai_base_url, api_key="sk-fake", max_retries=0)
    with using_session("orders-stream"), using_user("bo"):
        chat = run_chat(client, tool_fake, CHAT[1:3], stream=True)
    assert [len(a.tool_runs) for a in chat] == [1, 1]
    assert all(e.stream for a in chat for e in a.exchanges)

    detail = assert_conversation(api, project, "orders-stream", "bo", [a.exchanges for a in chat], model=MODEL)
    for turn, answered in zip(detail["turns"], chat, strict=True):
        assert len(turn["trace_ids"]) == 2
        assert_tool_loop_turn(turn, answered)


def test_a_repeated_user_message_is_a_new_turn(
    instrument: Callable[[Any], None], api: ThreadlineApi, project: str
) -> None:
    """"yes" twice, after different assistant replies, is two turns (each a tool loop)."""
    to_check = [1234, 5678]

    def yes_rule(question: str) -> ToolRequest | None:
        return ToolRequest("lookup_order", {"order_id": to_check.pop(0)}) if question == "yes" else None

    def offer(question: str, results: list[str]) -> str:
        return f"{results[0]} Shall I check your other order too?"

    with FakeProvider(reply=lambda q: "Shall I check your order?", tool_rule=yes_rule, tool_reply=offer) as fake:
        instrument(OpenAIInstrumentor())
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0)
        with using_session("yes-yes"), using_user("ann"):
            chat = run_chat(client, fake, ("Can you help me with my orders?", "yes", "yes"))
    assert [len(a.exchanges) for a in chat] == [1, 2, 2]

    detail = assert_conversation(api, project, "yes-yes", "ann", [a.exchanges for a in chat], model=MODEL)
    turns = detail["turns"]
    assert [t["input"] for t in turns] == ["Can you help me with my orders?", "yes", "yes"]
    assert not set(turns[1]["trace_ids"]) & set(turns[2]["trace_ids"])
    for turn, answered in zip(turns[1:], chat[1:], strict=True):
        assert_tool_loop_turn(turn, answered)


def test_a_turn_that_ends_in_a_tool_call_says_so_in_words(
    tool_fake: FakeProvider, instrument: Callable[[Any], None], api: ThreadlineApi, project: str
) -> None:
    """The app gives up after the model asks for a tool: the turn's output names the call, never JSON."""
    instrument(OpenAIInstrumentor())
    client = openai.OpenAI(base_url=tool_fake.openai_base_url, api_key="sk-fake", max_retries=0)
    with using_session("gave-up"), using_user("ann"):
        chat = run_chat(client, tool_fake, ("Where is order 1234?",), run_tools=False)
    (requested,) = chat[0].exchanges[0].tool_calls

    (turn,) = api.session(project, "gave-up")["turns"]
    assert turn["input"] == "Where is order 1234?"
    output = turn["output"] or ""
    assert requested.name in output and "1234" in output, output
    assert not output.lstrip().startswith(("{", "[")), output
    asked, tool = turn["steps"]  # the call is listed, without a result: the app never ran it
    assert (asked["kind"], tool["kind"]) == ("llm", "tool")
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in asked["tool_calls"]] == [
        (requested.id, requested.name, json.loads(requested.arguments))]
    assert (tool["name"], json.loads(tool["arguments"]), tool["result"]) == (
        requested.name, json.loads(requested.arguments), None)
