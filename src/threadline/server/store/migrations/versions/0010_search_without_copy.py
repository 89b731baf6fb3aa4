"""Full-text tables index the turn text without a copy of it (SQLite)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 02:50:00

Each project's FTS5 table ``trace_text_<project id>`` kept its own copy of every trace's input and
output beside the index: 199 of 2,652 bytes per span at 1M spans, text that ``traces`` already
holds. The tables become *external content* tables reading ``traces`` through a view of the
project's rows (``trace_text_<project id>_source``, see :mod:`threadline.server.store.fulltext`).
Each project's table is dropped, made again and filled from ``traces`` (the rows with text, as the
writer indexes them), one project at a time, progress logged. PostgreSQL keeps its generated
``tsvector`` column: nothing to do.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

log = logging.getLogger("threadline.migrations")
_TOKENIZE = "tokenize='unicode61 remove_diacritics 2'"
_WITH_TEXT = "(coalesce(input, '') <> '' OR coalesce(output, '') <> '')"


def _projects() -> list[int]:
    return [int(row[0]) for row in op.get_bind().execute(sa.text("SELECT id FROM projects ORDER BY id"))]


def _fill(table: str, pid: int) -> None:
    op.get_bind().exec_driver_sql(
        f"INSERT INTO {table} (rowid, input, output) SELECT id, coalesce(input, ''), coalesce(output, '') "
        f"FROM traces WHERE project_id = {pid} AND {_WITH_TEXT} ORDER BY id")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    projects = _projects()
    started = time.monotonic()
    for done, pid in enumerate(projects, 1):
        table, source = f"trace_text_{pid}", f"trace_text_{pid}_source"
        bind.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        bind.exec_driver_sql(f"CREATE VIEW IF NOT EXISTS {source} AS "
                             f"SELECT id, input, output FROM traces WHERE project_id = {pid}")
        bind.exec_driver_sql(f"CREATE VIRTUAL TABLE {table} USING fts5(input, output, content='{source}', "
                             f"content_rowid='id', {_TOKENIZE})")
        _fill(table, pid)
        log.info("full-text search: project %d of %d indexed without a copy of its text (%.0f s)", done,
                 len(projects), time.monotonic() - started)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for pid in _projects():
        table = f"trace_text_{pid}"
        bind.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        bind.exec_driver_sql(f"DROP VIEW IF EXISTS {table}_source")
        bind.exec_driver_sql(f"CREATE VIRTUAL TABLE {table} USING fts5(input, output, {_TOKENIZE})")
        _fill(table, pid)
