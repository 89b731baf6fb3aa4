"""Evaluation runs started through the API: their request, status, progress and report.

A run is ``queued`` when recorded, ``running`` once its thread starts, then ``done`` or
``failed``. ``runner`` names the process that runs it (``host:pid:token``) and ``heartbeat_ns``
is refreshed while it runs, so a reader can tell a run whose process is gone (``interrupted``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from threadline.server.store import schema as t

#: Every status a run can have; ``queued`` and ``running`` are the unfinished ones.
RUN_STATUSES = ("queued", "running", "done", "failed", "interrupted")
UNFINISHED = ("queued", "running")


@dataclass(frozen=True, slots=True)
class EvalRunRow:
    """One stored run."""

    id: int
    project_id: int
    evaluators: list[str]
    filters: dict[str, Any]
    status: str
    done: int
    total: int | None
    report: dict[str, Any] | None
    error: str | None
    runner: str | None
    heartbeat_ns: int | None
    created_ns: int
    started_ns: int | None
    finished_ns: int | None


def create_eval_run(tx: Connection, project_id: int, evaluators: Sequence[str], filters: dict[str, Any],
                    runner: str, now_ns: int) -> int:
    """Record a queued run; return its id."""
    r = t.eval_runs
    row = tx.execute(insert(r).values(
        project_id=project_id, evaluators=json.dumps(list(evaluators)), filters=json.dumps(filters, sort_keys=True),
        status="queued", done=0, runner=runner, heartbeat_ns=now_ns, created_ns=now_ns,
    ).returning(r.c.id)).one()
    return int(row[0])


def update_eval_run(tx: Connection, run_id: int, *, only_unfinished: bool = True, **values: Any) -> bool:
    """Set columns of a run (``report`` is a dict, stored as JSON); ``False`` when nothing was updated.

    With ``only_unfinished`` (the default) a finished run is never changed again.
    """
    r = t.eval_runs
    if "report" in values and values["report"] is not None:
        values["report"] = json.dumps(values["report"], sort_keys=True, default=str)
    stmt = update(r).where(r.c.id == run_id)
    if only_unfinished:
        stmt = stmt.where(r.c.status.in_(UNFINISHED))
    return bool(tx.execute(stmt.values(**values)).rowcount)


def _loads(text: str | None, default: Any) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def get_eval_run(conn: Connection, project_id: int, run_id: int) -> EvalRunRow | None:
    """A run of the project by id, or ``None``."""
    r = t.eval_runs
    row = conn.execute(select(r).where(r.c.project_id == project_id, r.c.id == run_id)).first()
    if row is None:
        return None
    return EvalRunRow(
        id=row.id, project_id=row.project_id, evaluators=list(_loads(row.evaluators, [])),
        filters=dict(_loads(row.filters, {})), status=row.status, done=row.done, total=row.total,
        report=_loads(row.report, None), error=row.error, runner=row.runner, heartbeat_ns=row.heartbeat_ns,
        created_ns=row.created_ns, started_ns=row.started_ns, finished_ns=row.finished_ns,
    )
