"""Effective annotation configs: a project's stored config of a name, else its evaluator's default.

Everything that shows or checks a score (the API, the sessions and users tables, the per-turn
sparklines, the annotate form) asks here, so a stored config always wins and an evaluator's
declared direction and labels apply wherever the project did not say otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from threadline.server.evals.evaluators import BUILTIN
from threadline.server.evals.scales import AnnotationConfig
from threadline.server.query.annotation_configs import get_annotation_config, list_annotation_configs


def evaluator_default(name: str) -> AnnotationConfig | None:
    """The config a built-in evaluator of that name declares, or ``None``."""
    evaluator = BUILTIN.get(name)
    return evaluator.config() if evaluator is not None else None


def effective_configs(conn: Connection, project_id: int | None,
                      names: Sequence[str] | None = None) -> dict[str, AnnotationConfig]:
    """``{name: config}``: stored configs over evaluator defaults (``names`` only, when given).

    Without ``names``: every stored config plus every built-in evaluator's default.
    """
    wanted = list(BUILTIN) if names is None else list(names)
    out = {name: config for name in wanted if (config := evaluator_default(name)) is not None}
    if project_id is not None:
        out.update({c.name: c for c in list_annotation_configs(conn, project_id, names)})
    return dict(sorted(out.items()))


def effective_config(conn: Connection, project_id: int | None, name: str) -> AnnotationConfig | None:
    """The stored config of ``name``, else its evaluator's default, else ``None``."""
    stored = get_annotation_config(conn, project_id, name) if project_id is not None else None
    return stored or evaluator_default(name)
