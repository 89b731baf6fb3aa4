"""Read what a running server stored, through REST API v1 only (never its database)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx


def q(value: str) -> str:
    """Percent-encode one path segment (``/`` included)."""
    return quote(value, safe="")


class Api:
    """A tiny REST v1 client for assertions."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30)

    def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` and return its JSON; any status other than 200 fails the test."""
        response = self.client.get(path, params=params)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def projects(self) -> dict[str, dict[str, Any]]:
        """Every project by name."""
        return {p["name"]: p for p in self.get("/v1/projects")["data"]}

    def project(self, name: str) -> dict[str, Any]:
        """One project's counts (``{}`` when it does not exist)."""
        return self.projects().get(name, {})

    def _all(self, path: str, **params: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.get(path, limit=1000, **params, **({"cursor": cursor} if cursor else {}))
            rows.extend(page["data"])
            cursor = page["next_cursor"]
            if not cursor:
                return rows

    def sessions(self, project: str, **params: Any) -> dict[str, dict[str, Any]]:
        """Every session summary of ``project`` by session id."""
        return {s["session_id"]: s for s in self._all(f"/v1/projects/{q(project)}/sessions", **params)}

    def session(self, project: str, session_id: str) -> dict[str, Any]:
        """One session with its turns."""
        return dict(self.get(f"/v1/projects/{q(project)}/sessions/{q(session_id)}"))

    def users(self, project: str) -> dict[str, dict[str, Any]]:
        """Every user summary of ``project`` by user id."""
        return {u["user_id"]: u for u in self._all(f"/v1/projects/{q(project)}/users")}

    def trace(self, project: str, trace_id: str) -> dict[str, Any]:
        """One trace with its spans."""
        return dict(self.get(f"/v1/projects/{q(project)}/traces/{q(trace_id)}"))

    def spans(self, project: str, **params: Any) -> list[dict[str, Any]]:
        """Every span of ``project`` (all pages) matching ``params``."""
        return self._all(f"/v1/projects/{q(project)}/spans", **params)

    def span_ids(self, project: str, **params: Any) -> set[tuple[str, str]]:
        """``(trace_id, span_id)`` of every stored span of ``project``."""
        return {(s["trace_id"], s["span_id"]) for s in self.spans(project, **params)}

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()
