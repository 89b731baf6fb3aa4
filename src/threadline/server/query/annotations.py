"""Annotation summaries for sessions, turns (traces), spans and users."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, select, tuple_

from threadline.server.model import Annotation, AnnotationSummary, Page
from threadline.server.query import cursor as cursors
from threadline.server.query.errors import InvalidQuery
from threadline.server.query.projects import project_id
from threadline.server.query.timeconv import to_datetime
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



# --- single annotations ---------------------------------------------------------------------------

#: Labels that mean "this went wrong" (evaluator failure labels and common human feedback labels).
#: A turn carrying one of them, or a failed turn, breaks a conversation (see :func:`first_broken_turn`).
BAD_LABELS: frozenset[str] = frozenset({
    "frustrated", "not_completed", "unhelpful", "incorrect", "error", "refused",
    "failed", "failure", "bad", "negative", "thumbs_down", "wrong",
})


def _annotation(row: Any, project: str) -> Annotation:
    try:
        meta = json.loads(row.metadata)
    except ValueError:
        meta = {}
    return Annotation(
        id=row.id, project=project, target_kind=row.target_kind, target_id=row.target_id, name=row.name,
        label=row.label, score=row.score, explanation=row.explanation, annotator_kind=row.annotator_kind,
        identifier=row.identifier, metadata=meta if isinstance(meta, dict) else {},
        created_at=to_datetime(row.created_ns), updated_at=to_datetime(row.updated_ns),
    )


@dataclass(frozen=True, slots=True)
class AnnotationFilter:
    """Which annotations to list (all given fields must match)."""

    target_kind: str | None = None
    target_id: str | None = None
    name: str | None = None
    identifier: str | None = None
    annotator_kind: str | None = None
    label: str | None = None


def list_annotations(
    conn: Connection, project: str, filters: AnnotationFilter | None = None, limit: int = 50,
    cursor: str | None = None,
) -> Page[Annotation]:
    """A page of a project's annotations, oldest first (keyset on id)."""
    filters = filters or AnnotationFilter()
    if not 1 <= limit <= 1000:
        raise InvalidQuery(f"limit must be between 1 and 1000, not {limit}")
    pid = project_id(conn, project)
    if pid is None:
        return Page(data=[], next_cursor=None)
    a = t.annotations
    conditions: list[Any] = [a.c.project_id == pid]
    for column in ("target_kind", "target_id", "name", "identifier", "annotator_kind", "label"):
        value = getattr(filters, column)
        if value is not None:
            conditions.append(a.c[column] == value)
    if cursor:
        (last_id,) = cursors.decode(cursor, (int,))
        conditions.append(a.c.id > last_id)
    rows = conn.execute(select(a).where(*conditions).order_by(a.c.id).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(data=[_annotation(r, project) for r in rows],
                next_cursor=cursors.encode(rows[-1].id) if more and rows else None)


def get_annotation(conn: Connection, project: str, annotation_id: int) -> Annotation | None:
    """One annotation by id, or ``None``."""
    pid = project_id(conn, project)
    if pid is None:
        return None
    a = t.annotations
    row = conn.execute(select(a).where(a.c.project_id == pid, a.c.id == annotation_id)).first()
    return _annotation(row, project) if row is not None else None


def get_annotations(conn: Connection, project: str, annotation_ids: Sequence[int]) -> list[Annotation]:
    """Annotations by id, in the order of ``annotation_ids`` (ids not found are left out)."""
    pid = project_id(conn, project)
    if pid is None or not annotation_ids:
        return []
    a = t.annotations
    found: dict[int, Annotation] = {}
    ids = sorted(set(annotation_ids))
    for start in range(0, len(ids), 500):
        for row in conn.execute(select(a).where(a.c.project_id == pid, a.c.id.in_(ids[start:start + 500]))):
            found[row.id] = _annotation(row, project)
    return [found[i] for i in annotation_ids if i in found]


class ExistingAnnotation(NamedTuple):
    """What an evaluator needs to know of an annotation it wrote before."""

    updated_ns: int
    label: str | None
    score: float | None


def existing_targets(
    conn: Connection, project_id: int, target_kind: str, name: str, identifier: str, target_ids: Sequence[str]
) -> dict[str, ExistingAnnotation]:
    """The annotation (name, identifier) of each of ``target_ids`` that has one."""
    a = t.annotations
    out: dict[str, ExistingAnnotation] = {}
    ids = list(dict.fromkeys(target_ids))
    for start in range(0, len(ids), 500):
        rows = conn.execute(select(a.c.target_id, a.c.updated_ns, a.c.label, a.c.score).where(
            a.c.project_id == project_id, a.c.target_kind == target_kind, a.c.name == name,
            a.c.identifier == identifier, a.c.target_id.in_(ids[start:start + 500]),
        ))
        out.update({r.target_id: ExistingAnnotation(r.updated_ns, r.label, r.score) for r in rows})
    return out


_TARGET_COLUMNS = {
    "span": (t.spans, "span_id"), "trace": (t.traces, "trace_id"),
    "session": (t.sessions, "session_id"), "user": (t.users, "user_id"),
}


def missing_targets(conn: Connection, project_id: int, targets: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The ``(target_kind, target_id)`` pairs that do not exist in the project (batched lookups)."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for kind, target_id in targets:
        if kind not in _TARGET_COLUMNS:
            raise InvalidQuery(f"target_kind must be one of span, trace, session, user, not {kind!r}")
        wanted[kind].add(target_id)
    found: set[tuple[str, str]] = set()
    for kind, ids in wanted.items():
        table, column = _TARGET_COLUMNS[kind]
        ordered = sorted(ids)
        for start in range(0, len(ordered), 500):
            rows = conn.execute(select(table.c[column]).distinct().where(
                table.c.project_id == project_id, table.c[column].in_(ordered[start:start + 500])))
            found.update((kind, r[0]) for r in rows)
    return sorted({pair for pair in targets if pair not in found})


def target_exists(conn: Connection, project_id: int, target_kind: str, target_id: str) -> bool:
    """Whether the span, trace, session or user ``target_id`` exists in the project."""
    return not missing_targets(conn, project_id, [(target_kind, target_id)])


# --- ranking ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RankedTarget:
    """A session or user with the mean score and number of its annotations of one name."""

    target_id: str
    mean_score: float
    count: int


def rank_by_annotation(
    conn: Connection, project_id: int, target_kind: str, name: str, order: str = "desc", limit: int = 50,
    cursor: str | None = None, min_score: float | None = None, max_score: float | None = None,
    owners: Any = None,
) -> Page[RankedTarget]:
    """Sessions, turns (``trace``) or users ordered by the mean score of their annotations ``name``.

    Users are scored like :func:`summarize_users`: their own annotations plus those of their
    sessions. Targets without a scored annotation of that name are left out; ties are broken by
    id. ``min_score``/``max_score`` filter on the mean (inclusive). ``owners``: a selectable of
    the target ids that may be ranked (the list's filters), applied before the scores are averaged.
    """
    if order not in ("asc", "desc"):
        raise InvalidQuery(f"order must be 'asc' or 'desc', not {order!r}")
    if not 1 <= limit <= 1000:
        raise InvalidQuery(f"limit must be between 1 and 1000, not {limit}")
    a, su = t.annotations, t.session_users
    scored = [a.c.project_id == project_id, a.c.name == name, a.c.score.is_not(None)]
    base: Any
    if target_kind in ("session", "trace", "span"):
        base = select(a.c.target_id.label("owner"), a.c.score).where(*scored, a.c.target_kind == target_kind)
        if owners is not None:
            base = base.where(a.c.target_id.in_(owners))
    elif target_kind == "user":
        own = select(a.c.target_id.label("owner"), a.c.score).where(*scored, a.c.target_kind == "user")
        via = select(su.c.user_id.label("owner"), a.c.score).join(
            a, (a.c.project_id == su.c.project_id) & (a.c.target_kind == "session") & (a.c.target_id == su.c.session_id)
        ).where(*scored, su.c.project_id == project_id)
        if owners is not None:
            own, via = own.where(a.c.target_id.in_(owners)), via.where(su.c.user_id.in_(owners))
        base = own.union_all(via)
    else:
        raise InvalidQuery(f"target_kind must be one of span, trace, session, user, not {target_kind!r}")
    sub = base.subquery()
    grouped = select(sub.c.owner, func.avg(sub.c.score).label("mean"), func.count().label("n")).group_by(
        sub.c.owner).subquery()
    conditions: list[Any] = []
    if min_score is not None:
        conditions.append(grouped.c.mean >= min_score)
    if max_score is not None:
        conditions.append(grouped.c.mean <= max_score)
    descending = order == "desc"
    if cursor:
        last_mean, last_id = cursors.decode(cursor, (float, str))
        key, bound = tuple_(grouped.c.mean, grouped.c.owner), tuple_(float(last_mean), last_id)
        conditions.append(key < bound if descending else key > bound)
    ordering = [grouped.c.mean.desc(), grouped.c.owner.desc()] if descending else [
        grouped.c.mean.asc(), grouped.c.owner.asc()]
    rows = conn.execute(select(grouped).where(*conditions).order_by(*ordering).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    data = [RankedTarget(target_id=r.owner, mean_score=round(float(r.mean), 6), count=int(r.n)) for r in rows]
    next_cursor = cursors.encode(float(rows[-1].mean), rows[-1].owner) if more and rows else None
    return Page(data=data, next_cursor=next_cursor)


# --- where a conversation breaks --------------------------------------------------------------------


class BrokenTurn(NamedTuple):
    """The first turn where a conversation went wrong, and why."""

    trace_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class TurnScores:
    """One turn of a session with its annotation summaries (a point of the per-turn trend)."""

    trace_id: str
    index: int
    start_time: datetime
    status: str
    broken: bool
    annotations: dict[str, AnnotationSummary]


def _session_turns(conn: Connection, project: str, session_id: str) -> tuple[int, list[Any]] | None:
    pid = project_id(conn, project)
    if pid is None:
        return None
    tu = t.turns
    rows = conn.execute(
        select(tu.c.first_trace_id.label("trace_id"), tu.c.start_ns, tu.c.errors, tu.c.error)
        .where(tu.c.project_id == pid, tu.c.session_id == session_id)
        .order_by(*t.TURN_ORDER)
    ).all()
    return pid, list(rows)


def _bad_reasons(conn: Connection, pid: int, trace_ids: list[str]) -> dict[str, list[str]]:
    a = t.annotations
    reasons: dict[str, list[str]] = defaultdict(list)
    for start in range(0, len(trace_ids), 500):
        rows = conn.execute(
            select(a.c.target_id, a.c.name, a.c.label, a.c.explanation).where(
                a.c.project_id == pid, a.c.target_kind == "trace", a.c.target_id.in_(trace_ids[start:start + 500]),
                a.c.label.in_(sorted(BAD_LABELS)),
            ).order_by(a.c.name, a.c.id)
        )
        for r in rows:
            why = f"{r.name}: {r.label}"
            if r.explanation:
                why += f" ({r.explanation[:200]})"
            reasons[r.target_id].append(why)
    return reasons


def first_broken_turn(conn: Connection, project: str, session_id: str) -> BrokenTurn | None:
    """The first turn (in time order) that failed or carries a failure label (:data:`BAD_LABELS`)."""
    found = _session_turns(conn, project, session_id)
    if found is None:
        return None
    pid, rows = found
    reasons = _bad_reasons(conn, pid, [r.trace_id for r in rows])
    for r in rows:
        why = ([f"error: {r.error or 'failed'}"] if r.errors else []) + reasons.get(r.trace_id, [])
        if why:
            return BrokenTurn(r.trace_id, "; ".join(why))
    return None


def turn_scores(conn: Connection, project: str, session_id: str) -> list[TurnScores]:
    """Every turn of a session in order with its annotation summaries and whether it is broken."""
    found = _session_turns(conn, project, session_id)
    if found is None:
        return []
    pid, rows = found
    ids = [r.trace_id for r in rows]
    notes: dict[str, dict[str, AnnotationSummary]] = {}
    for start in range(0, len(ids), 500):
        notes.update(summarize(conn, pid, "trace", ids[start:start + 500]))
    reasons = _bad_reasons(conn, pid, ids)
    return [
        TurnScores(trace_id=r.trace_id, index=i, start_time=to_datetime(r.start_ns),
                   status="error" if r.errors else "ok", broken=bool(r.errors) or r.trace_id in reasons,
                   annotations=notes.get(r.trace_id, {}))
        for i, r in enumerate(rows)
    ]
