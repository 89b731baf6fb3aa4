"""Projects: ids by name and the counters kept at ingest."""

from __future__ import annotations

from sqlalchemy import Connection, select

from threadline.server.model import ProjectSummary
from threadline.server.query.timeconv import to_datetime
from threadline.server.store import schema as t


def project_id(conn: Connection, name: str) -> int | None:
    """The id of project ``name``, or ``None`` when it has no data."""
    return conn.execute(select(t.projects.c.id).where(t.projects.c.name == name)).scalar()


def list_projects(conn: Connection) -> list[ProjectSummary]:
    """Every project with its span, trace, session and user counts, most recently active first."""
    p = t.projects
    rows = conn.execute(
        select(p.c.name, p.c.spans, p.c.traces, p.c.sessions, p.c.users, p.c.last_seen_ns).order_by(
            p.c.last_seen_ns.desc(), p.c.name)
    )
    return [
        ProjectSummary(name=r.name, spans=r.spans, traces=r.traces, sessions=r.sessions, users=r.users,
                       last_seen=to_datetime(r.last_seen_ns) if r.last_seen_ns else None)
        for r in rows
    ]
