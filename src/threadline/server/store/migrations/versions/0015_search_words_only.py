"""Full-text tables keep which traces hold each word, not where (SQLite)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 07:00:00

A search needs every word of the query, the last as a prefix, in a trace's input or output: no
phrase, no column, no ranking. The FTS5 tables stored each word's columns and positions too.
As ``detail=none`` tables they keep only the traces holding each word (at 20k spans of the
benchmark's traffic 77 → 20 bytes per span, the same hits). Each project's table is dropped,
made again and filled from ``traces`` (the rows with text, as the writer indexes them), one
project at a time, progress logged. PostgreSQL keeps its ``tsvector`` column: nothing to do.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

log = logging.getLogger("threadline.migrations")
_TOKENIZE = "tokenize='unicode61 remove_diacritics 2'"
_WITH_TEXT = "(coalesce(input, '') <> '' OR coalesce(output, '') <> '')"


def _remake(detail: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    projects = [int(row[0]) for row in bind.execute(sa.text("SELECT id FROM projects ORDER BY id"))]
    started = time.monotonic()
    for done, pid in enumerate(projects, 1):
        table, source = f"trace_text_{pid}", f"trace_text_{pid}_source"
        bind.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        bind.exec_driver_sql(f"CREATE VIEW IF NOT EXISTS {source} AS "
                             f"SELECT id, input, output FROM traces WHERE project_id = {pid}")
        bind.exec_driver_sql(f"CREATE VIRTUAL TABLE {table} USING fts5(input, output, content='{source}', "
                             f"content_rowid='id', {_TOKENIZE}, detail={detail})")
        bind.exec_driver_sql(
            f"INSERT INTO {table} (rowid, input, output) SELECT id, coalesce(input, ''), coalesce(output, '') "
            f"FROM traces WHERE project_id = {pid} AND {_WITH_TEXT} ORDER BY id")
        log.info("full-text search: project %d of %d indexed (detail=%s, %.0f s)", done, len(projects), detail,
                 time.monotonic() - started)


def upgrade() -> None:
    _remake("none")


def downgrade() -> None:
    _remake("full")
