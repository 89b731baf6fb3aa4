"""The real OpenTelemetry SDK exporters → a real ``threadline serve`` → what REST API v1 shows.

Every transport of DESIGN §2: OTLP/HTTP protobuf on the main port and on the OTLP/HTTP port,
OTLP/gRPC (plain and gzip), OTLP/JSON (plain and gzip, hand-encoded from SDK spans because the
Python SDK has no JSON exporter); on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json

import httpx
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from support.otlp import (
    BASE_NS,
    JSON,
    PROTOBUF,
    SpanMaker,
    TurnSpec,
    export_grpc,
    export_http,
    gzipped,
    hex_trace_id,
    json_body,
    protobuf_body,
)
from support.server import ServerProcess

from .rest import Api

MINUTE_NS = 60_000_000_000


def conversation(session_id: str, users: list[str], turns: int, base_tokens: int) -> list[TurnSpec]:
    """``turns`` turns of one session, users taking turns, a tool in the first turn."""
    return [
        TurnSpec(question=f"{session_id} question {n} é✓", answer=f"{session_id} answer {n}",
                 session_id=session_id, user_id=users[n % len(users)],
                 prompt_tokens=base_tokens + n, completion_tokens=2 * n + 1, tool="weather" if n == 0 else None)
        for n in range(turns)
    ]


def assert_session(api: Api, project: str, specs: list[TurnSpec], traces: list[list[ReadableSpan]]) -> None:
    """The session of ``specs`` shows exactly those turns, users and tokens, in order."""
    session_id = specs[0].session_id
    assert session_id is not None
    summary = api.sessions(project)[session_id]
    expected_tokens = {"prompt": sum(s.prompt_tokens for s in specs),
                       "completion": sum(s.completion_tokens for s in specs),
                       "total": sum(s.total_tokens for s in specs)}
    assert summary["turns"] == len(specs)
    assert summary["spans"] == sum(len(t) for t in traces)
    assert sorted(summary["user_ids"]) == sorted({s.user_id for s in specs if s.user_id})
    assert summary["tokens"] == expected_tokens
    assert summary["errors"] == 0
    assert (summary["first_input"], summary["last_output"]) == (specs[0].question, specs[-1].answer)
    assert summary["cost_usd"] > 0  # gpt-4o-mini is in the price table

    detail = api.session(project, session_id)
    turns = detail["turns"]
    assert [t["trace_id"] for t in turns] == [hex_trace_id(t[0]) for t in traces]
    assert [t["index"] for t in turns] == list(range(len(specs)))
    for turn, spec in zip(turns, specs, strict=True):
        assert (turn["input"], turn["output"], turn["user_id"], turn["status"]) == (
            spec.question, spec.answer, spec.user_id, "ok")
        assert turn["tokens"] == {"prompt": spec.prompt_tokens, "completion": spec.completion_tokens,
                                  "total": spec.total_tokens}
        assert [(c["model"], c["tokens"]["total"]) for c in turn["llm_calls"]] == [(spec.model, spec.total_tokens)]
        assert [c["name"] for c in turn["tool_calls"]] == ([spec.tool] if spec.tool else [])
    assert sum(t["cost_usd"] for t in turns) == pytest.approx(summary["cost_usd"])

    trace = api.trace(project, turns[0]["trace_id"])
    assert trace["session_id"] == session_id
    assert {s["name"] for s in trace["spans"]} == {"agent", "llm", "tool"}
    assert all(s["session_id"] == session_id for s in trace["spans"])


def test_http_protobuf_on_the_main_port_and_the_otlp_port(shared_server: ServerProcess) -> None:
    api = Api(shared_server.base_url)
    maker = SpanMaker(project="http-proto")
    main = conversation("main-port", ["alice", "bob"], 3, 10)
    otlp = conversation("otlp-port", ["carol"], 2, 20)
    main_traces = maker.turns(main, BASE_NS)
    otlp_traces = maker.turns(otlp, BASE_NS + MINUTE_NS)
    for spans in main_traces:
        assert export_http(spans, shared_server.base_url + "/v1/traces") is SpanExportResult.SUCCESS
    for spans in otlp_traces:
        assert export_http(spans, shared_server.otlp_http_url, gzip_body=True) is SpanExportResult.SUCCESS

    assert_session(api, "http-proto", main, main_traces)
    assert_session(api, "http-proto", otlp, otlp_traces)
    project = api.project("http-proto")
    assert (project["sessions"], project["traces"], project["users"], project["spans"]) == (2, 5, 3, 12)
    users = api.users("http-proto")
    assert {u: (users[u]["sessions"], users[u]["turns"]) for u in users} == {
        "alice": (1, 2), "bob": (1, 1), "carol": (1, 2)}
    assert users["alice"]["tokens"]["total"] == main[0].total_tokens + main[2].total_tokens


@pytest.mark.parametrize("gzip_body", [False, True], ids=["plain", "gzip"])
def test_grpc_exporter(shared_server: ServerProcess, gzip_body: bool) -> None:
    api = Api(shared_server.base_url)
    project = f"grpc-{'gzip' if gzip_body else 'plain'}"
    maker = SpanMaker(project="ignored: the header wins")
    specs = conversation(f"{project}-session", ["dave", "erin"], 3, 7)
    traces = maker.turns(specs)
    assert export_grpc([s for t in traces for s in t], shared_server.grpc_target, gzip_body=gzip_body,
                       headers={"x-project-name": project}) is SpanExportResult.SUCCESS
    assert_session(api, project, specs, traces)
    assert "ignored: the header wins" not in api.projects()


def test_http_json_plain_and_gzip(shared_server: ServerProcess) -> None:
    api = Api(shared_server.base_url)
    maker = SpanMaker(project="json")
    specs = conversation("json-session", ["frank"], 4, 3)
    traces = maker.turns(specs)
    for n, spans in enumerate(traces):
        body = json_body(spans)
        headers = {"content-type": JSON}
        if n % 2:
            body, headers["content-encoding"] = gzipped(body), "gzip"
        response = httpx.post(shared_server.base_url + "/v1/traces", content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith(JSON)
        assert "partialSuccess" not in response.json()
    assert_session(api, "json", specs, traces)


def test_responses_are_in_the_request_encoding(shared_server: ServerProcess) -> None:
    maker = SpanMaker(project="encodings")
    spans = maker.turn(TurnSpec("q", "a", session_id="enc"))
    url = shared_server.otlp_http_url

    ok = httpx.post(url, content=protobuf_body(spans), headers={"content-type": PROTOBUF})
    assert ok.status_code == 200 and ok.headers["content-type"] == PROTOBUF
    ExportTraceServiceResponse.FromString(ok.content)  # a protobuf response, not JSON
    ok = httpx.post(url, content=json_body(spans), headers={"content-type": JSON})
    assert ok.status_code == 200 and ok.headers["content-type"] == JSON
    assert ok.json() == {}

    bad = httpx.post(url, content=b"\x0a\xff\xff", headers={"content-type": PROTOBUF})
    assert bad.status_code == 400 and bad.headers["content-type"] == PROTOBUF
    assert Status.FromString(bad.content).message
    bad = httpx.post(url, content=b"{", headers={"content-type": JSON})
    assert bad.status_code == 400 and bad.headers["content-type"] == JSON
    assert json.loads(bad.content)["message"]
    assert Api(shared_server.base_url).project("encodings")["spans"] == 2  # sent twice, stored once


def test_project_from_header_then_resource_then_default(shared_server: ServerProcess) -> None:
    api = Api(shared_server.base_url)
    from_resource = SpanMaker(project="from-resource")
    anonymous = SpanMaker()
    # header beats the resource attribute, on every transport
    header_spans = from_resource.turn(TurnSpec("h", "h", session_id="by-header"))
    assert export_http(header_spans, shared_server.base_url + "/v1/traces",
                       headers={"x-project-name": "from-header"}) is SpanExportResult.SUCCESS
    json_spans = from_resource.turn(TurnSpec("j", "j", session_id="by-header-json"))
    response = httpx.post(shared_server.otlp_http_url, content=json_body(json_spans),
                          headers={"content-type": JSON, "x-project-name": "from-header"})
    assert response.status_code == 200
    # the resource attribute when there is no header
    resource_spans = from_resource.turn(TurnSpec("r", "r", session_id="by-resource"))
    assert export_grpc(resource_spans, shared_server.grpc_target) is SpanExportResult.SUCCESS
    # neither: "default"
    default_spans = anonymous.turn(TurnSpec("d", "d", session_id="by-default"))
    assert export_http(default_spans, shared_server.otlp_http_url) is SpanExportResult.SUCCESS

    assert set(api.sessions("from-header")) == {"by-header", "by-header-json"}
    assert set(api.sessions("from-resource")) == {"by-resource"}
    assert "by-default" in api.sessions("default")
    assert api.trace("default", hex_trace_id(default_spans[0]))["session_id"] == "by-default"
