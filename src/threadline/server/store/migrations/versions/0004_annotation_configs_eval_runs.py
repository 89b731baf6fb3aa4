"""Annotation configs per project and persisted evaluation runs

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 21:00:00

``annotation_configs`` says how an annotation name is scored and shown in a project (kind,
labels with their polarity, direction, score range, description); ``eval_runs`` keeps the
evaluation runs started through the API, so their status survives a restart.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "annotation_configs",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("min_score", sa.Float(), nullable=True),
        sa.Column("max_score", sa.Float(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "name", name="pk_annotation_configs"),
    )
    op.create_table(
        "eval_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("evaluators", sa.Text(), nullable=False),
        sa.Column("filters", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("report", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("runner", sa.String(), nullable=True),
        sa.Column("heartbeat_ns", sa.BigInteger(), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("started_ns", sa.BigInteger(), nullable=True),
        sa.Column("finished_ns", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_eval_runs_project", "eval_runs", ["project_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_eval_runs_project", table_name="eval_runs")
    op.drop_table("eval_runs")
    op.drop_table("annotation_configs")
