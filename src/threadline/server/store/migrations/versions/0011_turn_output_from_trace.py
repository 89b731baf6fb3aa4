"""A turn's output is read from its last trace, not stored again

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 03:40:00

``turns.output`` repeated the output of the turn's ``last_trace_id`` (its latest trace with an
output), which ``traces`` holds already: the assistant's reply, the longest text of a turn. The
column is dropped; readers join the trace (``schema.turns_with_output``) and the writer reads it
back the same way when it folds new traces into a stored turn. Turn rows get narrower too, which
is what the metrics scan.
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE turns DROP COLUMN output")


def downgrade() -> None:
    op.execute("ALTER TABLE turns ADD COLUMN output TEXT")
    op.execute("UPDATE turns SET output = (SELECT tr.output FROM traces tr WHERE tr.project_id = turns.project_id "
               "AND tr.trace_id = turns.last_trace_id)")
