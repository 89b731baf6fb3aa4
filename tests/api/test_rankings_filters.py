"""Score rankings combine with every list filter (issue 12), on both stores.

The oracle is the plain sessions list: with the same filters it names the sessions that may be
ranked; the ranking must be exactly those of them that carry a score, by mean score (ties by id),
page after page. Users ranked by a score honour the users list's search the same way.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from .conftest import Filled

NAME = "frustration"


@pytest.fixture(scope="module")
def scored(filled: Filled) -> dict[str, float]:
    """A score on every session but one, ties included; their mean per session."""
    rng = random.Random(5)
    sessions = [c.session_id for c in filled.conversations]
    means: dict[str, float] = {}
    notes = []
    for n, sid in enumerate(sessions[:-1]):
        values = [round(rng.choice([0.0, 0.25, 0.5, 1.0]), 2) for _ in range(1 + n % 2)]
        for k, value in enumerate(values):
            notes.append({"target_kind": "session", "target_id": sid, "name": NAME, "score": value,
                          "annotator_kind": "LLM", "identifier": f"j{k}"})
        means[sid] = sum(values) / len(values)
    response = filled.client.post(f"/v1/projects/{filled.project}/annotations", json={"data": notes})
    assert response.status_code == 200, response.text
    return means


def listed(filled: Filled, **params: Any) -> list[str]:
    out, cursor = [], None
    while True:
        page = filled.client.get(f"/v1/projects/{filled.project}/sessions",
                                 params={**params, "limit": 3, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        out += [s["session_id"] for s in page.json()["data"]]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return out


def ranked(filled: Filled, order: str, **params: Any) -> list[tuple[str, float]]:
    out, cursor = [], None
    while True:
        page = filled.client.get(f"/v1/projects/{filled.project}/rankings", params={
            "name": NAME, "order": order, "limit": 2, **params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        out += [(r["target_id"], r["mean_score"]) for r in page.json()["data"]]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return out


def filters(filled: Filled) -> list[dict[str, Any]]:
    starts = sorted(c.start_ns for c in filled.conversations)
    middle = datetime.fromtimestamp(starts[len(starts) // 2] / 1e9, UTC).isoformat()
    return [
        {},
        {"start": middle},
        {"end": middle},
        {"user_id": "alice"},
        {"user_id_contains": "B/"},
        {"q": "question"},
        {"q": "slash"},
        {"has_error": "true"},
        {"has_error": "false"},
        {"min_turns": 3},
        {"user_id": "alice", "min_turns": 2, "has_error": "false"},
    ]


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_a_ranking_is_the_filtered_list_by_score(filled: Filled, scored: dict[str, float], order: str) -> None:
    seen_subsets = set()
    for params in filters(filled):
        allowed = [sid for sid in listed(filled, **params) if sid in scored]
        expected = sorted(allowed, key=lambda sid: (scored[sid], sid), reverse=order == "desc")
        got = ranked(filled, order, **params)
        assert [sid for sid, _ in got] == expected, params
        assert all(abs(mean - scored[sid]) < 1e-6 for sid, mean in got)
        seen_subsets.add(tuple(expected))
    assert len(seen_subsets) >= 5, "the filters must actually select different sessions"


def test_users_ranked_within_the_users_search(filled: Filled, scored: dict[str, float]) -> None:
    everyone = filled.client.get(f"/v1/projects/{filled.project}/rankings",
                                 params={"name": NAME, "target_kind": "user", "limit": 100}).json()["data"]
    matching = filled.client.get(f"/v1/projects/{filled.project}/users", params={"q": "o", "limit": 100}).json()
    allowed = {u["user_id"] for u in matching["data"]}
    within = filled.client.get(f"/v1/projects/{filled.project}/rankings",
                               params={"name": NAME, "target_kind": "user", "user_q": "o", "limit": 100}).json()
    assert [r["target_id"] for r in within["data"]] == [r["target_id"] for r in everyone if r["target_id"] in allowed]
    assert 0 < len(within["data"]) < len(everyone)


def test_a_bad_filter_on_a_ranking_is_a_400(filled: Filled, scored: dict[str, float]) -> None:
    for params in ({"min_turns": -1}, {"start": "yesterday"}, {"q": "!!!"}):
        response = filled.client.get(f"/v1/projects/{filled.project}/rankings", params={"name": NAME, **params})
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["message"]
