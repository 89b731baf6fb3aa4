"""Tags and metadata pairs of each trace, for the sessions and traces filters

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 00:10:00

``trace_tags (project_id, trace_id, tag)`` and ``trace_metadata (project_id, trace_id, key,
value)`` hold what ingest now reads once from each span's ``tag.tags`` and ``metadata``
(:mod:`threadline.server.store.labels`): span attributes are stored compressed, so SQL cannot
filter on them. The stored spans are read here in batches of :data:`_BATCH` in primary-key order,
their payloads decoded, and their tags and pairs inserted (``ON CONFLICT DO NOTHING``), progress
logged. Only payloads that mention ``tag.tags`` or ``metadata`` are parsed.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa
from alembic import op

from threadline import conventions as cv
from threadline.server.store.labels import metadata_pairs, parse_metadata, span_tags
from threadline.server.store.payload import PayloadError, read_span

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

log = logging.getLogger("threadline.migrations")
_BATCH = 2000
_TAGS_KEY = f'"{cv.TAG_TAGS}"'
_METADATA_KEY = f'"{cv.METADATA}"'


def upgrade() -> None:
    op.create_table(
        "trace_tags",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("trace_id", sa.String(), nullable=False),
        sa.Column("tag", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "tag", "trace_id", name="pk_trace_tags"),
    )
    op.create_index("ix_trace_tags_trace", "trace_tags", ["project_id", "trace_id"])
    op.create_table(
        "trace_metadata",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("trace_id", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "key", "value", "trace_id", name="pk_trace_metadata"),
    )
    op.create_index("ix_trace_metadata_trace", "trace_metadata", ["project_id", "trace_id"])
    backfill(op.get_bind())


def backfill(conn: sa.Connection) -> tuple[int, int]:
    """Fill both tables from the stored spans' payloads; returns (tag rows, metadata rows) offered."""
    total = int(conn.exec_driver_sql("SELECT count(*) FROM spans").scalar() or 0)
    if not total:
        return 0, 0
    log.info("reading tags and metadata of %d spans (batches of %d)", total, _BATCH)
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    select_batch = (f"SELECT project_id, trace_id, span_id, payload FROM spans "
                    f"WHERE (project_id, trace_id, span_id) > ({mark}, {mark}, {mark}) "
                    f"ORDER BY project_id, trace_id, span_id LIMIT {_BATCH}")
    insert_tag = (f"INSERT INTO trace_tags (project_id, trace_id, tag) VALUES ({mark}, {mark}, {mark}) "
                  "ON CONFLICT DO NOTHING")
    insert_pair = (f"INSERT INTO trace_metadata (project_id, trace_id, key, value) "
                   f"VALUES ({mark}, {mark}, {mark}, {mark}) ON CONFLICT DO NOTHING")
    after: tuple[int, str, str] = (-1, "", "")
    done, tag_rows, pair_rows, started = 0, 0, 0, time.monotonic()
    while True:
        rows = conn.exec_driver_sql(select_batch, after).all()
        if not rows:
            break
        tags: set[tuple[int, str, str]] = set()
        pairs: set[tuple[int, str, str, str]] = set()
        for pid, tid, _sid, blob in rows:
            try:
                payload = read_span(blob)
            except PayloadError:
                continue  # a damaged payload has nothing to give
            text = payload.attributes_json
            if _TAGS_KEY not in text and _METADATA_KEY not in text:
                continue
            attributes = payload.attributes()
            tags.update((pid, tid, tag) for tag in span_tags(attributes.get(cv.TAG_TAGS)))
            pairs.update((pid, tid, k, v) for k, v in metadata_pairs(parse_metadata(attributes.get(cv.METADATA))))
        if tags:
            conn.exec_driver_sql(insert_tag, sorted(tags))
        if pairs:
            conn.exec_driver_sql(insert_pair, sorted(pairs))
        done += len(rows)
        tag_rows += len(tags)
        pair_rows += len(pairs)
        after = (rows[-1][0], rows[-1][1], rows[-1][2])
        log.info("tags and metadata: %d of %d spans (%.0f%%, %.0f s)", done, total, 100 * done / total,
                 time.monotonic() - started)
    return tag_rows, pair_rows


def downgrade() -> None:
    op.drop_index("ix_trace_metadata_trace", table_name="trace_metadata")
    op.drop_table("trace_metadata")
    op.drop_index("ix_trace_tags_trace", table_name="trace_tags")
    op.drop_table("trace_tags")
