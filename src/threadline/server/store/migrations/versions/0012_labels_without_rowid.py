"""Tags and metadata pairs stored once: SQLite tables without a rowid

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 06:15:00

On SQLite a table with a composite primary key is a rowid table *plus* an automatic index over
its key: every ``trace_tags`` and ``trace_metadata`` row was stored twice. As ``WITHOUT ROWID``
tables the primary key is the table (at 1M spans, ``trace_metadata`` and its indexes 67 B/span
before). Each table is rebuilt in one statement per table (a few dozen bytes per trace); reads
and writes are unchanged. PostgreSQL tables have no rowid: nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_TABLES = {
    "trace_tags": ("(project_id INTEGER NOT NULL, trace_id VARCHAR NOT NULL, tag VARCHAR NOT NULL, "
                   "CONSTRAINT pk_trace_tags PRIMARY KEY (project_id, tag, trace_id))",
                   "project_id, trace_id, tag"),
    "trace_metadata": ("(project_id INTEGER NOT NULL, trace_id VARCHAR NOT NULL, key VARCHAR NOT NULL, "
                       "value VARCHAR NOT NULL, CONSTRAINT pk_trace_metadata PRIMARY KEY (project_id, key, value, "
                       "trace_id))",
                       "project_id, trace_id, key, value"),
}


def _rebuild(rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, (columns, names) in _TABLES.items():
        op.execute(f"CREATE TABLE {table}_rebuilt {columns}{'' if rowid else ' WITHOUT ROWID'}")
        op.execute(f"INSERT INTO {table}_rebuilt ({names}) SELECT {names} FROM {table}")
        op.execute(f"DROP TABLE {table}")  # and its index
        op.execute(f"ALTER TABLE {table}_rebuilt RENAME TO {table}")
        op.execute(f"CREATE INDEX ix_{table}_trace ON {table} (project_id, trace_id)")


def upgrade() -> None:
    _rebuild(rowid=False)


def downgrade() -> None:
    _rebuild(rowid=True)
