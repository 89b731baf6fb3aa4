"""``threadline demo`` against a real server: what arrives matches the generator's own plan."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import httpx

from support.server import ServerProcess, free_port
from threadline.server.demo.conversations import ToolRun, TurnPlan, plan_demo

SESSIONS = 20
SEED = 11


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "threadline", "demo", *args], capture_output=True, text=True,
                          timeout=240, check=False)


def test_demo_fills_a_project_as_planned(server: ServerProcess) -> None:
    plan = plan_demo(SESSIONS, SEED, 7, datetime.now(UTC))
    turns = [t for p in plan for t in p.turns]
    failed = [t for t in turns if t.error is not None]
    users = {p.user_id for p in plan}
    tokens = sum(t.prompt_tokens + t.completion_tokens for t in turns)
    assert len(users) >= 3 and len(turns) > SESSIONS and failed and tokens > 0  # the plan itself is interesting

    done = run_demo("--endpoint", f"{server.base_url}/v1/traces", "--project", "demo-test",
                    "--sessions", str(SESSIONS), "--seed", str(SEED))
    assert done.returncode == 0, done.stderr + done.stdout + server.log()

    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        projects = {p["name"]: p for p in client.get("/v1/projects").json()["data"]}
        project = projects["demo-test"]
        assert project["sessions"] == SESSIONS
        assert project["traces"] == len(turns)
        assert project["spans"] == sum(t.span_count for t in turns)
        assert project["users"] == len(users)

        listed = client.get("/v1/projects/demo-test/sessions", params={"limit": 1000}).json()["data"]
        assert {s["session_id"] for s in listed} == {p.session_id for p in plan}
        assert {u for s in listed for u in s["user_ids"]} == users
        assert sum(s["turns"] for s in listed) == len(turns)
        assert sum(s["errors"] for s in listed) == len(failed)
        assert sum(s["tokens"]["total"] for s in listed) == tokens
        assert sum(s["cost_usd"] for s in listed) > 0

        # One conversation in detail: texts, statuses, LLM and tool calls as planned.
        richest = max(plan, key=lambda p: (sum(t.error is not None for t in p.turns), len(p.turns)))
        detail = client.get(f"/v1/projects/demo-test/sessions/{richest.session_id}").json()
        assert [t["input"] for t in detail["turns"]] == [t.user_message for t in richest.turns]
        assert [t["output"] for t in detail["turns"]] == [t.reply for t in richest.turns]
        assert [t["status"] for t in detail["turns"]] == ["error" if t.error else "ok" for t in richest.turns]
        assert all(call["model"] for t in detail["turns"] for call in t["llm_calls"])

        tool_names = {name for p in plan for t in p.turns for name in _tool_names(t)}
        seen_tools = set()
        for p in plan:
            body = client.get(f"/v1/projects/demo-test/sessions/{p.session_id}").json()
            seen_tools |= {call["name"] for t in body["turns"] for call in t["tool_calls"]}
        assert seen_tools == tool_names and tool_names

        frustrated = [p for p in plan if p.frustrated]
        if frustrated:  # the angriest message arrives as the last turn's input
            body = client.get(f"/v1/projects/demo-test/sessions/{frustrated[0].session_id}").json()
            assert body["turns"][-1]["input"] == frustrated[0].turns[-1].user_message


def _tool_names(turn: TurnPlan) -> list[str]:
    return [s.name for s in turn.steps if isinstance(s, ToolRun)]


def test_plan_is_deterministic_for_a_seed() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    first, again, other = plan_demo(40, 3, 7, now), plan_demo(40, 3, 7, now), plan_demo(40, 4, 7, now)
    assert first == again
    assert [p.session_id for p in first] != [p.session_id for p in other]
    assert any(p.frustrated for p in plan_demo(300, 7, 7, now))
    for p in first:
        assert 1 <= len(p.turns) <= 15
        assert all(now.timestamp() - 7 * 86400 <= t.start.timestamp() <= now.timestamp() for t in p.turns)


def test_demo_without_a_server_fails_clearly() -> None:
    done = run_demo("--endpoint", f"http://127.0.0.1:{free_port()}/v1/traces", "--sessions", "2")
    assert done.returncode == 1
    assert "cannot reach" in done.stderr
