"""Turns: a session's traces grouped into the user's turns

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 20:00:00

A turn used to be one trace; now it is one user message and everything the app did to answer
it (DESIGN §3), so the LLM calls of a tool loop — one trace each with the OpenAI instrumentor —
are one turn. This revision adds ``traces.turn_key`` (read through the session index: a turn's
traces are in its session), ``traces.follows`` (a trace with no user message that joined the
turn in progress; stored traces keep a turn of their own), the ``turns`` rollup table,
``spans.detail`` (what a turn's steps show, derived at ingest; NULL for spans stored before), and
renames the session's first/last trace ids to the turn keys they now hold. Stored sessions are
regrouped: each trace's key is derived again from the span its input came from, in batches with
progress logged, then turns, sessions and users are rebuilt from the traces.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from alembic import op

from threadline.server.chat import turn_key
from threadline.server.store.erase import recompute_sessions, recompute_users

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

log = logging.getLogger("threadline.migrations")
_BATCH = 2000


def upgrade() -> None:
    op.add_column("spans", sa.Column("detail", sa.Text(), nullable=True))
    op.add_column("traces", sa.Column("turn_key", sa.String(), nullable=True))
    op.add_column("traces", sa.Column("follows", sa.Boolean(), nullable=True))
    op.execute("ALTER TABLE sessions RENAME COLUMN first_trace_id TO first_turn_key")
    op.execute("ALTER TABLE sessions RENAME COLUMN last_trace_id TO last_turn_key")
    op.create_table(
        "turns",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("turn_key", sa.String(), nullable=False),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.Column("end_ns", sa.BigInteger(), nullable=False),
        sa.Column("traces", sa.Integer(), nullable=False),
        sa.Column("spans", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("llm_calls", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=True),
        sa.Column("first_trace_id", sa.String(), nullable=True),
        sa.Column("input", sa.Text(), nullable=True),
        sa.Column("last_trace_id", sa.String(), nullable=True),
        sa.Column("last_start_ns", sa.BigInteger(), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        # Written by the regrouping below, which runs this version's turn code (the reference that
        # replaced ``input`` in migration 0013); 0013 adds it to databases regrouped before.
        sa.Column("input_trace_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("project_id", "session_id", "turn_key", name="pk_turns"),
    )
    op.create_index("ix_turns_session_start", "turns", ["project_id", "session_id", "start_ns"])
    _regroup(op.get_bind())


def _regroup(conn: sa.Connection) -> None:
    """Give every stored trace its turn key, then rebuild turns, sessions and users."""
    total = conn.exec_driver_sql("SELECT count(*) FROM traces").scalar() or 0
    if total:
        log.info("regrouping %d stored traces into turns", total)
    sessions: dict[int, set[str]] = defaultdict(set)
    users: dict[int, set[str]] = defaultdict(set)
    last_id, done = 0, 0
    while True:
        rows = conn.execute(sa.text(
            "SELECT id, project_id, trace_id, session_id, user_id, input_rank FROM traces "
            "WHERE id > :last ORDER BY id LIMIT :n"), {"last": last_id, "n": _BATCH}).all()
        if not rows:
            break
        last_id = rows[-1].id
        keys = [{"id": r.id, "key": _key_of(conn, r)} for r in rows]
        conn.execute(sa.text("UPDATE traces SET turn_key = :key WHERE id = :id"), keys)
        for r in rows:
            if r.session_id is not None:
                sessions[r.project_id].add(r.session_id)
            if r.user_id is not None:
                users[r.project_id].add(r.user_id)
        done += len(rows)
        log.info("turn keys: %d of %d traces", done, total)
    for pid, ids in sessions.items():
        recompute_sessions(conn, pid, ids)
    for pid, ids in users.items():
        recompute_users(conn, pid, ids)
    if total:
        log.info("regrouped %d sessions", sum(len(ids) for ids in sessions.values()))


def _key_of(conn: sa.Connection, trace: Any) -> str:
    """The trace's turn key: that of the span its input came from (rank 0 is the root span,
    else 1 + the start of the descendant), or the trace id for plain text or no input."""
    if trace.session_id is None or trace.input_rank is None:
        return str(trace.trace_id)
    where = "parent_span_id IS NULL" if trace.input_rank == 0 else "start_ns = :start AND input IS NOT NULL"
    row = conn.execute(sa.text(
        f"SELECT attributes FROM spans WHERE project_id = :pid AND trace_id = :tid AND {where} LIMIT 1"),
        {"pid": trace.project_id, "tid": trace.trace_id, "start": trace.input_rank - 1}).first()
    if row is None:
        return str(trace.trace_id)
    try:
        attrs = json.loads(row.attributes)
    except ValueError:
        return str(trace.trace_id)
    return (turn_key(attrs) if isinstance(attrs, dict) else None) or str(trace.trace_id)


def downgrade() -> None:
    op.drop_index("ix_turns_session_start", table_name="turns")
    op.drop_table("turns")
    op.execute("ALTER TABLE sessions RENAME COLUMN first_turn_key TO first_trace_id")
    op.execute("ALTER TABLE sessions RENAME COLUMN last_turn_key TO last_trace_id")
    with op.batch_alter_table("traces") as batch:
        batch.drop_column("turn_key")
        batch.drop_column("follows")
    with op.batch_alter_table("spans") as batch:
        batch.drop_column("detail")
