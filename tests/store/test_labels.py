"""Tags and metadata pairs: read once at ingest, stored per trace by the writer, backfilled by
migration 0008 from stored payloads (both backends)."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import command
from sqlalchemy import select

from threadline.server.ingest.normalize import normalize
from threadline.server.ingest.otlp import DecodedSpan
from threadline.server.store import labels
from threadline.server.store import schema as t
from threadline.server.store.engine import Store
from threadline.server.store.migrate import alembic_config, current_revision, head_revision, upgrade
from threadline.server.store.records import SpanRecord, pack_records, unpack_records
from threadline.server.store.write import BatchWriter

NOW = 1_800_000_000_000_000_000


def span(trace: int, span_no: int, attributes: dict[str, Any], project: str = "p") -> SpanRecord:
    """A span through the real ingest normalization."""
    return normalize(DecodedSpan(
        project=project, trace_id=f"{trace:032x}", span_id=f"{span_no:016x}", parent_span_id=None, name="op",
        otel_kind="INTERNAL", start_ns=NOW + span_no, end_ns=NOW + span_no + 10, status="OK", status_message=None,
        attributes={"session.id": f"s{trace % 2}", **attributes}))


def traffic() -> list[SpanRecord]:
    return [
        span(1, 1, {"tag.tags": ["beta", "vip"], "metadata": json.dumps({"plan": "pro", "seats": 3, "x": {"b": 1}})}),
        span(1, 2, {"tag.tags": ["beta"], "metadata": json.dumps({"plan": "pro"})}),  # the same again
        span(2, 3, {"tag.tags": '["gamma"]', "metadata": {"plan": "free", "ok": True, "none": None}}),
        span(3, 4, {"input.value": "no labels at all"}),
        span(4, 5, {"tag.tags": ["beta"]}, project="other"),
    ]


def stored(store: Store) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with store.read() as conn:
        p = t.projects
        names = dict(conn.execute(select(p.c.id, p.c.name)).all())
        tags = sorted((names[r[0]], r[1][-1:], r[2]) for r in conn.execute(select(t.trace_tags)))
        pairs = sorted((names[r[0]], r[1][-1:], r[2], r[3]) for r in conn.execute(select(t.trace_metadata)))
    return tags, pairs


EXPECTED_TAGS = [("other", "4", "beta"), ("p", "1", "beta"), ("p", "1", "vip"), ("p", "2", "gamma")]
EXPECTED_PAIRS = [("p", "1", "plan", "pro"), ("p", "1", "seats", "3"), ("p", "1", "x", '{"b":1}'),
                  ("p", "2", "none", "null"), ("p", "2", "ok", "true"), ("p", "2", "plan", "free")]


def test_tags_and_metadata_are_read_once_at_ingest() -> None:
    records = traffic()
    assert records[0].tags == ("beta", "vip")
    assert records[0].metadata == (("plan", "pro"), ("seats", "3"), ("x", '{"b":1}'))
    assert records[2].tags == ("gamma",)  # a JSON string holding the list
    assert records[3].tags == () and records[3].metadata == ()
    assert unpack_records(pack_records(records)) == records  # they cross to the writer process


def test_bounds_keep_hostile_labels_small() -> None:
    assert labels.span_tags([" a ", "a", "", 7, True, None, "x" * 300, "b\x00"]) == ("a", "7", "b\ufffd")
    assert len(labels.span_tags([f"t{i}" for i in range(1000)])) == labels.MAX_TAGS
    assert labels.span_tags("solo") == ("solo",)
    assert labels.span_tags('["broken') == ('["broken',)
    pairs = labels.metadata_pairs({f"k{i}": i for i in range(1000)} | {"long": "v" * 300})
    assert len(pairs) == labels.MAX_METADATA_PAIRS
    assert labels.metadata_pairs({"k" * 200: "v", "big": "v" * 300, "ok": "v"}) == (("ok", "v"),)
    assert labels.parse_metadata("[1]") == {} and labels.parse_metadata('{"a": "b"}') == {"a": "b"}


def test_the_writer_stores_each_traces_labels_once(store: Store) -> None:
    writer = BatchWriter(store.dialect)
    records = traffic()
    for batch in (records[:2], records, records[2:]):  # resent spans add nothing
        with store.write() as tx:
            writer.write(tx, batch, NOW)
    assert stored(store) == (EXPECTED_TAGS, EXPECTED_PAIRS)
    with store.write() as tx:  # a later span of a stored trace adds its own labels
        writer.write(tx, [span(2, 9, {"tag.tags": ["late"], "metadata": '{"plan": "free", "step": "2"}'})], NOW)
    tags, pairs = stored(store)
    assert ("p", "2", "late") in tags and ("p", "2", "step", "2") in pairs and len(pairs) == len(EXPECTED_PAIRS) + 1


def test_migration_0008_backfills_from_stored_payloads(store: Store) -> None:
    writer = BatchWriter(store.dialect)
    with store.write() as tx:
        writer.write(tx, traffic(), NOW)
    head = head_revision()
    command.downgrade(alembic_config(store), "0007")  # a database filled before 0008: spans only
    with store.read() as conn:
        assert not {"trace_tags", "trace_metadata"} & set(conn.dialect.get_table_names(conn))
    upgrade(store)
    assert current_revision(store) == head
    assert stored(store) == (EXPECTED_TAGS, EXPECTED_PAIRS)


def test_migration_0012_keeps_every_label_and_stores_each_once(store: Store) -> None:
    """SQLite: the label tables become WITHOUT ROWID (no second copy of each row in an automatic
    index), keeping every row; downgrading gives back rowid tables with the same rows."""

    def without_rowid() -> dict[str, bool]:
        with store.read() as conn:
            sql = dict(conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name IN "
                                            "('trace_tags', 'trace_metadata')")).all())
        return {name: "WITHOUT ROWID" in text for name, text in sql.items()}

    writer = BatchWriter(store.dialect)
    with store.write() as tx:
        writer.write(tx, traffic(), NOW)
    if store.dialect != "sqlite":
        assert stored(store) == (EXPECTED_TAGS, EXPECTED_PAIRS)
        return
    assert without_rowid() == {"trace_tags": True, "trace_metadata": True}  # a new database
    command.downgrade(alembic_config(store), "0011")
    assert without_rowid() == {"trace_tags": False, "trace_metadata": False}
    assert stored(store) == (EXPECTED_TAGS, EXPECTED_PAIRS)
    upgrade(store)
    assert without_rowid() == {"trace_tags": True, "trace_metadata": True}
    assert stored(store) == (EXPECTED_TAGS, EXPECTED_PAIRS)
    with store.write() as tx:  # written to as before
        writer.write(tx, [span(2, 9, {"tag.tags": ["late"]})], NOW)
    assert ("p", "2", "late") in stored(store)[0]
