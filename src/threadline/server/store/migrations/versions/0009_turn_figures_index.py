"""The turns' figures in their session index, so metrics read the index alone

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 02:20:00

``ix_turns_session_start (project_id, session_id, start_ns)`` becomes
``ix_turns_session_figures``: the same leading columns, followed by every column the metrics
aggregate (``end_ns``, tokens, cost, errors, LLM calls, spans, user, first trace). A metrics query
then scans the project's part of this index in session order and never visits the turn rows,
which carry the turn text (at 1M spans: 470 → 160 ms for ``group_by=session`` on SQLite). The
old index's uses (a session's turns in order) are served by the same leading columns.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_FIGURES = ["project_id", "session_id", "start_ns", "end_ns", "total_tokens", "prompt_tokens", "completion_tokens",
            "cost", "errors", "llm_calls", "spans", "user_id", "first_trace_id"]


def upgrade() -> None:
    op.create_index("ix_turns_session_figures", "turns", _FIGURES)
    op.drop_index("ix_turns_session_start", table_name="turns")


def downgrade() -> None:
    op.create_index("ix_turns_session_start", "turns", ["project_id", "session_id", "start_ns"])
    op.drop_index("ix_turns_session_figures", table_name="turns")
