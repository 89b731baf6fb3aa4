"""LlamaIndex: chat engines over ``llama_index.llms.openai.OpenAI`` + LlamaIndexInstrumentor.

A chat engine's ``chat(message)`` is one trace whose root span has the user's message as
plain-text input (the agent-span pattern): one turn per user message, whatever the engine does
inside (the whole history resent to the model, a retrieval step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.chat_engine import ContextChatEngine, SimpleChatEngine
from llama_index.core.embeddings import MockEmbedding
from llama_index.llms.openai import OpenAI
from openinference.instrumentation.llama_index import LlamaIndexInstrumentor

from integrations.conftest import assert_conversation
from sdk.api_client import ThreadlineApi
from support.fake_providers import FakeProvider
from threadline import using_session, using_user

MODEL = "gpt-4o-mini"
QUESTIONS = ("Tell me about llamas.", "And alpacas?", "Which one is bigger?")

# openinference-instrumentation-llama-index 4.6.1 still calls pydantic's deprecated .json()
pytestmark = pytest.mark.filterwarnings("ignore:The `json` method is deprecated")


def test_llama_index_simple_chat_engine(
    fake: FakeProvider, instrument: Callable[[Any], None], api: ThreadlineApi, project: str
) -> None:
    instrument(LlamaIndexInstrumentor())
    llm = OpenAI(model=MODEL, api_base=fake.openai_base_url, api_key="sk-fake", max_retries=0)
    engine = SimpleChatEngine.from_defaults(llm=llm)
    with using_session("li-conv"), using_user("lin"):
        replies = [str(engine.chat(q)) for q in QUESTIONS]
    assert [e.question for e in fake.exchanges] == list(QUESTIONS)
    assert replies == [e.answer for e in fake.exchanges]
    detail = assert_conversation(api, project, "li-conv", "lin", fake.exchanges, model=MODEL)
    for turn, reply in zip(detail["turns"], replies, strict=True):
        assert turn["output"] == reply
        assert turn["trace_ids"] == [turn["trace_id"]]
        assert [(s["kind"], s["output"]) for s in turn["steps"]] == [("llm", reply)]
    assert api.sessions(project)["li-conv"]["last_output"] == replies[-1]


def test_llama_index_context_chat_engine(
    fake: FakeProvider, instrument: Callable[[Any], None], api: ThreadlineApi, project: str
) -> None:
    """A retrieving engine: retrieval, a response synthesizer, then the model, inside each chat() trace."""
    instrument(LlamaIndexInstrumentor())
    llm = OpenAI(model=MODEL, api_base=fake.openai_base_url, api_key="sk-fake", max_retries=0)
    index = VectorStoreIndex.from_documents(
        [Document(text="Llamas are larger than alpacas."), Document(text="Alpacas are bred for their fibre.")],
        embed_model=MockEmbedding(embed_dim=8),
    )
    engine = ContextChatEngine.from_defaults(retriever=index.as_retriever(), llm=llm)
    with using_session("li-context"), using_user("lin"):
        replies = [str(engine.chat(q)) for q in QUESTIONS]
    assert replies == [e.answer for e in fake.exchanges]

    summary = api.sessions(project)["li-context"]
    assert summary["turns"] == len(QUESTIONS)
    assert summary["tokens"]["total"] == sum(e.total_tokens for e in fake.exchanges)
    assert summary["last_output"] == replies[-1]
    turns = api.session(project, "li-context")["turns"]
    assert [t["input"] for t in turns] == list(QUESTIONS)
    assert [t["output"] for t in turns] == replies
    assert [t["tokens"]["total"] for t in turns] == [e.total_tokens for e in fake.exchanges]
    for turn, reply in zip(turns, replies, strict=True):
        assert turn["trace_ids"] == [turn["trace_id"]]
        assert turn["status"] == "ok"
        # the instrumentor reports the synthesizer's predict() and the chat call inside it as two
        # LLM spans (only the inner one has tokens); the last step is the model's reply
        assert {s["kind"] for s in turn["steps"]} == {"llm"}
        assert turn["steps"][-1]["output"] == reply
