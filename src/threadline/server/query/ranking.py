"""Sessions and users ordered by the mean score of one annotation, as full summaries.

For lists sorted or filtered by an eval score ("the most frustrated sessions first"): the order
comes from :func:`threadline.server.query.annotations.rank_by_annotation`, the rows from the same
summary builders as the plain lists, so the JSON and the HTML show identical data. Every filter of
the plain list applies to the ranking too ("the most frustrated sessions of user X this week"):
the same :func:`~threadline.server.query.sessions.session_conditions` choose which sessions may be
ranked, before the scores are averaged, and the result is keyset-paged like any list.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from threadline.server.model import Page, SessionSummary, UserSummary
from threadline.server.query.annotations import rank_by_annotation
from threadline.server.query.matching import id_contains
from threadline.server.query.projects import project_id
from threadline.server.query.sessions import SessionFilter, session_conditions, summaries
from threadline.server.query.users import user_summaries
from threadline.server.store import schema as t


@dataclass(frozen=True, slots=True)
class RankedSession:
    """A session with the mean score and count of the ranking annotation."""

    mean_score: float
    count: int
    session: SessionSummary


@dataclass(frozen=True, slots=True)
class RankedUser:
    """A user with the mean score and count of the ranking annotation (own + their sessions')."""

    mean_score: float
    count: int
    user: UserSummary


def sessions_by_annotation(
    conn: Connection, project: str, name: str, order: str = "desc", limit: int = 50, cursor: str | None = None,
    min_score: float | None = None, max_score: float | None = None, filters: SessionFilter | None = None,
) -> Page[RankedSession]:
    """A page of the sessions matching ``filters`` with a scored annotation ``name``, by its mean
    score (sessions without one are left out)."""
    pid = project_id(conn, project)
    if pid is None:
        return Page(data=[], next_cursor=None)
    s = t.sessions
    owners = None
    if filters is not None and filters != SessionFilter():
        owners = select(s.c.session_id).where(*session_conditions(conn, pid, filters))
    page = rank_by_annotation(conn, pid, "session", name, order, limit, cursor, min_score, max_score, owners)
    ids = [r.target_id for r in page.data]
    rows = {r.session_id: r for r in conn.execute(select(s).where(s.c.project_id == pid, s.c.session_id.in_(ids)))}
    built = {x.session_id: x for x in summaries(conn, pid, project, list(rows.values()))}
    return Page(data=[RankedSession(r.mean_score, r.count, built[r.target_id]) for r in page.data
                      if r.target_id in built], next_cursor=page.next_cursor)


def users_by_annotation(
    conn: Connection, project: str, name: str, order: str = "desc", limit: int = 50, cursor: str | None = None,
    min_score: float | None = None, max_score: float | None = None, q: str | None = None,
) -> Page[RankedUser]:
    """A page of users (whose id contains ``q``, as the users list) by the mean score of annotation
    ``name`` on them and their sessions."""
    pid = project_id(conn, project)
    if pid is None:
        return Page(data=[], next_cursor=None)
    u = t.users
    owners = None
    if q and q.strip():
        owners = select(u.c.user_id).where(u.c.project_id == pid, id_contains(u.c.user_id, q))
    page = rank_by_annotation(conn, pid, "user", name, order, limit, cursor, min_score, max_score, owners)
    ids = [r.target_id for r in page.data]
    rows = list(conn.execute(select(u).where(u.c.project_id == pid, u.c.user_id.in_(ids))))
    built = {x.user_id: x for x in user_summaries(conn, pid, project, rows)}
    return Page(data=[RankedUser(r.mean_score, r.count, built[r.target_id]) for r in page.data
                      if r.target_id in built], next_cursor=page.next_cursor)
