"""Framework rows: a real library + its real OpenInference instrumentor → register() → threadline serve.

The rows run on SQLite only (the SDK → server grouping tests in tests/sdk cover both backends).
Instrumentors patch libraries globally, so every row instruments with its own (non-global)
tracer provider and uninstruments when it ends.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
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
    api: ThreadlineApi, project: str, session_id: str, user_id: str | None, exchanges: list[Exchange],
    model: str | None = None,
) -> dict[str, Any]:
    """The session holds one turn per exchange, with the fake's text, tokens and model."""
    assert exchanges, "the fake provider was never called"
    summary = api.sessions(project)[session_id]
    assert summary["turns"] == len(exchanges)
    assert summary["user_ids"] == ([user_id] if user_id else [])
    assert summary["tokens"] == {
        "prompt": sum(e.prompt_tokens for e in exchanges),
        "completion": sum(e.completion_tokens for e in exchanges),
        "total": sum(e.total_tokens for e in exchanges),
    }
    detail = api.session(project, session_id)
    turns = detail["turns"]
    assert [t["input"] for t in turns] == [e.question for e in exchanges]
    assert [t["output"] for t in turns] == [e.answer for e in exchanges]
    assert [t["tokens"]["total"] for t in turns] == [e.total_tokens for e in exchanges]
    assert all(t["status"] == "ok" for t in turns)
    if user_id:
        assert [t["user_id"] for t in turns] == [user_id] * len(exchanges)
    for turn, exchange in zip(turns, exchanges, strict=True):
        assert len(turn["llm_calls"]) == 1, turn["llm_calls"]
        assert turn["llm_calls"][0]["model"] == (model or exchange.model)
        assert turn["llm_calls"][0]["tokens"]["total"] == exchange.total_tokens
    return detail
