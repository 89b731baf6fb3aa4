"""A small client of Threadline's REST API v1 for tests that send spans and read them back."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx


class ThreadlineApi:
    """Read sessions, users and spans of a running ``threadline serve``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.base_url}{path}", params=params, timeout=30)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def projects(self) -> dict[str, dict[str, Any]]:
        body = self.get("/v1/projects")
        rows = body["data"] if isinstance(body, dict) else body  # a list page or a bare list
        return {p["name"]: p for p in rows}

    def sessions(self, project: str, **params: Any) -> dict[str, dict[str, Any]]:
        page = self.get(f"/v1/projects/{quote(project, safe='')}/sessions", limit=1000, **params)
        return {s["session_id"]: s for s in page["data"]}

    def session(self, project: str, session_id: str) -> dict[str, Any]:
        return dict(self.get(f"/v1/projects/{quote(project, safe='')}/sessions/{quote(session_id, safe='')}"))

    def user(self, project: str, user_id: str) -> dict[str, Any]:
        return dict(self.get(f"/v1/projects/{quote(project, safe='')}/users/{quote(user_id, safe='')}"))

    def spans(self, project: str, **params: Any) -> list[dict[str, Any]]:
        return list(self.get(f"/v1/projects/{quote(project, safe='')}/spans", limit=1000, **params)["data"])
