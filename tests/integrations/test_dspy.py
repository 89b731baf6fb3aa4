"""DSPy: ``dspy.Predict`` with a ``dspy.LM`` at the fake OpenAI-compatible endpoint + DSPyInstrumentor."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import dspy
import pytest
from openinference.instrumentation.dspy import DSPyInstrumentor
from openinference.instrumentation.openai import OpenAIInstrumentor

from sdk.api_client import ThreadlineApi
from support.fake_providers import FakeProvider
from threadline import using_session, using_user

MODEL = "gpt-4o-mini"


def dspy_answer(prompt: str) -> str:
    """What the fake model says, in the field format of DSPy's ChatAdapter."""
    question = prompt.split("[[ ## question ## ]]", 1)[-1].strip().split("\n\n", 1)[0]
    return f"[[ ## answer ## ]]\nAnswer to: {question}\n\n[[ ## completed ## ]]"


@pytest.fixture
def dspy_fake() -> Iterator[FakeProvider]:
    with FakeProvider(reply=dspy_answer) as provider:
        yield provider


def test_dspy_predict(
    dspy_fake: FakeProvider, instrument: Callable[[Any], None], api: ThreadlineApi, project: str
) -> None:
    instrument(DSPyInstrumentor())
    # DSPy's instrumentor records no token usage. With engine="litellm", LiteLLM sends openai/* models
    # through the openai client, so the OpenAI instrumentor adds a child LLM span carrying the usage.
    instrument(OpenAIInstrumentor())
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm = dspy.LM(f"openai/{MODEL}", api_base=dspy_fake.openai_base_url, api_key="sk-fake", cache=False,
                 num_retries=0, engine="litellm")
    predict = dspy.Predict("question -> answer")
    questions = ["What is DSPy?", "Why declarative?"]
    with dspy.context(lm=lm), using_session("dspy-conv"), using_user("dee"):
        answers = [predict(question=q).answer for q in questions]
    assert answers == [f"Answer to: {q}" for q in questions]
    exchanges = dspy_fake.exchanges
    assert len(exchanges) == 2  # one LM call per Predict: the fake's answers parse on the first try

    summary = api.sessions(project)["dspy-conv"]
    assert summary["turns"] == 2
    assert summary["user_ids"] == ["dee"]
    assert summary["tokens"]["total"] == sum(e.total_tokens for e in exchanges)
    turns = api.session(project, "dspy-conv")["turns"]
    for turn, question, answer, exchange in zip(turns, questions, answers, exchanges, strict=True):
        assert question in turn["input"]
        assert answer in turn["output"]
        assert turn["user_id"] == "dee"
        # the DSPy LM span only wraps the openai client's span (no tokens of its own): one call, the
        # inner one, with the usage; tokens are counted once
        assert [(c["model"], c["tokens"]["total"]) for c in turn["llm_calls"]] == [(MODEL, exchange.total_tokens)]
        assert [s["kind"] for s in turn["steps"]] == ["llm"]
        assert turn["tokens"] == {"prompt": exchange.prompt_tokens, "completion": exchange.completion_tokens,
                                  "total": exchange.total_tokens}
