"""Erase and retention purge at the store level, on SQLite and PostgreSQL.

Every test compares the rollups left by an erase (or purge) with a *fresh recount*: the spans that
remain, ingested again into a project of their own. Sessions, users, turns, traces, session users
and the project counters must be identical; nothing of what was erased (its marker text, the
annotations on any of its targets, its search rows) may be left in any table.
"""

from __future__ import annotations

import os
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, select

from threadline.server.store import schema as t
from threadline.server.store.annotations import AnnotationWrite, upsert_annotations
from threadline.server.store.engine import Store, open_store
from threadline.server.store.erase import EraseTargetMissing, erase, purge_sessions
from threadline.server.store.records import SpanRecord
from threadline.server.store.retention import purge_project
from threadline.server.store.write import BatchWriter

from .test_write import record as base_record

DAY = 86_400 * 10**9
NOW = 1_800_000_000 * 10**9
MARK = f"zqsecret{uuid.uuid4().hex[:12]}"


def record(project: str, trace: str, span: str, parent: str | None, start: int, **kw: Any) -> SpanRecord:
    return base_record(trace, span, parent, start, **kw)._replace(project=project)


def turn(project: str, trace: str, start: int, *, session: str | None, user: str | None, secret: bool,
         fail: bool = False) -> list[SpanRecord]:
    """One turn: a root with text and an LLM child with tokens; ``secret`` puts the marker everywhere."""
    word = MARK if secret else "plain"
    return [
        record(project, trace, trace[:16], None, start, input=f"question {word} {trace[:4]}",
               output=f"answer {word}", session_id=session, user_id=user, tags=(f"tag {word}", "shared"),
               metadata=(("note", word), (f"key {word}", "v"))),
        record(project, trace, trace[16:], trace[:16], start + 10, kind="LLM", is_llm=True, model="m",
               prompt_tokens=7, completion_tokens=3, total_tokens=10, cost=1e-5, user_id=user, session_id=session,
               status="ERROR" if fail else "OK", error="boom" if fail else None, end_ns=start + 90),
    ]


def tid(n: int) -> str:
    return f"{n:032x}"


def traffic(project: str) -> list[SpanRecord]:
    """Users ``gone`` (to erase, marker everywhere) and ``kept``; one session shared by both; old
    sessions (10 days before NOW) and recent ones; traces without a session."""
    spans: list[SpanRecord] = []
    old, recent = NOW - 10 * DAY, NOW - DAY // 2
    for i in range(3):  # gone's own sessions: one old, two recent
        start = old if i == 0 else recent
        for k in range(2):
            spans += turn(project, tid(100 + 10 * i + k), start + k * 10**9 + i, session=f"g{i}", user="gone",
                          secret=True, fail=k == 1)
    for i in range(3):  # kept's sessions: two old, one recent
        start = old if i < 2 else recent
        for k in range(3):
            spans += turn(project, tid(200 + 10 * i + k), start + k * 10**9 + i, session=f"k{i}", user="kept",
                          secret=False)
    for k in range(4):  # a shared recent session, turns alternating between the users
        user = "gone" if k % 2 == 0 else "kept"
        spans += turn(project, tid(300 + k), recent + 50 * 10**9 + k * 10**9, session="shared", user=user,
                      secret=user == "gone")
    spans += turn(project, tid(400), old, session=None, user="gone", secret=True)  # no session
    spans += turn(project, tid(401), recent, session=None, user="gone", secret=True)
    spans += turn(project, tid(402), old, session=None, user="kept", secret=False)
    spans += turn(project, tid(403), recent, session=None, user=None, secret=False)
    spans += turn(project, tid(404), old, session=None, user="lonely", secret=False)  # old and nothing else
    return spans


def ingest(store: Store, spans: list[SpanRecord]) -> None:
    writer = BatchWriter(store.dialect)
    for start in range(0, len(spans), 7):  # several batches: traces are merged across them
        with store.write() as tx:
            writer.write(tx, spans[start:start + 7], NOW)


def pid_of(conn: Connection, name: str) -> int:
    pid = conn.execute(select(t.projects.c.id).where(t.projects.c.name == name)).scalar()
    assert pid is not None
    return int(pid)


def annotate(store: Store, project: str) -> None:
    """Annotations on every target kind, for both users; ``gone``'s carry the marker."""
    with store.write() as tx:
        pid = pid_of(tx, project)
        items = [
            AnnotationWrite("span", tid(100)[16:], "q", "HUMAN", label=f"bad {MARK}", explanation=MARK),
            AnnotationWrite("trace", tid(101), "q", "HUMAN", label="x", explanation=f"turn {MARK}"),
            AnnotationWrite("session", "g1", "q", "LLM", score=0.5, explanation=f"session {MARK}"),
            AnnotationWrite("user", "gone", "q", "HUMAN", explanation=f"user {MARK}"),
            AnnotationWrite("span", tid(400)[:16], "q", "CODE", explanation=MARK),
            AnnotationWrite("trace", tid(300), "q", "HUMAN", explanation=MARK),  # gone's turn in the shared session
            AnnotationWrite("span", tid(200)[16:], "q", "HUMAN", explanation="kept span"),
            AnnotationWrite("trace", tid(220), "q", "HUMAN", explanation="kept turn"),
            AnnotationWrite("session", "shared", "q", "HUMAN", explanation="shared session"),
            AnnotationWrite("user", "kept", "q", "HUMAN", explanation="kept user"),
        ]
        upsert_annotations(tx, pid, items, NOW)


_VOLATILE = {"project_id", "id", "last_activity_ns", "closed_ns"}


def rollups(conn: Connection, pid: int) -> dict[str, Any]:
    """Every rollup of a project, without ids and ingest times (comparable across projects)."""
    found: dict[str, Any] = {}
    for table in (t.traces, t.turns, t.sessions, t.users, t.session_users):
        columns = [c for c in table.c if c.name not in _VOLATILE]
        found[table.name] = sorted(tuple(round(v, 9) if isinstance(v, float) else v for v in r)  # costs are sums
                                   for r in conn.execute(select(*columns).where(table.c.project_id == pid)))
    p = t.projects
    found["projects"] = tuple(conn.execute(select(p.c.spans, p.c.traces, p.c.sessions, p.c.users)
                                           .where(p.c.id == pid)).one())
    return found


def recount(store: Store, remaining: list[SpanRecord]) -> dict[str, Any]:
    """The rollups of ``remaining`` ingested afresh into a project of their own."""
    name = f"fresh-{uuid.uuid4().hex[:6]}"
    ingest(store, [r._replace(project=name) for r in remaining])
    with store.read() as conn:
        return rollups(conn, pid_of(conn, name))


def text_rows(conn: Connection) -> str:
    """Every row of every table (and the SQLite search index) as one string."""
    parts = []
    for table in t.metadata.sorted_tables:
        parts.extend(repr(tuple(r)) for r in conn.execute(select(table)))
    if conn.dialect.name == "sqlite":  # every project's full-text table
        for (name,) in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE name GLOB 'trace_text_[0-9]*' "
                                            "AND sql LIKE 'CREATE VIRTUAL TABLE%'").all():
            parts.extend(repr(tuple(r)) for r in conn.exec_driver_sql(f"SELECT rowid, * FROM {name}"))
    return "\n".join(parts)


def annotation_texts(conn: Connection, pid: int) -> list[str]:
    a = t.annotations
    return sorted(r.explanation for r in conn.execute(select(a.c.explanation).where(a.c.project_id == pid)))


def test_erase_user_leaves_no_trace_and_rollups_equal_a_recount(store: Store) -> None:
    spans = traffic("p")
    ingest(store, spans)
    annotate(store, "p")
    with store.read() as conn:  # the marker is in tags and metadata pairs before the erase
        for table in (t.trace_tags, t.trace_metadata):
            assert MARK in repr(conn.execute(select(table)).all())
    result = erase(store, "p", user_id="gone")
    remaining = [s for s in spans if s.user_id != "gone"]
    assert (result.spans, result.traces, result.sessions, result.users) == (
        len(spans) - len(remaining), 3 * 2 + 2 + 2, 3, 1)
    assert result.annotations == 6
    assert result.checkpointed is (True if store.dialect == "sqlite" else None)
    expected = recount(store, remaining)
    with store.read() as conn:
        pid = pid_of(conn, "p")
        assert rollups(conn, pid) == expected
        assert MARK not in text_rows(conn)
        assert annotation_texts(conn, pid) == ["kept span", "kept turn", "kept user", "shared session"]
    if store.sqlite_path is not None:
        for path in (store.sqlite_path, f"{store.sqlite_path}-wal", f"{store.sqlite_path}-shm"):
            if os.path.exists(path):
                with open(path, "rb") as f:
                    assert MARK.encode() not in f.read(), path


def test_erase_session_and_project(store: Store) -> None:
    spans = traffic("p")
    ingest(store, spans)
    annotate(store, "p")
    result = erase(store, "p", session_id="g1")
    assert (result.spans, result.traces, result.sessions, result.users, result.annotations) == (4, 2, 1, 0, 2)
    remaining = [s for s in spans if s.session_id != "g1"]
    expected = recount(store, remaining)
    with store.read() as conn:
        assert rollups(conn, pid_of(conn, "p")) == expected
    with pytest.raises(EraseTargetMissing) as missing:
        erase(store, "p", session_id="g1")
    assert missing.value.kind == "session"
    with pytest.raises(EraseTargetMissing):
        erase(store, "p", user_id="nobody")
    with pytest.raises(EraseTargetMissing):
        erase(store, "nope")
    with store.read() as conn:
        pid = pid_of(conn, "p")
    whole = erase(store, "p")
    assert (whole.spans, whole.traces) == (len(remaining), len({s.trace_id for s in remaining}))
    with store.read() as conn:
        for table in (t.spans, t.traces, t.turns, t.sessions, t.users, t.session_users, t.annotations):
            assert conn.execute(select(table).where(table.c.project_id == pid)).first() is None, table.name
        assert conn.execute(select(t.projects).where(t.projects.c.name == "p")).first() is None


def test_retention_purge_removes_old_sessions_and_traces_in_batches(store: Store) -> None:
    spans = traffic("p")
    ingest(store, spans)
    annotate(store, "p")
    with store.read() as conn:
        pid = pid_of(conn, "p")
    report = purge_project(store, pid, NOW - 7 * DAY, batch=1)
    # Old: sessions g0, k0, k1 and the traces without a session 400, 402, 404 (one batch each).
    assert (report.sessions, report.traces, report.users, report.batches) == (3, 2 + 2 * 3 + 3, 1, 6)
    old = {"g0", "k0", "k1"}
    remaining = [s for s in spans if s.session_id not in old and s.trace_id not in {tid(400), tid(402), tid(404)}]
    assert report.spans == len(spans) - len(remaining)
    expected = recount(store, remaining)
    with store.read() as conn:
        assert rollups(conn, pid) == expected
        assert "lonely" not in {r.user_id for r in conn.execute(select(t.users.c.user_id))}
        # Those on a span or trace of g0, k0 and trace 400 went with them; the rest stay.
        assert annotation_texts(conn, pid) == sorted(["kept turn", "kept user", f"session {MARK}", "shared session",
                                                      f"user {MARK}", MARK])
    assert purge_project(store, pid, NOW - 7 * DAY, batch=1).batches == 0  # nothing left: no write at all


def test_purge_of_every_session_of_a_user_drops_the_user(store: Store) -> None:
    spans = [s for s in traffic("p") if s.user_id == "kept" and s.session_id is not None]
    ingest(store, spans)
    with store.write() as tx:
        pid = pid_of(tx, "p")
        purge_sessions(tx, pid, ["k0", "k1", "k2", "shared"])
    with store.read() as conn:
        assert conn.execute(select(t.users).where(t.users.c.project_id == pid)).first() is None
        assert tuple(conn.execute(select(t.projects.c.spans, t.projects.c.traces, t.projects.c.sessions,
                                         t.projects.c.users).where(t.projects.c.id == pid)).one()) == (0, 0, 0, 0)


def test_database_files_are_private(tmp_path: Path) -> None:
    home = tmp_path / "new-home"
    database = home / "threadline.db"
    store = open_store(f"sqlite:///{database}")
    try:
        with store.write() as tx:
            tx.execute(t.projects.insert().values(name="p", created_ns=time.time_ns(), settings="{}", spans=0,
                                                  traces=0, sessions=0, users=0))
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        store.dispose()
    loose = tmp_path / "loose.db"
    loose.touch()
    os.chmod(loose, 0o644)
    open_store(f"sqlite:///{loose}").dispose()
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
