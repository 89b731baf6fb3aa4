"""A small client for annotating spans, turns, sessions and users of a Threadline server.

Standard library only (``urllib.request``), so it works with the plain SDK install::

    from threadline.annotations_client import AnnotationsClient

    client = AnnotationsClient("http://localhost:6006", project="support-bot")
    client.annotate("session", "session-42", name="resolved", label="yes", score=1.0,
                    annotator_kind="HUMAN", identifier="alice")
    client.close_session("session-42")
"""

from __future__ import annotations

import json
import math
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

TARGET_KINDS = ("span", "trace", "session", "user")
ANNOTATOR_KINDS = ("HUMAN", "LLM", "CODE")


class ThreadlineApiError(RuntimeError):
    """The server answered with an error (``status``, ``code`` and ``message`` from its error body)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def annotation(
    target_kind: str, target_id: str, *, name: str, label: str | None = None, score: float | None = None,
    explanation: str | None = None, annotator_kind: str = "HUMAN", identifier: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One annotation as the API expects it, checked locally (``ValueError`` with what is wrong)."""
    if target_kind not in TARGET_KINDS:
        raise ValueError(f"target_kind must be one of {', '.join(TARGET_KINDS)}, not {target_kind!r}")
    if not isinstance(target_id, str) or not target_id:
        raise ValueError("target_id must be a non-empty string")
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string")
    if label is None and score is None:
        raise ValueError("an annotation needs a label, a score or both")
    numeric = isinstance(score, int | float) and not isinstance(score, bool)
    if score is not None and not (numeric and math.isfinite(score)):
        raise ValueError("score must be a finite number")
    if annotator_kind not in ANNOTATOR_KINDS:
        raise ValueError(f"annotator_kind must be one of {', '.join(ANNOTATOR_KINDS)}, not {annotator_kind!r}")
    return {"target_kind": target_kind, "target_id": target_id, "name": name, "label": label,
            "score": float(score) if score is not None else None, "explanation": explanation,
            "annotator_kind": annotator_kind, "identifier": identifier, "metadata": dict(metadata or {})}


class AnnotationsClient:
    """Annotate and close sessions through the REST API of one project."""

    def __init__(self, base_url: str = "http://127.0.0.1:6006", project: str = "default", *,
                 timeout: float = 30.0, headers: Mapping[str, str] | None = None, api_key: str | None = None) -> None:
        """``api_key``: a key of role member or admin, sent as ``Authorization: Bearer …`` (default
        ``$THREADLINE_API_KEY``), for a server run with ``THREADLINE_AUTH=true``."""
        self.base_url = base_url.rstrip("/")
        self.project = project
        self.timeout = timeout
        self.headers = dict(headers or {})
        key = api_key if api_key is not None else os.environ.get("THREADLINE_API_KEY")
        if key and not any(name.lower() == "authorization" for name in self.headers):
            self.headers["authorization"] = f"Bearer {key}"

    def _url(self, *parts: str, **params: Any) -> str:
        path = "/".join(quote(p, safe="") for p in ("v1", "projects", self.project, *parts))
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return f"{self.base_url}/{path}" + (f"?{query}" if query else "")

    def _call(self, method: str, url: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={
            **self.headers, "accept": "application/json", **({"content-type": "application/json"} if data else {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read())["error"]
                code, message = str(error["code"]), str(error["message"])
            except (ValueError, KeyError, TypeError):
                code, message = "http_error", str(exc.reason)
            raise ThreadlineApiError(exc.code, code, message) from None
        return json.loads(raw) if raw else None

    def annotate(
        self, target_kind: str, target_id: str, *, name: str, label: str | None = None, score: float | None = None,
        explanation: str | None = None, annotator_kind: str = "HUMAN", identifier: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create or update (same target, name and identifier) one annotation; returns it as stored."""
        body = annotation(target_kind, target_id, name=name, label=label, score=score, explanation=explanation,
                          annotator_kind=annotator_kind, identifier=identifier, metadata=metadata)
        result: dict[str, Any] = self._call("POST", self._url("annotations"), body)["data"][0]
        return result

    def annotate_many(self, annotations: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Create or update several annotations (see :func:`annotation`) in one transaction."""
        items = [annotation(**dict(a)) for a in annotations]
        result: list[dict[str, Any]] = self._call("POST", self._url("annotations"), {"data": items})["data"]
        return result

    def annotations(self, **filters: Any) -> list[dict[str, Any]]:
        """Every annotation matching ``filters`` (target_kind, target_id, name, identifier, annotator_kind, label)."""
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self._call("GET", self._url("annotations", limit=1000, cursor=cursor, **filters))
            out.extend(page["data"])
            cursor = page["next_cursor"]
            if not cursor:
                return out

    def delete_annotation(self, annotation_id: int) -> None:
        """Delete an annotation by id."""
        self._call("DELETE", self._url("annotations", str(annotation_id)))

    def close_session(self, session_id: str) -> dict[str, Any]:
        """Close a session now (its project's online evaluators then run on it)."""
        result: dict[str, Any] = self._call("POST", self._url("sessions", session_id, "close"))
        return result
