"""Metrics grouped by session, user, model, tag or day: counts, sums, means and percentiles.

A metric is written ``agg(field)``:

* turn fields — ``tokens``, ``prompt_tokens``, ``completion_tokens``, ``cost``, ``latency`` (ms),
  ``errors`` (1 for a failed turn), ``llm_calls``, ``spans`` — aggregated over the group's turns
  (grouped by ``model``: over that model's LLM calls);
* session fields — ``turns`` (turns per session), ``duration`` (ms) — over the group's sessions;
* ``score:NAME`` / ``turn_score:NAME`` — scores of annotations ``NAME`` on the group's sessions / turns;
* ``count(turns)``, ``count(sessions)``, ``count(users)`` — distinct turns, sessions, users;
* ``rate(label:NAME=LABEL)`` / ``rate(turn_label:NAME=LABEL)`` — share of the group's session / turn
  annotations ``NAME`` (with a label) whose label is ``LABEL``.

Aggregations: ``count sum mean min max p50 p90 p95 p99`` (percentiles interpolate linearly
between closest ranks). Turns are selected by their start time (``start``/``end``) and the filters.

The database computes the metrics, sorts the groups and cuts them at ``limit`` (``_sql_rows``);
tags come from ``trace_tags`` (extracted at ingest), so the tag group and filter are SQL too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, get_args

from sqlalchemy import CTE, Connection, Float, Numeric, and_, case, cast, exists, func, literal, select

from threadline.server.query.errors import InvalidQuery
from threadline.server.query.parameters import Param, Timestamp
from threadline.server.query.projects import project_id
from threadline.server.query.timeconv import to_ns
from threadline.server.store import schema as t
from threadline.server.store.percentile import PERCENTILE_FUNCTION

MetricsGroup = Literal["session", "user", "model", "tag", "day"]
"""What metrics can be grouped by (the API's ``group_by`` type, the CLI's ``--group-by`` choices)."""
GROUPS: tuple[str, ...] = get_args(MetricsGroup)
TURN_FIELDS = ("tokens", "prompt_tokens", "completion_tokens", "cost", "latency", "errors", "llm_calls", "spans")
SESSION_FIELDS = ("turns", "duration")
AGGREGATIONS = ("count", "sum", "mean", "min", "max", "p50", "p90", "p95", "p99")
DEFAULT_METRICS = ("count(turns)", "count(sessions)", "sum(tokens)", "sum(cost)", "mean(latency)", "sum(errors)")
_METRIC = re.compile(r"^(\w+)\((.+)\)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Metric:
    """A parsed metric expression."""

    text: str
    aggregation: str
    field: str  # a turn/session field, "score", "turn_score", "label", "turn_label", or a count target
    name: str | None = None
    label: str | None = None


def parse_metric(text: str) -> Metric:
    """Parse ``agg(field)``; raise :class:`InvalidQuery` with what is allowed."""
    match = _METRIC.match(text.strip())
    if not match:
        raise InvalidQuery(f"metric {text!r} is not of the form agg(field), e.g. sum(tokens) or mean(score:NAME)")
    agg, target = match.group(1), match.group(2)
    if agg == "rate":
        kind, _, rest = target.partition(":")
        if kind not in ("label", "turn_label") or "=" not in rest:
            raise InvalidQuery(f"metric {text!r}: rate takes label:NAME=LABEL or turn_label:NAME=LABEL")
        name, _, label = rest.rpartition("=")
        if not name or not label:
            raise InvalidQuery(f"metric {text!r}: both NAME and LABEL are needed")
        return Metric(text, agg, kind, name, label)
    if agg not in AGGREGATIONS:
        raise InvalidQuery(f"metric {text!r}: aggregation must be one of {', '.join(AGGREGATIONS)} or rate")
    if agg == "count" and target in ("turns", "sessions", "users"):
        return Metric(text, agg, "count_" + target)
    kind, sep, name = target.partition(":")
    if sep and kind in ("score", "turn_score") and name:
        return Metric(text, agg, kind, name)
    if target in TURN_FIELDS or target in SESSION_FIELDS:
        return Metric(text, agg, target)
    raise InvalidQuery(
        f"metric {text!r}: field must be one of {', '.join(TURN_FIELDS + SESSION_FIELDS)}, score:NAME, "
        "turn_score:NAME (or count(turns|sessions|users), rate(label:NAME=LABEL))")


@dataclass(frozen=True, slots=True)
class MetricsFilter:
    """Which turns count: start time window, and optional user, session, model, tag."""

    start: datetime | None = None
    end: datetime | None = None
    user_id: str | None = None
    session_id: str | None = None
    model: str | None = None
    tag: str | None = None

    @classmethod
    def from_params(cls, values: Mapping[str, Any]) -> MetricsFilter:
        """The filter of :data:`METRICS_PARAMS` values (:func:`~.parameters.parse_params`, or the API's)."""
        return cls(**values)


#: The filter parameters of the metrics (the API's ``GET …/metrics``).
METRICS_PARAMS: tuple[Param, ...] = (
    Param("start", Timestamp | None, "Turns started at or after (RFC 3339)"),
    Param("end", Timestamp | None, "Turns started at or before (RFC 3339)"),
    Param("user_id", str | None, "Only this user's turns"),
    Param("session_id", str | None, "Only this session's turns"),
    Param("model", str | None, "Only turns with an LLM call of this model"),
    Param("tag", str | None, "Only turns with this tag (tag.tags)"),
)
assert [p.name for p in METRICS_PARAMS] == [f.name for f in fields(MetricsFilter)]  # one parameter per field


@dataclass(frozen=True, slots=True)
class MetricsRow:
    """One group and its metric values (``None`` when there is nothing to aggregate)."""

    group: str
    values: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class MetricsResult:
    """Rows ordered as asked."""

    group_by: str
    metrics: list[str]
    rows: list[MetricsRow]


def compute_metrics(
    conn: Connection, project: str, group_by: str, metrics: Sequence[str] = DEFAULT_METRICS,
    filters: MetricsFilter | None = None, order_by: str | None = None, order: str = "desc", limit: int = 50,
) -> MetricsResult:
    """Metrics per group of a project's turns, ordered by ``order_by`` (a metric; default the first)."""
    if group_by not in GROUPS:
        raise InvalidQuery(f"group_by must be one of {', '.join(GROUPS)}, not {group_by!r}")
    if order not in ("asc", "desc"):
        raise InvalidQuery(f"order must be 'asc' or 'desc', not {order!r}")
    if not 1 <= limit <= 1000:
        raise InvalidQuery(f"limit must be between 1 and 1000, not {limit}")
    parsed = [parse_metric(m) for m in (metrics or DEFAULT_METRICS)]
    texts = [m.text for m in parsed]
    if order_by is not None and order_by not in texts:
        parsed.append(parse_metric(order_by))
    sort_key = order_by or parsed[0].text
    filters = filters or MetricsFilter()
    if filters.start and filters.end and filters.start > filters.end:
        raise InvalidQuery("start must not be after end")
    pid = project_id(conn, project)
    if pid is None:
        return MetricsResult(group_by, texts, [])
    ordered = _sql_rows(conn, pid, group_by, parsed, filters, sort_key, order, limit)
    return MetricsResult(group_by, texts, [MetricsRow(r.group, {k: r.values[k] for k in texts}) for r in ordered])


# --- Metrics computed by the database -------------------------------------------------------------
#
# ``_units`` selects one row per unit (a turn; grouped by model, an LLM call of a selected turn) with
# its group key ``g``. Each *source* is a set of rows per group that metrics aggregate over: the
# units themselves, the group's distinct sessions joined to their rollups, and the annotations of
# the group's distinct sessions or turns, one source per annotation name. Each source is grouped by
# ``g`` in SQL; the sources are joined on ``g`` to the units' groups, sorted by the sort metric
# (rounded as it is returned, NULL last, then by group) and cut at ``limit``, so Python only sees
# the rows returned. Percentiles: ``percentile_cont`` on PostgreSQL; on SQLite the ``tl_percentile``
# aggregate registered on every connection (store/percentile.py: the same interpolation).

_DAY_NS = 86_400 * 10**9
#: Turn fields whose sums, minima and maxima are integers (as they are in Python).
_INT_FIELDS = frozenset({"tokens", "prompt_tokens", "completion_tokens", "llm_calls", "spans"})


@dataclass(slots=True)
class _Source:
    """Rows aggregated per group ``g``: ``value`` columns by name, and the metrics over them."""

    name: str
    rows: Any  # a selectable with a ``g`` column
    metrics: list[tuple[int, Metric, str]] = field(default_factory=list)  # (index, metric, column)


def _units(pid: int, group_by: str, filters: MetricsFilter) -> Any:
    """One row per turn (grouped by model: per LLM call of a turn) with its group key ``g``."""
    tu = t.turns
    turn_filter = [tu.c.project_id == pid]
    if filters.start is not None:
        turn_filter.append(tu.c.start_ns >= to_ns(filters.start))
    if filters.end is not None:
        turn_filter.append(tu.c.start_ns <= to_ns(filters.end))
    if filters.user_id is not None:
        turn_filter.append(tu.c.user_id == filters.user_id)
    if filters.session_id is not None:
        turn_filter.append(tu.c.session_id == filters.session_id)
    tr, sp, tt = t.traces, t.spans, t.trace_tags
    calls_of_turn = (tr.c.project_id == pid, tr.c.session_id == tu.c.session_id, tr.c.turn_key == tu.c.turn_key,
                     sp.c.project_id == pid, sp.c.trace_id == tr.c.trace_id, sp.c.kind == "LLM")
    tags_of_turn = (*calls_of_turn[:3], tt.c.project_id == pid, tt.c.trace_id == tr.c.trace_id)
    if filters.tag is not None:  # a tag on any trace of the turn (extracted at ingest: trace_tags)
        turn_filter.append(exists().where(*tags_of_turn, tt.c.tag == filters.tag))
    if filters.model is not None and group_by != "model":
        turn_filter.append(exists().where(*calls_of_turn, sp.c.model == filters.model))
    ids = (func.coalesce(tu.c.first_trace_id, "").label("trace_id"), tu.c.session_id, tu.c.user_id)
    if group_by == "model":
        model_filter = [] if filters.model is None else [sp.c.model == filters.model]
        return select(
            func.coalesce(sp.c.model, "(unknown)").label("g"), *ids,
            sp.c.total_tokens.label("tokens"), sp.c.prompt_tokens, sp.c.completion_tokens, sp.c.cost,
            (cast(sp.c.end_ns - sp.c.start_ns, Float) / literal(1e6, Float)).label("latency"),
            case((sp.c.status == "ERROR", literal(1.0, Float)), else_=literal(0.0, Float)).label("errors"),
            literal(1.0, Float).label("llm_calls"), literal(1.0, Float).label("spans"),
        ).select_from(tu.join(tr, and_(*calls_of_turn[:3])).join(sp, and_(*calls_of_turn[3:]))).where(
            *turn_filter, *model_filter)
    source: Any = tu
    if group_by == "tag":  # a turn counts once in each tag of any of its traces
        tagged = select(tu.c.session_id, tu.c.turn_key, tt.c.tag).distinct().select_from(
            tu.join(tr, and_(*calls_of_turn[:3])).join(tt, and_(*tags_of_turn[3:]))).where(
            tu.c.project_id == pid).subquery("tagged")
        source = tu.join(tagged, and_(tagged.c.session_id == tu.c.session_id, tagged.c.turn_key == tu.c.turn_key))
        key: Any = tagged.c.tag
    else:
        key = {"session": tu.c.session_id, "user": tu.c.user_id, "day": tu.c.start_ns // _DAY_NS}[group_by]
    if group_by == "user":
        turn_filter.append(tu.c.user_id.is_not(None))
    return select(
        key.label("g"), *ids, tu.c.total_tokens.label("tokens"), tu.c.prompt_tokens, tu.c.completion_tokens,
        tu.c.cost, (cast(tu.c.end_ns - tu.c.start_ns, Float) / literal(1e6, Float)).label("latency"),
        case((tu.c.errors != 0, literal(1.0, Float)), else_=literal(0.0, Float)).label("errors"),
        tu.c.llm_calls, tu.c.spans,
    ).select_from(source).where(*turn_filter)


def _sources(pid: int, units: Any, metrics: Sequence[Metric]) -> list[_Source]:
    """The units source (first: it defines the groups) and the sources the other metrics need."""
    main = _Source("u", units)
    sources: dict[str, _Source] = {}
    group_sessions = select(units.c.g, units.c.session_id).distinct().cte("group_sessions")
    group_turns = select(units.c.g, units.c.trace_id).distinct().cte("group_turns")
    s, a = t.sessions, t.annotations
    for index, m in enumerate(metrics):
        if m.field in TURN_FIELDS or m.field.startswith("count_"):
            main.metrics.append((index, m, m.field))
        elif m.field in SESSION_FIELDS:
            if "s" not in sources:
                sources["s"] = _Source("s", select(
                    group_sessions.c.g, cast(s.c.turns, Float).label("turns"),
                    (cast(s.c.duration_ns, Float) / literal(1e6, Float)).label("duration"),
                ).join_from(group_sessions, s, and_(s.c.project_id == pid,
                                                    s.c.session_id == group_sessions.c.session_id)))
            sources["s"].metrics.append((index, m, m.field))
        else:
            kind = "session" if m.field in ("score", "label") else "trace"
            name = f"a{len(sources)}"
            key = f"{kind}:{m.name}"
            if key not in sources:
                targets = group_sessions.c.session_id if kind == "session" else group_turns.c.trace_id
                sources[key] = _Source(name, select(
                    targets.table.c.g, a.c.label, a.c.score,
                ).join_from(targets.table, a, and_(a.c.project_id == pid, a.c.target_kind == kind,
                                                   a.c.name == m.name, a.c.target_id == targets)))
            sources[key].metrics.append((index, m, "label" if m.aggregation == "rate" else "score"))
    return [main, *sources.values()]


def _round(value: Any, digits: int, postgres: bool) -> Any:
    """``value`` rounded as Python rounds the returned value (for sorting)."""
    return func.round(cast(value, Numeric) if postgres else value, digits)


def _grouped(source: _Source, postgres: bool) -> tuple[Any, dict[int, tuple[list[str], Any]]]:
    """``source`` grouped by ``g``: per metric index, the names of its raw columns and its sort column."""
    rows = source.rows if isinstance(source.rows, CTE) else source.rows.subquery(f"{source.name}_rows")
    columns: list[Any] = [rows.c.g]
    out: dict[int, list[str]] = {}
    sorts: dict[int, Callable[[list[Any]], Any]] = {}  # the sort value from the grouped columns
    for index, m, col in source.metrics:
        value: Any = rows.c.get(col)  # None for the distinct counts
        agg = m.aggregation
        if agg == "rate":
            parts = [func.sum(case((value == m.label, 1), else_=0)), func.count(value)]
            sorts[index] = lambda g: _round(cast(g[0], Float) / func.nullif(g[1], 0), 8, postgres)
        elif m.field in ("count_turns", "count_sessions", "count_users"):
            target = rows.c[{"count_turns": "trace_id", "count_sessions": "session_id",
                             "count_users": "user_id"}[m.field]]
            parts = [func.count(target.distinct())]
        elif agg == "count":
            parts = [func.count(value)]
        elif agg == "sum":
            parts = [func.sum(value)]
            sorts[index] = lambda g: _round(g[0], 8, postgres)
        elif agg == "mean":
            parts = [func.sum(value), func.count(value)]
            sorts[index] = lambda g: _round(cast(g[0], Float) / func.nullif(g[1], 0), 8, postgres)
        elif agg in ("min", "max"):
            parts = [getattr(func, agg)(value)]
        else:
            fraction = int(agg[1:]) / 100
            if postgres:
                picked: Any = func.percentile_cont(literal(fraction, Float)).within_group(value)
            else:  # registered on every SQLite connection (store/percentile.py)
                picked = getattr(func, PERCENTILE_FUNCTION)(value, literal(fraction, Float))
            parts = [picked]
            sorts[index] = lambda g: _round(g[0], 3, postgres)
        out[index] = [f"m{index}_{i}" for i in range(len(parts))]
        columns.extend(part.label(name) for part, name in zip(parts, out[index], strict=True))
    # Each aggregate is computed once, in the grouped subquery; the sort value is derived from it
    # outside (a count(DISTINCT …) or a percentile written twice would be computed twice).
    grouped = select(*columns).group_by(rows.c.g).subquery(f"{source.name}_grouped")
    result: dict[int, tuple[list[str], Any]] = {}
    for i, names in out.items():
        raw = [grouped.c[n] for n in names]
        result[i] = (names, sorts[i](raw) if i in sorts else raw[0])
    return grouped, result


def _finish(m: Metric, group_by: str, raw: Sequence[Any]) -> float | None:
    """The returned value of ``m`` from its raw aggregate columns (as Python computed it)."""
    agg = m.aggregation
    if agg == "rate":
        matched, labelled = raw
        return round(int(matched) / int(labelled), 8) if labelled else None
    if agg == "count" or m.field.startswith("count_"):
        return float(raw[0] or 0)
    if raw[0] is None:
        return None
    integral = m.field in _INT_FIELDS and not (group_by == "model" and m.field in ("llm_calls", "spans"))
    first: float = (int(raw[0]) if integral else float(raw[0])) if isinstance(raw[0], Decimal) else raw[0]
    if agg == "sum":
        return round(first, 8)
    if agg == "mean":
        return round(first / int(raw[1]), 8)
    if agg in ("min", "max"):
        return first
    return round(float(first), 3)


def _sql_rows(conn: Connection, pid: int, group_by: str, parsed: Sequence[Metric], filters: MetricsFilter,
              sort_key: str, order: str, limit: int) -> list[MetricsRow]:
    """The metrics computed by the database, the rows sorted and cut there."""
    postgres = conn.dialect.name == "postgresql"
    units = _units(pid, group_by, filters).cte("units")
    sources = _sources(pid, units, parsed)
    grouped = [_grouped(source, postgres) for source in sources]
    main = grouped[0][0]
    joined = main
    columns: dict[int, tuple[list[Any], Any]] = {}
    for position, (table, metric_columns) in enumerate(grouped):
        if position:
            joined = joined.outerjoin(table, table.c.g == main.c.g)
        for index, (names, sort) in metric_columns.items():
            columns[index] = ([table.c[n] for n in names], sort)
    sort_index = next(i for i, m in enumerate(parsed) if m.text == sort_key)
    sort_metric = parsed[sort_index]
    sort = columns[sort_index][1]
    if sort_metric.aggregation == "count" or sort_metric.field.startswith("count_"):
        sort = func.coalesce(sort, 0)
    group = main.c.g.collate("C") if postgres and group_by != "day" else main.c.g
    missing = case((sort.is_(None), 1), else_=0)
    if order == "desc":
        ordering = [missing, sort.desc(), case((sort.is_(None), group)).asc(), group.desc()]
    else:
        ordering = [missing, sort.asc(), group.asc()]
    query = select(main.c.g, *(c for index in range(len(parsed)) for c in columns[index][0])).select_from(
        joined).order_by(*ordering).limit(limit)
    out = []
    for row in conn.execute(query):
        values: dict[str, float | None] = {}
        offset = 1
        for index, m in enumerate(parsed):
            width = len(columns[index][0])
            values[m.text] = _finish(m, group_by, row[offset:offset + width])
            offset += width
        key = row[0]
        if group_by == "day":
            key = datetime.fromtimestamp(key * 86_400, tz=UTC).date().isoformat()
        out.append(MetricsRow(key, values))
    return out
