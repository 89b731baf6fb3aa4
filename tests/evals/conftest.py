"""One server per backend for the eval tests, a fake judge, and the conversations sent to it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from support.databases import BACKENDS, fresh_database
from support.fake_judge import FakeJudge
from support.server import ServerProcess, new_server

from .traffic import Conversation, conversations, send

PROJECTS = ("evals", "notes", "resume", "life", "failing", "metrics", "api", "filters")


@dataclass
class Env:
    """A running server on one backend, the fake judge it uses, and what was sent per project."""

    db_url: str
    home: Path
    server: ServerProcess
    judge: FakeJudge
    client: httpx.Client
    sent: dict[str, list[Conversation]] = field(default_factory=dict)

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``python -m threadline …`` on the same store as the server."""
        return subprocess.run(
            [sys.executable, "-m", "threadline", *args, "--db", self.db_url],
            env={**os.environ, **self.judge_env(), "THREADLINE_HOME": str(self.home), **env},
            capture_output=True, text=True, timeout=240,
        )

    def judge_env(self) -> dict[str, str]:
        return {"THREADLINE_JUDGE_BASE_URL": self.judge.base_url, "THREADLINE_JUDGE_MODEL": "gpt-4o-mini",
                "THREADLINE_JUDGE_API_KEY": "test-key", "THREADLINE_JUDGE_RETRY_BACKOFF_SECONDS": "0.05",
                "THREADLINE_JUDGE_MAX_RETRIES": "3"}

    def annotations(self, project: str, **filters: str) -> list[dict[str, object]]:
        items: list[dict[str, object]] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 1000, **filters, **({"cursor": cursor} if cursor else {})}
            response = self.client.get(f"/v1/projects/{project}/annotations", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            items.extend(body["data"])
            cursor = body["next_cursor"]
            if not cursor:
                return items


#: The evals server's default idle timeout: longer than the age of the test traffic.
LONG_IDLE_SECONDS = 10**9


@pytest.fixture(scope="module", params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp(f"evals-{request.param}")
    judge = FakeJudge().start()
    with fresh_database(request.param, tmp) as url:
        home = tmp / "home"
        # The traffic is dated 2025: sessions idle since then would close at once under the
        # default timeout (idleness counts from a session's latest span), so the default here is
        # longer than their age; test_lifecycle sets short ones per project.
        server = new_server(url, home, THREADLINE_LIFECYCLE_INTERVAL_SECONDS="0.2",
                            THREADLINE_SESSION_IDLE_TIMEOUT_SECONDS=str(LONG_IDLE_SECONDS),
                            THREADLINE_JUDGE_BASE_URL=judge.base_url,
                            THREADLINE_JUDGE_RETRY_BACKOFF_SECONDS="0.05").start()
        try:
            sent = {}
            for project in PROJECTS:
                sent[project] = conversations()
                send(server.base_url + "/v1/traces", project, sent[project])
            with httpx.Client(base_url=server.base_url, timeout=30) as client:
                yield Env(url, home, server, judge, client, sent)
        finally:
            server.stop()
            judge.stop()
