"""Erasure over the REST API against a real server, on SQLite and PostgreSQL.

A unique marker goes into span attributes, the turn text (input/output) and annotations on every
target kind; after ``DELETE …/users/{user}`` it is found nowhere: not in any API answer, not in
search, and (SQLite) not in the bytes of the database, ``-wal`` and ``-shm`` files, read while the
server still runs.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan

from support.otlp import BASE_NS, SpanMaker, export_http, hex_span_id, hex_trace_id
from support.server import ServerProcess
from threadline import conventions as cv

MARK = f"zqerase{uuid.uuid4().hex[:12]}"
PROJECT = "erasure"


def q(value: str) -> str:
    return quote(value, safe="")


def conversation(maker: SpanMaker, session: str, user: str, turns: int, start_ns: int, *, secret: bool
                 ) -> list[ReadableSpan]:
    """``turns`` turns (AGENT root + LLM child); with ``secret`` the marker is in every text field."""
    word = MARK if secret else "ordinary"
    spans: list[ReadableSpan] = []
    for k in range(turns):
        at = start_ns + k * 10**9
        root = maker.span("agent", start_ns=at, attributes={
            cv.SPAN_KIND: "AGENT", cv.SESSION_ID: session, cv.USER_ID: user,
            cv.INPUT_VALUE: f"question {k} about {word}", cv.OUTPUT_VALUE: f"answer {k} with {word}",
            "app.note": f"note {word}"})
        llm = maker.span("llm", parent=root, start_ns=at + 1000, attributes={
            cv.SPAN_KIND: "LLM", cv.LLM_MODEL_NAME: "m", cv.LLM_TOKEN_PROMPT: 5, cv.LLM_TOKEN_COMPLETION: 2,
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.content": f"question {k} about {word}",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": f"answer {k} with {word}"})
        llm.end(end_time=at + 10**8)
        root.end(end_time=at + 2 * 10**8)
        spans += maker.take()
    return spans


def wait_for_spans(client: httpx.Client, project: str, count: int, headers: dict[str, str] | None = None) -> None:
    """Poll the project list until the project shows ``count`` spans (deadline 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        projects = {p["name"]: p for p in client.get("/v1/projects", headers=headers).json()["data"]}
        if projects.get(project, {}).get("spans") == count:
            return
        assert time.monotonic() < deadline, f"spans never reached {count}: {projects.get(project)}"
        time.sleep(0.1)


def everything(client: httpx.Client, project: str, extra: list[str]) -> str:
    """The text of every list, search and detail answer of the project (plus ``extra`` paths)."""
    base = f"/v1/projects/{q(project)}"
    paths = [f"{base}/sessions?limit=1000", f"{base}/users?limit=1000", f"{base}/traces?limit=1000",
             f"{base}/spans?limit=1000", f"{base}/annotations?limit=1000", "/v1/projects",
             f"{base}/sessions?q={MARK}", f"{base}/traces?q={MARK}", f"{base}/spans?q={MARK}",
             f"{base}/users?q={MARK}", *extra]
    texts = []
    for path in paths:
        response = client.get(path)
        assert response.status_code in (200, 404), (path, response.status_code, response.text)
        texts.append(response.text)
    for session in client.get(f"{base}/sessions?limit=1000").json()["data"]:
        texts.append(client.get(f"{base}/sessions/{q(session['session_id'])}").text)
    for trace in client.get(f"{base}/traces?limit=1000").json()["data"]:
        texts.append(client.get(f"{base}/traces/{q(trace['trace_id'])}").text)
    return "\n".join(texts)


def files_of(db_url: str) -> list[Path]:
    database = Path(db_url.removeprefix("sqlite:///"))
    return [database, Path(f"{database}-wal"), Path(f"{database}-shm")]


def test_erasing_a_user_leaves_the_marker_nowhere(db_url: str, server_factory: Callable[..., ServerProcess]
                                                  ) -> None:
    server = server_factory(db_url)
    maker = SpanMaker(PROJECT)
    gone = conversation(maker, "g-1", "gone user", 3, BASE_NS, secret=True)
    gone += conversation(maker, "g/2 ü", "gone user", 2, BASE_NS + 100 * 10**9, secret=True)
    kept = conversation(maker, "k-1", "kept", 2, BASE_NS + 200 * 10**9, secret=False)
    assert export_http(gone + kept, server.otlp_http_url).name == "SUCCESS"
    client = httpx.Client(base_url=server.base_url, timeout=60)
    wait_for_spans(client, PROJECT, len(gone + kept))
    base = f"/v1/projects/{PROJECT}"
    annotations = [
        {"target_kind": "span", "target_id": hex_span_id(gone[0]), "name": "q", "label": f"l {MARK}"[:200]},
        {"target_kind": "trace", "target_id": hex_trace_id(gone[0]), "name": "q", "score": 1,
         "explanation": f"turn {MARK}"},
        {"target_kind": "session", "target_id": "g/2 ü", "name": "q", "label": "x", "explanation": f"s {MARK}"},
        {"target_kind": "user", "target_id": "gone user", "name": "q", "label": "x", "explanation": f"u {MARK}"},
        {"target_kind": "user", "target_id": "kept", "name": "q", "label": "fine", "explanation": "kept's own"},
    ]
    answer = client.post(f"{base}/annotations", json={"data": annotations})
    assert answer.status_code == 200, answer.text
    before = everything(client, PROJECT, [])
    assert MARK in before and MARK.lower() in client.get(f"{base}/sessions?q={MARK}").text  # it was findable
    erased = client.delete(f"{base}/users/{q('gone user')}")
    assert erased.status_code == 200, erased.text
    body = erased.json()
    assert body["user_id"] == "gone user"
    counts = body["erased"]
    assert (counts["spans"], counts["traces"], counts["sessions"], counts["users"], counts["annotations"]) == (
        len(gone), 5, 2, 1, 4)
    assert counts["checkpointed"] is (True if db_url.startswith("sqlite") else None)
    if db_url.startswith("sqlite"):  # the files, read while the server runs
        for path in files_of(db_url):
            if path.exists():
                assert MARK.encode() not in path.read_bytes(), path
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    after = everything(client, PROJECT, [f"{base}/users/{q('gone user')}", f"{base}/sessions/g-1"])
    assert MARK not in after
    assert client.get(f"{base}/users/{q('gone user')}").status_code == 404
    assert client.get(f"{base}/sessions/{q('g/2 ü')}").status_code == 404
    assert [s["session_id"] for s in client.get(f"{base}/sessions").json()["data"]] == ["k-1"]
    assert [a["explanation"] for a in client.get(f"{base}/annotations").json()["data"]] == ["kept's own"]
    project = {p["name"]: p for p in client.get("/v1/projects").json()["data"]}[PROJECT]
    assert (project["spans"], project["traces"], project["sessions"], project["users"]) == (len(kept), 2, 1, 1)
    users = client.get(f"{base}/users").json()["data"]
    assert [(u["user_id"], u["sessions"], u["turns"]) for u in users] == [("kept", 1, 2)]
    client.close()


def test_erase_by_session_and_project_and_unknown_names(db_url: str,
                                                        server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(db_url)
    maker = SpanMaker(PROJECT)
    spans = conversation(maker, "a/b c", "u1", 2, BASE_NS, secret=False)
    spans += conversation(maker, "other", "u2", 1, BASE_NS + 10**11, secret=False)
    assert export_http(spans, server.otlp_http_url).name == "SUCCESS"
    client = httpx.Client(base_url=server.base_url, timeout=60)
    wait_for_spans(client, PROJECT, len(spans))
    base = f"/v1/projects/{PROJECT}"
    unknown = [(f"{base}/sessions/nope", "session_not_found"), (f"{base}/users/nobody", "user_not_found"),
               ("/v1/projects/nope", "project_not_found"), ("/v1/projects/nope/sessions/a", "project_not_found"),
               ("/v1/projects/nope/users/u1", "project_not_found")]
    for path, code in unknown:
        answer = client.delete(path)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["error"]["code"] == code
        assert answer.json()["error"]["message"]
    answer = client.delete(f"{base}/sessions/{q('a/b c')}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["erased"]["spans"] == 4 and answer.json()["erased"]["sessions"] == 1
    assert answer.json()["erased"]["users"] == 1  # u1 had nothing else
    assert client.get(f"{base}/sessions/{q('a/b c')}").status_code == 404
    assert client.get(f"{base}/sessions/other").status_code == 200  # GET routes still answer
    assert client.get(f"{base}/users/u2").status_code == 200
    assert client.post(f"{base}/sessions/other/close").status_code == 200  # not taken for an erase
    answer = client.delete(f"/v1/projects/{PROJECT}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["erased"]["spans"] == 2
    assert PROJECT not in {p["name"] for p in client.get("/v1/projects").json()["data"]}
    assert client.delete(f"/v1/projects/{PROJECT}").status_code == 404
    client.close()


def create_key(db_url: str, home: Path, name: str, role: str) -> str:
    """``threadline keys create`` against the server's database; the key is the last stdout line."""
    env = {**os.environ, "THREADLINE_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "threadline", "keys", "create", "--name", name, "--role", role,
                           "--db", db_url], env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("role", ["viewer", "member", "ingest"])
def test_erase_needs_an_admin_key(db_url: str, server_factory: Callable[..., ServerProcess], tmp_path: Path,
                                  role: str) -> None:
    server = server_factory(db_url, THREADLINE_AUTH="true")
    admin = {"Authorization": f"Bearer {create_key(db_url, tmp_path, 'root', 'admin')}"}
    other = {"Authorization": f"Bearer {create_key(db_url, tmp_path, 'someone', role)}"}
    maker = SpanMaker(PROJECT)
    spans = conversation(maker, "s", "u", 1, BASE_NS, secret=False)
    assert export_http(spans, server.otlp_http_url, headers=admin).name == "SUCCESS"
    client = httpx.Client(base_url=server.base_url, timeout=60)
    wait_for_spans(client, PROJECT, len(spans), headers=admin)
    paths = [f"/v1/projects/{PROJECT}/users/u", f"/v1/projects/{PROJECT}/sessions/s", f"/v1/projects/{PROJECT}"]
    for path in paths:
        assert client.delete(path).status_code == 401
        refused = client.delete(path, headers=other)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
    answer: Any = client.delete(paths[0], headers=admin)
    assert answer.status_code == 200, answer.text
    assert answer.json()["erased"]["spans"] == len(spans)
    client.close()
