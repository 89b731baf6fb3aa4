"""JavaScript: Node + OpenTelemetry JS + ``@arizeai/openinference-core`` setSession/setUser/setTags → Threadline.

The npm packages are pinned in tests/js/package.json and package-lock.json (``make js-deps``
installs them; this test runs ``npm ci`` itself when they are missing).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sdk.api_client import ThreadlineApi
from support.server import ServerProcess

JS_DIR = Path(__file__).resolve().parent.parent / "js"


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with tests/js's pinned packages installed."""
    node = shutil.which("node") or "/usr/bin/node"
    if not (JS_DIR / "node_modules" / "@arizeai" / "openinference-core").is_dir():
        npm = shutil.which("npm") or "npm"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR, check=True,
                       timeout=600)
    return node


def run_node(node: str, endpoint: str, project: str) -> list[dict[str, Any]]:
    env = {**os.environ, "THREADLINE_ENDPOINT": endpoint, "THREADLINE_PROJECT": project}
    done = subprocess.run([node, "send.mjs"], cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_node_openinference_core_session_user_and_tags(
    node: str, server: ServerProcess, api: ThreadlineApi, project: str
) -> None:
    turns = run_node(node, server.otlp_http_url, project)
    assert len(turns) == 3

    sessions = api.sessions(project)
    assert set(sessions) == {"js-session-1", "js-session-2"}
    for session_id, expected_user in (("js-session-1", "js-user-a"), ("js-session-2", "js-user-b")):
        sent = [t for t in turns if t["session_id"] == session_id]
        summary = sessions[session_id]
        assert summary["user_ids"] == [expected_user]
        assert summary["turns"] == len(sent)
        detail = api.session(project, session_id)
        assert [t["trace_id"] for t in detail["turns"]] == [t["trace_id"] for t in sent]
        assert [(t["input"], t["output"], t["user_id"]) for t in detail["turns"]] == [
            (t["input"], t["output"], expected_user) for t in sent
        ]
        assert all([c["model"] for c in t["llm_calls"]] == ["js-model"] for t in detail["turns"])
        expected_tokens = sum(len(t["input"].split()) + len(t["output"].split()) for t in sent)
        assert summary["tokens"]["total"] == expected_tokens

        # setTags sends tag.tags as a JSON string; it round-trips as a span attribute
        spans = api.spans(project, session_id=session_id)
        assert len(spans) == 2 * len(sent)
        for span in spans:
            tags = span["attributes"]["tag.tags"]
            assert (json.loads(tags) if isinstance(tags, str) else tags) == sent[0]["tags"]
            assert json.loads(span["attributes"]["metadata"]) == {"runtime": "node", "conversation": session_id}
            assert (span["session_id"], span["user_id"]) == (session_id, expected_user)
    assert api.user(project, "js-user-a")["sessions"][0]["session_id"] == "js-session-1"
