"""Query-string parsing for the UI pages, and links that change one parameter of the current URL.

The filters are the REST API's, declared once in ``query/`` (``SESSION_PARAMS``, ``TRACE_PARAMS``,
``USER_PARAMS``) and validated here with the same types by
:func:`~threadline.server.query.parameters.parse_params`: ``start``, ``end``, ``user_id``,
``user_id_contains``, ``q``, ``has_error``, ``min_turns``, ``tag``, ``metadata`` (``key:value``,
repeatable); on the traces page ``has_session``, ``status``, ``session_id``. What is the UI's own
stays here: pages take their parameters as plain strings, and an empty form field is "not set",
never an error (:func:`clean`); a ``start``/``end`` from a ``datetime-local`` field has no offset
and means UTC (:func:`form_time`); ``range`` is a preset window ending now (it overrides
``start``/``end``); ``sort``, ``order``, ``cursor`` and ``limit`` (capped by the pages); on the
sessions page ``cols``, the optional columns shown. Bad values become a :class:`BadParameter`
shown on the page with status 400.

A sort of ``score:<annotation name>`` (UI only) ranks sessions or users by the mean score of
that annotation (best/worst first); ``min_score``/``max_score`` then filter on that mean.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

from threadline.server.query import sessions as query_sessions
from threadline.server.query import users as query_users
from threadline.server.query.errors import InvalidQuery
from threadline.server.query.parameters import Param, parse_params
from threadline.server.query.sessions import SESSION_PARAMS, SessionFilter
from threadline.server.query.traces import TRACE_PARAMS, TraceFilter
from threadline.server.query.users import USER_PARAMS, UserFilter

F = TypeVar("F")

RANGES: dict[str, tuple[str, timedelta | None]] = {
    "": ("All time", None),
    "15m": ("Last 15 minutes", timedelta(minutes=15)),
    "1h": ("Last hour", timedelta(hours=1)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
    "custom": ("Custom (UTC)", None),
}
SESSION_SORTS = tuple(query_sessions.SESSION_SORTS)
#: The sessions table's optional columns (``cols=``, comma-separated, in this order) and their labels;
#: session, first input, last output and start are always shown. ``cols=none`` shows none of these.
SESSION_COLUMNS: dict[str, str] = {
    "users": "Users", "duration": "Duration", "turns": "Turns", "tokens": "Tokens", "cost": "Cost",
    "errors": "Errors", "latency": "Latency p50/p99", "evals": "Evaluations",
}
NO_COLUMNS = "none"
USER_SORTS = tuple(query_users.USER_SORTS)


SCORE_PREFIX = "score:"


class BadParameter(ValueError):
    """A query-string value the page cannot use; the message says which and why."""


def clean(params: Mapping[str, str]) -> dict[str, str]:
    """The non-empty parameters, stripped."""
    return {k: v.strip() for k, v in params.items() if v is not None and v.strip()}


def parse_int(name: str, value: str | None, minimum: int = 0) -> int | None:
    """A non-negative integer, or ``None`` when empty."""
    if not value:
        return None
    try:
        number = int(value)
    except ValueError as exc:
        raise BadParameter(f"{name}: {value!r} is not a whole number") from exc
    if number < minimum:
        raise BadParameter(f"{name}: must be at least {minimum}")
    return number


def parse_float(name: str, value: str | None) -> float | None:
    """A finite number, or ``None`` when empty."""
    if not value:
        return None
    try:
        number = float(value)
    except ValueError as exc:
        raise BadParameter(f"{name}: {value!r} is not a number") from exc
    if not math.isfinite(number):
        raise BadParameter(f"{name}: must be a finite number")
    return number


@dataclass(frozen=True, slots=True)
class ScoreRanking:
    """A ``sort=score:<name>`` ranking with its optional bounds on the mean score."""

    name: str
    min_score: float | None
    max_score: float | None


def parse_sort(params: Mapping[str, str], choices: tuple[str, ...], default: str) -> tuple[str, ScoreRanking | None]:
    """The ``sort`` column, or the annotation ranking when it is ``score:<name>``.

    ``min_score``/``max_score`` need a score sort (they bound the mean of that annotation).
    """
    value = params.get("sort") or ""
    low, high = parse_float("min_score", params.get("min_score")), parse_float("max_score", params.get("max_score"))
    if value.startswith(SCORE_PREFIX):
        name = value[len(SCORE_PREFIX):]
        if not name:
            raise BadParameter("sort: score: needs an annotation name, like score:user_frustration")
        if low is not None and high is not None and low > high:
            raise BadParameter("min_score must not be above max_score")
        return value, ScoreRanking(name, low, high)
    if low is not None or high is not None:
        raise BadParameter("min_score/max_score need a score sort: click an annotation column first")
    return parse_choice("sort", value, choices, default), None


def parse_choice(name: str, value: str | None, choices: tuple[str, ...], default: str) -> str:
    """One of ``choices`` (``default`` when empty)."""
    if not value:
        return default
    if value not in choices:
        raise BadParameter(f"{name}: {value!r} is not one of {', '.join(choices)}")
    return value


@dataclass(frozen=True, slots=True)
class SessionQuery:
    """The parsed sessions-page URL."""

    filters: SessionFilter
    range: str
    sort: str
    order: str
    cursor: str | None
    limit: int
    ranking: ScoreRanking | None = None
    columns: tuple[str, ...] = tuple(SESSION_COLUMNS)

    @property
    def cols_param(self) -> str | None:
        """The ``cols`` value that shows :attr:`columns` (``None``: all, the default)."""
        return cols_value(self.columns)

    def column_toggles(self, params: Mapping[str, str], path: str) -> list[tuple[str, str, bool, str]]:
        """Each optional column: its name, label, whether it is shown, and the link that toggles it."""
        toggles = []
        for name, label in SESSION_COLUMNS.items():
            shown = name in self.columns
            other = [c for c in self.columns if c != name] if shown else [*self.columns, name]
            toggles.append((name, label, shown, link(params, path, cols=cols_value(other) or "")))
        return toggles

    @property
    def live(self) -> bool:
        """Whether new sessions may appear at the top (newest first, first page)."""
        return self.sort == "start_time" and self.order == "desc" and self.cursor is None


def cols_value(columns: Iterable[str]) -> str | None:
    """The canonical ``cols`` value showing ``columns`` (table order; ``None`` when it is all of them)."""
    chosen = set(columns)
    ordered = [c for c in SESSION_COLUMNS if c in chosen]
    if len(ordered) == len(SESSION_COLUMNS):
        return None
    return ",".join(ordered) or NO_COLUMNS


def parse_columns(values: Iterable[str]) -> tuple[str, ...]:
    """The optional columns named by ``cols`` (each value comma-separated; repeated ``cols`` add up,
    as a form of checkboxes sends them), in table order; all when there is none; ``none`` adds
    nothing. An unknown name is a :class:`BadParameter` (a typo must not silently hide a column)."""
    names = [n.strip() for value in values for n in value.split(",") if n.strip()]
    if not names:
        return tuple(SESSION_COLUMNS)
    unknown = [n for n in names if n not in SESSION_COLUMNS and n != NO_COLUMNS]
    if unknown:
        raise BadParameter(f"cols: {unknown[0]!r} is not one of {', '.join(SESSION_COLUMNS)} (or {NO_COLUMNS})")
    return tuple(c for c in SESSION_COLUMNS if c in names)


def every_value(params: Mapping[str, str], name: str) -> list[str]:
    """Every value of a repeatable parameter: all of them from a query string (``getlist``), else the one."""
    getlist = getattr(params, "getlist", None)
    if callable(getlist):
        return [str(v) for v in getlist(name)]
    value = params.get(name)
    return [value] if value else []


_FORM_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?$")
#: The parameters that are times (a page's form sends them from ``datetime-local`` fields).
TIME_PARAMS = ("start", "end")


def form_time(value: str) -> str:
    """``value`` as an RFC 3339 time when it is a ``datetime-local`` form value, which has no offset
    (``2026-11-21T10:00``, ``2026-11-21T10:00:05``): the pages work in UTC, so it gets ``Z`` (and
    the seconds it may lack). Anything else is left as it is, for the parameter's type to judge."""
    match = _FORM_TIME.match(value)
    if match is None:
        return value
    return value + ("Z" if match.group(1) else ":00Z")


def raw_values(params: Mapping[str, str], declared: Sequence[Param]) -> dict[str, str | list[str]]:
    """The strings the ``declared`` parameters have in a page's query string ``params``: set only
    when not blank (stripped), every value of a repeatable one, times made RFC 3339 (:func:`form_time`)."""
    cleaned = clean(params)
    raw: dict[str, str | list[str]] = {}
    for param in declared:
        if param.repeated:
            values = [v.strip() for v in every_value(params, param.name) if v and v.strip()]
            if values:
                raw[param.name] = values
        elif param.name in cleaned:
            value = cleaned[param.name]
            raw[param.name] = form_time(value) if param.name in TIME_PARAMS else value
    return raw


def parse_filters(params: Mapping[str, str], declared: Sequence[Param],
                  build: Callable[[dict[str, Any]], F], now: datetime | None = None) -> tuple[str, F]:
    """The ``range`` preset and the filter ``build`` makes of the ``declared`` parameters of a page's
    query string (validated as the API validates them; ``range`` sets ``start``/``end``)."""
    try:
        values = parse_params(declared, raw_values(params, declared))
        has_window = "start" in values  # a list of things in time (not the users)
        preset = _window(clean(params).get("range", ""), values, now) if has_window else ""
        return preset, build(values)
    except InvalidQuery as exc:
        raise BadParameter(str(exc)) from exc


def session_filter(params: Mapping[str, str], now: datetime | None = None) -> tuple[str, SessionFilter]:
    """The ``range`` preset and the :class:`SessionFilter` of a page's query string."""
    return parse_filters(params, SESSION_PARAMS, SessionFilter.from_params, now)


def user_filter(params: Mapping[str, str]) -> UserFilter:
    """The :class:`UserFilter` of the users page's query string."""
    return parse_filters(params, USER_PARAMS, UserFilter.from_params)[1]


def session_query(params: Mapping[str, str], now: datetime | None = None,
                  cols: Iterable[str] = ()) -> SessionQuery:
    """Parse the sessions page's query string (``cols``: every ``cols`` value of the URL)."""
    p = clean(params)
    preset, filters = session_filter(params, now)
    sort, ranking = parse_sort(p, SESSION_SORTS, "start_time")
    return SessionQuery(
        filters=filters, range=preset, sort=sort, order=parse_choice("order", p.get("order"), ("asc", "desc"), "desc"),
        cursor=p.get("cursor"), limit=parse_int("limit", p.get("limit"), minimum=1) or 50, ranking=ranking,
        columns=parse_columns(list(cols) or [p.get("cols", "")]),
    )


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """The parsed traces-page URL (newest first, keyset-paginated)."""

    filters: TraceFilter
    range: str
    cursor: str | None
    limit: int


def _window(preset: str, values: dict[str, Any], now: datetime | None) -> str:
    """Apply the ``range`` preset to the parsed ``start``/``end`` of ``values`` (in UTC, the pages'
    zone) and name the window: the preset, ``custom`` for an explicit one, or ``""``."""
    if preset not in RANGES:
        raise BadParameter(f"range: {preset!r} is not one of {', '.join(k for k in RANGES if k)}")
    start, end = (None if t is None else t.astimezone(UTC) for t in (values["start"], values["end"]))
    window = RANGES[preset][1]
    if window is not None:
        start, end = (now or datetime.now(UTC)) - window, None
    if start is not None and end is not None and start > end:
        raise BadParameter("start must not be after end")
    values.update(start=start, end=end)
    return preset if preset else ("custom" if start or end else "")


def trace_query(params: Mapping[str, str], now: datetime | None = None) -> TraceQuery:
    """Parse the traces page's query string (the API's names plus ``range``)."""
    preset, filters = parse_filters(params, TRACE_PARAMS, TraceFilter.from_params, now)
    p = clean(params)
    return TraceQuery(filters=filters, range=preset, cursor=p.get("cursor"),
                      limit=parse_int("limit", p.get("limit"), minimum=1) or 50)


def window_param(moment: datetime, *, up: bool = False) -> str:
    """A UTC time as the ``start``/``end`` value of a page URL and its ``datetime-local`` field
    (``2026-11-21T10:00:05``: whole seconds, rounded down, or up with ``up``)."""
    moment = moment.astimezone(UTC)
    whole = moment.replace(microsecond=0)
    if up and whole < moment:
        whole += timedelta(seconds=1)
    return whole.replace(tzinfo=None).isoformat()


def link(params: Mapping[str, str | list[str]], path: str, drop: tuple[str, ...] = (),
         **changes: str | list[str] | None) -> str:
    """``path`` with the current non-empty parameters, minus ``drop``, with ``changes`` applied (a
    list value is a repeated parameter, like ``metadata``)."""
    merged: dict[str, str | list[str]] = {}
    for key, value in [*((k, v) for k, v in params.items() if k not in drop), *changes.items()]:
        kept: str | list[str] = value.strip() if isinstance(value, str) else [
            v.strip() for v in value or () if v.strip()]
        if kept:
            merged[key] = kept
        else:
            merged.pop(key, None)
    return f"{path}?{urlencode(merged, doseq=True)}" if merged else path


def narrow_link(params: Mapping[str, str | list[str]], path: str) -> Callable[[datetime, datetime], str]:
    """The link of a chart bar: the same view over the bar's time window (a custom range, first page)."""
    def narrow(start: datetime, end: datetime) -> str:
        return link(params, path, drop=("cursor", "range"), start=window_param(start),
                    end=window_param(end, up=True))
    return narrow


def sort_link(params: Mapping[str, str], path: str, column: str, current: str, order: str,
              default_order: str = "desc") -> str:
    """Link that sorts by ``column`` (toggling the order when it is already the sort), first page."""
    new_order = ("asc" if order == "desc" else "desc") if column == current else default_order
    drop = ("cursor",) if column.startswith(SCORE_PREFIX) and column == current else ("cursor", "min_score",
                                                                                          "max_score")
    return link(params, path, drop=drop, sort=column, order=new_order)
