"""Text no database can store (NUL, lone surrogates) and code-loading evaluator names are 4xx on every
endpoint of the evals API, on both backends — never a 500."""

from __future__ import annotations

import json

import pytest

from .conftest import Env

GETS = [
    "/v1/projects/a%00b/annotations", "/v1/projects/notes/annotations?name=%00", "/v1/projects/notes/annotations/1%00",
    "/v1/projects/notes/rankings?name=x%00", "/v1/projects/notes/metrics?user_id=%00",
    "/v1/projects/notes/metrics?metric=sum(score:%00)", "/v1/projects/notes/sessions/x%00/breakdown",
    "/v1/projects/notes/sessions/x%00/state", "/v1/projects/no%00/settings", "/v1/projects/notes/eval-runs/1%00",
]


@pytest.mark.parametrize("path", GETS)
def test_nul_in_paths_and_queries(env: Env, path: str) -> None:
    response = env.client.get(path)
    assert response.status_code == 400, (path, response.text)
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("field, value", [
    ("target_id", "calm\u0000"), ("name", "n\u0000"), ("label", "\u0000"), ("identifier", "me\u0000"),
    ("explanation", "why\u0000"), ("metadata", {"k\u0000": 1}), ("metadata", {"k": ["\u0000"]}),
])
def test_nul_in_annotation_bodies(env: Env, field: str, value: object) -> None:
    body = {"target_kind": "session", "target_id": "calm-1", "name": "n", "label": "l", field: value}
    response = env.client.post("/v1/projects/notes/annotations", json=body)
    assert response.status_code == 400, response.text


def test_lone_surrogates_in_bodies(env: Env) -> None:
    raw = '{"target_kind": "session", "target_id": "calm-1", "name": "n", "label": "\\ud800"}'
    response = env.client.post("/v1/projects/notes/annotations", content=raw.encode(),
                               headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert "label" in response.json()["error"]["message"]
    raw = json.dumps({"evaluators": ["errors"], "session_ids": ["\ud800"]})
    assert env.client.post("/v1/projects/notes/eval-runs", content=raw.encode(),
                           headers={"content-type": "application/json"}).status_code == 400
    raw = json.dumps({"online_evaluators": ["\ud800"]})
    assert env.client.put("/v1/projects/notes/settings", content=raw.encode(),
                          headers={"content-type": "application/json"}).status_code == 400
    assert env.client.post("/v1/projects/notes/sessions/x%00/close").status_code == 400


@pytest.mark.parametrize("name", ["os:system", "support.fake_judge:verdict", "threadline.server.evals.jobs:EvalJobs"])
def test_the_api_never_loads_code(env: Env, name: str) -> None:
    put = env.client.put("/v1/projects/notes/settings", json={"online_evaluators": [name]})
    assert put.status_code == 400 and put.json()["error"]["code"] == "unknown_evaluator"
    run = env.client.post("/v1/projects/notes/eval-runs", json={"evaluators": [name]})
    assert run.status_code == 400 and run.json()["error"]["code"] == "unknown_evaluator"
