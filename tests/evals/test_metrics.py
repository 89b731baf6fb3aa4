"""Metrics per user, session, day, model and tag, checked against numbers computed here from what the
test sent (and from the fake judge's deterministic verdicts)."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest

from .conftest import Env
from .traffic import Conversation, Say

PRICES = {"gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00)}  # USD per 1M tokens, list prices


def cost(t: Say) -> float:
    inp, out = PRICES[t.model]
    return (t.prompt_tokens * inp + t.completion_tokens * out) / 1e6


def pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def rows(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["group"]: r["values"] for r in body["data"]}


def close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-6)


@pytest.fixture(scope="module")
def evaluated(env: Env) -> list[Conversation]:
    result = env.cli("eval", "run", "--project", "metrics", "--evaluator", "user_frustration")
    assert result.returncode == 0, result.stderr
    return env.sent["metrics"]


def test_by_user(env: Env, evaluated: list[Conversation]) -> None:
    metrics = ["count(turns)", "count(sessions)", "sum(tokens)", "mean(latency)", "p50(latency)", "p95(latency)",
               "sum(errors)", "sum(cost)", "mean(turns)", "mean(score:user_frustration)",
               "rate(turn_label:user_frustration=frustrated)", "count(users)"]
    body = env.client.get("/v1/projects/metrics/metrics", params={"group_by": "user", "metric": metrics,
                                                                  "limit": 1000}).json()
    assert body["group_by"] == "user" and body["metrics"] == metrics
    got = rows(body)
    turns: dict[str, list[Say]] = defaultdict(list)
    sessions: dict[str, list[Conversation]] = defaultdict(list)
    for conv in evaluated:
        for t in conv.turns:
            turns[t.user].append(t)
        for user in conv.users:
            sessions[user].append(conv)
    assert set(got) == set(turns)
    for user, mine in turns.items():
        lat = [float(t.latency_ms) for t in mine]
        frustrated_sessions = [any(t.frustrated for t in c.turns) for c in sessions[user]]
        want = {
            "count(turns)": len(mine), "count(sessions)": len(sessions[user]), "count(users)": 1,
            "sum(tokens)": sum(t.prompt_tokens + t.completion_tokens for t in mine),
            "mean(latency)": statistics.mean(lat), "p50(latency)": statistics.median(lat),
            "p95(latency)": pct(lat, 95), "sum(errors)": sum(t.fail for t in mine),
            "sum(cost)": sum(cost(t) for t in mine),
            "mean(turns)": statistics.mean(len(c.turns) for c in sessions[user]),
            "mean(score:user_frustration)": statistics.mean(1.0 if f else 0.0 for f in frustrated_sessions),
            "rate(turn_label:user_frustration=frustrated)": sum(t.frustrated for t in mine) / len(mine),
        }
        for name, value in want.items():
            assert close(got[user][name], value), (user, name, got[user][name], value)


def test_most_frustrated_users_in_a_window(env: Env, evaluated: list[Conversation]) -> None:
    start = datetime.fromtimestamp(evaluated[0].start_ns / 1e9, tz=UTC)
    end = datetime.fromtimestamp((evaluated[2].start_ns + 10**9) / 1e9, tz=UTC)
    body = env.client.get("/v1/projects/metrics/metrics", params={
        "group_by": "user", "metric": ["mean(score:user_frustration)", "count(sessions)"],
        "start": start.isoformat(), "end": end.isoformat(), "limit": 2, "order": "desc"}).json()
    in_window = [c for c in evaluated if any(start.timestamp() * 1e9 <= t.start_ns <= end.timestamp() * 1e9
                                             for t in c.turns)]
    means: dict[str, list[float]] = defaultdict(list)
    for conv in in_window:
        for user in {t.user for t in conv.turns if start.timestamp() * 1e9 <= t.start_ns <= end.timestamp() * 1e9}:
            means[user].append(1.0 if any(t.frustrated for t in conv.turns) else 0.0)
    want = sorted(((u, statistics.mean(v)) for u, v in means.items()), key=lambda x: (x[1], x[0]), reverse=True)[:2]
    assert [(r["group"], r["values"]["mean(score:user_frustration)"]) for r in body["data"]] == want

    cli = env.cli("metrics", "--project", "metrics", "--group-by", "user", "--metric", "mean(score:user_frustration)",
                  "--metric", "count(sessions)", "--since", start.isoformat(), "--until", end.isoformat(),
                  "--limit", "2", "--json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["data"] == body["data"]
    table = env.cli("metrics", "--project", "metrics", "--group-by", "user")
    assert table.returncode == 0 and "alice" in table.stdout and "metrics by user" in table.stdout


def test_by_session_day_model_tag(env: Env, evaluated: list[Conversation]) -> None:
    get = env.client.get
    by_session = rows(get("/v1/projects/metrics/metrics", params={
        "group_by": "session", "metric": ["count(turns)", "sum(tokens)", "max(duration)", "sum(errors)"],
        "limit": 1000}).json())
    for conv in evaluated:
        last = conv.turns[-1]
        duration = (last.start_ns + last.latency_ms * 10**6 - conv.turns[0].start_ns) / 1e6
        assert by_session[conv.session_id] == {
            "count(turns)": len(conv.turns), "sum(tokens)": sum(t.prompt_tokens + t.completion_tokens
                                                                for t in conv.turns),
            "max(duration)": duration, "sum(errors)": sum(t.fail for t in conv.turns)}

    all_turns = [t for c in evaluated for t in c.turns]
    by_day = rows(get("/v1/projects/metrics/metrics", params={
        "group_by": "day", "metric": ["count(turns)", "sum(tokens)"]}).json())
    days: dict[str, list[Say]] = defaultdict(list)
    for t in all_turns:
        days[datetime.fromtimestamp(t.start_ns / 1e9, tz=UTC).date().isoformat()].append(t)
    assert by_day == {d: {"count(turns)": len(ts), "sum(tokens)": sum(t.prompt_tokens + t.completion_tokens
                                                                      for t in ts)} for d, ts in days.items()}

    by_model = rows(get("/v1/projects/metrics/metrics", params={
        "group_by": "model", "metric": ["count(turns)", "sum(tokens)", "mean(latency)", "sum(errors)", "sum(cost)"]
    }).json())
    models: dict[str, list[Say]] = defaultdict(list)
    for t in all_turns:
        models[t.model].append(t)
    assert set(by_model) == set(models)
    for model, ts in models.items():
        got = by_model[model]
        assert got["count(turns)"] == len(ts) and got["sum(errors)"] == sum(t.fail for t in ts)
        assert got["sum(tokens)"] == sum(t.prompt_tokens + t.completion_tokens for t in ts)
        assert close(got["mean(latency)"], 1.0) and close(got["sum(cost)"], sum(cost(t) for t in ts))

    by_tag = rows(get("/v1/projects/metrics/metrics", params={"group_by": "tag", "metric": ["count(turns)"]}).json())
    tags: dict[str, int] = defaultdict(int)
    for t in all_turns:
        for tag in t.tags:
            tags[tag] += 1
    assert by_tag == {tag: {"count(turns)": n} for tag, n in tags.items()}

    only = rows(get("/v1/projects/metrics/metrics", params={
        "group_by": "user", "metric": ["count(turns)"], "model": "gpt-4o", "tag": "vip"}).json())
    assert only == {"bob": {"count(turns)": sum(1 for t in all_turns if t.model == "gpt-4o" and "vip" in t.tags)}}


@pytest.mark.parametrize("params", [
    {"group_by": "planet"}, {"metric": "sum(happiness)"}, {"metric": "median(tokens)"}, {"metric": "tokens"},
    {"metric": "rate(label:x)"}, {"order": "sideways"}, {"limit": "0"}, {"start": "yesterday"},
    {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
])
def test_bad_metrics_queries_are_400(env: Env, params: dict[str, str]) -> None:
    response = env.client.get("/v1/projects/metrics/metrics", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] in ("invalid_query", "invalid_request")


def test_bad_metric_in_cli_is_a_usage_error(env: Env) -> None:
    result = env.cli("metrics", "--project", "metrics", "--metric", "sum(happiness)")
    assert result.returncode == 2 and "sum(happiness)" in result.stderr
