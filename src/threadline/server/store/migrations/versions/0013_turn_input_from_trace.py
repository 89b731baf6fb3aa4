"""A turn's input is read from its trace, not stored again

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 06:30:00

``turns.input`` repeated the input of one of the turn's traces (the user's message: its first
trace's, or the first later one with an input when that has none), which ``traces`` holds
already. It becomes a reference, ``input_trace_id``; readers join the trace
(``schema.turns_with_text``) as they do for the output (migration 0011), and the writer reads it
back the same way. The reference is set, for each turn with an input, to the trace of that turn
whose input is the same text — its first trace when that one has it, else the earliest — in
one statement; then the column is dropped.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "input_trace_id" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("turns")}:
        op.execute("ALTER TABLE turns ADD COLUMN input_trace_id VARCHAR")  # (0003 creates it since 0013)
    # Two subqueries, not one ordered by "is it the first trace": SQLite (3.40) does not resolve an
    # outer column inside the ORDER BY of a subquery of an UPDATE.
    op.execute("UPDATE turns SET input_trace_id = coalesce("
               "(SELECT tr.trace_id FROM traces tr WHERE tr.project_id = turns.project_id "
               "AND tr.trace_id = turns.first_trace_id AND tr.input = turns.input), "
               "(SELECT tr.trace_id FROM traces tr WHERE tr.project_id = turns.project_id "
               "AND tr.session_id = turns.session_id AND coalesce(tr.turn_key, tr.trace_id) = turns.turn_key "
               "AND tr.input = turns.input ORDER BY tr.start_ns, tr.trace_id LIMIT 1)) "
               "WHERE input IS NOT NULL AND input_trace_id IS NULL")
    op.execute("ALTER TABLE turns DROP COLUMN input")


def downgrade() -> None:
    op.execute("ALTER TABLE turns ADD COLUMN input TEXT")
    op.execute("UPDATE turns SET input = (SELECT tr.input FROM traces tr WHERE tr.project_id = turns.project_id "
               "AND tr.trace_id = turns.input_trace_id)")
    op.execute("ALTER TABLE turns DROP COLUMN input_trace_id")
