"""A session's first input and last output are read from its turns, not stored again

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 06:50:00

``sessions.first_input`` and ``sessions.last_output`` repeated the input of the session's first
turn and the output of its last (``first_turn_key``, ``last_turn_key``), which ``traces`` holds
already. The columns are dropped; readers join the turns and their traces
(``schema.sessions_with_text``), for the sessions of one page at a time.
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE sessions DROP COLUMN first_input")
    op.execute("ALTER TABLE sessions DROP COLUMN last_output")


def downgrade() -> None:
    op.execute("ALTER TABLE sessions ADD COLUMN first_input TEXT")
    op.execute("ALTER TABLE sessions ADD COLUMN last_output TEXT")
    op.execute("UPDATE sessions SET first_input = (SELECT tr.input FROM turns tu JOIN traces tr "
               "ON tr.project_id = tu.project_id AND tr.trace_id = tu.input_trace_id "
               "WHERE tu.project_id = sessions.project_id AND tu.session_id = sessions.session_id "
               "AND tu.turn_key = sessions.first_turn_key), "
               "last_output = (SELECT tr.output FROM turns tu JOIN traces tr "
               "ON tr.project_id = tu.project_id AND tr.trace_id = tu.last_trace_id "
               "WHERE tu.project_id = sessions.project_id AND tu.session_id = sessions.session_id "
               "AND tu.turn_key = sessions.last_turn_key)")
