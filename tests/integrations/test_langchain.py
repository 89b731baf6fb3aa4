"""LangChain: ``langchain_openai.ChatOpenAI`` + OpenInference's LangChainInstrumentor against a fake endpoint."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from openinference.instrumentation.langchain import LangChainInstrumentor

from integrations.conftest import assert_conversation
from sdk.api_client import ThreadlineApi
from support.fake_providers import FakeProvider, ToolRequest
from threadline import using_session, using_tags, using_user

MODEL = "gpt-4o-mini"

# openinference-instrumentation-langchain 0.1.80 calls message.text() (deprecated in langchain-core 1.x)
pytestmark = pytest.mark.filterwarnings("ignore:Calling .text\\(\\) as a method is deprecated")


def chat_model(fake: FakeProvider) -> ChatOpenAI:
    return ChatOpenAI(model=MODEL, base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0)  # type: ignore[arg-type]


def test_langchain_chat_model_with_using_session(
    fake: FakeProvider, instrument: Callable[[Any], None], api: ThreadlineApi, project: str
) -> None:
    instrument(LangChainInstrumentor())
    llm = chat_model(fake)
    history: list[BaseMessage] = []
    with using_session("lc-conv"), using_user("lee"), using_tags(["langchain"]):
        for question in ("Name a primary colour.", "Name another one."):
            history.append(HumanMessage(question))
            history.append(AIMessage(str(llm.invoke(history).content)))
    assert [m.content for m in history[1::2]] == [e.answer for e in fake.exchanges]
    assert_conversation(api, project, "lc-conv", "lee", fake.exchanges, model=MODEL)
    spans = api.spans(project, session_id="lc-conv")
    assert spans and all(s["attributes"].get("tag.tags") == ["langchain"] for s in spans)


@pytest.mark.parametrize("key", ["thread_id", "session_id", "conversation_id"])
def test_langchain_metadata_names_the_session(
    key: str, fake: FakeProvider, instrument: Callable[[Any], None], api: ThreadlineApi, project: str
) -> None:
    """No using_session: the conversation id only travels in LangChain's run metadata."""
    instrument(LangChainInstrumentor())
    chain = ChatPromptTemplate.from_messages([("user", "{question}")]) | chat_model(fake) | StrOutputParser()
    session_id = f"lc-{key}-1"
    config: Any = {"metadata": {key: session_id, "user_id": "meta-user"}}
    answers = [chain.invoke({"question": q}, config=config) for q in ("first question", "second question")]
    other = chain.invoke({"question": "another thread"}, config={"metadata": {key: "lc-other"}})

    assert [*answers, other] == [e.answer for e in fake.exchanges]
    sessions = api.sessions(project)
    assert set(sessions) == {session_id, "lc-other"}
    summary = sessions[session_id]
    exchanges = fake.exchanges[:2]
    assert summary["turns"] == 2
    assert summary["user_ids"] == ["meta-user"]
    assert summary["tokens"]["total"] == sum(e.total_tokens for e in exchanges)
    turns = api.session(project, session_id)["turns"]
    for turn, exchange in zip(turns, exchanges, strict=True):
        assert exchange.question in turn["input"]  # the chain's input: {"question": ...}
        assert turn["output"] == exchange.answer
        assert [c["model"] for c in turn["llm_calls"]] == [MODEL]
        assert turn["tokens"]["total"] == exchange.total_tokens
    spans = api.spans(project, session_id=session_id)
    assert any(json.loads(s["attributes"].get("metadata") or "{}").get(key) == session_id for s in spans)


ORDERS = {1234: "shipped on 20 November"}


@tool
def lookup_order(order_id: int) -> str:
    """Where an order is."""
    return f"Order {order_id} is {ORDERS[order_id]}."


def order_rule(question: str) -> ToolRequest | None:
    """The fake model calls lookup_order for a message that names an order number."""
    found = re.search(r"order (\d+)", question)
    return ToolRequest("lookup_order", {"order_id": int(found.group(1))}) if found else None


@pytest.mark.parametrize("tool_in_thread", [True, False], ids=["tool-run-in-thread", "tool-run-outside"])
def test_langchain_tool_loop_is_one_turn_per_user_message(
    tool_in_thread: bool, instrument: Callable[[Any], None], api: ThreadlineApi, project: str
) -> None:
    """bind_tools + a hand-written tool loop (invoke → ToolMessage → invoke), the thread in run metadata.

    The tool runs through LangChain (a TOOL trace of its own), with the run's config (so that
    trace is in the thread too) or without it (then the call is known from the messages only).
    """
    instrument(LangChainInstrumentor())
    questions = ("Hi, I need help with a delivery.", "Where is order 1234?", "Thanks, bye!")
    config: Any = {"metadata": {"thread_id": "lc-orders"}}
    history: list[BaseMessage] = []
    per_question: list[tuple[int, int]] = []  # the fake's exchanges of each user message
    tool_messages: list[ToolMessage] = []
    with FakeProvider(tool_rule=order_rule) as fake:
        llm = chat_model(fake).bind_tools([lookup_order])
        for question in questions:
            first = len(fake.exchanges)
            history.append(HumanMessage(question))
            reply = llm.invoke(history, config=config)
            history.append(reply)
            while isinstance(reply, AIMessage) and reply.tool_calls:
                for call in reply.tool_calls:
                    result = lookup_order.invoke(call, config=config if tool_in_thread else None)
                    assert isinstance(result, ToolMessage)
                    tool_messages.append(result)
                    history.append(result)
                reply = llm.invoke(history, config=config)
                history.append(reply)
            per_question.append((first, len(fake.exchanges)))
        exchanges = [fake.exchanges[a:b] for a, b in per_question]
    assert [len(e) for e in exchanges] == [1, 2, 1]
    assert [m.content for m in history if isinstance(m, AIMessage) and m.content] == [e[-1].answer for e in exchanges]

    detail = assert_conversation(api, project, "lc-orders", None, exchanges, model=MODEL)
    turns = detail["turns"]
    assert [len(t["trace_ids"]) for t in turns] == [1, 3 if tool_in_thread else 2, 1]
    assert [[s["kind"] for s in t["steps"]] for t in turns] == [["llm"], ["llm", "tool", "llm"], ["llm"]]
    (requested,) = exchanges[1][0].tool_calls
    (tool_message,) = tool_messages
    asked, ran, answered = turns[1]["steps"]
    assert [(c["name"], json.loads(c["arguments"])) for c in asked["tool_calls"]] == [
        (requested.name, json.loads(requested.arguments))]
    assert ran["name"] == "lookup_order"
    assert json.loads(ran["arguments"]) == json.loads(requested.arguments)
    assert ran["result"] == tool_message.content
    assert answered["output"] == turns[1]["output"] == exchanges[1][-1].answer
    assert [(c["name"], c["result"]) for c in turns[1]["tool_calls"]] == [("lookup_order", tool_message.content)]
