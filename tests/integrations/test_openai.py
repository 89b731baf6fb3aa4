"""OpenAI: the ``openai`` client + OpenInference's OpenAIInstrumentor against a fake endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import openai
from openinference.instrumentation.openai import OpenAIInstrumentor

from integrations.conftest import assert_conversation
from sdk.api_client import ThreadlineApi
from support.fake_providers import FakeProvider
from threadline import using_session, using_user

MODEL = "gpt-4o-mini"


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
