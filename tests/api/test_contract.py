"""The REST API v1 contract of DESIGN.md §5, field by field, on both backends."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from .conftest import Filled

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SESSION_FIELDS = {"session_id", "project", "user_ids", "start_time", "end_time", "duration_ms", "turns", "spans",
                  "errors", "tokens", "cost_usd", "latency_ms", "first_input", "last_output", "annotations"}
TURN_FIELDS = {"trace_id", "index", "start_time", "end_time", "latency_ms", "user_id", "input", "output", "status",
               "error", "tokens", "cost_usd", "llm_calls", "tool_calls", "annotations", "trace_ids", "steps"}
USER_FIELDS = {"user_id", "project", "first_seen", "last_seen", "sessions", "turns", "errors", "tokens", "cost_usd",
               "annotations"}
SPAN_FIELDS = {"trace_id", "span_id", "parent_span_id", "name", "kind", "start_time", "end_time", "latency_ms",
               "status", "status_message", "session_id", "user_id", "input", "output", "attributes", "events"}


def all_pages(filled: Filled, path: str, **params: object) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = filled.client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) - {"prev_cursor"} == {"data", "next_cursor"}  # sessions and users go back too
        items.extend(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def sessions_path(filled: Filled) -> str:
    return f"/v1/projects/{filled.project}/sessions"


def test_projects(filled: Filled) -> None:
    body = filled.client.get("/v1/projects").json()
    [project] = body["data"]
    assert set(project) == {"name", "spans", "traces", "sessions", "users", "last_seen"}
    turns = sum(len(c.turns) for c in filled.conversations)
    tools = sum(1 for c in filled.conversations for t in c.turns if t.tool)
    assert (project["name"], project["traces"], project["sessions"]) == (
        "contract", turns, len(filled.conversations))
    assert project["spans"] == 2 * turns + tools
    assert project["users"] == len({u for c in filled.conversations for u in c.users})
    assert RFC3339.match(project["last_seen"])


def test_session_summaries_field_by_field(filled: Filled) -> None:
    listed = {s["session_id"]: s for s in all_pages(filled, sessions_path(filled), limit=1000)}
    assert set(listed) == {c.session_id for c in filled.conversations}
    for conv in filled.conversations:
        s = listed[conv.session_id]
        assert set(s) == SESSION_FIELDS
        assert s["project"] == "contract"
        assert s["user_ids"] == conv.users
        assert s["turns"] == len(conv.turns)
        assert s["spans"] == 2 * len(conv.turns) + sum(1 for t in conv.turns if t.tool)
        assert s["errors"] == conv.errors
        prompt = sum(t.prompt_tokens for t in conv.turns)
        assert s["tokens"] == {"prompt": prompt, "completion": conv.tokens - prompt, "total": conv.tokens}
        assert s["cost_usd"] > 0
        assert s["first_input"] == conv.turns[0].question
        assert s["last_output"] == conv.turns[-1].answer
        assert RFC3339.match(s["start_time"]) and RFC3339.match(s["end_time"])
        last = len(conv.turns) - 1
        assert s["duration_ms"] == pytest.approx(last * 2000 + 400 + last, abs=0.01)
        assert s["latency_ms"]["p50"] is not None and s["latency_ms"]["p99"] >= s["latency_ms"]["p50"]
        assert s["annotations"] == {}


def test_session_detail_turn_by_turn(filled: Filled) -> None:
    for conv in filled.conversations:
        response = filled.client.get(f"{sessions_path(filled)}/{quote(conv.session_id, safe='')}")
        assert response.status_code == 200, (conv.session_id, response.text)
        body = response.json()
        assert body["session_id"] == conv.session_id
        assert [t["trace_id"] for t in body["turns"]] == conv.trace_ids
        for index, (turn, spec) in enumerate(zip(body["turns"], conv.turns, strict=True)):
            assert set(turn) == TURN_FIELDS
            assert (turn["index"], turn["user_id"], turn["input"], turn["output"]) == (
                index, spec.user, spec.question, spec.answer)
            assert turn["status"] == ("error" if spec.fail else "ok")
            assert (turn["error"] is not None) == spec.fail
            assert turn["tokens"]["total"] == spec.prompt_tokens + spec.completion_tokens
            assert turn["latency_ms"] == pytest.approx(400 + index, abs=0.01)
            [llm] = turn["llm_calls"]
            assert set(llm) >= {"span_id", "model", "tokens", "latency_ms"}
            assert (llm["model"], llm["tokens"]["prompt"]) == ("gpt-4o-mini", spec.prompt_tokens)
            assert turn["trace_ids"] == [turn["trace_id"]]  # the agent-span pattern: one trace, one turn
            assert [(s["kind"], s["span_id"]) for s in turn["steps"]] == [("llm", llm["span_id"])] + (
                [("tool", turn["tool_calls"][0]["span_id"])] if spec.tool else [])
            if spec.tool:
                [tool] = turn["tool_calls"]
                assert set(tool) >= {"span_id", "name", "arguments", "result"}
                assert (tool["name"], tool["result"]) == (spec.tool, "sunny")
                assert '"city"' in tool["arguments"]
            else:
                assert turn["tool_calls"] == []


def test_long_session_pages_turns(filled: Filled) -> None:
    conv = next(c for c in filled.conversations if c.session_id == "long")
    seen: list[tuple[int, str]] = []
    cursor = None
    while True:
        params: dict[str, object] = {"turn_limit": 5, **({"turn_cursor": cursor} if cursor else {})}
        body = filled.client.get(f"{sessions_path(filled)}/long", params=params).json()
        seen.extend((t["index"], t["trace_id"]) for t in body["turns"])
        cursor = body["next_turn_cursor"]
        if cursor is None:
            break
    assert seen == list(enumerate(conv.trace_ids))


def test_search_inside_a_session_and_open_it_at_a_turn(filled: Filled) -> None:
    conv = next(c for c in filled.conversations if c.session_id == "long")
    path = f"{sessions_path(filled)}/long"
    wanted = conv.turns[9].question
    body = filled.client.get(path, params={"q": wanted, "turn_limit": 2}).json()
    expected = [i for i, turn in enumerate(conv.turns) if turn.question == wanted or turn.answer == wanted]
    assert body["matching_turns"] == expected and 9 in expected  # found beyond the two turns returned
    assert [t["index"] for t in body["turns"]] == [0, 1]
    opened = filled.client.get(path, params={"turn_at": 9, "turn_limit": 2}).json()
    assert [(t["index"], t["trace_id"]) for t in opened["turns"]] == [(9, conv.trace_ids[9]), (10, conv.trace_ids[10])]
    assert "matching_turns" not in opened
    for params in ({"turn_at": 99}, {"turn_at": -1}, {"q": "  "}, {"turn_at": 1, "turn_cursor": "x"}):
        response = filled.client.get(path, params=params)
        assert response.status_code == 400, params
        assert set(response.json()["error"]) == {"code", "message"}


@pytest.mark.parametrize("sort, key", [
    ("start_time", "start_time"), ("end_time", "end_time"), ("turns", "turns"), ("tokens", "tokens"),
    ("cost", "cost_usd"), ("duration", "duration_ms"), ("errors", "errors"),
])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sorts_and_keyset_pages(filled: Filled, sort: str, key: str, order: str) -> None:
    items = all_pages(filled, sessions_path(filled), sort=sort, order=order, limit=2)
    ids = [s["session_id"] for s in items]
    assert len(ids) == len(set(ids)) == len(filled.conversations)

    def value(s: dict[str, object]) -> object:
        v = s[key]
        return v["total"] if isinstance(v, dict) else v

    values = [value(s) for s in items]
    assert values == sorted(values, reverse=order == "desc")  # type: ignore[type-var]


def test_filters(filled: Filled) -> None:
    path = sessions_path(filled)
    failed = {c.session_id for c in filled.conversations if c.errors}
    assert {s["session_id"] for s in all_pages(filled, path, has_error="true")} == failed
    assert {s["session_id"] for s in all_pages(filled, path, has_error="false")} == {
        c.session_id for c in filled.conversations} - failed
    assert {s["session_id"] for s in all_pages(filled, path, min_turns=3)} == {
        c.session_id for c in filled.conversations if len(c.turns) >= 3}
    assert {s["session_id"] for s in all_pages(filled, path, user_id="bob/2")} == {
        c.session_id for c in filled.conversations if "bob/2" in c.users}
    second = filled.conversations[1]
    start = datetime.fromtimestamp(second.start_ns / 1e9, tz=UTC)
    window = {"start": (start + timedelta(seconds=1)).isoformat(), "end": (start + timedelta(seconds=3)).isoformat()}
    assert {s["session_id"] for s in all_pages(filled, path, **window)} == {second.session_id}


def test_full_text_search_reaches_every_turn(filled: Filled) -> None:
    path = sessions_path(filled)
    assert [s["session_id"] for s in all_pages(filled, path, q="zebrafish")] == ["plain-3"]
    assert [s["session_id"] for s in all_pages(filled, path, q="zebra")] == ["plain-3"]  # prefix
    assert {s["session_id"] for s in all_pages(filled, path, q="question 11")} == {"long"}
    assert all_pages(filled, path, q="nonexistentword") == []
    spans = filled.client.get(f"/v1/projects/{filled.project}/spans", params={"q": "zebrafish"}).json()["data"]
    assert spans and {s["session_id"] for s in spans} == {"plain-3"}


def test_users(filled: Filled) -> None:
    users = {u["user_id"]: u for u in all_pages(filled, f"/v1/projects/{filled.project}/users", limit=1)}
    expected: dict[str, list[tuple[str, int]]] = {}
    for conv in filled.conversations:
        for turn in conv.turns:
            expected.setdefault(turn.user, []).append((conv.session_id, turn.prompt_tokens + turn.completion_tokens))
    assert set(users) == set(expected)
    for uid, rows in expected.items():
        u = users[uid]
        assert set(u) == USER_FIELDS
        assert (u["turns"], u["sessions"], u["tokens"]["total"]) == (
            len(rows), len({s for s, _ in rows}), sum(t for _, t in rows))
    found = filled.client.get(f"/v1/projects/{filled.project}/users", params={"q": "BOB"}).json()["data"]
    assert [u["user_id"] for u in found] == ["bob/2"]
    detail = filled.client.get(f"/v1/projects/{filled.project}/users/{quote('carol ü', safe='')}").json()
    assert detail["user_id"] == "carol ü"
    assert {s["session_id"] for s in detail["sessions"]} == {
        c.session_id for c in filled.conversations if "carol ü" in c.users}


def test_trace_and_spans(filled: Filled) -> None:
    conv = next(c for c in filled.conversations if c.errors)
    failed_trace = conv.trace_ids[[t.fail for t in conv.turns].index(True)]
    body = filled.client.get(f"/v1/projects/{filled.project}/traces/{failed_trace}").json()
    assert (body["trace_id"], body["session_id"]) == (failed_trace, conv.session_id)
    assert [s["name"] for s in body["spans"]] == ["agent", "llm"]
    for span in body["spans"]:
        assert set(span) == SPAN_FIELDS
        assert span["session_id"] == conv.session_id
    llm = body["spans"][1]
    assert (llm["kind"], llm["status"], llm["status_message"]) == ("LLM", "ERROR", "model timed out")
    assert llm["parent_span_id"] == body["spans"][0]["span_id"]
    [event] = llm["events"]
    assert event["name"] == "exception" and "TimeoutError" in event["attributes"]["exception.type"]
    assert "exception.stacktrace" in event["attributes"]
    assert llm["attributes"]["llm.token_count.prompt"] == conv.turns[1].prompt_tokens
    llm_spans = all_pages(filled, f"/v1/projects/{filled.project}/spans", kind="LLM", limit=3)
    assert len(llm_spans) == sum(len(c.turns) for c in filled.conversations)
    by_session = all_pages(filled, f"/v1/projects/{filled.project}/spans", session_id="with/slash")
    assert {s["trace_id"] for s in by_session} == set(filled.conversations[1].trace_ids)


@pytest.mark.parametrize("path, params, status, code", [
    ("/v1/projects/contract/sessions", {"limit": 0}, 400, "invalid_request"),
    ("/v1/projects/contract/sessions", {"limit": 1001}, 400, "invalid_request"),
    ("/v1/projects/contract/sessions", {"sort": "bogus"}, 400, "invalid_request"),
    ("/v1/projects/contract/sessions", {"order": "sideways"}, 400, "invalid_request"),
    ("/v1/projects/contract/sessions", {"cursor": "not-a-cursor"}, 400, "invalid_query"),
    ("/v1/projects/contract/sessions", {"start": "yesterday"}, 400, "invalid_request"),
    ("/v1/projects/contract/sessions", {"q": "!!!"}, 400, "invalid_query"),
    ("/v1/projects/contract/sessions", {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, 400,
     "invalid_query"),
    ("/v1/projects/contract/users", {"cursor": "WzEsMiwzXQ"}, 400, "invalid_query"),
    ("/v1/projects/contract/sessions/missing", {}, 404, "session_not_found"),
    ("/v1/projects/contract/users/missing", {}, 404, "user_not_found"),
    ("/v1/projects/contract/traces/" + "0" * 32, {}, 404, "trace_not_found"),
    ("/v1/nothing-here", {}, 404, "not_found"),
])
def test_errors_have_the_documented_shape(filled: Filled, path: str, params: dict[str, object], status: int,
                                          code: str) -> None:
    response = filled.client.get(path, params=params)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]


def test_unknown_project_lists_nothing(filled: Filled) -> None:
    assert filled.client.get("/v1/projects/nope/sessions").json() == {"data": [], "next_cursor": None,
                                                                     "prev_cursor": None}


def test_openapi_and_health(filled: Filled) -> None:
    assert filled.client.get("/healthz").json() == {"status": "ok"}
    spec = filled.client.get("/openapi.json").json()
    for path in ("/v1/projects", "/v1/projects/{project}/sessions", "/v1/projects/{project}/users",
                 "/v1/projects/{project}/traces/{trace_id}", "/v1/projects/{project}/spans"):
        assert path in spec["paths"], path


def test_no_page_loads_scripts_from_another_origin(filled: Filled) -> None:
    for path in ("/docs", "/redoc"):
        assert filled.client.get(path).status_code == 404


@pytest.mark.parametrize("path", ["/v1/projects/a%00b/sessions", "/v1/projects/contract/sessions/x%00y",
                                  "/v1/projects/contract/users?q=%00", "/v1/projects/contract/spans?session_id=%00"])
def test_unstorable_text_in_a_request_is_a_400(filled: Filled, path: str) -> None:
    response = filled.client.get(path)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("TRACE", "/v1/traces", {"POST"}),
    ("DELETE", "/v1/projects/contract/sessions", {"GET"}),
    ("PATCH", "/v1/keys", {"GET", "POST"}),
    ("PUT", "/healthz", {"GET"}),
])
def test_a_wrong_method_is_a_405_that_says_which_are_allowed(filled: Filled, method: str, path: str,
                                                              allowed: set[str]) -> None:
    response = filled.client.request(method, path)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert {m.strip() for m in response.headers["allow"].split(",")} >= allowed
