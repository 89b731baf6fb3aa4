"""LangChain: ``langchain_openai.ChatOpenAI`` + OpenInference's LangChainInstrumentor against a fake endpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI
from openinference.instrumentation.langchain import LangChainInstrumentor

from integrations.conftest import assert_conversation
from sdk.api_client import ThreadlineApi
from support.fake_providers import FakeProvider
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
