"""``threadline eval run`` as a subprocess on the server's store: every session and turn annotated,
labels as the (fake) judge decides, idempotent re-runs, breakdown and rankings from the results."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from urllib.parse import quote

from .conftest import Env
from .traffic import Conversation


def _expected(convs: list[Conversation]) -> tuple[dict[str, str], dict[str, str]]:
    sessions = {c.session_id: "frustrated" if any(t.frustrated for t in c.turns) else "ok" for c in convs}
    turns = {t.trace_id: "frustrated" if t.frustrated else "ok" for c in convs for t in c.turns}
    return sessions, turns


def test_eval_run_annotates_every_session_and_turn_then_skips(env: Env) -> None:
    convs = env.sent["evals"]
    before = len(env.judge.requests)
    result = env.cli("eval", "run", "--project", "evals", "--evaluator", "user_frustration")
    assert result.returncode == 0, result.stderr + result.stdout
    turns_total = sum(len(c.turns) for c in convs)
    assert len(env.judge.requests) - before == len(convs) + turns_total
    assert "judge gpt-4o-mini" in result.stdout and "$" in result.stdout
    assert env.judge.requests[-1]["authorization"] == "Bearer test-key"

    want_sessions, want_turns = _expected(convs)
    notes = env.annotations("evals", name="user_frustration")
    got_sessions = {n["target_id"]: n["label"] for n in notes if n["target_kind"] == "session"}
    got_turns = {n["target_id"]: n["label"] for n in notes if n["target_kind"] == "trace"}
    assert got_sessions == want_sessions
    assert got_turns == want_turns
    assert len(notes) == len(convs) + turns_total
    for n in notes:
        assert n["annotator_kind"] == "LLM" and n["identifier"] == "threadline"
        assert n["score"] == (1.0 if n["label"] == "frustrated" else 0.0)
        meta = n["metadata"]
        assert isinstance(meta, dict)
        assert meta["judge_model"] == "gpt-4o-mini" and meta["judge_prompt_tokens"] > 0
        assert meta["omitted_turns"] == 0

    # Re-running asks the judge nothing and writes nothing new.
    ids = sorted(n["id"] for n in notes)  # type: ignore[type-var]
    asked = len(env.judge.requests)
    again = env.cli("eval", "run", "--project", "evals", "--evaluator", "user_frustration")
    assert again.returncode == 0, again.stderr
    assert len(env.judge.requests) == asked
    assert f"{len(convs)} (session, evaluator) pair(s) already evaluated and skipped, 0 evaluated" in again.stdout
    assert sorted(n["id"] for n in env.annotations("evals", name="user_frustration")) == ids  # type: ignore[type-var]

    # Session and user summaries carry the results.
    listed = env.client.get("/v1/projects/evals/sessions", params={"limit": 1000}).json()["data"]
    for s in listed:
        summary = s["annotations"]["user_frustration"]
        assert summary["count"] == 1
        assert summary["labels"] == {want_sessions[s["session_id"]]: 1}
    users = {u["user_id"]: u for u in env.client.get("/v1/projects/evals/users").json()["data"]}
    for user, u in users.items():
        mine = [c for c in convs if user in c.users]
        labels = [want_sessions[c.session_id] for c in mine]
        assert u["annotations"]["user_frustration"]["count"] == len(mine)
        assert u["annotations"]["user_frustration"]["mean_score"] == labels.count("frustrated") / len(labels)

    # Where each conversation breaks.
    for conv in convs:
        body = env.client.get(f"/v1/projects/evals/sessions/{quote(conv.session_id, safe='')}/breakdown").json()
        assert [t["trace_id"] for t in body["turns"]] == [t.trace_id for t in conv.turns]
        broken = next((i for i, t in enumerate(conv.turns) if t.fail or t.frustrated), None)
        if broken is None:
            assert body["first_broken_turn"] is None
            continue
        first = body["first_broken_turn"]
        assert (first["trace_id"], first["index"]) == (conv.turns[broken].trace_id, broken)
        turn = conv.turns[broken]
        assert ("error: model timed out" in first["reason"]) == turn.fail
        assert ("user_frustration: frustrated" in first["reason"]) == turn.frustrated
        trend = [t["annotations"]["user_frustration"]["mean_score"] for t in body["turns"]]
        assert trend == [1.0 if t.frustrated else 0.0 for t in conv.turns]
        assert [t["broken"] for t in body["turns"]] == [t.fail or t.frustrated for t in conv.turns]

    # Rankings: users by the mean score of their sessions' annotations, worst first, paged.
    means = {}
    for user in users:
        labels = [want_sessions[c.session_id] for c in convs if user in c.users]
        means[user] = labels.count("frustrated") / len(labels)
    expected = sorted(means.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    got: list[tuple[str, float]] = []
    cursor = None
    while True:
        page = env.client.get("/v1/projects/evals/rankings", params={
            "name": "user_frustration", "target_kind": "user", "limit": 1, **({"cursor": cursor} if cursor else {})
        }).json()
        got += [(r["target_id"], r["mean_score"]) for r in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert got == expected
    worst = env.client.get("/v1/projects/evals/rankings", params={
        "name": "user_frustration", "target_kind": "session", "min_score": 0.5, "order": "asc"}).json()["data"]
    assert [r["target_id"] for r in worst] == sorted(s for s, label in want_sessions.items() if label == "frustrated")
    assert all(r["mean_score"] == 1.0 and r["count"] == 1 for r in worst)
    assert all(r["session"]["session_id"] == r["target_id"] for r in worst)
    assert worst[0]["session"]["annotations"]["user_frustration"]["labels"] == {"frustrated": 1}
    top_user = env.client.get("/v1/projects/evals/rankings", params={
        "name": "user_frustration", "target_kind": "user", "limit": 1}).json()["data"][0]
    assert top_user["user"]["user_id"] == expected[0][0] and top_user["user"]["sessions"] >= 1
    turns_ranked = env.client.get("/v1/projects/evals/rankings", params={
        "name": "user_frustration", "target_kind": "trace", "limit": 1000}).json()["data"]
    assert {r["target_id"] for r in turns_ranked if r["mean_score"] == 1.0} == {
        t for t, label in want_turns.items() if label == "frustrated"}


def test_eval_run_bad_input_is_a_usage_error(env: Env) -> None:
    unknown = env.cli("eval", "run", "--project", "evals", "--evaluator", "nope")
    assert unknown.returncode == 2 and "unknown evaluator" in unknown.stderr
    no_project = env.cli("eval", "run", "--project", "missing", "--evaluator", "errors")
    assert no_project.returncode == 1 and "no project 'missing'" in no_project.stderr
    no_judge = env.cli("eval", "run", "--project", "evals", "--evaluator", "helpfulness",
                       THREADLINE_JUDGE_BASE_URL="")
    assert no_judge.returncode == 2 and "THREADLINE_JUDGE_BASE_URL" in no_judge.stderr


def test_eval_run_filters(env: Env) -> None:
    convs = env.sent["filters"]

    def evaluated() -> set[str]:
        return {str(n["target_id"]) for n in env.annotations("filters", name="errors", target_kind="session")}

    picked = env.cli("eval", "run", "--project", "filters", "--evaluator", "errors", "--sessions", "calm-1,tools",
                     "--session", "angry/2 ü")
    assert picked.returncode == 0, picked.stderr
    assert evaluated() == {"calm-1", "tools", "angry/2 ü"}

    closed_only = env.cli("eval", "run", "--project", "filters", "--evaluator", "errors", "--closed-only")
    assert closed_only.returncode == 0 and "0 session(s) matched" in closed_only.stdout
    assert env.client.post("/v1/projects/filters/sessions/long/close").status_code == 200
    closed_only = env.cli("eval", "run", "--project", "filters", "--evaluator", "errors", "--closed-only")
    assert closed_only.returncode == 0 and "1 session(s) matched" in closed_only.stdout
    assert evaluated() == {"calm-1", "tools", "angry/2 ü", "long"}

    since_ns = convs[2].start_ns + 10**9  # after the start of "fail then angry"
    since = datetime.fromtimestamp(since_ns / 1e9, tz=UTC).isoformat()
    recent = env.cli("eval", "run", "--project", "filters", "--evaluator", "errors", "--since", since)
    assert recent.returncode == 0, recent.stderr
    active = {c.session_id for c in convs if c.turns[-1].start_ns + c.turns[-1].latency_ms * 10**6 >= since_ns}
    assert evaluated() == {"calm-1", "tools", "angry/2 ü", "long"} | active
    assert "fail then angry" in active and "calm-1" not in active
    assert env.cli("eval", "run", "--project", "filters", "--evaluator", "errors", "--since",
                   "last tuesday").returncode == 2


def test_eval_run_reads_the_database_from_the_environment(env: Env) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "threadline", "eval", "run", "--project", "filters", "--evaluator", "latency"],
        env={**os.environ, "THREADLINE_DATABASE_URL": env.db_url, "THREADLINE_HOME": str(env.home)},
        capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    labels = {n["target_id"]: n["label"] for n in env.annotations("filters", name="latency", target_kind="trace")}
    assert labels == {t.trace_id: "ok" for c in env.sent["filters"] for t in c.turns}  # all well under 10 s


def test_small_token_budget_omits_oldest_turns_whole(env: Env) -> None:
    long = next(c for c in env.sent["filters"] if c.session_id == "long")
    asked = len(env.judge.requests)
    result = env.cli("eval", "run", "--project", "filters", "--evaluator", "user_frustration", "--session", "long",
                     "--identifier", "small-budget", THREADLINE_JUDGE_TOKEN_BUDGET="256")
    assert result.returncode == 0, result.stderr
    prompts = env.judge.prompts()[asked:]
    assert len(prompts) == 1 + len(long.turns)
    session_note = env.annotations("filters", name="user_frustration", identifier="small-budget",
                                   target_kind="session")[0]
    omitted = session_note["metadata"]["omitted_turns"]  # type: ignore[index]
    assert 0 < omitted < len(long.turns)
    session_prompt = next(p for p in prompts if "<conversation>" in p)
    assert f"[{omitted} earlier turns omitted to fit the judge's budget]" in session_prompt
    assert f"Turn {omitted}\n" not in session_prompt and f"Turn {len(long.turns)}\n" in session_prompt
    for prompt in prompts:  # whole messages only
        for n, t in enumerate(long.turns):
            if f"Turn {n + 1}\n" in prompt:
                assert f"Turn {n + 1}\nUser: {t.question}\nAssistant: {t.answer}" in prompt
