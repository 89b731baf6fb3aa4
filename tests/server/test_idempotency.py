"""A span is (project, trace_id, span_id): resending stores nothing twice and counts nothing twice.

Also the order-independence of DESIGN §3: a trace split over several requests, sent child first,
lands in one turn of its session whatever arrives when.
"""

from __future__ import annotations

from typing import Any

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from support.otlp import (
    BASE_NS,
    JSON,
    SpanMaker,
    TurnSpec,
    export_grpc,
    export_http,
    hex_span_id,
    hex_trace_id,
    json_body,
)
from support.server import ServerProcess

from .rest import Api


def snapshot(api: Api, project: str) -> dict[str, Any]:
    """Every count the API shows for ``project`` (wall-clock ``last_seen`` of the project aside)."""
    summary = dict(api.project(project))
    summary.pop("last_seen", None)
    sessions = api.sessions(project)
    return {
        "project": summary,
        "sessions": sessions,
        "details": {sid: api.session(project, sid) for sid in sessions},
        "users": api.users(project),
        "spans": sorted((s["trace_id"], s["span_id"], s["session_id"] or "", s["user_id"] or "")
                        for s in api.spans(project)),
    }


def test_resending_a_batch_five_times_changes_no_count(shared_server: ServerProcess) -> None:
    api = Api(shared_server.base_url)
    maker = SpanMaker(project="resend")
    specs = [TurnSpec(f"q{n}", f"a{n}", session_id=f"session-{n % 3}", user_id=["ann", "ben"][n % 2],
                      prompt_tokens=10 + n, completion_tokens=n + 1, fail=n == 4, tool="search" if n == 2 else None)
             for n in range(7)]
    batch: list[ReadableSpan] = [s for t in maker.turns(specs) for s in t]
    url = shared_server.base_url + "/v1/traces"

    assert export_http(batch, url) is SpanExportResult.SUCCESS
    once = snapshot(api, "resend")
    assert once["project"] == {"name": "resend", "spans": 15, "traces": 7, "sessions": 3, "users": 2}
    assert sum(s["turns"] for s in once["sessions"].values()) == 7
    assert sum(s["tokens"]["total"] for s in once["sessions"].values()) == sum(s.total_tokens for s in specs)
    assert sum(s["errors"] for s in once["sessions"].values()) == 1

    # the same batch again, four more times, over every transport
    assert export_http(batch, shared_server.otlp_http_url, gzip_body=True) is SpanExportResult.SUCCESS
    assert export_grpc(batch, shared_server.grpc_target) is SpanExportResult.SUCCESS
    response = httpx.post(url, content=json_body(batch), headers={"content-type": JSON})
    assert response.status_code == 200
    assert export_http(batch[::-1], url) is SpanExportResult.SUCCESS  # reordered within the batch too
    assert snapshot(api, "resend") == once


def test_a_trace_split_over_requests_in_reverse_order_is_one_turn(shared_server: ServerProcess) -> None:
    api = Api(shared_server.base_url)
    maker = SpanMaker(project="split")
    root = maker.span("http request", start_ns=BASE_NS, attributes={
        "openinference.span.kind": "CHAIN", "input.value": "what is the weather in Paris?",
        "output.value": "It is sunny in Paris."})
    agent = maker.span("agent", parent=root, start_ns=BASE_NS + 1_000)
    llm = maker.span("llm", parent=agent, start_ns=BASE_NS + 2_000, attributes={
        "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
        "llm.token_count.prompt": 40, "llm.token_count.completion": 9, "llm.token_count.total": 49,
        "input.value": "inner prompt", "output.value": "inner reply"})
    llm.end(end_time=BASE_NS + 500_000_000)
    tool = maker.span("tool", parent=agent, start_ns=BASE_NS + 600_000_000, attributes={
        "openinference.span.kind": "TOOL", "tool.name": "weather", "session.id": "split-session",
        "user.id": "late-user"})
    tool.end(end_time=BASE_NS + 700_000_000)
    agent.end(end_time=BASE_NS + 800_000_000)
    root.end(end_time=BASE_NS + 900_000_000)
    by_name = {s.name: s for s in maker.take()}
    trace_id = hex_trace_id(by_name["llm"])

    # an earlier turn of the same session, so the split trace must become the *second* turn
    first = maker.turn(TurnSpec("hello", "hi", session_id="split-session", user_id="late-user",
                                prompt_tokens=1, completion_tokens=1), start_ns=BASE_NS - 60_000_000_000)
    assert export_http(first, shared_server.otlp_http_url) is SpanExportResult.SUCCESS

    requests = [[by_name["llm"]], [by_name["tool"], by_name["agent"]], [by_name["http request"]]]
    assert export_grpc(requests[0], shared_server.grpc_target) is SpanExportResult.SUCCESS
    assert api.trace("split", trace_id)["session_id"] is None  # nothing names the session yet
    assert export_http(requests[1], shared_server.base_url + "/v1/traces") is SpanExportResult.SUCCESS
    response = httpx.post(shared_server.otlp_http_url, content=json_body(requests[2]),
                          headers={"content-type": JSON})
    assert response.status_code == 200

    def check() -> dict[str, Any]:
        session = api.session("split", "split-session")
        assert len(session["turns"]) == 2
        turn = session["turns"][1]
        assert turn["trace_id"] == trace_id
        assert (turn["input"], turn["output"]) == ("what is the weather in Paris?", "It is sunny in Paris.")
        assert turn["tokens"] == {"prompt": 40, "completion": 9, "total": 49}
        assert turn["user_id"] == "late-user"
        assert [c["span_id"] for c in turn["llm_calls"]] == [hex_span_id(by_name["llm"])]
        assert [c["name"] for c in turn["tool_calls"]] == ["weather"]
        assert session["tokens"] == {"prompt": 41, "completion": 10, "total": 51}
        assert (session["spans"], session["user_ids"]) == (6, ["late-user"])
        assert session["last_output"] == "It is sunny in Paris."
        trace = api.trace("split", trace_id)
        assert trace["session_id"] == "split-session"
        assert len(trace["spans"]) == 4
        assert all(s["session_id"] == "split-session" and s["user_id"] == "late-user" for s in trace["spans"])
        users = api.users("split")
        assert {u: (users[u]["sessions"], users[u]["turns"], users[u]["tokens"]["total"]) for u in users} == {
            "late-user": (1, 2, 51)}
        return session

    before = check()
    assert api.project("split")["sessions"] == 1
    for request in requests:  # the pieces again, in order this time: still one turn, counted once
        assert export_http(request, shared_server.base_url + "/v1/traces") is SpanExportResult.SUCCESS
    assert check() == before
