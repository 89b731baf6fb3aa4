"""A long chat keeps every turn: the whole history resent on each call never evicts the session.

The real ``openai`` client, OpenInference's OpenAIInstrumentor and ``threadline.register()``
against the fake provider and a real ``threadline serve``. The instrumentor adds the message
list (one role and one content attribute per message) after the context attributes, so under
OpenTelemetry's default limit of 128 attributes per span ``session.id`` and ``user.id`` were
evicted from the 32nd call on and the rest of the conversation vanished from its session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import openai
from openinference.instrumentation.openai import OpenAIInstrumentor

from integrations.conftest import assert_conversation
from sdk.api_client import ThreadlineApi
from support.fake_providers import FakeProvider
from threadline import using_session, using_user

MODEL = "gpt-4o-mini"
TURNS = 100


def test_a_100_turn_chat_keeps_100_turns(
    fake: FakeProvider, instrument: Callable[[Any], None], api: ThreadlineApi, project: str
) -> None:
    instrument(OpenAIInstrumentor())
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0)
    history: list[dict[str, str]] = []
    with using_session("long-chat"), using_user("ann"):
        for turn in range(TURNS):
            history.append({"role": "user", "content": f"Question {turn}: what comes after {turn}?"})
            reply = client.chat.completions.create(model=MODEL, messages=history)  # type: ignore[arg-type]
            history.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
    assert len(history) == 2 * TURNS  # the last call sent 199 messages: about 400 attributes

    assert_conversation(api, project, "long-chat", "ann", fake.exchanges)
    traces = api.get(f"/v1/projects/{quote(project, safe='')}/traces", limit=1000)["data"]
    assert len(traces) == TURNS
    assert {t["session_id"] for t in traces} == {"long-chat"}
    assert {t["user_id"] for t in traces} == {"ann"}
    assert api.user(project, "ann")["turns"] == TURNS
