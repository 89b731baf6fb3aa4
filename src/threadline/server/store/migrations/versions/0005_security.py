"""API keys, people (UI users) and their logins

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:00:00

The tables of DESIGN §9. ``people`` is the table of UI users (``users`` is the rollup of
``user.id`` values seen in spans). Keys and login tokens are stored only as SHA-256 digests,
passwords only as argon2id hashes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(), nullable=False, unique=True),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("projects", sa.Text(), nullable=True),
        sa.Column("digest", sa.String(), nullable=False, unique=True),
        sa.Column("hint", sa.String(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "people",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(), nullable=False, unique=True),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("password_hash", sa.String(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until_ns", sa.BigInteger(), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "logins",
        sa.Column("digest", sa.String(), primary_key=True),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("expires_ns", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_logins_person", "logins", ["person_id"])


def downgrade() -> None:
    op.drop_index("ix_logins_person", table_name="logins")
    op.drop_table("logins")
    op.drop_table("people")
    op.drop_table("api_keys")
