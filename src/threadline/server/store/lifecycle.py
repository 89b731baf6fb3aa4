"""Writes of the session lifecycle: closing sessions (idle or explicitly) and per-project settings.

Ingest re-opens a session (``closed_ns = NULL``) whenever it receives a new turn for it; this
module only ever closes. ``closed_ns`` is the wall-clock time of the close.

The idle rule (:func:`idle_condition`) lives here only: a session is idle since its latest span
(``end_ns``), capped at the last time data of it arrived (``last_activity_ns``, the ingest time).
Conversations dated days ago are idle as soon as they arrive; a clock running ahead cannot keep a
session open past its last arrival. ``last_activity_ns`` itself stays the ingest time: it is the
"changed since" stamp that makes an evaluated session due again and live pages refresh.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import ColumnElement, Connection, or_, select, update

from threadline.server.store import schema as t


def idle_condition(cutoff_ns: int) -> ColumnElement[bool]:
    """Sessions with no activity since ``cutoff_ns``: min(latest span end, last arrival) <= cutoff."""
    s = t.sessions
    return or_(s.c.last_activity_ns <= cutoff_ns, s.c.end_ns <= cutoff_ns)


def has_idle_sessions(conn: Connection, project_id: int, cutoff_ns: int) -> bool:
    """Whether the project has an open idle session (a cheap read before taking the write lock)."""
    s = t.sessions
    return conn.execute(select(s.c.session_id).where(
        s.c.project_id == project_id, s.c.closed_ns.is_(None), idle_condition(cutoff_ns)).limit(1)
    ).first() is not None


def close_idle_sessions(tx: Connection, project_id: int, cutoff_ns: int, now_ns: int) -> list[str]:
    """Close the open sessions of a project with no activity since ``cutoff_ns``; return their ids."""
    s = t.sessions
    rows = tx.execute(
        update(s)
        .where(s.c.project_id == project_id, s.c.closed_ns.is_(None), idle_condition(cutoff_ns))
        .values(closed_ns=now_ns)
        .returning(s.c.session_id)
    ).all()
    return sorted(r.session_id for r in rows)


def close_session(tx: Connection, project_id: int, session_id: str, now_ns: int) -> bool | None:
    """Close one session now. ``True``: closed; ``False``: it was already closed; ``None``: no such session."""
    s = t.sessions
    row = tx.execute(
        select(s.c.closed_ns).where(s.c.project_id == project_id, s.c.session_id == session_id)
    ).first()
    if row is None:
        return None
    if row.closed_ns is not None:
        return False
    tx.execute(update(s).where(s.c.project_id == project_id, s.c.session_id == session_id,
                               s.c.closed_ns.is_(None)).values(closed_ns=now_ns))
    return True


def write_project_settings(tx: Connection, project_id: int, settings: dict[str, Any]) -> None:
    """Replace a project's settings JSON object."""
    p = t.projects
    tx.execute(update(p).where(p.c.id == project_id).values(settings=json.dumps(settings, sort_keys=True)))
