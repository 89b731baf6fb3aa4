"""PostgreSQL: compress the large text columns with lz4 instead of pglz

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 05:00:00

Span attributes (chat histories of several KiB) are TOASTed on PostgreSQL; the default pglz
compression costs about 50 µs of server CPU per span at insert, lz4 a fifth of that, for a
similar size. Rows stored before keep their compression; PostgreSQL reads both. Servers older
than 14, or built without lz4, keep pglz. SQLite: nothing to do.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: (table, column) of every text column that regularly holds more than a couple of KiB.
LARGE_TEXT = [
    ("spans", "attributes"), ("spans", "events"), ("spans", "input"), ("spans", "output"),
    ("traces", "input"), ("traces", "output"), ("sessions", "first_input"), ("sessions", "last_output"),
]


def _lz4_available() -> bool:
    row = op.get_bind().exec_driver_sql(
        "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
    ).first()
    return row is not None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql" or not _lz4_available():
        return
    for table, column in LARGE_TEXT:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql" or not _lz4_available():
        return
    for table, column in LARGE_TEXT:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION pglz")
