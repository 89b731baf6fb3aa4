"""Projects: ids by name, the counters kept at ingest and totals over the session rollups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, func, select

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


@dataclass(frozen=True, slots=True)
class ProjectTotals:
    """A project's turns, failed turns and cost, summed over its sessions."""

    turns: int
    error_turns: int
    cost_usd: float

    @property
    def error_rate(self) -> float | None:
        """Failed turns / turns (``None`` without turns)."""
        return self.error_turns / self.turns if self.turns else None


def project_totals(conn: Connection) -> dict[str, ProjectTotals]:
    """Turns, failed turns and cost of every project, by name, from the ``sessions`` rollup.

    One correlated sum per project and column, each answered from the covering index that
    starts with ``(project_id, <column>)`` (``ix_sessions_turns``, ``ix_sessions_errors``,
    ``ix_sessions_cost``), so no session row is read; failed turns only scan the sessions that
    have some (``errors > 0``). Traces outside any session are not counted (they are no turns).
    """
    p, s = t.projects, t.sessions

    def total(column: ColumnElement[Any], zero: float | int, *where: ColumnElement[bool]) -> Any:
        return select(func.coalesce(func.sum(column), zero)).where(
            s.c.project_id == p.c.id, *where).scalar_subquery()

    rows = conn.execute(select(
        p.c.name, total(s.c.turns, 0).label("turns"), total(s.c.errors, 0, s.c.errors > 0).label("errors"),
        total(s.c.cost, 0.0).label("cost"),
    ))
    return {r.name: ProjectTotals(turns=int(r.turns), error_turns=int(r.errors), cost_usd=round(float(r.cost), 8))
            for r in rows}
