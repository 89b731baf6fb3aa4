"""Writes of the session lifecycle: closing sessions (idle or explicitly) and per-project settings.

Ingest re-opens a session (``closed_ns = NULL``) whenever it receives a new turn for it; this
module only ever closes. ``closed_ns`` is the wall-clock time of the close.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, select, update

from threadline.server.store import schema as t


def close_idle_sessions(tx: Connection, project_id: int, cutoff_ns: int, now_ns: int) -> list[str]:
    """Close the open sessions of a project with no activity since ``cutoff_ns``; return their ids."""
    s = t.sessions
    rows = tx.execute(
        update(s)
        .where(s.c.project_id == project_id, s.c.closed_ns.is_(None), s.c.last_activity_ns <= cutoff_ns)
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
