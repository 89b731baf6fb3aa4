"""Judge failures are retried with backoff and reported; a failed or killed run is completed by the
next one without duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from .conftest import Env


def _counts(env: Env, project: str, name: str) -> tuple[int, int, int]:
    notes = env.annotations(project, name=name)
    keys = {(n["target_kind"], n["target_id"], n["identifier"]) for n in notes}
    sessions = sum(1 for n in notes if n["target_kind"] == "session")
    return len(notes), len(keys), sessions


def test_transient_failures_are_retried(env: Env) -> None:
    convs = env.sent["resume"]
    env.judge.fail_next, env.judge.fail_status = 3, 429
    env.judge.garbage_next = 2
    try:
        result = env.cli("eval", "run", "--project", "resume", "--evaluator", "goal_completion")
    finally:
        env.judge.fail_next, env.judge.garbage_next, env.judge.fail_status = 0, 0, 500
    assert result.returncode == 0, result.stderr
    assert "5 retr(y/ies)" in result.stdout
    total, distinct, sessions = _counts(env, "resume", "goal_completion")
    assert (total, distinct, sessions) == (len(convs), len(convs), len(convs))


def test_permanent_failures_are_reported_then_completed(env: Env) -> None:
    convs = env.sent["failing"]
    turns = sum(len(c.turns) for c in convs)
    env.judge.fail_always = True
    try:
        failed = env.cli("eval", "run", "--project", "failing", "--evaluator", "user_frustration",
                         "--evaluator", "errors")
    finally:
        env.judge.fail_always = False
    assert failed.returncode == 1
    assert "judgement(s) failed" in failed.stderr and "FAILED user_frustration session" in failed.stderr
    assert "injected failure" in failed.stderr and "after 4 attempts" in failed.stderr
    # The code evaluator does not need the judge: it completed.
    assert _counts(env, "failing", "errors") == (len(convs) + turns, len(convs) + turns, len(convs))
    assert _counts(env, "failing", "user_frustration")[0] == 0

    done = env.cli("eval", "run", "--project", "failing", "--evaluator", "user_frustration", "--evaluator", "errors")
    assert done.returncode == 0, done.stderr
    assert _counts(env, "failing", "user_frustration") == (len(convs) + turns, len(convs) + turns, len(convs))
    errors = {n["target_id"]: n["label"] for n in env.annotations("failing", name="errors", target_kind="trace")}
    assert errors == {t.trace_id: "error" if t.fail else "ok" for c in convs for t in c.turns}


def test_killed_run_resumes_without_duplicates(env: Env) -> None:
    convs = env.sent["resume"]
    turns = sum(len(c.turns) for c in convs)
    env.judge.delay = 0.3
    proc = subprocess.Popen(
        [sys.executable, "-m", "threadline", "eval", "run", "--project", "resume", "--evaluator", "helpfulness",
         "--db", env.db_url],
        env={**os.environ, **env.judge_env(), "THREADLINE_HOME": str(env.home), "THREADLINE_JUDGE_CONCURRENCY": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _counts(env, "resume", "helpfulness")[2] < 2:
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        env.judge.delay = 0.0
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    partial_total, _, partial_sessions = _counts(env, "resume", "helpfulness")
    assert 2 <= partial_sessions < len(convs), "the run must have been killed half-way"
    asked = len(env.judge.requests)
    done = env.cli("eval", "run", "--project", "resume", "--evaluator", "helpfulness")
    assert done.returncode == 0, done.stderr
    total, distinct, sessions = _counts(env, "resume", "helpfulness")
    assert (total, distinct, sessions) == (len(convs) + turns, len(convs) + turns, len(convs))
    # Only what was missing was judged again.
    assert len(env.judge.requests) - asked <= turns - (partial_total - partial_sessions)
