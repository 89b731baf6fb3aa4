"""Sessions (conversations): the filtered, sorted list and one session turn by turn."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import Field
from sqlalchemy import Connection, Row, and_, or_, select

from threadline.server.model import Latency, Page, SessionDetail, SessionSummary, Tokens
from threadline.server.query import cursor as cursors
from threadline.server.query.annotations import summarize
from threadline.server.query.errors import InvalidQuery
from threadline.server.query.labels import MetadataFilter, parse_metadata_filter, session_label_conditions
from threadline.server.query.matching import id_contains
from threadline.server.query.parameters import Param, Timestamp
from threadline.server.query.projects import project_id
from threadline.server.query.timeconv import ms, percentile, to_datetime, to_ns
from threadline.server.query.turns import load_turns
from threadline.server.store import schema as t
from threadline.server.store.fulltext import EmptySearch, count_hits, matching_traces, session_has_match

SessionSort = Literal["start_time", "end_time", "turns", "tokens", "cost", "duration", "errors"]
"""The sort keys of the sessions list (the API's ``sort`` type; the UI and the CLI take these too)."""
SESSION_SORTS: dict[str, Any] = {
    "start_time": t.sessions.c.start_ns,
    "end_time": t.sessions.c.end_ns,
    "turns": t.sessions.c.turns,
    "tokens": t.sessions.c.total_tokens,
    "cost": t.sessions.c.cost,
    "duration": t.sessions.c.duration_ns,
    "errors": t.sessions.c.errors,
}
assert tuple(SESSION_SORTS) == get_args(SessionSort)  # one list: the type and the columns agree


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """Which sessions to list. ``start``/``end``: sessions active in that window; ``user_id``: a
    user (exactly) took part; ``user_id_contains``: a user whose id contains that text
    (case-insensitive, as the users list's ``q``) took part; ``tag``: a trace of the session has
    that tag; ``metadata``: for each ``(key, value)`` pair, a trace of the session has it
    (:mod:`.labels`)."""

    start: datetime | None = None
    end: datetime | None = None
    user_id: str | None = None
    user_id_contains: str | None = None
    q: str | None = None
    has_error: bool | None = None
    min_turns: int | None = None
    tag: str | None = None
    metadata: MetadataFilter = ()

    @classmethod
    def from_params(cls, values: Mapping[str, Any]) -> SessionFilter:
        """The filter of :data:`SESSION_PARAMS` values (:func:`~.parameters.parse_params`, or the API's);
        the ``metadata`` texts ``key:value`` become pairs."""
        return cls(**{**values, "metadata": parse_metadata_filter(values.get("metadata") or ())})


#: The query parameters of every list of sessions (the API's list and rankings, the UI's page and export).
SESSION_PARAMS: tuple[Param, ...] = (
    Param("start", Timestamp | None, "Sessions active at or after this time (RFC 3339)"),
    Param("end", Timestamp | None, "Sessions active at or before this time (RFC 3339)"),
    Param("user_id", str | None, "Only sessions this user took part in"),
    Param("user_id_contains", str | None,
          "Only sessions a user whose id contains this text (case-insensitive) took part in"),
    Param("q", str | None, "Full-text search over every turn's input and output"),
    Param("has_error", bool | None, "true: sessions with a failed turn; false: none"),
    Param("min_turns", Annotated[int, Field(ge=0)] | None, "At least this many turns"),
    Param("tag", str | None, "Only sessions with a trace tagged so (tag.tags)"),
    Param("metadata", list[str] | None,
          "key:value (repeatable, all must match): only sessions with a trace whose metadata has that "
          "top-level key with that value (non-string values as compact JSON: plan:3, beta:true)"),
)
assert [p.name for p in SESSION_PARAMS] == [f.name for f in fields(SessionFilter)]  # one parameter per field


def check_order(order: str) -> bool:
    """True for descending; raise :class:`InvalidQuery` for anything but asc/desc."""
    if order not in ("asc", "desc"):
        raise InvalidQuery(f"order must be 'asc' or 'desc', not {order!r}")
    return order == "desc"


def check_limit(limit: int) -> int:
    """The limit, if within 1..1000."""
    if not 1 <= limit <= 1000:
        raise InvalidQuery(f"limit must be between 1 and 1000, not {limit}")
    return limit


#: Above this many matching turns, a search walks the sessions in sort order and probes each one
#: (a page fills quickly); below it, it collects the sessions of the hits (few to look up).
COMMON_SEARCH_HITS = 2000


def _search_condition(conn: Connection, pid: int, q: str) -> Any:
    dialect = conn.dialect.name
    if count_hits(conn, pid, q, at_most=COMMON_SEARCH_HITS + 1) > COMMON_SEARCH_HITS:
        return session_has_match(dialect, pid, q, t.sessions.c.session_id)
    return t.sessions.c.session_id.in_(matching_traces(dialect, pid, q, "session_id"))


def session_conditions(conn: Connection, pid: int, filters: SessionFilter) -> list[Any]:
    """WHERE conditions on ``sessions`` for ``filters`` (shared with the overview and metrics)."""
    s = t.sessions
    conditions: list[Any] = [s.c.project_id == pid]
    if filters.start is not None:
        conditions.append(s.c.end_ns >= to_ns(filters.start))
    if filters.end is not None:
        conditions.append(s.c.start_ns <= to_ns(filters.end))
    if filters.start is not None and filters.end is not None and filters.start > filters.end:
        raise InvalidQuery("start must not be after end")
    if filters.user_id is not None:
        su = t.session_users
        conditions.append(s.c.session_id.in_(
            select(su.c.session_id).where(su.c.project_id == pid, su.c.user_id == filters.user_id)))
    if filters.user_id_contains is not None and filters.user_id_contains.strip():
        su = t.session_users
        conditions.append(s.c.session_id.in_(select(su.c.session_id).where(
            su.c.project_id == pid, id_contains(su.c.user_id, filters.user_id_contains))))
    if filters.has_error is not None:
        conditions.append(s.c.errors > 0 if filters.has_error else s.c.errors == 0)
    if filters.min_turns is not None:
        conditions.append(s.c.turns >= filters.min_turns)
    conditions.extend(session_label_conditions(pid, filters.tag, filters.metadata))
    if filters.q is not None and filters.q.strip():
        try:
            conditions.append(_search_condition(conn, pid, filters.q))
        except EmptySearch as exc:
            raise InvalidQuery(str(exc)) from exc
    return conditions


def list_sessions(
    conn: Connection, project: str, filters: SessionFilter | None = None, sort: str = "start_time",
    order: str = "desc", limit: int = 50, cursor: str | None = None,
) -> Page[SessionSummary]:
    """One page of a project's sessions, filtered and sorted, with keyset pagination."""
    filters = filters or SessionFilter()
    if sort not in SESSION_SORTS:
        raise InvalidQuery(f"sort must be one of {', '.join(SESSION_SORTS)}, not {sort!r}")
    descending = check_order(order)
    check_limit(limit)
    pid = project_id(conn, project)
    if pid is None:
        return Page(data=[], next_cursor=None)
    s = t.sessions
    found = cursors.keyset_page(
        conn, s, session_conditions(conn, pid, filters), SESSION_SORTS[sort], s.c.session_id,
        descending=descending, limit=limit, cursor=cursor,
    )
    return Page(data=summaries(conn, pid, project, found.rows), next_cursor=found.next_cursor,
                prev_cursor=found.prev_cursor)


def iter_sessions(
    conn: Connection, project: str, filters: SessionFilter | None = None, sort: str = "start_time",
    order: str = "desc", page_size: int = 200,
) -> Iterator[SessionSummary]:
    """Every matching session in list order, a page at a time (for exports: nothing is held whole)."""
    cursor = None
    while True:
        page = list_sessions(conn, project, filters, sort=sort, order=order, limit=page_size, cursor=cursor)
        yield from page.data
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def summaries(conn: Connection, pid: int, project: str, rows: Sequence[Row[Any]]) -> list[SessionSummary]:
    """Session summaries for ``sessions`` rows: adds users, latency percentiles and annotations."""
    ids = [r.session_id for r in rows]
    if not ids:
        return []
    su, tu = t.session_users, t.turns
    users: dict[str, list[str]] = defaultdict(list)
    for sid, uid in conn.execute(
        select(su.c.session_id, su.c.user_id).where(su.c.project_id == pid, su.c.session_id.in_(ids)).order_by(
            su.c.session_id, su.c.user_id)
    ):
        users[sid].append(uid)
    latencies: dict[str, list[float]] = defaultdict(list)
    for sid, start, end in conn.execute(
        select(tu.c.session_id, tu.c.start_ns, tu.c.end_ns).where(tu.c.project_id == pid, tu.c.session_id.in_(ids))
    ):
        latencies[sid].append(ms(end - start))
    texts: dict[str, tuple[str | None, str | None]] = defaultdict(lambda: (None, None))
    texts.update((sid, (first, last)) for sid, first, last in conn.execute(
        t.sessions_with_text(t.sessions.c.session_id).where(t.sessions.c.project_id == pid,
                                                            t.sessions.c.session_id.in_(ids))))
    notes = summarize(conn, pid, "session", ids)
    return [
        SessionSummary(
            session_id=r.session_id, project=project, user_ids=users.get(r.session_id, []),
            start_time=to_datetime(r.start_ns), end_time=to_datetime(r.end_ns), duration_ms=ms(r.duration_ns),
            turns=r.turns, spans=r.spans, errors=r.errors,
            tokens=Tokens(r.prompt_tokens, r.completion_tokens, r.total_tokens), cost_usd=round(r.cost, 8),
            latency_ms=Latency(percentile(latencies[r.session_id], 0.5), percentile(latencies[r.session_id], 0.99)),
            first_input=texts[r.session_id][0], last_output=texts[r.session_id][1],
            annotations=notes.get(r.session_id, {}),
        )
        for r in rows
    ]


def get_session(
    conn: Connection, project: str, session_id: str, turn_limit: int | None = None, turn_cursor: str | None = None
) -> SessionDetail | None:
    """A session with its turns in order; ``turn_limit`` pages through very long sessions."""
    pid = project_id(conn, project)
    if pid is None:
        return None
    s, tu = t.sessions, t.turns
    row = conn.execute(select(s).where(s.c.project_id == pid, s.c.session_id == session_id)).first()
    if row is None:
        return None
    conditions: list[Any] = [tu.c.project_id == pid, tu.c.session_id == session_id]
    first_index = 0
    if turn_cursor:
        start_ns, turn_key, first_index = cursors.decode(turn_cursor, (int, str, int))
        conditions.append(or_(tu.c.start_ns > start_ns, and_(tu.c.start_ns == start_ns, tu.c.turn_key > turn_key)))
    query = t.turns_with_text().where(*conditions).order_by(*t.TURN_ORDER)
    if turn_limit is not None:
        query = query.limit(check_limit(turn_limit) + 1)
    turn_rows = conn.execute(query).all()
    next_cursor = None
    if turn_limit is not None and len(turn_rows) > turn_limit:
        turn_rows = turn_rows[:turn_limit]
        last = turn_rows[-1]
        next_cursor = cursors.encode(last.start_ns, last.turn_key, first_index + len(turn_rows))
    summary = summaries(conn, pid, project, [row])[0]
    return SessionDetail(summary=summary, turns=load_turns(conn, pid, turn_rows, first_index),
                         next_turn_cursor=next_cursor)


def iter_session_details(
    conn: Connection, project: str, filters: SessionFilter | None = None, page_size: int = 200
) -> Iterator[SessionDetail]:
    """Every matching session with all its turns, oldest first (for export)."""
    for summary in iter_sessions(conn, project, filters, sort="start_time", order="asc", page_size=page_size):
        detail = get_session(conn, project, summary.session_id)
        if detail is not None:
            yield detail
