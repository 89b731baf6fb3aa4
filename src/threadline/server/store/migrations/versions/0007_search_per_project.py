"""A full-text table per project (SQLite)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 23:40:00

SQLite's one ``trace_text`` FTS5 table held every project's turn text, so a search in a small
project walked the matches of every project (a one-letter prefix: seconds). Each project now has
``trace_text_<project id>`` (see :mod:`threadline.server.store.fulltext`), filled here from the old
table one project at a time, progress logged; then the old table is dropped. PostgreSQL keeps its
generated ``tsvector`` column (its search is filtered by project in one statement): nothing to do.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

log = logging.getLogger("threadline.migrations")
_FTS5 = "fts5(input, output, tokenize='unicode61 remove_diacritics 2')"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    had_global = bind.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'trace_text'").first() is not None
    projects = [row[0] for row in bind.execute(sa.text("SELECT id FROM projects ORDER BY id"))]
    started = time.monotonic()
    for done, pid in enumerate(projects, 1):
        table = f"trace_text_{int(pid)}"
        bind.exec_driver_sql(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING {_FTS5}")
        if had_global:
            bind.exec_driver_sql(
                f"INSERT INTO {table} (rowid, input, output) SELECT f.rowid, f.input, f.output FROM trace_text f "
                f"JOIN traces tr ON tr.id = f.rowid WHERE tr.project_id = {int(pid)}")
        log.info("full-text search: project %d of %d has its own index (%.0f s)", done, len(projects),
                 time.monotonic() - started)
    if had_global:
        bind.exec_driver_sql("DROP TABLE trace_text")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    bind.exec_driver_sql(f"CREATE VIRTUAL TABLE IF NOT EXISTS trace_text USING {_FTS5}")
    tables = [row[0] for row in bind.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE name GLOB 'trace_text_[0-9]*' AND sql LIKE 'CREATE VIRTUAL TABLE%'")]
    for table in tables:
        bind.exec_driver_sql(f"INSERT INTO trace_text (rowid, input, output) SELECT rowid, input, output FROM {table}")
        bind.exec_driver_sql(f"DROP TABLE {table}")
