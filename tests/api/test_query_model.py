"""One query model per list (issue 12): the filters of each list are declared once in ``query/``
(``SESSION_PARAMS``, ``TRACE_PARAMS``, ``USER_PARAMS``, ``METRICS_PARAMS``), and the REST API and
the UI both read a query string through that declaration.

Checked three ways: the served OpenAPI document lists exactly the declared filters of every list
route; the API's dependency and the UI's parser make the same filter of the same query string
(and both refuse the same bad ones, naming the parameter); and on a real server the API and the
sessions page list the same sessions for a filter, and answer a bad value with a 400.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.datastructures import QueryParams

from threadline.server.query.metrics import METRICS_PARAMS
from threadline.server.query.parameters import Param
from threadline.server.query.sessions import SESSION_PARAMS
from threadline.server.query.traces import TRACE_PARAMS, TraceFilter
from threadline.server.query.users import USER_PARAMS
from threadline.server.web.api.deps import with_query
from threadline.server.web.api.errors import install_error_handlers
from threadline.server.web.api.sessions import SessionFilterParams
from threadline.server.web.ui.params import BadParameter, session_query, trace_query

from .conftest import Filled

#: Every list route, its declared filters, and its other query parameters (paging, sorting, …).
LIST_ROUTES: list[tuple[str, tuple[Param, ...], set[str]]] = [
    ("/v1/projects/{project}/sessions", SESSION_PARAMS, {"sort", "order", "limit", "cursor"}),
    ("/v1/projects/{project}/rankings", SESSION_PARAMS,
     {"name", "target_kind", "order", "min_score", "max_score", "limit", "cursor", "user_q"}),
    ("/v1/projects/{project}/traces", TRACE_PARAMS, {"limit", "cursor"}),
    ("/v1/projects/{project}/users", USER_PARAMS, {"sort", "order", "limit", "cursor"}),
    ("/v1/projects/{project}/metrics", METRICS_PARAMS, {"group_by", "metric", "order_by", "order", "limit"}),
]

#: Query strings both the API and the UI take, each meaning the same filter.
GOOD = [
    "",
    "has_error=true",
    "has_error=yes",
    "has_error=0",
    "min_turns=2",
    "min_turns=0",
    "start=2026-11-21T10:00:00Z",
    "start=2026-11-21T10:00:00Z&end=2026-11-22T11:30:00%2B01:00",
    "metadata=plan:pro",
    "metadata=plan:pro&metadata=region:eu&metadata=url:https://x.test/a:b",
    "user_id=bob/2&user_id_contains=o&q=refund&tag=vip",
]
#: Query strings both refuse, and the parameter the refusal must name.
BAD = [
    ("has_error=maybe", "has_error"),
    ("min_turns=-1", "min_turns"),
    ("min_turns=abc", "min_turns"),
    ("min_turns=2.5", "min_turns"),
    ("start=tomorrow", "start"),
    ("start=1700000000", "start"),
    ("end=2026-13-01T00:00:00Z", "end"),
    ("metadata=plan", "metadata"),
]
TRACE_GOOD = ["", "has_session=false&status=error", "status=ok&session_id=s/1&user_id=u",
              "tag=beta&metadata=plan:pro&start=2026-11-21T10:00:00Z"]
TRACE_BAD = [("status=bogus", "status"), ("has_session=maybe", "has_session"), ("start=today", "start"),
             ("metadata=:pro", "metadata")]


@pytest.fixture(scope="module")
def probe() -> Iterator[tuple[TestClient, list[Any]]]:
    """An app with the API's own filter declarations and error handlers that keeps the filters it was given."""
    seen: list[Any] = []
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/sessions")
    def sessions(filters: SessionFilterParams) -> dict[str, str]:
        seen.append(filters)
        return {}

    @app.get("/traces")
    @with_query("filters", TRACE_PARAMS, TraceFilter.from_params)
    def traces(filters: TraceFilter) -> dict[str, str]:
        seen.append(filters)
        return {}

    with TestClient(app) as client:
        yield client, seen


@pytest.mark.parametrize("path, declared, others", LIST_ROUTES, ids=[r[0].rsplit("/", 1)[-1] for r in LIST_ROUTES])
def test_the_documented_filters_are_the_declared_ones(filled: Filled, path: str, declared: tuple[Param, ...],
                                                      others: set[str]) -> None:
    spec = filled.client.get("/openapi.json").json()
    parameters = [p for p in spec["paths"][path]["get"]["parameters"] if p["in"] == "query"]
    filters = [p for p in parameters if p["name"] not in others]
    assert [(p["name"], p["description"]) for p in filters] == [(d.name, d.description) for d in declared]
    assert not any(p["required"] for p in filters)
    assert {p["name"] for p in parameters} - {d.name for d in declared} == others  # nothing else is there
    names = [p["name"] for p in parameters]
    first = names.index(declared[0].name)
    assert names[first:first + len(declared)] == [d.name for d in declared]  # together, in declared order


@pytest.mark.parametrize("query", GOOD)
def test_the_api_and_the_ui_make_the_same_session_filter(probe: tuple[TestClient, list[Any]], query: str) -> None:
    client, seen = probe
    response = client.get(f"/sessions?{query}")
    assert response.status_code == 200, response.text
    assert seen[-1] == session_query(QueryParams(query)).filters


@pytest.mark.parametrize("query", TRACE_GOOD)
def test_the_api_and_the_ui_make_the_same_trace_filter(probe: tuple[TestClient, list[Any]], query: str) -> None:
    client, seen = probe
    response = client.get(f"/traces?{query}")
    assert response.status_code == 200, response.text
    assert seen[-1] == trace_query(QueryParams(query)).filters


@pytest.mark.parametrize("path, query, name", [("/sessions", q, n) for q, n in BAD]
                         + [("/traces", q, n) for q, n in TRACE_BAD])
def test_the_api_and_the_ui_refuse_the_same_values(probe: tuple[TestClient, list[Any]], path: str, query: str,
                                                   name: str) -> None:
    client, _ = probe
    response = client.get(f"{path}?{query}")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] in ("invalid_request", "invalid_query") and error["message"].startswith(f"{name}: ")
    parse = session_query if path == "/sessions" else trace_query
    with pytest.raises(BadParameter, match=f"^{name}: "):
        parse(QueryParams(query))


def test_ui_messages_say_what_is_wrong() -> None:
    for query, message in (("min_turns=abc", "min_turns: 'abc' is not a valid integer"),
                           ("min_turns=-1", "min_turns: '-1' is less than 0"),
                           ("has_error=maybe", "has_error: 'maybe' is not true or false"),
                           ("start=tomorrow", "start: 'tomorrow' is not an RFC 3339 time")):
        with pytest.raises(BadParameter) as refused:
            session_query(QueryParams(query))
        assert str(refused.value).startswith(message), refused.value
    with pytest.raises(BadParameter, match=r"^status: 'bogus' is not 'ok' or 'error'$"):
        trace_query(QueryParams("status=bogus"))


def _api_sessions(filled: Filled, query: str) -> list[str]:
    response = filled.client.get(f"/v1/projects/{filled.project}/sessions?{query}&limit=100")
    assert response.status_code == 200, response.text
    return sorted(s["session_id"] for s in response.json()["data"])


def _page_sessions(filled: Filled, query: str) -> list[str]:
    page = filled.client.get(f"/projects/{filled.project}/sessions?{query}")
    assert page.status_code == 200, page.text[:500]
    return sorted(unescape(key) for key in re.findall(r'<tr data-href="[^"]*" data-key="([^"]*)"', page.text))


@pytest.mark.parametrize("query", ["has_error=true", "has_error=no", "min_turns=3", "user_id_contains=BOB",
                                   "user_id=alice&min_turns=2", "q=zebrafish", "start=2025-11-21T04:43:00Z",
                                   "end=2025-11-21T05:42:00%2B01:00"])
def test_the_api_and_the_page_list_the_same_sessions(filled: Filled, query: str) -> None:
    listed = _api_sessions(filled, query)
    everyone = _api_sessions(filled, "")
    assert 0 < len(listed) < len(everyone), listed  # the filter chooses
    assert _page_sessions(filled, query) == listed


@pytest.mark.parametrize("query, name", BAD)
def test_a_bad_filter_is_a_400_from_the_api_and_the_page(filled: Filled, query: str, name: str) -> None:
    for path in (f"/v1/projects/{filled.project}/sessions", f"/v1/projects/{filled.project}/rankings"):
        response = filled.client.get(f"{path}?name=x&{query}" if path.endswith("rankings") else f"{path}?{query}")
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"]["message"].startswith(f"{name}: "), response.text
    with pytest.raises(BadParameter) as refused:
        session_query(QueryParams(query))
    page = filled.client.get(f"/projects/{filled.project}/sessions?{query}")
    assert page.status_code == 400
    assert "Cannot show these sessions" in page.text and str(refused.value) in unescape(page.text)
