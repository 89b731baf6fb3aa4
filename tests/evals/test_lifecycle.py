"""Sessions close after the project's idle timeout or explicitly, closing runs the project's online
evaluators, and a new turn re-opens a session (which is evaluated again when it closes)."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import quote

from .conftest import LONG_IDLE_SECONDS, Env
from .traffic import BASE_NS, Conversation, Say, send


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def state(env: Env, project: str, session_id: str) -> dict[str, object]:
    response = env.client.get(f"/v1/projects/{project}/sessions/{quote(session_id, safe='')}/state")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_idle_close_online_evals_reopen_and_explicit_close(env: Env) -> None:
    convs = env.sent["life"]
    settings = env.client.get("/v1/projects/life/settings").json()
    assert settings == {"idle_timeout_seconds": None, "online_evaluators": [],
                        "effective_idle_timeout_seconds": float(LONG_IDLE_SECONDS),
                        "retention_days": None, "effective_retention_days": 0.0}
    assert not any(state(env, "life", c.session_id)["closed"] for c in convs)

    put = env.client.put("/v1/projects/life/settings", json={
        "idle_timeout_seconds": 1, "online_evaluators": ["user_frustration", "errors"]})
    assert put.status_code == 200, put.text
    assert put.json()["effective_idle_timeout_seconds"] == 1.0
    wait_for(lambda: all(state(env, "life", c.session_id)["closed"] for c in convs), "idle sessions to close")
    turns = sum(len(c.turns) for c in convs)
    wait_for(lambda: len(env.annotations("life", name="user_frustration")) == len(convs) + turns
             and len(env.annotations("life", name="errors")) == len(convs) + turns, "online evals")
    labels = {n["target_id"]: n["label"] for n in env.annotations("life", name="user_frustration",
                                                                  target_kind="session")}
    assert labels == {c.session_id: "frustrated" if any(t.frustrated for t in c.turns) else "ok" for c in convs}
    assert labels["calm-1"] == "ok"

    # A long timeout, then a new (frustrated) turn re-opens calm-1.
    assert env.client.put("/v1/projects/life/settings", json={
        "idle_timeout_seconds": LONG_IDLE_SECONDS, "online_evaluators": ["user_frustration", "errors"],
    }).status_code == 200
    asked = len(env.judge.requests)
    late = Conversation("calm-1", BASE_NS + 3 * 86_400 * 10**9, [Say("alice", "this is useless", "Sorry.")])
    send(env.server.base_url + "/v1/traces", "life", [late])
    assert state(env, "life", "calm-1")["closed"] is False
    assert all(state(env, "life", c.session_id)["closed"] for c in convs if c.session_id != "calm-1")

    closed = env.client.post("/v1/projects/life/sessions/calm-1/close")
    assert closed.status_code == 200 and closed.json()["already_closed"] is False
    assert state(env, "life", "calm-1")["closed"] is True

    def re_evaluated() -> bool:
        notes = env.annotations("life", name="user_frustration", target_id="calm-1")
        return bool(notes) and notes[0]["label"] == "frustrated"

    wait_for(re_evaluated, "the re-opened session to be evaluated again")
    wait_for(lambda: len(env.annotations("life", name="user_frustration", target_id=late.turns[0].trace_id)) == 1,
             "the new turn's annotation")
    # Only the changed session and its new turn were judged again; nothing was duplicated.
    time.sleep(1.0)  # let a few more loop passes run: they must find nothing due
    assert len(env.judge.requests) - asked == 2
    assert len(env.annotations("life", name="user_frustration")) == len(convs) + turns + 1
    breakdown = env.client.get("/v1/projects/life/sessions/calm-1/breakdown").json()
    assert breakdown["first_broken_turn"]["trace_id"] == late.turns[0].trace_id
    assert breakdown["first_broken_turn"]["index"] == 3


def test_settings_validation(env: Env) -> None:
    c = env.client
    assert c.put("/v1/projects/life/settings", json={"online_evaluators": ["nope"]}).json()["error"]["code"] == \
        "unknown_evaluator"
    assert c.put("/v1/projects/life/settings", json={"idle_timeout_seconds": -1}).status_code == 400
    assert c.put("/v1/projects/life/settings", json={"idle": 5}).status_code == 400
    assert c.get("/v1/projects/nope/settings").status_code == 404
    assert c.put("/v1/projects/nope/settings", json={}).status_code == 404
    assert c.post("/v1/projects/life/sessions/nope/close").status_code == 404
    assert c.get("/v1/projects/life/sessions/nope/state").status_code == 404
