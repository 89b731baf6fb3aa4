"""Framework rows: a real library + its real OpenInference instrumentor → register() → threadline serve.

The rows run on SQLite only (the SDK → server grouping tests in tests/sdk cover both backends).
Instrumentors patch libraries globally, so every row instruments with its own (non-global)
tracer provider and uninstruments when it ends.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import threadline
from sdk.api_client import ThreadlineApi
from support.databases import fresh_database
from support.fake_providers import Exchange, FakeProvider
from support.server import ServerProcess

# Read at import time by LiteLLM (DSPy): use the bundled model cost map, send no telemetry.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_TELEMETRY", "False")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test of this directory ``integration``."""
    here = Path(__file__).resolve().parent
    for item in items:
        if here in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Framework rows run against a SQLite-backed server only."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(autouse=True)
def offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials, no proxies, no telemetry: nothing may leave 127.0.0.1."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    monkeypatch.setenv("MISTRAL_API_KEY", "fake")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    monkeypatch.setenv("LITELLM_TELEMETRY", "False")
    monkeypatch.setenv("DSP_CACHEBOOL", "False")


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    """A fake OpenAI / Mistral / Bedrock endpoint on 127.0.0.1."""
    with FakeProvider() as provider:
        yield provider


@pytest.fixture
def project(request: pytest.FixtureRequest) -> str:
    """A project name of the test's own."""
    return re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")


@pytest.fixture
def tracer_provider(server: ServerProcess, project: str) -> Iterator[TracerProvider]:
    """register() pointed at the test's server; spans are exported as they end."""
    provider = threadline.register(project_name=project, endpoint=server.otlp_http_url, set_global=False, batch=False)
    yield provider
    provider.shutdown()


@pytest.fixture
def api(server: ServerProcess) -> ThreadlineApi:
    return ThreadlineApi(server.base_url)


@pytest.fixture
def instrument(tracer_provider: TracerProvider) -> Iterator[Callable[[Any], None]]:
    """Instrument with the test's provider; every instrumentor is uninstrumented afterwards."""
    used: list[Any] = []

    def apply(instrumentor: Any) -> None:
        instrumentor.instrument(tracer_provider=tracer_provider, skip_dep_check=True)
        used.append(instrumentor)

    yield apply
    for instrumentor in reversed(used):
        instrumentor.uninstrument()


def assert_conversation(
    api: ThreadlineApi, project: str, session_id: str, user_id: str | None,
    exchanges: Sequence[Exchange | Sequence[Exchange]], model: str | None = None,
) -> dict[str, Any]:
    """The session holds one turn per user message, with the fake's text, tokens and model.

    ``exchanges`` has one item per user message: the fake's exchange that answered it, or the
    exchanges of its tool loop (several LLM calls, the last one answering in words).
    """
    groups = [[e] if isinstance(e, Exchange) else list(e) for e in exchanges]
    assert groups and all(groups), "the fake provider was never called"
    every = [e for group in groups for e in group]
    summary = api.sessions(project)[session_id]
    assert summary["turns"] == len(groups)
    assert summary["user_ids"] == ([user_id] if user_id else [])
    assert summary["tokens"] == {
        "prompt": sum(e.prompt_tokens for e in every),
        "completion": sum(e.completion_tokens for e in every),
        "total": sum(e.total_tokens for e in every),
    }
    detail = api.session(project, session_id)
    turns = detail["turns"]
    assert [t["input"] for t in turns] == [g[0].question for g in groups]
    assert [t["output"] for t in turns] == [g[-1].answer for g in groups]
    assert [t["tokens"] for t in turns] == [
        {"prompt": sum(e.prompt_tokens for e in g), "completion": sum(e.completion_tokens for e in g),
         "total": sum(e.total_tokens for e in g)}
        for g in groups
    ]
    assert all(t["status"] == "ok" for t in turns)
    if user_id:
        assert [t["user_id"] for t in turns] == [user_id] * len(groups)
    for turn, group in zip(turns, groups, strict=True):
        assert len(turn["llm_calls"]) == len(group), turn["llm_calls"]
        assert [c["model"] for c in turn["llm_calls"]] == [model or e.model for e in group]
        assert [c["tokens"]["total"] for c in turn["llm_calls"]] == [e.total_tokens for e in group]
        # the turn's traces start with its first; its steps run in time order, its LLM calls among them
        assert turn["trace_ids"][0] == turn["trace_id"]
        assert len(set(turn["trace_ids"])) == len(turn["trace_ids"])
        starts = [s["start_time"] for s in turn["steps"]]
        assert starts == sorted(starts)
        assert [s["span_id"] for s in turn["steps"] if s["kind"] == "llm"] == [c["span_id"] for c in turn["llm_calls"]]
    # every trace of the session is in exactly one turn
    in_turns = [trace_id for t in turns for trace_id in t["trace_ids"]]
    assert sorted(in_turns) == sorted({s["trace_id"] for s in api.spans(project, session_id=session_id)})
    return detail
