"""Span payloads (store/payload.py): the codec, both backends, and migration 0006 from the old columns."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
import zstandard
from alembic.script import ScriptDirectory
from sqlalchemy import select

from threadline.server.query.sessions import get_session
from threadline.server.query.traces import get_trace
from threadline.server.store import payload as codec
from threadline.server.store import schema as t
from threadline.server.store.engine import Store, open_store
from threadline.server.store.migrate import alembic_config, current_revision, head_revision, upgrade
from threadline.server.store.payload_dictionary import DICTIONARY
from threadline.server.store.write import BatchWriter
from threadline.server.web.api.serialize import to_json

from .test_engine import columns_before_payload
from .test_turns import tool_loop_chat
from .test_write import generate, record

#: The dictionary's digest when it was made (store/payload_dictionary.py).
DICTIONARY_SHA256 = "f3dc748e091d333a832617a38fbff0d3af8c5d609090d86d93189574b46623e2"
LONG = "Ünïcødé 🙂 " + "the whole chat history, resent on every call. " * 40


def test_small_payloads_stay_plain_and_large_ones_are_compressed() -> None:
    small = codec.encode_span("hi", "hello", None, "[]", {"input.value": "hi"})
    attributes = {"input.value": LONG, "llm.input_messages.0.message.content": LONG}
    large = codec.encode_span(LONG, "ok", None, "[]", attributes)
    assert small[:1] == codec.PLAIN and len(small) < codec.COMPRESS_AT
    assert large[:1] == codec.DICTIONARY_FRAME and len(large) < len(LONG.encode()) / 4
    assert codec.read_span(small).attributes() == {"input.value": "hi"}
    assert codec.read_span(large).attributes() == attributes


def test_the_dictionary_never_changes() -> None:
    """Stored payloads can only be read with the very bytes they were compressed with: a better
    dictionary is a new format byte, never an edit of this one."""
    assert hashlib.sha256(DICTIONARY).hexdigest() == DICTIONARY_SHA256


def test_the_conventions_dictionary_shrinks_a_small_span() -> None:
    """A tool span's payload is mostly attribute keys: with the dictionary it is well under both
    its plain body and what zstandard makes of it alone."""
    attributes = {"openinference.span.kind": "TOOL", "tool.name": "lookup_order",
                  "tool.parameters": '{"order_id": "A-1043"}', "input.value": '{"order_id": "A-1043"}',
                  "input.mime_type": "application/json", "output.value": '{"status": "shipped"}',
                  "output.mime_type": "application/json", "session.id": "s-81", "user.id": "u-7"}
    blob = codec.encode_span('{"order_id": "A-1043"}', '{"status": "shipped"}', None, "[]", attributes)
    body = codec._body(blob).encode()
    alone = zstandard.ZstdCompressor(level=codec.LEVEL).compress(body)
    assert blob[:1] == codec.DICTIONARY_FRAME
    assert len(blob) < 0.75 * min(len(body), len(alone)), (len(blob), len(body), len(alone))
    assert codec.read_span(blob).attributes() == attributes


def test_payloads_written_before_the_dictionary_are_read() -> None:
    """A plain zstandard frame (the format before the dictionary) and a plain body still read."""
    attributes_json = orjson.dumps({"input.value": 0, "llm.model_name": "gpt-4o"}).decode()
    body = "\x00".join(("answer", "", LONG, "input.value", "", "[]", attributes_json)).encode()
    old = zstandard.ZstdCompressor(level=3).compress(body)
    assert old[:4] == codec.ZSTD_MAGIC
    stored = codec.read_span(old)
    assert stored.attributes() == {"input.value": LONG, "llm.model_name": "gpt-4o"}
    assert (stored.output, codec.read_steps(old)) == ("answer", ("answer", None))


def test_a_value_held_by_an_attribute_is_stored_once_and_put_back_in_key_order() -> None:
    attributes = {"a": 1, "input.value": "question?", "llm.output_messages.0.message.content": "answer.", "z": [1]}
    blob = codec.encode_span("question?", "answer.", '{"tool_calls": []}', '[{"name": "e"}]', attributes)
    stored = codec.read_span(blob)
    assert (stored.input_key, stored.output_key) == ("input.value", "llm.output_messages.0.message.content")
    assert "question?" not in stored.attributes_json and "answer." not in stored.attributes_json
    assert list(stored.attributes().items()) == list(attributes.items())
    assert (stored.input, stored.output, stored.detail, stored.events()) == (
        "question?", "answer.", '{"tool_calls": []}', [{"name": "e"}])
    assert codec.read_steps(blob) == ("answer.", '{"tool_calls": []}')


def test_text_that_differs_from_every_attribute_is_kept_as_it_is() -> None:
    attributes = {"input.value": "  padded  ", "n": 3}
    stored = codec.read_span(codec.encode_span("padded", None, None, "[]", attributes))
    assert stored.input_key is None and stored.attributes() == attributes and stored.input == "padded"


def test_the_body_holds_no_nul_but_its_separators() -> None:
    attributes = {"k": "nul \x00 inside a value", "emoji": "🙂"}
    stored = codec.read_span(codec.encode_span("x", "y", None, "[]", attributes))
    assert stored.attributes() == attributes and stored.attributes_json.count("\x00") == 0


@pytest.mark.parametrize("damage", [
    lambda blob: blob[:-7],  # truncated frame
    lambda blob: blob[:4] + bytes(len(blob) - 4),  # zeroed frame
    lambda blob: b"\x7f" + blob[1:],  # unknown first byte
    lambda blob: b"",
])
def test_a_damaged_payload_is_a_clear_error(damage: Any) -> None:
    blob = codec.encode_span(LONG, None, None, "[]", {"input.value": LONG})
    with pytest.raises(codec.PayloadError, match="span payload"):
        codec.read_span(damage(blob))
    with pytest.raises(codec.PayloadError, match="span payload"):
        codec.read_span(codec.PLAIN + b"\xff\xfe")  # not UTF-8


def test_payloads_round_trip_through_both_backends(store: Store) -> None:
    attributes = {"input.value": LONG, "output.value": "short", "nested": {"a": [1, 2.5, None]}, "uni": "Ünïcødé 🙂"}
    events = orjson.dumps([{"name": "exception", "time_ns": 5, "attributes": {"exception.message": "boom"}}]).decode()
    spans = [record("t" * 32, "a" * 16, None, 1, input=LONG, output="short",
                    payload=codec.encode_span(LONG, "short", None, events, attributes)),
             record("t" * 32, "b" * 16, "a" * 16, 2, payload=codec.encode_span(None, None, None, "[]", {"x": "y"}))]
    with store.write() as tx:
        BatchWriter(store.dialect).write(tx, spans, now_ns=1)
    with store.read() as conn:
        raw = dict(conn.execute(select(t.spans.c.span_id, t.spans.c.payload)).all())
        trace = get_trace(conn, "p", "t" * 32)
    assert bytes(raw["a" * 16])[:1] == codec.DICTIONARY_FRAME and bytes(raw["b" * 16])[:1] == codec.PLAIN
    assert trace is not None
    root, child = trace.spans
    assert (root.input, root.output, child.attributes) == (LONG, "short", {"x": "y"})
    assert list(root.attributes.items()) == list(attributes.items())
    assert [(e.name, e.attributes) for e in root.events] == [("exception", {"exception.message": "boom"})]


# --- migration 0006 ------------------------------------------------------------------------------

def _ingested(tmp_path: Path) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any], dict[str, Any]]:
    """Rows written by today's writer, with the spans in their pre-0006 columns, and what the
    trace API and session detail return for them."""
    scratch = open_store(f"sqlite:///{tmp_path / 'scratch.db'}")
    try:
        spans, _ = tool_loop_chat()
        with scratch.write() as tx:
            BatchWriter(scratch.dialect).write(tx, generate(3) + spans, now_ns=1)
        with scratch.read() as conn:
            rows = {table.name: [dict(r._mapping) for r in conn.execute(select(table))]
                    for table in (t.projects, t.spans, t.traces, t.turns, t.sessions, t.session_users, t.users)}
            traces = {tid: to_json(get_trace(conn, "p", tid)) for tid in {r["trace_id"] for r in rows["traces"]}}
            sessions = {sid: to_json(get_session(conn, "p", sid))
                        for sid in {r["session_id"] for r in rows["sessions"]}}
    finally:
        scratch.dispose()
    rows["spans"] = [columns_before_payload(row) for row in rows["spans"]]
    return rows, traces, sessions


def test_migration_0006_converts_stored_spans_resumably_and_reads_return_the_same(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    old_rows, traces, sessions = _ingested(tmp_path)
    assert any(len(r["attributes"]) > codec.COMPRESS_AT for r in old_rows["spans"])
    store = Store(db_url)
    try:
        upgrade(store, "0005")
        with store.write() as tx:
            for name, rows in old_rows.items():
                tx.execute(sa.table(name, *(sa.column(c) for c in rows[0])).insert(), rows)
        # An upgrade interrupted after two batches: they are committed, the rest is not converted.
        migration = ScriptDirectory.from_config(alembic_config(store)).get_revision("0006").module
        monkeypatch.setattr(migration, "_BATCH", 10)
        with caplog.at_level(logging.INFO, logger="threadline.migrations"):
            migration.convert_before_upgrade(store.write, batches=2)
        assert f"span payloads: 20 of {len(old_rows['spans'])}" in caplog.text
        with store.read() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM spans WHERE payload IS NOT NULL").scalar() == 20
        assert current_revision(store) == "0005"
        upgrade(store)  # resumes with the spans not converted yet
        assert current_revision(store) == head_revision()
        with store.read() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("spans")}
            stored = conn.execute(select(t.spans.c.payload)).scalars().all()
            assert {tid: to_json(get_trace(conn, "p", tid)) for tid in traces} == traces
            assert {sid: to_json(get_session(conn, "p", sid)) for sid in sessions} == sessions
    finally:
        store.dispose()
    assert not columns & {"input", "output", "detail", "events", "attributes"} and "payload" in columns
    assert len(stored) == len(old_rows["spans"])
    assert any(bytes(b)[:1] == codec.DICTIONARY_FRAME for b in stored)
    assert any(bytes(b)[:1] == codec.PLAIN for b in stored)
