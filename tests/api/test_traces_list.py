"""``GET /v1/projects/{project}/traces``: the contract of DESIGN.md §5, filters and 4xx, on both backends."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from support.otlp import SpanMaker, TurnSpec, export_http, hex_trace_id

from .conftest import Filled

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TRACE_FIELDS = {"trace_id", "session_id", "user_id", "name", "start_time", "end_time", "latency_ms", "status",
                "spans", "tokens", "cost_usd", "input", "output"}
LOOSE = "loose ü"  # a project whose traces mostly carry no session
LOOSE_BASE = 1_800_000_000_000_000_000  # 2027-01-15T08:00:00Z
SECOND = 1_000_000_000
HOSTILE_SESSION = "s/ü 1?&#"
HOSTILE_USER = "u/1 ü%2F"


@dataclass(frozen=True)
class Loose:
    trace_id: str
    start_ns: int
    spec: TurnSpec


@pytest.fixture(scope="module")
def loose(filled: Filled) -> list[Loose]:
    """Twelve traces in LOOSE: eight without a session, hostile ids, failures and a rare word."""
    maker = SpanMaker(project=LOOSE)
    sent, spans = [], []
    for i in range(12):
        spec = TurnSpec(question=f"ask {i}" + (" about a quokka" if i in (2, 9) else ""), answer=f"reply {i}",
                        session_id=HOSTILE_SESSION if i % 3 == 1 else None,
                        user_id=HOSTILE_USER if i % 2 else None, prompt_tokens=i, completion_tokens=1,
                        fail=i in (0, 5, 7))
        start = LOOSE_BASE + i * SECOND
        turn = maker.turn(spec, start)
        spans.extend(turn)
        sent.append(Loose(hex_trace_id(turn[0]), start, spec))
    assert export_http(spans, filled.server.base_url + "/v1/traces") == SpanExportResult.SUCCESS
    maker.shutdown()
    return sent


def path(project: str) -> str:
    return f"/v1/projects/{project}/traces"


def all_pages(filled: Filled, project: str, **params: str | int) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    cursor = None
    while True:
        query: dict[str, str | int] = {**params, **({"cursor": cursor} if cursor else {})}
        response = filled.client.get(path(project), params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"data", "next_cursor"}
        assert not {i["trace_id"] for i in body["data"]} & {i["trace_id"] for i in items}, "listed twice"
        items.extend(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def test_trace_summaries_field_by_field(filled: Filled) -> None:
    listed = all_pages(filled, filled.project, limit=4)
    by_id = {t["trace_id"]: t for t in listed}
    sent = {tid: (conv, n) for conv in filled.conversations for n, tid in enumerate(conv.trace_ids)}
    assert set(by_id) == set(sent) and len(listed) == len(sent)
    keys = [(t["start_time"], t["trace_id"]) for t in listed]
    assert keys == sorted(keys, reverse=True), "newest first"
    for trace_id, (conv, n) in sent.items():
        t = by_id[trace_id]
        turn = conv.turns[n]
        assert set(t) == TRACE_FIELDS
        assert (t["session_id"], t["user_id"], t["name"], t["input"]) == (conv.session_id, turn.user, "agent",
                                                                          turn.question)
        assert RFC3339.match(str(t["start_time"])) and RFC3339.match(str(t["end_time"]))
        start = datetime.fromtimestamp((conv.start_ns + n * 2 * SECOND) / 1e9, tz=UTC)
        assert t["start_time"] == start.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        assert t["latency_ms"] == 400.0 + n
        assert t["status"] == ("error" if turn.fail else "ok")
        assert t["spans"] == (3 if turn.tool else 2)
        assert t["tokens"] == {"prompt": turn.prompt_tokens, "completion": turn.completion_tokens,
                               "total": turn.prompt_tokens + turn.completion_tokens}
        assert isinstance(t["cost_usd"], float) and t["cost_usd"] > 0  # gpt-4o-mini has a price


def test_every_listed_trace_opens_by_its_id(filled: Filled) -> None:
    for t in all_pages(filled, filled.project, limit=1000):
        response = filled.client.get(f"{path(filled.project)}/{t['trace_id']}")
        assert response.status_code == 200, response.text
        assert response.json()["trace_id"] == t["trace_id"]


def ids_newest_first(sent: list[Loose], keep: Callable[[Loose], bool]) -> list[str]:
    return [s.trace_id for s in sorted(sent, key=lambda s: s.start_ns, reverse=True) if keep(s)]


@pytest.mark.parametrize("params, keep", [
    ({}, lambda s: True),
    ({"has_session": "false"}, lambda s: s.spec.session_id is None),
    ({"has_session": "true"}, lambda s: s.spec.session_id is not None),
    ({"status": "error"}, lambda s: s.spec.fail),
    ({"status": "ok", "has_session": "false"}, lambda s: not s.spec.fail and s.spec.session_id is None),
    ({"q": "quokka"}, lambda s: "quokka" in s.spec.question),
    ({"session_id": HOSTILE_SESSION}, lambda s: s.spec.session_id == HOSTILE_SESSION),
    ({"user_id": HOSTILE_USER, "has_session": "false"},
     lambda s: s.spec.user_id == HOSTILE_USER and s.spec.session_id is None),
    ({"start": "2027-01-15T08:00:03Z", "end": "2027-01-15T08:00:06.000+00:00"},
     lambda s: LOOSE_BASE + 3 * SECOND <= s.start_ns <= LOOSE_BASE + 6 * SECOND),
    ({"start": "2027-01-15T08:00:09Z"}, lambda s: s.start_ns >= LOOSE_BASE + 9 * SECOND),
])
def test_filters(filled: Filled, loose: list[Loose], params: dict[str, str], keep: Callable[[Loose], bool]) -> None:
    listed = all_pages(filled, LOOSE, limit=2, **params)
    assert [t["trace_id"] for t in listed] == ids_newest_first(loose, keep)
    if params.get("has_session") == "false":
        assert all(t["session_id"] is None for t in listed)


def test_hostile_ids_round_trip(filled: Filled, loose: list[Loose]) -> None:
    listed = all_pages(filled, LOOSE, session_id=HOSTILE_SESSION)
    assert {t["session_id"] for t in listed} == {HOSTILE_SESSION}
    assert {t["user_id"] for t in listed} <= {HOSTILE_USER, None}
    assert len(listed) == sum(1 for s in loose if s.spec.session_id == HOSTILE_SESSION)


@pytest.mark.parametrize("params, code", [
    ({"status": "bogus"}, "invalid_request"),
    ({"status": "ERROR"}, "invalid_request"),
    ({"has_session": "maybe"}, "invalid_request"),
    ({"limit": 0}, "invalid_request"),
    ({"limit": 1001}, "invalid_request"),
    ({"start": "yesterday"}, "invalid_request"),
    ({"session_id": "a\x00b"}, "invalid_request"),
    ({"cursor": "not-a-cursor"}, "invalid_query"),
    ({"cursor": "WzEsMiwzXQ"}, "invalid_query"),
    ({"q": "!!!"}, "invalid_query"),
    ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "invalid_query"),
])
@pytest.mark.parametrize("project", ["contract", "no-such-project"])
def test_bad_input_is_a_4xx_in_the_error_shape(filled: Filled, params: dict[str, str | int], code: str,
                                                project: str) -> None:
    response = filled.client.get(path(project), params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]


def test_unknown_project_lists_nothing_like_the_sessions(filled: Filled) -> None:
    for what in ("traces", "sessions"):
        response = filled.client.get(f"/v1/projects/no-such-project/{what}")
        body = response.json()
        assert (response.status_code, body["data"], body["next_cursor"]) == (200, [], None), what


def test_openapi_documents_the_list(filled: Filled) -> None:
    spec = filled.client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/projects/{project}/traces"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"has_session", "status", "q", "start", "end", "limit", "cursor"} <= names
    assert "/v1/projects/{project}/traces/{trace_id}" in spec["paths"]
