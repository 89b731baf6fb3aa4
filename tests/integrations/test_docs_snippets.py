"""The Python snippets of docs/sessions.md and README.md's "Send a conversation" really run end to end.

Each section's snippets run in a fresh interpreter (instrumentors and ``register()`` are global)
against a real ``threadline serve`` and the fake provider, which the environment points the
clients at: ``THREADLINE_ENDPOINT``, ``OPENAI_BASE_URL`` / ``OPENAI_API_BASE``,
``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``; the Mistral client has no such variable, so its
``Mistral(api_key="...")`` gets a ``server_url``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdk.api_client import ThreadlineApi
from support.fake_providers import FakeProvider, echo_reply
from support.server import ServerProcess

DOC = Path(__file__).resolve().parents[2] / "docs" / "sessions.md"
README = Path(__file__).resolve().parents[2] / "README.md"


def sections(doc: Path = DOC) -> dict[str, str]:
    """Python code of each ``##``/``###`` section, its blocks joined in order."""
    result: dict[str, str] = {}
    heading = ""
    for part in re.split(r"^(#{2,3} .*)$", doc.read_text(), flags=re.MULTILINE):
        if re.match(r"#{2,3} ", part):
            heading = part.lstrip("# ").strip()
            continue
        blocks = re.findall(r"```python\n(.*?)```", part, flags=re.DOTALL)
        if blocks:
            result[heading] = "\n".join(blocks)
    return result


def reply(prompt: str) -> str:
    """Echo, or answer in DSPy's field format when DSPy asks."""
    if "[[ ## question ## ]]" in prompt:
        question = prompt.split("[[ ## question ## ]]", 1)[1].strip().split("\n\n", 1)[0]
        return f"[[ ## answer ## ]]\n{echo_reply(question)}\n\n[[ ## completed ## ]]"
    return echo_reply(prompt)


@pytest.fixture
def docs_fake() -> Iterator[FakeProvider]:
    with FakeProvider(reply=reply) as provider:
        yield provider


def test_every_python_snippet_compiles() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 12
    for i, block in enumerate(blocks):
        compile(block, f"docs/sessions.md block {i}", "exec")


RUNNABLE = {
    # section heading: (project, session the snippet creates, user)
    "As context managers": None,
    "As decorators": None,
    "Threads and asyncio": None,
    "Plain OpenTelemetry spans": ("plain-otel", "conv-1", "ada"),
    "OpenAI": ("openai-app", "conv-1", "ann"),
    "LangChain": ("langchain-app", "conv-1", "lee"),
    "LlamaIndex": ("llamaindex-app", "conv-1", "lin"),
    "AWS Bedrock": ("bedrock-app", "conv-1", "bea"),
    "MistralAI": ("mistral-app", "conv-1", "max"),
    "DSPy": ("dspy-app", "conv-1", "dee"),
}


def run_snippet(
    code: str, server: ServerProcess, fake: FakeProvider, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as written in a fresh interpreter, its clients pointed at the fake and the server."""
    env = {
        **os.environ,
        "THREADLINE_ENDPOINT": server.otlp_http_url,
        "OPENAI_BASE_URL": fake.openai_base_url,
        "OPENAI_API_BASE": fake.openai_base_url,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": fake.base_url,
        "DSPY_CACHEDIR": str(tmp_path / "dspy-cache"),
        "HOME": str(tmp_path),
    }
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, f"the snippet failed:\n{code}\n{done.stderr[-4000:]}"
    return done


@pytest.mark.parametrize("section", list(RUNNABLE))
def test_snippet_runs(
    section: str, server: ServerProcess, docs_fake: FakeProvider, api: ThreadlineApi, tmp_path: Path
) -> None:
    code = sections()[section]
    code = code.replace('Mistral(api_key="...")', f'Mistral(api_key="fake", server_url="{docs_fake.base_url}")')
    done = run_snippet(code, server, docs_fake, tmp_path)
    expected = RUNNABLE[section]
    if expected is None:
        return
    project, session_id, user_id = expected
    sessions = api.sessions(project)
    assert session_id in sessions, (sessions.keys(), done.stderr[-2000:])
    assert sessions[session_id]["user_ids"] == [user_id]
    assert sessions[session_id]["turns"] >= 1
    if section != "Plain OpenTelemetry spans":
        assert docs_fake.exchanges, "the snippet never reached the (fake) model"
        assert sessions[session_id]["tokens"]["total"] > 0
    if section == "LangChain":
        assert api.sessions(project)["thread-17"]["user_ids"] == ["lee"]


def test_readme_send_a_conversation_runs_as_written(
    server: ServerProcess, docs_fake: FakeProvider, api: ThreadlineApi, tmp_path: Path
) -> None:
    """README's first snippet is complete: run unchanged, it sends a conversation Threadline reads back."""
    code = sections(README)["Send a conversation"]
    run_snippet(code, server, docs_fake, tmp_path)

    # the names the README's curl lines read back
    assert docs_fake.exchanges, "the snippet never reached the (fake) model"
    summary = api.sessions("support-bot")["s-42"]
    assert summary["user_ids"] == ["u-7"]
    assert summary["turns"] == len({e.question for e in docs_fake.exchanges})
    assert summary["tokens"]["total"] == sum(e.total_tokens for e in docs_fake.exchanges)
    turns = api.session("support-bot", "s-42")["turns"]
    assert [t["input"] for t in turns] == list(dict.fromkeys(e.question for e in docs_fake.exchanges))
    assert turns[-1]["output"] == docs_fake.exchanges[-1].answer
    spans = api.spans("support-bot", session_id="s-42")
    assert all(s["attributes"].get("tag.tags") == ["beta"] for s in spans)
    assert all(json.loads(s["attributes"]["metadata"]).get("plan") == "pro" for s in spans)
