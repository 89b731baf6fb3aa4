"""Writes of annotations: idempotent upserts keyed on (project, target, name, identifier), deletes.

An annotation is identified by ``(project_id, target_kind, target_id, name, identifier)``: a
second write with the same key updates the first (so re-running an evaluator, or a person
changing their mind, never duplicates), while different identifiers let several annotators
score the same target.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, delete
from sqlalchemy.dialects import postgresql, sqlite

from threadline.server.store import schema as t


@dataclass(frozen=True, slots=True)
class AnnotationWrite:
    """One annotation to create or update (already validated by the caller)."""

    target_kind: str
    target_id: str
    name: str
    annotator_kind: str
    label: str | None = None
    score: float | None = None
    explanation: str | None = None
    identifier: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def upsert_annotations(tx: Connection, project_id: int, items: Sequence[AnnotationWrite], now_ns: int) -> list[int]:
    """Create or update ``items`` (in order) and return their ids.

    ``now_ns`` becomes ``updated_ns`` (and ``created_ns`` of new rows). Evaluators pass the time
    at which they *read* the data they judged, so an annotation older than a session's last
    activity is known to be stale.
    """
    if not items:
        return []
    a = t.annotations
    insert = postgresql.insert(a) if tx.dialect.name == "postgresql" else sqlite.insert(a)
    stmt = insert.on_conflict_do_update(
        index_elements=["project_id", "target_kind", "target_id", "name", "identifier"],
        set_={
            "label": insert.excluded.label, "score": insert.excluded.score,
            "explanation": insert.excluded.explanation, "annotator_kind": insert.excluded.annotator_kind,
            "metadata": insert.excluded.metadata, "updated_ns": insert.excluded.updated_ns,
        },
    ).returning(a.c.id, sort_by_parameter_order=True)
    # One row per key (the last write wins), so a multi-row upsert never touches a row twice.
    last: dict[tuple[str, str, str, str], int] = {}
    for position, item in enumerate(items):
        last[(item.target_kind, item.target_id, item.name, item.identifier)] = position
    unique = sorted(last.values())
    rows = tx.execute(stmt, [{
        "project_id": project_id, "target_kind": items[i].target_kind, "target_id": items[i].target_id,
        "name": items[i].name, "label": items[i].label, "score": items[i].score,
        "explanation": items[i].explanation, "annotator_kind": items[i].annotator_kind,
        "identifier": items[i].identifier,
        "metadata": json.dumps(items[i].metadata, sort_keys=True, default=str),
        "created_ns": now_ns, "updated_ns": now_ns,
    } for i in unique]).all()
    by_position = {i: int(row[0]) for i, row in zip(unique, rows, strict=True)}
    return [by_position[last[(item.target_kind, item.target_id, item.name, item.identifier)]] for item in items]


def delete_annotation(tx: Connection, project_id: int, annotation_id: int) -> bool:
    """Delete one annotation by id; ``False`` when it does not exist in that project."""
    a = t.annotations
    result = tx.execute(delete(a).where(a.c.project_id == project_id, a.c.id == annotation_id))
    return bool(result.rowcount)


def delete_matching(
    tx: Connection, project_id: int, target_kind: str, target_id: str, name: str | None = None,
    identifier: str | None = None,
) -> int:
    """Delete the annotations of one target (optionally one name / identifier); return how many."""
    a = t.annotations
    conditions = [a.c.project_id == project_id, a.c.target_kind == target_kind, a.c.target_id == target_id]
    if name is not None:
        conditions.append(a.c.name == name)
    if identifier is not None:
        conditions.append(a.c.identifier == identifier)
    return int(tx.execute(delete(a).where(and_(*conditions))).rowcount)

