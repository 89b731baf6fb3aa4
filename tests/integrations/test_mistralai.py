"""MistralAI: the ``mistralai`` client + OpenInference's MistralAIInstrumentor against a fake endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mistralai.client import Mistral
from openinference.instrumentation.mistralai import MistralAIInstrumentor

from integrations.conftest import assert_conversation
from sdk.api_client import ThreadlineApi
from support.fake_providers import FakeProvider
from threadline import using_session, using_user

MODEL = "mistral-small-latest"


def test_mistral_chat_complete(
    fake: FakeProvider, instrument: Callable[[Any], None], api: ThreadlineApi, project: str
) -> None:
    instrument(MistralAIInstrumentor())
    client = Mistral(api_key="fake", server_url=fake.base_url)
    messages: list[Any] = []
    with using_session("mistral-conv"), using_user("max"):
        for question in ("Bonjour, qui es-tu ?", "Et en anglais ?"):
            messages.append({"role": "user", "content": question})
            response = client.chat.complete(model=MODEL, messages=messages)
            message = response.choices[0].message
            assert message is not None
            messages.append({"role": "assistant", "content": message.content})
    assert [m["content"] for m in messages[1::2]] == [e.answer for e in fake.exchanges]
    assert_conversation(api, project, "mistral-conv", "max", fake.exchanges, model=MODEL)
