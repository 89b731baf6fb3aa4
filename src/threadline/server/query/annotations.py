"""Annotation summaries for sessions, turns (traces), spans and users."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import Connection, select

from threadline.server.model import AnnotationSummary
from threadline.server.store import schema as t


def _fold(rows: Sequence[tuple[str, str, str | None, float | None]]) -> dict[str, dict[str, AnnotationSummary]]:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    labels: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for owner, name, label, score in rows:
        key = (owner, name)
        counts[key] += 1
        if score is not None:
            scores[key].append(score)
        if label is not None:
            labels[key][label] += 1
    out: dict[str, dict[str, AnnotationSummary]] = defaultdict(dict)
    for (owner, name), count in sorted(counts.items()):
        values = scores.get((owner, name))
        out[owner][name] = AnnotationSummary(
            count=count,
            mean_score=round(sum(values) / len(values), 6) if values else None,
            labels=dict(sorted(labels[(owner, name)].items())),
        )
    return dict(out)


def summarize(
    conn: Connection, project_id: int, target_kind: str, target_ids: Sequence[str]
) -> dict[str, dict[str, AnnotationSummary]]:
    """``{target_id: {annotation name: summary}}`` for targets of one kind."""
    if not target_ids:
        return {}
    a = t.annotations
    rows = conn.execute(
        select(a.c.target_id, a.c.name, a.c.label, a.c.score).where(
            a.c.project_id == project_id, a.c.target_kind == target_kind, a.c.target_id.in_(list(target_ids))
        )
    ).all()
    return _fold([(r[0], r[1], r[2], r[3]) for r in rows])


def summarize_users(
    conn: Connection, project_id: int, user_ids: Sequence[str]
) -> dict[str, dict[str, AnnotationSummary]]:
    """Per user: the user's own annotations plus those of every session the user took part in."""
    if not user_ids:
        return {}
    a, su = t.annotations, t.session_users
    own = select(a.c.target_id.label("owner"), a.c.name, a.c.label, a.c.score).where(
        a.c.project_id == project_id, a.c.target_kind == "user", a.c.target_id.in_(list(user_ids))
    )
    via_sessions = select(su.c.user_id.label("owner"), a.c.name, a.c.label, a.c.score).join(
        a, (a.c.project_id == su.c.project_id) & (a.c.target_kind == "session") & (a.c.target_id == su.c.session_id)
    ).where(su.c.project_id == project_id, su.c.user_id.in_(list(user_ids)))
    rows = conn.execute(own.union_all(via_sessions)).all()
    return _fold([(r[0], r[1], r[2], r[3]) for r in rows])

