"""AWS Bedrock: ``boto3`` ``bedrock-runtime`` ``invoke_model`` (Anthropic Claude body) + BedrockInstrumentor."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
from openinference.instrumentation.bedrock import BedrockInstrumentor

from integrations.conftest import assert_conversation
from sdk.api_client import ThreadlineApi
from support.fake_providers import FakeProvider
from threadline import using_session, using_user

MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"


def test_bedrock_invoke_model_claude(
    fake: FakeProvider, instrument: Callable[[Any], None], api: ThreadlineApi, project: str
) -> None:
    instrument(BedrockInstrumentor())  # before the client is created: it wraps the client factory
    client = boto3.session.Session().client("bedrock-runtime", region_name="us-east-1", endpoint_url=fake.base_url)
    messages: list[dict[str, Any]] = []
    with using_session("bedrock-conv"), using_user("bea"):
        for question in ("Summarise the plot of Hamlet.", "In one word?"):
            messages.append({"role": "user", "content": [{"type": "text", "text": question}]})
            response = client.invoke_model(
                modelId=MODEL_ID,
                body=json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 200,
                                 "system": "You are terse.", "messages": messages}),
                contentType="application/json", accept="application/json",
            )
            answer = json.loads(response["body"].read())["content"][0]["text"]
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    assert [m["content"][0]["text"] for m in messages[1::2]] == [e.answer for e in fake.exchanges]
    assert [e.model for e in fake.exchanges] == [MODEL_ID, MODEL_ID]
    assert_conversation(api, project, "bedrock-conv", "bea", fake.exchanges, model=MODEL_ID)


def test_bedrock_converse(
    fake: FakeProvider, instrument: Callable[[Any], None], api: ThreadlineApi, project: str
) -> None:
    instrument(BedrockInstrumentor())
    client = boto3.session.Session().client("bedrock-runtime", region_name="us-east-1", endpoint_url=fake.base_url)
    messages: list[Any] = []
    with using_session("bedrock-converse"), using_user("cy"):
        for question in ("What is a sonnet?", "Write one line of one."):
            messages.append({"role": "user", "content": [{"text": question}]})
            response = client.converse(modelId=MODEL_ID, messages=messages, system=[{"text": "Be brief."}])
            messages.append(response["output"]["message"])
    assert [m["content"][0]["text"] for m in messages[1::2]] == [e.answer for e in fake.exchanges]
    assert_conversation(api, project, "bedrock-converse", "cy", fake.exchanges, model=MODEL_ID)
