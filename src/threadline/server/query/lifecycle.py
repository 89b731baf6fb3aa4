"""Reads for the session lifecycle: per-project settings and the sessions an evaluator still owes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from threadline.server.store import schema as t


def _parse(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def project_settings(conn: Connection, project_id: int) -> dict[str, Any]:
    """A project's settings JSON object (``{}`` when never set)."""
    raw = conn.execute(select(t.projects.c.settings).where(t.projects.c.id == project_id)).scalar()
    return _parse(raw)


def all_project_settings(conn: Connection) -> list[tuple[int, str, dict[str, Any]]]:
    """``(project_id, name, settings)`` of every project."""
    p = t.projects
    return [(r.id, r.name, _parse(r.settings)) for r in conn.execute(select(p.c.id, p.c.name, p.c.settings))]


def sessions_to_evaluate(
    conn: Connection, project_id: int, name: str, identifier: str, *, since_ns: int | None = None,
    session_ids: Sequence[str] | None = None, closed_only: bool = False, limit: int | None = None,
) -> list[str]:
    """Sessions without an up-to-date session annotation (name, identifier), oldest first.

    Up to date means written (as of the data read) at or after the session's last activity, so
    a session that received new turns since it was evaluated is due again.
    """
    s, a = t.sessions, t.annotations
    joined = s.outerjoin(a, and_(
        a.c.project_id == s.c.project_id, a.c.target_kind == "session", a.c.target_id == s.c.session_id,
        a.c.name == name, a.c.identifier == identifier,
    ))
    conditions: list[Any] = [s.c.project_id == project_id, or_(a.c.id.is_(None), a.c.updated_ns < s.c.last_activity_ns)]
    if since_ns is not None:
        conditions.append(s.c.end_ns >= since_ns)
    if session_ids is not None:
        conditions.append(s.c.session_id.in_(list(session_ids)))
    if closed_only:
        conditions.append(s.c.closed_ns.is_not(None))
    query = select(s.c.session_id).select_from(joined).where(*conditions).order_by(s.c.start_ns, s.c.session_id)
    if limit is not None:
        query = query.limit(limit)
    return [r.session_id for r in conn.execute(query)]


def count_sessions(
    conn: Connection, project_id: int, *, since_ns: int | None = None, session_ids: Sequence[str] | None = None,
    closed_only: bool = False,
) -> int:
    """How many sessions match the same filters (for progress reports)."""
    s = t.sessions
    conditions: list[Any] = [s.c.project_id == project_id]
    if closed_only:
        conditions.append(s.c.closed_ns.is_not(None))
    if since_ns is not None:
        conditions.append(s.c.end_ns >= since_ns)
    if session_ids is not None:
        conditions.append(s.c.session_id.in_(list(session_ids)))
    return int(conn.execute(select(func.count()).select_from(s).where(*conditions)).scalar_one())


def session_state(conn: Connection, project_id: int, session_id: str) -> tuple[int, int | None] | None:
    """``(last_activity_ns, closed_ns)`` of a session, or ``None`` when there is no such session."""
    s = t.sessions
    row = conn.execute(select(s.c.last_activity_ns, s.c.closed_ns).where(
        s.c.project_id == project_id, s.c.session_id == session_id)).first()
    return (row.last_activity_ns, row.closed_ns) if row is not None else None
