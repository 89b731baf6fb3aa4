"""Retention against a real server, on SQLite and PostgreSQL: spans dated days ago are purged on
schedule by the lifecycle loop, per-project settings override the global one, the rollups left equal
a fresh recount from what remains, and spans sent while the purge runs are all stored."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
from opentelemetry.sdk.trace import ReadableSpan

from support.otlp import SpanMaker, TurnSpec, export_http
from support.server import ServerProcess

from .rest import Api, q

DAY = 86_400 * 10**9
HOUR = 3_600 * 10**9


def turns(project: str, session: str | None, user: str | None, count: int, start_ns: int) -> list[ReadableSpan]:
    maker = SpanMaker(project)
    spans: list[ReadableSpan] = []
    for k in range(count):
        spans += maker.turn(TurnSpec(question=f"q{k} {session}", answer=f"a{k}", session_id=session, user_id=user,
                                     prompt_tokens=3, completion_tokens=2), start_ns + k * 10**9)
    maker.shutdown()
    return spans


def send(spans: list[ReadableSpan], server: ServerProcess) -> None:
    assert export_http(spans, server.otlp_http_url).name == "SUCCESS"


def wait_until(what: str, check: Callable[[], bool], timeout: float = 90.0) -> None:
    """Poll ``check`` until it holds (a deadline, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def recount(api: Api, project: str) -> None:
    """The project's, sessions' and users' counters equal counts made from the remaining spans."""
    spans = api._all(f"/v1/projects/{q(project)}/spans")
    traces = api._all(f"/v1/projects/{q(project)}/traces")
    sessions = api.sessions(project)
    users = api.users(project)
    counters = api.project(project)
    assert (counters["spans"], counters["traces"], counters["sessions"], counters["users"]) == (
        len(spans), len(traces), len(sessions), len(users))
    assert len({s["trace_id"] for s in spans}) == len(traces)
    by_session = Counter(s["session_id"] for s in spans if s["session_id"])
    traces_by_session = Counter(t["session_id"] for t in traces if t["session_id"])
    for sid, summary in sessions.items():
        assert summary["spans"] == by_session[sid], sid
        assert summary["turns"] == traces_by_session[sid], sid  # one trace per turn in this traffic
    for uid, user in users.items():
        mine = [s for s in sessions.values() if uid in s["user_ids"]]
        assert user["sessions"] == len(mine), uid
        assert user["turns"] == sum(s["turns"] for s in mine), uid


def session_ids(api: Api, project: str) -> set[str]:
    return set(api.sessions(project))


def test_retention_purges_old_sessions_on_schedule(db_url: str, server_factory: Callable[..., ServerProcess]
                                                   ) -> None:
    server = server_factory(db_url, THREADLINE_RETENTION_DAYS="7", THREADLINE_LIFECYCLE_INTERVAL_SECONDS="0.2",
                            THREADLINE_RETENTION_BATCH_SESSIONS="3")
    api = Api(server.base_url)
    admin = httpx.Client(base_url=server.base_url, timeout=30)
    now = time.time_ns()
    old, day_ago, hour_ago = now - 10 * DAY, now - DAY, now - HOUR
    # Projects with their own retention first (a recent span creates them, then the setting).
    for project, days in (("keeps-30", 30), ("keeps-half-day", 0.5)):
        send(turns(project, "seed", "seeder", 1, hour_ago), server)
        wait_until(f"{project} exists", lambda p=project: api.project(p).get("spans") == 2)
        answer = admin.put(f"/v1/projects/{project}/settings", json={"retention_days": days})
        assert answer.status_code == 200, answer.text
        assert answer.json()["effective_retention_days"] == days
    assert admin.put("/v1/projects/keeps-30/settings", json={"retention_days": -1}).status_code == 400
    settings: dict[str, Any] = admin.get("/v1/projects/keeps-30/settings").json()
    assert (settings["retention_days"], settings["effective_retention_days"]) == (30, 30)

    # Project "global": 24 old sessions (purged 3 per transaction), an old trace without a session,
    # recent sessions that must survive, a user seen only long ago and one seen both then and now.
    old_spans: list[ReadableSpan] = []
    for i in range(24):
        old_spans += turns("global", f"old-{i}", "ancient" if i % 2 else "both", 2, old + i * 10**9)
    old_spans += turns("global", None, "ancient", 1, old)
    send(old_spans, server)
    send(turns("keeps-30", "ten-days", "u", 2, old), server)
    send(turns("keeps-half-day", "yesterday", "u", 2, day_ago), server)
    # Ingest while the purge runs: every one of these spans must be stored.
    recent: list[ReadableSpan] = []
    for i in range(10):
        batch = turns("global", f"new-{i}", "both" if i == 0 else f"user-{i}", 2, day_ago + i * 10**9)
        send(batch, server)
        recent += batch
    recent += turns("global", None, "nobody-else", 1, hour_ago)
    send(recent[-3:], server)

    expected = {f"new-{i}" for i in range(10)}
    wait_until("old sessions purged", lambda: session_ids(api, "global") == expected)
    wait_until("old trace purged", lambda: api.project("global").get("spans") == len(recent))
    wait_until("yesterday purged under a half-day retention",
               lambda: session_ids(api, "keeps-half-day") == {"seed"})
    assert session_ids(api, "keeps-30") == {"seed", "ten-days"}  # its own 30 days win over the global 7

    users = api.users("global")
    assert "ancient" not in users  # every session and trace of theirs was purged
    assert users["both"]["sessions"] == 1 and users["both"]["turns"] == 2
    stored = {(s["trace_id"], s["span_id"]) for s in api._all("/v1/projects/global/spans")}
    assert len(stored) == len(recent)
    for project in ("global", "keeps-30", "keeps-half-day"):
        recount(api, project)
    assert "retention (7 days) purged from project global" in server.log()
    admin.close()
