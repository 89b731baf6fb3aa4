"""Sessions and users ordered by the mean score of one annotation, as full summaries.

For lists sorted or filtered by an eval score ("the most frustrated sessions first"): the order
comes from :func:`threadline.server.query.annotations.rank_by_annotation`, the rows from the same
summary builders as the plain lists, so the JSON and the HTML show identical data.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from threadline.server.model import Page, SessionSummary, UserSummary
from threadline.server.query.annotations import rank_by_annotation
from threadline.server.query.projects import project_id
from threadline.server.query.sessions import summaries
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
    min_score: float | None = None, max_score: float | None = None,
) -> Page[RankedSession]:
    """A page of sessions with a scored annotation ``name``, by its mean score (sessions without one are left out)."""
    pid = project_id(conn, project)
    if pid is None:
        return Page(data=[], next_cursor=None)
    page = rank_by_annotation(conn, pid, "session", name, order, limit, cursor, min_score, max_score)
    s = t.sessions
    ids = [r.target_id for r in page.data]
    rows = {r.session_id: r for r in conn.execute(select(s).where(s.c.project_id == pid, s.c.session_id.in_(ids)))}
    built = {x.session_id: x for x in summaries(conn, pid, project, list(rows.values()))}
    return Page(data=[RankedSession(r.mean_score, r.count, built[r.target_id]) for r in page.data
                      if r.target_id in built], next_cursor=page.next_cursor)


def users_by_annotation(
    conn: Connection, project: str, name: str, order: str = "desc", limit: int = 50, cursor: str | None = None,
    min_score: float | None = None, max_score: float | None = None,
) -> Page[RankedUser]:
    """A page of users by the mean score of annotation ``name`` on them and their sessions."""
    pid = project_id(conn, project)
    if pid is None:
        return Page(data=[], next_cursor=None)
    page = rank_by_annotation(conn, pid, "user", name, order, limit, cursor, min_score, max_score)
    u = t.users
    ids = [r.target_id for r in page.data]
    rows = list(conn.execute(select(u).where(u.c.project_id == pid, u.c.user_id.in_(ids))))
    built = {x.user_id: x for x in user_summaries(conn, pid, project, rows)}
    return Page(data=[RankedUser(r.mean_score, r.count, built[r.target_id]) for r in page.data
                      if r.target_id in built], next_cursor=page.next_cursor)
