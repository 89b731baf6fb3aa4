"""Project names, session ids and user ids round-trip through every route (DESIGN §5).

Names with ``/``, ``%``, spaces and unicode are sent through the real OTLP exporter, then reached
percent-encoded in every API and UI route; names over the limit are refused at ingest, never cut
into another project.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from support.databases import BACKENDS, fresh_database
from support.otlp import PROTOBUF, SpanMaker, TurnSpec, export_http, protobuf_body
from support.server import ServerProcess, new_server

NAMES = ["a/b", "50% off", "with space", "ünïcødé ✓", "trailing/", "a%2Fb"]


def q(value: str) -> str:
    return quote(value, safe="")


@pytest.fixture(scope="module", params=BACKENDS)
def named(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp(f"names-{request.param}")
    with fresh_database(request.param, tmp) as url:
        server = new_server(url, tmp / "home").start()
        try:
            for name in NAMES:
                maker = SpanMaker(name)  # the resource attribute: HTTP headers cannot carry unicode
                spans = maker.turn(TurnSpec(question=f"question in {name}", answer="answer", session_id=f"s/{name}",
                                            user_id=f"u/{name}"))
                maker.shutdown()
                result = export_http(spans, server.otlp_http_url)
                assert result.name == "SUCCESS"
            yield server
        finally:
            server.stop()


@pytest.mark.parametrize("name", NAMES)
def test_every_route_reaches_the_project(named: ServerProcess, name: str) -> None:
    base = named.base_url
    projects = {p["name"] for p in httpx.get(f"{base}/v1/projects", timeout=30).json()["data"]}
    assert name in projects
    p, s, u = q(name), q(f"s/{name}"), q(f"u/{name}")
    sessions = httpx.get(f"{base}/v1/projects/{p}/sessions", timeout=30)
    assert sessions.status_code == 200 and [x["session_id"] for x in sessions.json()["data"]] == [f"s/{name}"]
    session = httpx.get(f"{base}/v1/projects/{p}/sessions/{s}", timeout=30).json()
    assert session["project"] == name and session["turns"][0]["input"] == f"question in {name}"
    assert httpx.get(f"{base}/v1/projects/{p}/users/{u}", timeout=30).json()["user_id"] == f"u/{name}"
    trace_id = session["turns"][0]["trace_id"]
    assert httpx.get(f"{base}/v1/projects/{p}/traces/{trace_id}", timeout=30).json()["session_id"] == f"s/{name}"
    for path in (f"/v1/projects/{p}/spans", f"/v1/projects/{p}/traces", f"/v1/projects/{p}/metrics",
                 f"/v1/projects/{p}/settings", f"/v1/projects/{p}/sessions/{s}/state",
                 f"/projects/{p}/sessions", f"/projects/{p}/sessions/{s}", f"/projects/{p}/users/{u}",
                 f"/projects/{p}/traces/{trace_id}"):
        response = httpx.get(base + path, timeout=30)
        assert response.status_code == 200, (path, response.text[:300])
    page = httpx.get(f"{base}/projects/{p}/sessions", timeout=30).text
    assert f'href="/projects/{p}/sessions/{s}' in page, "links carry the names percent-encoded"
    annotated = httpx.post(f"{base}/v1/projects/{p}/annotations", timeout=30, json={
        "target_kind": "session", "target_id": f"s/{name}", "name": "names", "label": "ok"})
    assert annotated.status_code == 200, annotated.text
    closed = httpx.post(f"{base}/v1/projects/{p}/sessions/{s}/close", timeout=30)
    assert closed.status_code == 200, closed.text


def test_an_unknown_name_with_a_slash_is_a_404(named: ServerProcess) -> None:
    response = httpx.get(f"{named.base_url}/v1/projects/{q('a/c')}/sessions/{q('s/a/b')}", timeout=30)
    assert response.status_code == 404 and "a/c" in response.json()["error"]["message"]


def test_overlong_project_names_are_refused_not_cut(named: ServerProcess) -> None:
    long_a, long_b = "x" * 256 + "a", "x" * 256 + "b"
    maker = SpanMaker()
    body = protobuf_body(maker.turn(TurnSpec(question="q", answer="a", session_id="long")))
    by_header = httpx.post(named.otlp_http_url, content=body, timeout=30,
                           headers={"content-type": PROTOBUF, "x-project-name": long_a})
    assert by_header.status_code == 400 and "256" in Status.FromString(by_header.content).message
    resource = SpanMaker(long_b)
    spans = resource.turn(TurnSpec(question="q", answer="a", session_id="long"))
    body = protobuf_body(spans)
    by_resource = httpx.post(named.otlp_http_url, content=body, timeout=30, headers={"content-type": PROTOBUF})
    assert by_resource.status_code == 200
    answer = ExportTraceServiceResponse.FromString(by_resource.content)
    assert answer.partial_success.rejected_spans == len(spans) and "256" in answer.partial_success.error_message
    names = [p["name"] for p in httpx.get(f"{named.base_url}/v1/projects", timeout=30).json()["data"]]
    assert not [n for n in names if n.startswith("xxxx")], "no project made of a cut name"
    maker.shutdown()
    resource.shutdown()
