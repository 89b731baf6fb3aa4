"""Writes of a project's annotation configs: one row per (project, annotation name), replaced whole.

The caller validates (kind, labels, direction, range); ``labels`` is stored as the JSON array
``[{"label", "polarity", "score"}]``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete
from sqlalchemy.dialects import postgresql, sqlite

from threadline.server.store import schema as t


def put_annotation_config(
    tx: Connection, project_id: int, name: str, *, kind: str, labels: Sequence[dict[str, Any]], direction: str,
    min_score: float | None, max_score: float | None, description: str, now_ns: int,
) -> None:
    """Create or replace the config of ``name`` in the project (``created_ns`` is kept on replace)."""
    c = t.annotation_configs
    insert = postgresql.insert(c) if tx.dialect.name == "postgresql" else sqlite.insert(c)
    values = {"kind": kind, "labels": json.dumps(list(labels), sort_keys=True), "direction": direction,
              "min_score": min_score, "max_score": max_score, "description": description, "updated_ns": now_ns}
    tx.execute(insert.values(project_id=project_id, name=name, created_ns=now_ns, **values).on_conflict_do_update(
        index_elements=["project_id", "name"], set_=values))


def delete_annotation_config(tx: Connection, project_id: int, name: str) -> bool:
    """Delete the config of ``name``; ``False`` when the project has none of that name."""
    c = t.annotation_configs
    return bool(tx.execute(delete(c).where(c.c.project_id == project_id, c.c.name == name)).rowcount)
