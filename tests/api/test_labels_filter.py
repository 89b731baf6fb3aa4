"""Sessions (and traces) filtered by tag and by metadata key/value, end to end on both backends: spans
made by the real OpenTelemetry SDK under ``threadline.using_tags`` / ``using_metadata`` (and
OpenInference's ``using_attributes``), exported over OTLP to a real server, read back through the
REST API, the sessions page and its export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from support.databases import BACKENDS, fresh_database
from support.server import ServerProcess, new_server
from threadline import register, using_attributes, using_metadata, using_session, using_tags

PROJECT = "labels ü/1"
P = quote(PROJECT, safe="")

#: session id → the turns sent in it: (tags, metadata) of each turn (one trace per turn).
SENT: dict[str, list[tuple[list[str], dict[str, Any]]]] = {
    "s-a": [(["beta", "vip"], {"plan": "pro", "region": "eu"})],
    "s-b": [(["beta"], {"plan": "pro", "region": "us"}), ([], {})],
    "s-c": [([], {}), (["gamma"], {"plan": "free", "seats": 3, "flags": {"x": True}})],
    "s-d": [([], {})],
    "s-e: colon/ü": [(["with space", "ü-tag"], {"url": "https://example.test/a:b"})],
}


@dataclass
class Served:
    server: ServerProcess
    client: httpx.Client


def send(base_url: str) -> None:
    """Every turn as an agent span with an LLM child, the context set the way apps set it."""
    provider = register(project_name=PROJECT, endpoint=base_url + "/v1/traces", set_global=False, batch=False)
    tracer = provider.get_tracer("labels-test")
    for session, turns in SENT.items():
        for index, (tags, metadata) in enumerate(turns):
            if session == "s-e: colon/ü":  # OpenInference's own context manager
                context: Any = using_attributes(session_id=session, tags=tags, metadata=metadata)
            else:
                context = _nested(session, tags, metadata)
            with context, tracer.start_as_current_span(f"turn {index}", attributes={
                    "openinference.span.kind": "AGENT", "input.value": f"question {session} {index}",
                    "output.value": f"answer {index}"}):
                tracer.start_span("llm", attributes={"openinference.span.kind": "LLM"}).end()
    provider.shutdown()


def _nested(session: str, tags: list[str], metadata: dict[str, Any]) -> ExitStack:
    """``using_session`` + ``using_tags`` + ``using_metadata`` (each only when given)."""
    stack = ExitStack()
    stack.enter_context(using_session(session))
    if tags:
        stack.enter_context(using_tags(tags))
    if metadata:
        stack.enter_context(using_metadata(metadata))
    return stack


@pytest.fixture(scope="module", params=BACKENDS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp: Path = tmp_path_factory.mktemp(f"labels-{request.param}")
    with fresh_database(request.param, tmp) as url:
        server = new_server(url, tmp / "home").start()
        try:
            send(server.base_url)
            with httpx.Client(base_url=server.base_url, timeout=30) as client:
                yield Served(server, client)
        finally:
            server.stop()


def sessions(served: Served, **params: Any) -> list[str]:
    response = served.client.get(f"/v1/projects/{P}/sessions", params=params)
    assert response.status_code == 200, response.text
    return sorted(row["session_id"] for row in response.json()["data"])


def test_sessions_by_tag(served: Served) -> None:
    assert sessions(served) == sorted(SENT)
    assert sessions(served, tag="beta") == ["s-a", "s-b"]
    assert sessions(served, tag="gamma") == ["s-c"]  # one trace of the session is enough
    assert sessions(served, tag="with space") == ["s-e: colon/ü"]
    assert sessions(served, tag="ü-tag") == ["s-e: colon/ü"]
    assert sessions(served, tag="no-such-tag") == []
    assert sessions(served, tag="beta", user_id="nobody") == []  # combined with the other filters


def test_sessions_by_metadata_pairs(served: Served) -> None:
    assert sessions(served, metadata="plan:pro") == ["s-a", "s-b"]
    assert sessions(served, metadata=["plan:pro", "region:eu"]) == ["s-a"]  # every pair must match
    assert sessions(served, metadata=["plan:pro", "region:asia"]) == []
    assert sessions(served, metadata="seats:3") == ["s-c"]  # non-strings as compact JSON
    assert sessions(served, metadata='flags:{"x":true}') == ["s-c"]
    assert sessions(served, metadata="url:https://example.test/a:b") == ["s-e: colon/ü"]  # split at the first :
    assert sessions(served, metadata="plan:pro", tag="vip") == ["s-a"]
    assert sessions(served, metadata="plan:") == []


def test_a_metadata_filter_without_colon_is_a_400(served: Served) -> None:
    for path in (f"/v1/projects/{P}/sessions", f"/v1/projects/{P}/traces"):
        response = served.client.get(path, params={"metadata": "plan"})
        assert response.status_code == 400
        assert "key:value" in response.json()["error"]["message"]
    page = served.client.get(f"/projects/{P}/sessions", params={"metadata": ":pro"})
    assert page.status_code == 400 and "key:value" in page.text


def test_traces_by_tag_and_metadata(served: Served) -> None:
    def traces(**params: Any) -> list[str]:
        response = served.client.get(f"/v1/projects/{P}/traces", params=params)
        assert response.status_code == 200, response.text
        return sorted(row["session_id"] for row in response.json()["data"])

    assert traces(tag="beta") == ["s-a", "s-b"]  # s-b's untagged trace is not listed
    assert traces(tag="gamma", metadata="plan:free") == ["s-c"]
    assert traces(metadata=["plan:pro", "region:us"]) == ["s-b"]


def test_the_sessions_page_and_its_export_keep_the_filters(served: Served) -> None:
    params = [("tag", "beta"), ("metadata", "plan:pro"), ("metadata", "region:eu")]
    page = served.client.get(f"/projects/{P}/sessions", params=params)
    assert page.status_code == 200
    assert "s-a" in page.text and "s-b" not in page.text and "s-c" not in page.text
    assert '<option value="gamma">' in page.text  # the project's tags are offered
    # The export link of the page carries every filter (both metadata pairs).
    export = served.client.get(f"/projects/{P}/export/sessions.csv", params=params)
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [r["session_id"] for r in rows] == ["s-a"]
    assert "metadata=plan%3Apro&amp;metadata=region%3Aeu" in page.text
