"""Users: the sorted list and one user with their sessions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

from sqlalchemy import Connection, Row, select, tuple_

from threadline.server.model import Page, Tokens, UserDetail, UserSummary
from threadline.server.query import cursor as cursors
from threadline.server.query.annotations import summarize_users
from threadline.server.query.errors import InvalidQuery
from threadline.server.query.matching import id_contains
from threadline.server.query.parameters import Param
from threadline.server.query.projects import project_id
from threadline.server.query.sessions import check_limit, check_order, summaries
from threadline.server.query.timeconv import to_datetime
from threadline.server.store import schema as t

UserSort = Literal["last_seen", "first_seen", "sessions", "turns", "tokens", "cost", "errors"]
"""The sort keys of the users list (the API's ``sort`` type; the UI takes these too)."""
USER_SORTS: dict[str, Any] = {
    "last_seen": t.users.c.last_seen_ns,
    "first_seen": t.users.c.first_seen_ns,
    "sessions": t.users.c.sessions,
    "turns": t.users.c.turns,
    "tokens": t.users.c.total_tokens,
    "cost": t.users.c.cost,
    "errors": t.users.c.errors,
}
assert tuple(USER_SORTS) == get_args(UserSort)  # one list: the type and the columns agree


@dataclass(frozen=True, slots=True)
class UserFilter:
    """Which users to list: ``q``, a part of the user id (case-insensitive)."""

    q: str | None = None

    @classmethod
    def from_params(cls, values: Mapping[str, Any]) -> UserFilter:
        """The filter of :data:`USER_PARAMS` values (:func:`~.parameters.parse_params`, or the API's)."""
        return cls(**values)


#: The query parameters of the users list (the API's ``GET …/users`` and the UI's Users tab).
USER_PARAMS: tuple[Param, ...] = (
    Param("q", str | None, "Part of a user id (case-insensitive)"),
)
assert [p.name for p in USER_PARAMS] == [f.name for f in fields(UserFilter)]  # one parameter per field


def list_users(
    conn: Connection, project: str, q: str | None = None, sort: str = "last_seen", order: str = "desc",
    limit: int = 50, cursor: str | None = None,
) -> Page[UserSummary]:
    """One page of a project's users; ``q`` matches a part of the user id (case-insensitive)."""
    if sort not in USER_SORTS:
        raise InvalidQuery(f"sort must be one of {', '.join(USER_SORTS)}, not {sort!r}")
    descending = check_order(order)
    check_limit(limit)
    pid = project_id(conn, project)
    if pid is None:
        return Page(data=[], next_cursor=None)
    u = t.users
    column = USER_SORTS[sort]
    conditions: list[Any] = [u.c.project_id == pid]
    if q and q.strip():
        conditions.append(id_contains(u.c.user_id, q))
    found = cursors.keyset_page(
        conn, u, conditions, column, u.c.user_id, descending=descending, limit=limit, cursor=cursor
    )
    return Page(data=user_summaries(conn, pid, project, found.rows), next_cursor=found.next_cursor,
                prev_cursor=found.prev_cursor)


def recent_user_ids(conn: Connection, project: str, limit: int = 200) -> list[str]:
    """The ids of the project's most recently seen users (suggestions for a user filter)."""
    pid = project_id(conn, project)
    if pid is None:
        return []
    u = t.users
    return list(conn.execute(select(u.c.user_id).where(u.c.project_id == pid).order_by(
        u.c.last_seen_ns.desc(), u.c.user_id).limit(limit)).scalars())


def user_summaries(conn: Connection, pid: int, project: str, rows: Sequence[Row[Any]]) -> list[UserSummary]:
    """User summaries for ``users`` rows, with annotation summaries."""
    notes = summarize_users(conn, pid, [r.user_id for r in rows])
    return [
        UserSummary(
            user_id=r.user_id, project=project, first_seen=to_datetime(r.first_seen_ns),
            last_seen=to_datetime(r.last_seen_ns), sessions=r.sessions, turns=r.turns, errors=r.errors,
            tokens=Tokens(r.prompt_tokens, r.completion_tokens, r.total_tokens), cost_usd=round(r.cost, 8),
            annotations=notes.get(r.user_id, {}),
        )
        for r in rows
    ]


def get_user(
    conn: Connection, project: str, user_id: str, limit: int = 50, cursor: str | None = None
) -> UserDetail | None:
    """A user's summary and a page of their sessions, newest first."""
    check_limit(limit)
    pid = project_id(conn, project)
    if pid is None:
        return None
    u, s, su = t.users, t.sessions, t.session_users
    row = conn.execute(select(u).where(u.c.project_id == pid, u.c.user_id == user_id)).first()
    if row is None:
        return None
    conditions: list[Any] = [s.c.project_id == pid, s.c.session_id.in_(
        select(su.c.session_id).where(su.c.project_id == pid, su.c.user_id == user_id))]
    if cursor:
        last_start, last_id = cursors.decode(cursor, (int, str))
        conditions.append(tuple_(s.c.start_ns, s.c.session_id) < tuple_(last_start, last_id))
    rows = conn.execute(
        select(s).where(*conditions).order_by(s.c.start_ns.desc(), s.c.session_id.desc()).limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = cursors.encode(rows[-1].start_ns, rows[-1].session_id) if more and rows else None
    return UserDetail(summary=user_summaries(conn, pid, project, [row])[0],
                      sessions=summaries(conn, pid, project, rows), next_cursor=next_cursor)
