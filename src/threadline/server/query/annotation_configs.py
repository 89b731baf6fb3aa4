"""A project's stored annotation configs (how each annotation name is scored and shown)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

from threadline.server.evals.scales import (
    CONFIG_KINDS,
    DIRECTIONS,
    POLARITIES,
    AnnotationConfig,
    LabelSpec,
)
from threadline.server.store import schema as t


def _labels(text: str) -> tuple[LabelSpec, ...]:
    try:
        items = json.loads(text)
    except ValueError:
        return ()
    out: list[LabelSpec] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("label"), str):
            continue
        polarity = item.get("polarity")
        score = item.get("score")
        out.append(LabelSpec(item["label"], polarity if polarity in POLARITIES else "neutral",
                             float(score) if isinstance(score, int | float) else None))
    return tuple(out)


def _config(row: Any) -> AnnotationConfig:
    return AnnotationConfig(
        name=row.name, kind=row.kind if row.kind in CONFIG_KINDS else "freeform", labels=_labels(row.labels),
        direction=row.direction if row.direction in DIRECTIONS else "higher_is_better",
        min_score=row.min_score, max_score=row.max_score, description=row.description, source="project",
    )


def list_annotation_configs(conn: Connection, project_id: int,
                            names: Sequence[str] | None = None) -> list[AnnotationConfig]:
    """The project's stored configs by name (only ``names`` when given)."""
    c = t.annotation_configs
    conditions: list[Any] = [c.c.project_id == project_id]
    if names is not None:
        if not names:
            return []
        conditions.append(c.c.name.in_(sorted(set(names))))
    return [_config(row) for row in conn.execute(select(c).where(*conditions).order_by(c.c.name))]


def get_annotation_config(conn: Connection, project_id: int, name: str) -> AnnotationConfig | None:
    """The stored config of ``name``, or ``None``."""
    found = list_annotation_configs(conn, project_id, [name])
    return found[0] if found else None
