"""What the conversation view shows of a session's evaluations: where it breaks and the score trends.

Built from :func:`threadline.server.query.annotations.first_broken_turn` and
:func:`threadline.server.query.annotations.turn_scores` (the same functions as the REST
``/sessions/{id}/breakdown``), for the page and for its live fragment alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from threadline.server.query.annotations import first_broken_turn, turn_scores
from threadline.server.web.ui.charts import Sparkline, sparklines


@dataclass(frozen=True, slots=True)
class Breakdown:
    """The first broken turn (if any) and one score sparkline per annotation name."""

    trace_id: str
    turn: int  # 1-based number of the broken turn, 0 when no turn is broken
    reason: str
    trends: list[Sparkline]


def breakdown(conn: Connection, project: str, session_id: str) -> Breakdown:
    """Where the conversation ``session_id`` breaks and its per-turn score trends."""
    scores = turn_scores(conn, project, session_id)
    broken = first_broken_turn(conn, project, session_id)
    turn = 0
    if broken is not None:
        turn = next((s.index + 1 for s in scores if s.trace_id == broken.trace_id), 0)
    return Breakdown(trace_id=broken.trace_id if broken else "", turn=turn, reason=broken.reason if broken else "",
                     trends=sparklines(scores))
