"""Evaluation runs started through the REST API, and the evaluator catalogue."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from support.server import ServerProcess

from .conftest import Env
from .traffic import conversations, send


def run_and_wait(env: Env, body: dict[str, object]) -> dict[str, object]:
    started = env.client.post("/v1/projects/api/eval-runs", json=body)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job: dict[str, object] = env.client.get(f"/v1/projects/api/eval-runs/{run_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError("the evaluation run did not finish")


def test_eval_run_through_the_api(env: Env) -> None:
    convs = env.sent["api"]
    turns = sum(len(c.turns) for c in convs)
    job = run_and_wait(env, {"evaluators": ["user_frustration", "errors"]})
    assert job["state"] == "done" and job["done"] == job["total"] == 2 * len(convs)
    report = job["report"]
    assert isinstance(report, dict)
    assert report["session_annotations"] == 2 * len(convs) and report["turn_annotations"] == 2 * turns
    assert report["failure_count"] == 0 and report["judge"]["requests"] == len(convs) + turns
    labels = {n["target_id"]: n["label"] for n in env.annotations("api", name="user_frustration")}
    assert labels == {**{c.session_id: "frustrated" if any(t.frustrated for t in c.turns) else "ok" for c in convs},
                      **{t.trace_id: "frustrated" if t.frustrated else "ok" for c in convs for t in c.turns}}
    again = run_and_wait(env, {"evaluators": ["user_frustration", "errors"],
                               "session_ids": [c.session_id for c in convs]})
    assert again["report"]["sessions_skipped"] == 2 * len(convs)  # type: ignore[index]
    assert again["report"]["sessions_evaluated"] == 0  # type: ignore[index]
    assert len(env.annotations("api")) == 2 * (len(convs) + turns)


def test_eval_run_errors_and_catalogue(env: Env) -> None:
    c = env.client
    assert c.post("/v1/projects/api/eval-runs", json={"evaluators": ["nope"]}).json()["error"]["code"] == \
        "unknown_evaluator"
    assert c.post("/v1/projects/api/eval-runs", json={"evaluators": []}).status_code == 400
    assert c.post("/v1/projects/nope/eval-runs", json={"evaluators": ["errors"]}).status_code == 404
    assert c.get("/v1/projects/api/eval-runs/999999").status_code == 404
    catalogue = {e["name"]: e for e in c.get("/v1/evaluators").json()["data"]}
    assert set(catalogue) == {"user_frustration", "goal_completion", "helpfulness", "correctness",
                              "tool_call_correctness", "errors", "latency", "refusals"}
    assert catalogue["user_frustration"]["labels"] == ["frustrated", "ok"]
    assert catalogue["user_frustration"]["judges_session"] and catalogue["user_frustration"]["judges_turns"]


def test_tool_call_correctness_judges_only_turns_with_tools(env: Env) -> None:
    convs = env.sent["api"]
    job = run_and_wait(env, {"evaluators": ["tool_call_correctness"]})
    assert job["state"] == "done", job
    notes = env.annotations("api", name="tool_call_correctness")
    turns = {n["target_id"]: n["label"] for n in notes if n["target_kind"] == "trace"}
    sessions = {n["target_id"]: n["label"] for n in notes if n["target_kind"] == "session"}
    assert turns == {t.trace_id: "correct" for c in convs for t in c.turns if t.tool}
    assert sessions == {c.session_id: "correct" if any(t.tool for t in c.turns) else "not_applicable"
                        for c in convs}
    prompts = [p for p in env.judge.prompts() if "Look at the tool calls" in p]
    assert prompts and all("Tool call: weather(" in p for p in prompts)


def test_runs_outlive_the_server(db_url: str, server_factory: Callable[..., ServerProcess]) -> None:
    """A run's status and report are stored: a restarted server (new app, new store) answers the same."""
    first = server_factory(db_url)
    convs = conversations()
    send(first.base_url + "/v1/traces", "restart", convs)
    with httpx.Client(base_url=first.base_url, timeout=30) as c:
        started = c.post("/v1/projects/restart/eval-runs", json={"evaluators": ["errors"]})
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
        assert started.json()["state"] in ("queued", "running", "done")
        deadline = time.monotonic() + 120
        while (job := c.get(f"/v1/projects/restart/eval-runs/{run_id}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
    assert job["state"] == "done" and job["done"] == job["total"] == len(convs)
    first.stop()
    second = server_factory(db_url)
    with httpx.Client(base_url=second.base_url, timeout=30) as c:
        again = c.get(f"/v1/projects/restart/eval-runs/{run_id}")
        assert again.status_code == 200 and again.json() == job
