"""Metrics computed by the database agree with a straightforward Python recomputation over the stored
rows (both backends): every aggregation of every field, grouped by session, user, model and day, with
ties, turns without a user, LLM calls without a model, one-value groups, filters and empty answers,
sorted both ways by every metric."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, select

from support.databases import BACKENDS, fresh_database
from threadline.server.query.metrics import (
    AGGREGATIONS,
    SESSION_FIELDS,
    TURN_FIELDS,
    MetricsFilter,
    compute_metrics,
)
from threadline.server.query.timeconv import percentile
from threadline.server.store import schema as t
from threadline.server.store.engine import Store, open_store

DAY_NS = 86_400 * 10**9
BASE_NS = 1_763_596_800 * 10**9  # 2025-11-20T00:00:00Z
SQL_GROUPS = ("session", "user", "model", "day")
METRICS = [f"{agg}({f})" for agg in AGGREGATIONS for f in (*TURN_FIELDS, *SESSION_FIELDS, "score:q", "turn_score:q")]
COUNTS = ["count(turns)", "count(sessions)", "count(users)", "rate(label:q=good)", "rate(turn_label:q=good)",
          "mean(score:absent)", "count(turn_score:absent)"]
METRICS += COUNTS
#: Sorted by: every aggregation of a float field with ties, an integer field, a session field and a
#: score that some groups lack, and the counts and rates.
SORTS = [f"{agg}({f})" for agg in AGGREGATIONS for f in ("latency", "tokens", "duration", "score:q")] + COUNTS


@dataclass
class Stored:
    """The rows of project ``p`` as stored."""

    turns: list[Any]
    traces: list[Any]
    spans: list[Any]
    sessions: dict[str, Any]
    annotations: list[Any]


def fill(store: Store) -> None:
    """Two projects of random traffic with many ties (values drawn from small sets)."""
    rng = random.Random(12)
    with store.write() as tx:
        for pid, name in ((1, "p"), (2, "other")):
            tx.execute(insert(t.projects).values(id=pid, name=name, created_ns=0, settings="{}"))
        turns, traces, spans, sessions, notes = [], [], [], [], []
        for pid, count in ((1, 40), (2, 5)):
            for s in range(count):
                session_id = f"s{s:02d}" if pid == 1 else f"o{s}"
                n_turns = 1 if s % 7 == 0 else rng.randint(1, 5)
                start = BASE_NS + rng.choice((0, 1, 2, 3)) * DAY_NS + rng.randrange(0, DAY_NS - 10**12)
                first_start = start
                for k in range(n_turns):
                    user = None if s % 5 == 0 else rng.choice(("alice", "bob", "carol", "dave", None))
                    latency = rng.choice((100, 250, 250, 1000)) * 10**6 + rng.choice((0, 0, 123_456))
                    prompt, completion = rng.choice((10, 20, 20, 30)), rng.choice((5, 5, 15))
                    trace_ids = [f"{session_id}-t{k}-{j}" for j in range(rng.randint(1, 2))]
                    llm_calls = 0
                    for trace_id in trace_ids:
                        traces.append(dict(project_id=pid, trace_id=trace_id, session_id=session_id, user_id=user,
                                           start_ns=start, end_ns=start + latency, turn_key=f"k{k}"))
                        for c in range(rng.randint(0, 2)):
                            llm_calls += 1
                            spans.append(dict(
                                project_id=pid, trace_id=trace_id, span_id=f"l{c}", name="llm", kind="LLM",
                                start_ns=start, end_ns=start + rng.choice((50, 50, 70)) * 10**6,
                                status=rng.choice(("OK", "OK", "ERROR")),
                                model=rng.choice(("gpt-a", "gpt-b", "gpt-b", None)),
                                prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                                cost=rng.choice((0.1, 0.2, 0.3)), payload=b""))
                        spans.append(dict(project_id=pid, trace_id=trace_id, span_id="tool", name="tool",
                                          kind="TOOL", start_ns=start, end_ns=start + 10, status="OK", model=None,
                                          prompt_tokens=0, completion_tokens=0, total_tokens=0, cost=0.0,
                                          payload=b""))
                    turns.append(dict(
                        project_id=pid, session_id=session_id, turn_key=f"k{k}", start_ns=start,
                        end_ns=start + latency, traces=len(trace_ids), spans=rng.choice((1, 3, 3)),
                        errors=rng.choice((0, 0, 1, 2)), llm_calls=llm_calls, prompt_tokens=prompt,
                        completion_tokens=completion, total_tokens=prompt + completion,
                        cost=rng.choice((0.1, 0.2, 0.3, 0.7)), user_id=user, first_trace_id=trace_ids[0],
                        last_start_ns=start))
                    for target_kind, target in (("session", session_id), ("trace", trace_ids[0]),
                                                ("trace", trace_ids[-1])):
                        for identifier in ("", "x")[:rng.randint(0, 2)]:
                            notes.append(dict(
                                project_id=pid, target_kind=target_kind, target_id=target,
                                name=rng.choice(("q", "q", "other")), identifier=identifier + str(k),
                                label=rng.choice(("good", "bad", None)), score=rng.choice((0.0, 0.5, 1.0, None)),
                                annotator_kind="CODE", metadata="{}", created_ns=0, updated_ns=0))
                    start += latency + rng.choice((1, 5)) * 10**9
                sessions.append(dict(
                    project_id=pid, session_id=session_id, start_ns=first_start, end_ns=start,
                    duration_ns=start - first_start, turns=n_turns, spans=0, errors=0, prompt_tokens=0,
                    completion_tokens=0, total_tokens=0, cost=0.0, last_start_ns=start, last_activity_ns=start))
        # A turn at midnight exactly, and an annotation on a session of the other project only.
        turns.append(dict(turns[0], session_id="s00", turn_key="midnight", start_ns=BASE_NS + DAY_NS,
                          end_ns=BASE_NS + DAY_NS + 10**9, first_trace_id="midnight"))
        for rows, table in ((turns, t.turns), (traces, t.traces), (spans, t.spans), (sessions, t.sessions)):
            tx.execute(insert(table), rows)
        unique = {(n["project_id"], n["target_kind"], n["target_id"], n["name"], n["identifier"]): n for n in notes}
        tx.execute(insert(t.annotations), list(unique.values()))


@pytest.fixture(scope="module", params=BACKENDS)
def filled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    tmp: Path = tmp_path_factory.mktemp(f"metrics-sql-{request.param}")
    with fresh_database(request.param, tmp) as url:
        store = open_store(url)
        fill(store)
        yield store
        store.dispose()


@pytest.fixture(scope="module")
def stored(filled: Store) -> Stored:
    with filled.read() as conn:
        def rows(table: Any) -> list[Any]:
            return conn.execute(select(table).where(table.c.project_id == 1)).all()
        return Stored(rows(t.turns), rows(t.traces), rows(t.spans), {s.session_id: s for s in rows(t.sessions)},
                      rows(t.annotations))


# --- The oracle: the metrics recomputed from the stored rows --------------------------------------


def aggregate(agg: str, values: list[float]) -> float | None:
    if agg == "count":
        return float(len(values))
    if not values:
        return None
    return {"sum": lambda: round(sum(values), 8), "mean": lambda: round(sum(values) / len(values), 8),
            "min": lambda: min(values), "max": lambda: max(values)}.get(
        agg, lambda: percentile(values, int(agg[1:]) / 100))()


def oracle(data: Stored, group_by: str, metrics: list[str], filters: MetricsFilter, sort_key: str, order: str,
           limit: int) -> list[tuple[str, dict[str, float | None]]]:
    calls: dict[tuple[str, str], list[Any]] = defaultdict(list)  # (session, turn key) → its LLM spans
    turn_of = {tr.trace_id: (tr.session_id, tr.turn_key) for tr in data.traces}
    for sp in data.spans:
        if sp.kind == "LLM":
            calls[turn_of[sp.trace_id]].append(sp)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for tu in data.turns:
        ns = lambda x: int(x.timestamp() * 1_000_000) * 1000  # noqa: E731
        if (filters.start and tu.start_ns < ns(filters.start)) or (filters.end and tu.start_ns > ns(filters.end)):
            continue
        if (filters.user_id and tu.user_id != filters.user_id) or (
                filters.session_id and tu.session_id != filters.session_id):
            continue
        mine = calls[(tu.session_id, tu.turn_key)]
        if filters.model and not any(c.model == filters.model for c in mine):
            continue
        ids = {"trace": tu.first_trace_id, "session": tu.session_id, "user": tu.user_id}
        if group_by == "model":
            for c in mine:
                if filters.model is None or c.model == filters.model:
                    groups[c.model or "(unknown)"].append({**ids, "tokens": c.total_tokens,
                        "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens, "cost": c.cost,
                        "latency": (c.end_ns - c.start_ns) / 1e6, "errors": float(c.status == "ERROR"),
                        "llm_calls": 1.0, "spans": 1.0})
            continue
        key = {"session": tu.session_id, "user": tu.user_id,
               "day": datetime.fromtimestamp(tu.start_ns // DAY_NS * 86_400, tz=UTC).date().isoformat()}[group_by]
        if key is not None:
            groups[key].append({**ids, "tokens": tu.total_tokens, "prompt_tokens": tu.prompt_tokens,
                                "completion_tokens": tu.completion_tokens, "cost": tu.cost,
                                "latency": (tu.end_ns - tu.start_ns) / 1e6, "errors": 1.0 if tu.errors else 0.0,
                                "llm_calls": tu.llm_calls, "spans": tu.spans})
    rows = []
    for key, units in groups.items():
        sessions = {u["session"] for u in units}
        values: dict[str, float | None] = {}
        for text in dict.fromkeys([*metrics, sort_key]):
            agg, target = text[:-1].split("(", 1)
            if target in ("turns", "sessions", "users") and agg == "count":
                values[text] = float(len({u[target[:-1] if target != "turns" else "trace"] for u in units} - {None}))
            elif target in TURN_FIELDS:
                values[text] = aggregate(agg, [u[target] for u in units])
            elif target in SESSION_FIELDS:
                column = "turns" if target == "turns" else "duration_ns"
                scale = 1.0 if target == "turns" else 1e6
                values[text] = aggregate(agg, [float(getattr(data.sessions[s], column)) / scale for s in sessions])
            else:
                kind, name = target.split(":", 1)
                name, _, label = name.partition("=")
                targets = sessions if kind in ("score", "label") else {u["trace"] for u in units}
                notes = [a for a in data.annotations if a.name == name and a.target_id in targets
                         and a.target_kind == ("session" if kind in ("score", "label") else "trace")]
                if agg == "rate":
                    labelled = [a.label for a in notes if a.label is not None]
                    values[text] = round(labelled.count(label) / len(labelled), 8) if labelled else None
                else:
                    values[text] = aggregate(agg, [a.score for a in notes if a.score is not None])
        rows.append((key, values))
    present = sorted((r for r in rows if r[1][sort_key] is not None), key=lambda r: (r[1][sort_key], r[0]),
                     reverse=order == "desc")
    absent = sorted((r for r in rows if r[1][sort_key] is None), key=lambda r: r[0])
    return [(key, {m: v[m] for m in metrics}) for key, v in (present + absent)[:limit]]


def answer(store: Store, group_by: str, metrics: list[str], filters: MetricsFilter | None = None,
           order_by: str | None = None, order: str = "desc", limit: int = 1000
           ) -> list[tuple[str, dict[str, float | None]]]:
    with store.read() as conn:
        result = compute_metrics(conn, "p", group_by, metrics, filters, order_by=order_by, order=order, limit=limit)
    assert result.metrics == metrics
    return [(r.group, r.values) for r in result.rows]


# --- Tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("group_by", SQL_GROUPS)
def test_every_aggregation_of_every_field_matches(filled: Store, stored: Stored, group_by: str) -> None:
    got = answer(filled, group_by, METRICS, order_by="count(turns)")
    want = oracle(stored, group_by, METRICS, MetricsFilter(), "count(turns)", "desc", 1000)
    assert [g for g, _ in got] == [g for g, _ in want]
    for (group, values), (_, expected) in zip(got, want, strict=True):
        for metric in METRICS:
            assert values[metric] == expected[metric], (group_by, group, metric, values[metric], expected[metric])
            assert type(values[metric]) is type(expected[metric]), (group_by, metric)  # int sums stay ints


@pytest.mark.parametrize("group_by", SQL_GROUPS)
def test_sorted_by_every_metric_both_ways_with_ties_and_nulls_last(filled: Store, stored: Stored,
                                                                    group_by: str) -> None:
    for metric in SORTS:
        for order in ("desc", "asc"):
            shown = ["count(sessions)", metric]
            got = answer(filled, group_by, shown, order_by=metric, order=order, limit=7)
            assert got == oracle(stored, group_by, shown, MetricsFilter(), metric, order, 7), (metric, order)


FILTERS = [
    MetricsFilter(start=datetime(2025, 11, 21, tzinfo=UTC), end=datetime(2025, 11, 22, 12, tzinfo=UTC)),
    MetricsFilter(user_id="bob"),
    MetricsFilter(session_id="s03"),
    MetricsFilter(model="gpt-b"),
    MetricsFilter(model="gpt-a", user_id="alice"),
    MetricsFilter(start=datetime(2025, 11, 21, tzinfo=UTC), end=datetime(2025, 11, 21, tzinfo=UTC)),
]


@pytest.mark.parametrize("group_by", SQL_GROUPS)
@pytest.mark.parametrize("filters", FILTERS, ids=range(len(FILTERS)))
def test_filters_match(filled: Store, stored: Stored, group_by: str, filters: MetricsFilter) -> None:
    metrics = ["p90(latency)", "sum(cost)", "mean(duration)", "p50(score:q)", "rate(turn_label:q=good)",
               "count(users)", "max(tokens)"]
    for order_by in (None, "sum(cost)", "p50(score:q)"):
        got = answer(filled, group_by, metrics, filters, order_by=order_by, order="asc")
        assert got == oracle(stored, group_by, metrics, filters, order_by or metrics[0], "asc", 1000)


def test_single_value_groups_and_empty_answers(filled: Store, stored: Stored) -> None:
    one = answer(filled, "session", ["p99(latency)", "p50(duration)", "count(turns)"],
                 MetricsFilter(session_id="s07"))
    [(group, values)] = one
    [turn] = [tu for tu in stored.turns if tu.session_id == "s07"]
    assert group == "s07" and values == {"p99(latency)": round((turn.end_ns - turn.start_ns) / 1e6, 3),
                                         "p50(duration)": stored.sessions["s07"].duration_ns / 1e6,
                                         "count(turns)": 1.0}
    empty = MetricsFilter(start=datetime(2030, 1, 1, tzinfo=UTC))
    for group_by in (*SQL_GROUPS, "tag"):
        assert answer(filled, group_by, METRICS, empty) == []
    assert answer(filled, "model", ["count(turns)"], MetricsFilter(model="no-such-model")) == []
    assert answer(filled, "user", ["count(turns)"], MetricsFilter(session_id="s00")) == []  # no user at all
    with filled.read() as conn:
        assert compute_metrics(conn, "nobody", "session").rows == []


def test_other_projects_do_not_count(filled: Store) -> None:
    assert not {g for g, _ in answer(filled, "session", ["count(turns)"])} & {f"o{i}" for i in range(5)}


def test_midnight_belongs_to_the_day_it_starts(filled: Store, stored: Stored) -> None:
    by_day = dict(answer(filled, "day", ["count(turns)"]))
    assert by_day == {day: v for day, v in oracle(stored, "day", ["count(turns)"], MetricsFilter(),
                                                   "count(turns)", "desc", 1000)}
    assert "2025-11-21" in by_day



@pytest.mark.parametrize("filled", ["sqlite"], indirect=True)  # the plans asserted are SQLite's
@pytest.mark.parametrize("group_by", ["session", "user", "day"])
def test_turn_metrics_read_the_index_alone(filled: Store, group_by: str) -> None:
    """Grouped by session, user or day, the turns are read from ``ix_turns_session_figures`` without
    visiting their rows (which carry the turn text): the SQLite plan of the metrics statement says
    so. Fails when a column a metric needs is missing from the index (migration 0009)."""
    plans: list[str] = []

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        plans.extend(str(row[3]) for row in cursor.connection.execute("EXPLAIN QUERY PLAN " + statement, parameters))

    metrics = ["count(turns)", "count(users)", "sum(tokens)", "sum(prompt_tokens)", "sum(completion_tokens)",
               "sum(cost)", "mean(latency)", "p99(latency)", "sum(errors)", "sum(llm_calls)", "sum(spans)"]
    with filled.read() as conn:
        event.listen(conn, "before_cursor_execute", explain)
        compute_metrics(conn, "p", group_by, metrics, order_by="p99(latency)", limit=1000)
    turn_reads = [plan for plan in plans if plan.startswith(("SCAN turns", "SEARCH turns"))]
    assert turn_reads, plans
    assert all("COVERING INDEX ix_turns_session_figures" in plan for plan in turn_reads), turn_reads
