"""Store engine and migrations: page size, lz4 on PostgreSQL, background WAL checkpoints (both backends)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from threadline.server.store import schema as t
from threadline.server.store.engine import Store, open_store
from threadline.server.store.migrate import current_revision, upgrade
from threadline.server.store.payload import read_span
from threadline.server.store.write import BatchWriter

from .test_turns import tool_loop_chat
from .test_write import generate

LARGE_TEXT = {("spans", "attributes"), ("spans", "events"), ("spans", "input"), ("spans", "output"),
              ("traces", "input"), ("traces", "output"), ("sessions", "first_input"), ("sessions", "last_output")}


def test_new_sqlite_files_use_8k_pages(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'new.db'}")
    store.dispose()
    conn = sqlite3.connect(tmp_path / "new.db")
    assert conn.execute("PRAGMA page_size").fetchone()[0] == 8192
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def columns_before_payload(row: dict[str, Any], *, detail: bool = True) -> dict[str, Any]:
    """A ``spans`` row of today as revisions before 0006 stored it (text columns, no payload)."""
    row = dict(row)
    payload = read_span(row.pop("payload"))
    row.update(input=payload.input, output=payload.output, events=payload.events_json,
               attributes=orjson.dumps(payload.attributes()).decode())
    if detail:
        row["detail"] = payload.detail
    return row


def _rows_before_turns(tmp_path: Path) -> tuple[dict[str, list[dict[str, Any]]], list[Any]]:
    """Rows as revision 0002 stored them (a turn was a trace), made by today's writer in a scratch
    store, with the turns that store grouped them into."""
    scratch = open_store(f"sqlite:///{tmp_path / 'scratch.db'}")
    try:
        spans, _ = tool_loop_chat()
        with scratch.write() as tx:
            BatchWriter(scratch.dialect).write(tx, generate(3) + spans, now_ns=1)
        with scratch.read() as conn:
            rows = {table.name: [dict(r._mapping) for r in conn.execute(select(table))]
                    for table in (t.projects, t.spans, t.traces, t.sessions, t.session_users, t.users)}
            turns = conn.execute(select(t.turns).order_by(t.turns.c.session_id, t.turns.c.start_ns)).all()
            trace_counts = dict(conn.execute(select(t.traces.c.session_id, func.count()).group_by(
                t.traces.c.session_id)).all())
    finally:
        scratch.dispose()
    rows["spans"] = [columns_before_payload(row, detail=False) for row in rows["spans"]]
    for row in rows["traces"]:
        del row["turn_key"], row["follows"]
    for row in rows["sessions"]:  # 0002: first/last trace ids, one turn per trace
        row["first_trace_id"], row["last_trace_id"] = row.pop("first_turn_key"), row.pop("last_turn_key")
        row["turns"] = trace_counts[row["session_id"]]
    return rows, turns


def test_upgrading_keeps_every_row_and_regroups_stored_sessions_into_turns(db_url: str, tmp_path: Path) -> None:
    old_rows, expected_turns = _rows_before_turns(tmp_path)
    store = Store(db_url)
    try:
        upgrade(store, "0002")
        with store.write() as tx:
            for name in ("projects", "spans", "traces", "sessions", "session_users", "users"):
                tx.execute(sa.table(name, *(sa.column(c) for c in old_rows[name][0])).insert(), old_rows[name])
        upgrade(store, "0005")  # 0006 changes how spans are stored: tests/store/test_payload_migration.py
        assert current_revision(store) == "0005"
        with store.read() as conn:
            spans = [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM spans"))]
            traces = [dict(r._mapping) for r in conn.execute(select(t.traces))]
            turns = conn.execute(select(t.turns).order_by(t.turns.c.session_id, t.turns.c.start_ns)).all()
            sessions = {r.session_id: r.turns for r in conn.execute(select(t.sessions))}
            compression = None
            if store.dialect == "postgresql":
                lz4 = conn.exec_driver_sql("SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
                                           "AND 'lz4' = ANY(enumvals)").first() is not None
                compression = {(r[0], r[1]): r[2] for r in conn.exec_driver_sql(
                    "SELECT c.relname, a.attname, a.attcompression FROM pg_attribute a "
                    "JOIN pg_class c ON c.oid = a.attrelid "
                    "WHERE c.relnamespace = current_schema()::regnamespace AND a.attnum > 0")}
        assert [{k: v for k, v in r.items() if k != "detail"} for r in spans] == old_rows["spans"]
        assert [{k: v for k, v in r.items() if k not in ("turn_key", "follows")} for r in traces] == old_rows["traces"]
        assert [tuple(r) for r in turns] == [tuple(r) for r in expected_turns]
        assert sessions["s"] == 3 and sum(1 for r in old_rows["traces"] if r["session_id"] == "s") == 4
        assert sessions == {sid: sum(1 for r in expected_turns if r.session_id == sid) for sid in sessions}
        if compression is not None:
            expected = "l" if lz4 else ""
            assert {key: compression[key] for key in LARGE_TEXT} == {key: expected for key in LARGE_TEXT}
            assert compression[("spans", "trace_id")] == ""  # short columns keep the default
    finally:
        store.dispose()


def test_the_ingest_writer_checkpoints_the_log_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "ingest.db"
    store = open_store(f"sqlite:///{path}", ingest_writer=True)
    try:
        size_before = path.stat().st_size
        spans = generate(1)  # a few dozen turns
        with store.write() as tx:
            BatchWriter(store.dialect).write(tx, spans, now_ns=1)
        store.sync()
        # The commit wrote the log only; the background thread copies it into the file.
        deadline = time.monotonic() + 30
        while path.stat().st_size == size_before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert path.stat().st_size > size_before
        wal = sqlite3.connect(path)
        busy, frames, copied = wal.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        while busy and time.monotonic() < deadline:  # the background checkpoint is still running
            time.sleep(0.05)
            busy, frames, copied = wal.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert (busy, copied) == (0, frames)
        wal.close()
    finally:
        store.dispose()
    # Another process opening the file sees every committed row.
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM spans").fetchone()[0] == len(spans)


@pytest.mark.parametrize("elsewhere", [False, True])
def test_a_store_checkpointed_elsewhere_leaves_the_log_to_the_ingest_writer(tmp_path: Path, elsewhere: bool) -> None:
    path = tmp_path / "server.db"
    store = open_store(f"sqlite:///{path}", checkpointed_elsewhere=elsewhere)
    try:
        size_before = path.stat().st_size
        with store.write() as tx:  # some 10 MB of log: past SQLite's automatic checkpoint (1,000 pages)
            tx.exec_driver_sql("CREATE TABLE filler (x TEXT)")
            tx.exec_driver_sql("INSERT INTO filler VALUES (?)", [("x" * 10_000,) for _ in range(1000)])
        grown = path.stat().st_size > size_before + 5_000_000
    finally:
        store.dispose()
    assert grown is not elsewhere  # by default the commit copied the log into the file itself


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # a PostgreSQL setting
def test_postgres_plans_every_statement_for_its_own_values(store: Store) -> None:
    """Every PostgreSQL read runs with ``plan_cache_mode = force_custom_plan``: otherwise, once
    psycopg prepares a statement, PostgreSQL may reuse one generic plan for every project, and a
    plan made for a 1M-span project's search (the text index first) ran for a 10-session project
    too — 260 ms instead of 5 in ``bench.query``. Write transactions keep ``auto``: re-planning the
    writer's statements cost it a quarter of its speed."""
    for _ in range(2):  # a fresh connection each time, and one from the pool
        with store.read() as conn:
            assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
        with store.write() as tx:  # writes keep cached plans: the same statements, ever new values
            assert tx.exec_driver_sql("SHOW plan_cache_mode").scalar() == "auto"
        with store.read() as conn:  # and the connection reads with custom plans again afterwards
            assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
