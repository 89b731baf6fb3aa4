"""Full-text search is scoped to one project before it matches (issue 12), on both stores.

Two projects share words; each project's search finds only its own traces, an erased project's
index goes with it, and migration 0007 moves the single SQLite index of earlier revisions into
one index per project without losing a match.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import Connection, select

from threadline.server.store import schema as t
from threadline.server.store.engine import Store
from threadline.server.store.erase import erase
from threadline.server.store.fulltext import matching_traces
from threadline.server.store.migrate import alembic_config, current_revision, head_revision, upgrade
from threadline.server.store.write import BatchWriter

from .test_write import record

WORDS = ["refund", "parcel", "zeppelin", "invoice"]


def fill(store: Store) -> None:
    records = []
    for project in ("big", "small"):
        count = 40 if project == "big" else 3
        for n in range(count):
            word = WORDS[n % len(WORDS)]
            records.append(record(f"{project[0]}{n:031x}", f"{n + 1:016x}", None, 1_000 + n, project=project,
                                  session_id=f"{project}-s{n % 5}", input=f"{word} question {project} {n}",
                                  output=f"answer about {word}", kind="AGENT"))
    with store.write() as tx:
        BatchWriter(store.dialect).write(tx, records, 1)


def hits(conn: Connection, project: str, query: str) -> list[str]:
    pid = conn.execute(select(t.projects.c.id).where(t.projects.c.name == project)).scalar_one()
    ids = matching_traces(conn.dialect.name, pid, query, column="trace_id")
    return sorted(conn.execute(ids).scalars())


def search_tables(conn: Connection) -> list[str]:
    return sorted(r[0] for r in conn.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE name GLOB 'trace_text*' AND sql LIKE 'CREATE VIRTUAL TABLE%'"))


def test_a_search_sees_only_its_own_project(store: Store) -> None:
    fill(store)
    with store.read() as conn:
        small = hits(conn, "small", "refund")
        assert len(small) == 1 and small[0].startswith("s")
        big = hits(conn, "big", "refund")
        assert len(big) == 10 and all(trace.startswith("b") for trace in big)
        assert len(hits(conn, "small", "q")) == 3  # a one-letter prefix: the project's own traces only
        assert hits(conn, "small", "invoice") == [] and len(hits(conn, "big", "invoice")) == 10
        if store.dialect == "sqlite":
            assert len(search_tables(conn)) == 2
    erase(store, "big")
    with store.read() as conn:
        assert len(hits(conn, "small", "refund")) == 1
        if store.dialect == "sqlite":
            assert len(search_tables(conn)) == 1, "an erased project's index is dropped with it"


def test_migration_moves_the_global_index_into_one_per_project(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'search.db'}")
    try:
        upgrade(store)
        fill(store)
        with store.read() as conn:
            before = {(p, w): hits(conn, p, w) for p in ("big", "small") for w in (*WORDS, "q", "answer")}
        upgrade_to = head_revision()
        command.downgrade(alembic_config(store), "0006")  # the one global index of earlier revisions
        with store.read() as conn:
            assert search_tables(conn) == ["trace_text"]
        upgrade(store)
        assert current_revision(store) == upgrade_to
        with store.read() as conn:
            assert len(search_tables(conn)) == 2 and "trace_text" not in search_tables(conn)
            after = {(p, w): hits(conn, p, w) for p in ("big", "small") for w in (*WORDS, "q", "answer")}
        assert after == before
    finally:
        store.dispose()


def test_the_index_follows_the_text_and_keeps_no_copy_of_it(store: Store) -> None:
    """A trace's text changes as later spans arrive, and traces are erased: a search finds the words
    of the text stored now, never those it replaced; on SQLite the index passes FTS5's integrity
    check against ``traces`` and holds no copy of the text (external content, migration 0010)."""
    writer = BatchWriter(store.dialect)
    trace = "c" * 32
    steps = [
        [record(trace, "1" * 16, "9" * 16, 1_000, project="p", session_id="s1", kind="LLM",
                input="walrus question", output="narwhal answer")],
        [record(trace, "9" * 16, None, 900, project="p", session_id="s1", kind="AGENT",
                input="okapi question", output="quokka answer")],
        [record("d" * 32, "2" * 16, None, 2_000, project="p", session_id="s2", kind="AGENT",
                input="okapi again", output="")],
    ]
    words = ["walrus", "narwhal", "okapi", "quokka", "question", "answer", "again"]
    for batch in steps:
        with store.write() as tx:
            writer.write(tx, batch, 1)
        with store.read() as conn:
            stored = {tid: f"{i or ''} {o or ''}".lower() for tid, i, o in conn.execute(
                select(t.traces.c.trace_id, t.traces.c.input, t.traces.c.output))}
            for word in words:
                expected = sorted(tid for tid, text in stored.items() if word in text.split())
                assert hits(conn, "p", word) == expected, word
            integrity_checked(conn)
    erase(store, "p", session_id="s1")
    with store.read() as conn:
        assert hits(conn, "p", "okapi") == ["d" * 32] and hits(conn, "p", "quokka") == []
        integrity_checked(conn)


def integrity_checked(conn: Connection) -> None:
    """SQLite: every project's index agrees with ``traces`` and keeps no text of its own."""
    if conn.dialect.name != "sqlite":
        return
    for table in search_tables(conn):
        conn.exec_driver_sql(f"INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 1)")
    copies = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE name GLOB 'trace_text*_content'").all()
    assert copies == [], "a full-text table keeps a copy of the text"
