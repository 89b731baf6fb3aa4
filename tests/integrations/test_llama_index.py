"""LlamaIndex: ``SimpleChatEngine`` over ``llama_index.llms.openai.OpenAI`` + LlamaIndexInstrumentor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.llms.openai import OpenAI
from openinference.instrumentation.llama_index import LlamaIndexInstrumentor

from integrations.conftest import assert_conversation
from sdk.api_client import ThreadlineApi
from support.fake_providers import FakeProvider
from threadline import using_session, using_user

MODEL = "gpt-4o-mini"

# openinference-instrumentation-llama-index 4.6.1 still calls pydantic's deprecated .json()
pytestmark = pytest.mark.filterwarnings("ignore:The `json` method is deprecated")


def test_llama_index_simple_chat_engine(
    fake: FakeProvider, instrument: Callable[[Any], None], api: ThreadlineApi, project: str
) -> None:
    instrument(LlamaIndexInstrumentor())
    llm = OpenAI(model=MODEL, api_base=fake.openai_base_url, api_key="sk-fake", max_retries=0)
    engine = SimpleChatEngine.from_defaults(llm=llm)
    with using_session("li-conv"), using_user("lin"):
        replies = [str(engine.chat(q)) for q in ("Tell me about llamas.", "And alpacas?")]
    assert replies == [e.answer for e in fake.exchanges]
    assert_conversation(api, project, "li-conv", "lin", fake.exchanges, model=MODEL)
