"""Span payloads: a span's text in one column, each value once, compressed when large

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:30:00

``spans.input``, ``output``, ``detail``, ``events`` and ``attributes`` become one ``payload``
column (BLOB / bytea; format in :mod:`threadline.server.store.payload`): the display input and
output are no longer stored a second time inside the attributes, and a payload of 256 bytes or
more is a zstandard frame (about a sixth of the text on chat traffic). Stored spans are
converted in batches of :data:`_BATCH` in primary-key order, progress logged, each batch in a
transaction of its own before the schema change (:func:`convert_before_upgrade`): interrupted, the
conversion resumes at the next start with the spans not converted yet. A batch clears the old
columns of the rows it converted, so the database does not grow while converting. Then the old
columns are dropped (SQLite: one copy of the table, now small; run ``VACUUM`` to give the freed
pages back to the file system, see ``threadline doctor``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

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


def convert_before_upgrade(write: Callable[[], AbstractContextManager[sa.Connection]],
                           batches: int | None = None) -> None:
    """Fill ``payload`` from the old columns, each batch in a transaction of its own (``write()``),
    so an interrupted conversion resumes where it stopped (:mod:`threadline.server.store.migrate`
    runs this before :func:`upgrade`). ``batches``: stop after that many (tests)."""
    with write() as tx:
        columns = _columns(tx)
        if "attributes" not in columns:
            return
        if "payload" not in columns:
            kind = "BYTEA" if tx.dialect.name == "postgresql" else "BLOB"
            tx.exec_driver_sql(f"ALTER TABLE spans ADD COLUMN payload {kind}")
        total = tx.exec_driver_sql("SELECT count(*) FROM spans WHERE payload IS NULL").scalar() or 0
    if not total:
        return
    log.info("storing %d spans as compressed payloads (batches of %d)", total, _BATCH)
    after: tuple[int, str, str] = (-1, "", "")
    done, started = 0, time.monotonic()
    while batches is None or batches > 0:
        with write() as tx:
            converted, after = _convert_batch(tx, after)
        if not converted:
            break
        done += converted
        batches = None if batches is None else batches - 1
        log.info("span payloads: %d of %d (%.0f%%, %.0f s)", done, total, 100 * done / total,
                 time.monotonic() - started)


def upgrade() -> None:
    conn = op.get_bind()
    if "payload" not in _columns(conn):
        op.add_column("spans", sa.Column("payload", sa.LargeBinary(), nullable=True))
    after: tuple[int, str, str] = (-1, "", "")
    converted = 1
    while converted:  # what convert_before_upgrade left (only when run by the alembic command line)
        converted, after = _convert_batch(conn, after)
    with op.batch_alter_table("spans") as batch:
        for column in _OLD:
            batch.drop_column(column)
        if conn.dialect.name == "postgresql":  # SQLite: a table copy for a constraint only ingest relies on
            batch.alter_column("payload", existing_type=sa.LargeBinary(), nullable=False)


def _convert_batch(conn: sa.Connection, after: tuple[int, str, str]) -> tuple[int, tuple[int, str, str]]:
    """Convert the next batch of spans after the key ``after``: (spans converted, last key)."""
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    has_detail = "detail" in _columns(conn)  # added by 0003
    detail = "detail" if has_detail else "NULL AS detail"
    rows = conn.exec_driver_sql(
        f"SELECT project_id, trace_id, span_id, input, output, {detail}, events, attributes FROM spans "
        f"WHERE payload IS NULL AND (project_id, trace_id, span_id) > ({mark}, {mark}, {mark}) "
        f"ORDER BY project_id, trace_id, span_id LIMIT {_BATCH}", after).all()
    if not rows:
        return 0, after
    conn.exec_driver_sql(
        f"UPDATE spans SET payload = {mark}, input = NULL, output = NULL, events = '', attributes = ''"
        f"{', detail = NULL' if has_detail else ''} "
        f"WHERE project_id = {mark} AND trace_id = {mark} AND span_id = {mark}",
        [(encode_stored(r.input, r.output, r.detail, r.events, r.attributes), r.project_id, r.trace_id, r.span_id)
         for r in rows])
    return len(rows), (rows[-1].project_id, rows[-1].trace_id, rows[-1].span_id)


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
