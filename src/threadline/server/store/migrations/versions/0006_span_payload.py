"""Span payloads: a span's text in one column, each value once, compressed when large

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:30:00

``spans.input``, ``output``, ``detail``, ``events`` and ``attributes`` become one ``payload``
column (BLOB / bytea; format in :mod:`threadline.server.store.payload`): the display input and
output are no longer stored a second time inside the attributes, and a payload of 256 bytes or
more is a zstandard frame (about a sixth of the text on chat traffic). Stored spans are
converted in batches of :data:`_BATCH` in primary-key order, progress logged; a batch clears the
old columns of the rows it converted, so the database does not grow while converting. The
conversion runs inside the upgrade's transaction: interrupted, it is rolled back and runs again
at the next start. Afterwards the old columns are dropped (SQLite: one copy of the table, now
small; run ``VACUUM`` to give the freed pages back to the file system, see ``threadline doctor``).
"""

from __future__ import annotations

import logging
import time

import orjson
import sqlalchemy as sa
from alembic import op

from threadline.server.store.payload import encode_stored, read_span

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

log = logging.getLogger("threadline.migrations")
_BATCH = 2000
_OLD = ("input", "output", "detail", "events", "attributes")


def _columns(conn: sa.Connection) -> set[str]:
    return {c["name"] for c in sa.inspect(conn).get_columns("spans")}


def upgrade() -> None:
    conn = op.get_bind()
    if "payload" not in _columns(conn):
        op.add_column("spans", sa.Column("payload", sa.LargeBinary(), nullable=True))
    _convert(conn)
    with op.batch_alter_table("spans") as batch:
        for column in _OLD:
            batch.drop_column(column)
        if conn.dialect.name == "postgresql":  # SQLite: a table copy for a constraint only ingest relies on
            batch.alter_column("payload", existing_type=sa.LargeBinary(), nullable=False)


def _convert(conn: sa.Connection) -> None:
    """Fill ``payload`` from the old columns, batch by batch in primary-key order."""
    total = conn.exec_driver_sql("SELECT count(*) FROM spans WHERE payload IS NULL").scalar() or 0
    if not total:
        return
    log.info("storing %d spans as compressed payloads (batches of %d)", total, _BATCH)
    pg = conn.dialect.name == "postgresql"
    mark = "%s" if pg else "?"
    after = (-1, "", "")
    done, started = 0, time.monotonic()
    while True:
        rows = conn.exec_driver_sql(
            f"SELECT project_id, trace_id, span_id, input, output, detail, events, attributes FROM spans "
            f"WHERE payload IS NULL AND (project_id, trace_id, span_id) > ({mark}, {mark}, {mark}) "
            f"ORDER BY project_id, trace_id, span_id LIMIT {_BATCH}", after).all()
        if not rows:
            break
        conn.exec_driver_sql(
            f"UPDATE spans SET payload = {mark}, input = NULL, output = NULL, detail = NULL, events = '', "
            f"attributes = '' WHERE project_id = {mark} AND trace_id = {mark} AND span_id = {mark}",
            [(encode_stored(r.input, r.output, r.detail, r.events, r.attributes), r.project_id, r.trace_id,
              r.span_id) for r in rows])
        done += len(rows)
        after = (rows[-1].project_id, rows[-1].trace_id, rows[-1].span_id)
        log.info("span payloads: %d of %d (%.0f%%, %.0f s)", done, total, 100 * done / total,
                 time.monotonic() - started)


def downgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table("spans") as batch:
        batch.alter_column("payload", existing_type=sa.LargeBinary(), nullable=True)
        batch.add_column(sa.Column("input", sa.Text(), nullable=True))
        batch.add_column(sa.Column("output", sa.Text(), nullable=True))
        batch.add_column(sa.Column("attributes", sa.Text(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("events", sa.Text(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("detail", sa.Text(), nullable=True))
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    rows = conn.exec_driver_sql("SELECT project_id, trace_id, span_id, payload FROM spans").all()
    for start in range(0, len(rows), _BATCH):
        values = []
        for r in rows[start:start + _BATCH]:
            payload = read_span(r.payload)
            values.append((payload.input, payload.output, payload.detail, payload.events_json,
                           orjson.dumps(payload.attributes(), default=str).decode(), r.project_id, r.trace_id,
                           r.span_id))
        conn.exec_driver_sql(
            f"UPDATE spans SET input = {mark}, output = {mark}, detail = {mark}, events = {mark}, "
            f"attributes = {mark} WHERE project_id = {mark} AND trace_id = {mark} AND span_id = {mark}", values)
    with op.batch_alter_table("spans") as batch:
        batch.drop_column("payload")
