"""Data commands on a real store (SQLite and PostgreSQL): unknown names fail loudly, times parse alike,
and ``doctor`` looks without creating or migrating anything."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import psycopg
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from support.databases import BACKENDS, POSTGRES_URL, fresh_database
from threadline.server.cli import cli
from threadline.server.cli_args import parse_moment
from threadline.server.store import schema as t
from threadline.server.store.engine import Store, open_store
from threadline.server.store.payload import encode_span
from threadline.server.store.records import SpanRecord
from threadline.server.store.write import BatchWriter

EMPTY = encode_span(None, None, None, "[]", {})  # a span payload with no text

S = 1_000_000_000
DAY = 86_400 * S
PROJECT = "shop"


def turn(session: str, user: str, trace: str, end_ns: int) -> SpanRecord:
    """A one-span turn of ``session`` by ``user`` that ended at ``end_ns``."""
    return SpanRecord(
        project=PROJECT, trace_id=trace.ljust(32, "0"), span_id="a" * 16, parent_span_id=None, name="turn",
        kind="AGENT", start_ns=end_ns - S, end_ns=end_ns, status="OK", status_message=None, session_id=session,
        user_id=user, input=f"question of {user}", output="answer", model=None, is_llm=False, prompt_tokens=3,
        completion_tokens=4, total_tokens=7, cost=0.0, error=None, payload=EMPTY,
        turn_key=None)


@pytest.fixture(scope="module", params=BACKENDS)
def filled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A store with a recent session (ada), one from ten days ago (bob) and one of both."""
    with fresh_database(request.param, tmp_path_factory.mktemp("cli")) as url:
        store = open_store(url)
        now = time.time_ns()
        with store.write() as tx:
            BatchWriter(store.dialect).write(tx, [
                turn("recent", "ada", "1", now - 3600 * S), turn("old", "bob", "2", now - 10 * DAY),
                turn("shared", "ada", "3", now - 7200 * S), turn("shared", "bob", "4", now - 7100 * S),
            ], now_ns=now)
        store.dispose()
        yield url


def run(url: str, *args: str, tmp: Path | None = None) -> Result:
    env = {"THREADLINE_HOME": str(tmp)} if tmp is not None else {}
    return CliRunner().invoke(cli, [*args, "--db", url], env=env, catch_exceptions=False)


def counts(url: str) -> tuple[int, int, int]:
    """Spans, sessions and users in the store."""
    store = open_store(url, migrate=False)
    try:
        with store.read() as conn:
            spans, sessions, users = (int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                                      for table in (t.spans, t.sessions, t.users))
            return spans, sessions, users
    finally:
        store.dispose()


def failed(result: Result, *expected: str) -> None:
    assert result.exit_code != 0, result.output
    for text in expected:
        assert text in result.output, result.output


# Every data command with the options naming what it works on, and the least it needs besides.
UNKNOWN_NAMES = [
    (["export"], ["--project", "nope"], "no project 'nope'"),
    (["metrics"], ["--project", "nope"], "no project 'nope'"),
    (["metrics"], ["--project", PROJECT, "--session", "no-such"], "no session 'no-such' in project 'shop'"),
    (["metrics"], ["--project", PROJECT, "--user", "nobody"], "no user 'nobody' in project 'shop'"),
    (["erase", "--yes"], ["--project", "nope"], "no project 'nope'"),
    (["erase", "--yes"], ["--project", PROJECT, "--session", "no-such"], "no session 'no-such' in project 'shop'"),
    (["erase", "--yes"], ["--project", PROJECT, "--session", ""], "no session '' in project 'shop'"),
    (["erase", "--yes"], ["--project", PROJECT, "--user", "nobody"], "no user 'nobody' in project 'shop'"),
    (["eval", "run", "--evaluator", "errors"], ["--project", "nope"], "no project 'nope'"),
    (["eval", "run", "--evaluator", "errors"], ["--project", PROJECT, "--session", "no-such"],
     "no session 'no-such' in project 'shop'"),
    (["eval", "run", "--evaluator", "errors"], ["--project", PROJECT, "--sessions", "recent,no-such,old"],
     "no session 'no-such' in project 'shop'"),
]
NOT_DATA_COMMANDS = {
    "threadline demo",  # fills a project: any name is fine
    "threadline keys create",  # a key may be made for a project before its first span (it warns)
}


def _commands(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", command


def test_every_command_naming_data_is_covered() -> None:
    naming = {path for path, command in _commands(cli, "threadline")
              if {"--project", "--session", "--user"} & {o for p in command.params for o in p.opts}}
    covered = {"threadline " + " ".join(w for w in words if not w.startswith("-") and w != "errors")
               for words, _names, _message in UNKNOWN_NAMES}
    assert naming - NOT_DATA_COMMANDS <= covered, "add the new command to UNKNOWN_NAMES"


@pytest.mark.parametrize(("command", "names", "message"), UNKNOWN_NAMES)
def test_unknown_names_fail_and_change_nothing(filled: str, tmp_path: Path, command: list[str], names: list[str],
                                               message: str) -> None:
    before = counts(filled)
    out = tmp_path / "out.jsonl"
    extra = ["-o", str(out)] if command == ["export"] else []
    result = run(filled, *command, *names, *extra, tmp=tmp_path)
    failed(result, message, "nothing was done")
    assert "Traceback" not in result.output
    assert not out.exists()  # export: no empty file left behind
    assert counts(filled) == before


def test_an_unknown_project_lists_the_known_ones(filled: str, tmp_path: Path) -> None:
    failed(run(filled, "metrics", "--project", "shpo", tmp=tmp_path), "no project 'shpo'", "'shop'")


def test_known_names_still_work(filled: str, tmp_path: Path) -> None:
    result = run(filled, "metrics", "--project", PROJECT, "--group-by", "user", "--user", "ada", "--json",
                 tmp=tmp_path)
    assert result.exit_code == 0, result.output
    groups = {row["group"]: row["values"] for row in json.loads(result.output)["data"]}
    assert list(groups) == ["ada"]
    result = run(filled, "metrics", "--project", PROJECT, "--session", "shared", "--group-by", "session", "--json",
                 tmp=tmp_path)
    assert result.exit_code == 0, result.output
    assert [row["group"] for row in json.loads(result.output)["data"]] == ["shared"]


def exported(url: str, tmp: Path, *since: str) -> list[str]:
    out = tmp / "sessions.jsonl"
    result = run(url, "export", "--project", PROJECT, "-o", str(out), *since, tmp=tmp)
    assert result.exit_code == 0, result.output
    return sorted(json.loads(line)["session_id"] for line in out.read_text().splitlines())


def test_export_since_takes_durations_and_dates(filled: str, tmp_path: Path) -> None:
    assert exported(filled, tmp_path) == ["old", "recent", "shared"]
    assert exported(filled, tmp_path, "--since", "7d") == ["recent", "shared"]
    assert exported(filled, tmp_path, "--since", "90m") == ["recent"]
    five_days_ago = (datetime.now(UTC) - timedelta(days=5)).date().isoformat()
    assert exported(filled, tmp_path, "--since", five_days_ago) == ["recent", "shared"]
    eleven_days_ago = (datetime.now(UTC) - timedelta(days=11)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert exported(filled, tmp_path, "--since", eleven_days_ago) == ["old", "recent", "shared"]


@pytest.mark.parametrize("command", [["export"], ["metrics"], ["eval", "run", "--evaluator", "errors"]])
def test_every_since_rejects_the_same_nonsense(filled: str, tmp_path: Path, command: list[str]) -> None:
    result = run(filled, *command, "--project", PROJECT, "--since", "yesterday", tmp=tmp_path)
    assert result.exit_code == 2, result.output
    assert "'yesterday' is not a time" in result.output and "7d" in result.output


def test_metrics_and_eval_accept_the_same_durations(filled: str, tmp_path: Path) -> None:
    result = run(filled, "metrics", "--project", PROJECT, "--group-by", "session", "--since", "90m", "--json",
                 tmp=tmp_path)
    assert result.exit_code == 0, result.output
    assert [row["group"] for row in json.loads(result.output)["data"]] == ["recent"]
    result = run(filled, "eval", "run", "--project", PROJECT, "--evaluator", "errors", "--since", "7d",
                 "--identifier", "since-test", tmp=tmp_path)
    assert result.exit_code == 0, result.output
    assert "2 session(s) matched" in result.output


def test_parse_moment() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert parse_moment("7d", now=now) == datetime(2026, 11, 14, 12, 0, tzinfo=UTC)
    assert parse_moment(" 30m ", now=now) == datetime(2026, 11, 21, 11, 30, tzinfo=UTC)
    assert parse_moment("2w", now=now) == datetime(2026, 11, 7, 12, 0, tzinfo=UTC)
    assert parse_moment("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_moment("2026-11-01T10:00:00Z") == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert parse_moment("2026-11-01T10:00:00+02:00") == datetime(2026, 11, 1, 8, tzinfo=UTC)
    for bad in ("", "7", "d7", "7 days", "2026-13-01"):
        with pytest.raises(ValueError, match="is not a time"):
            parse_moment(bad, now=now)


def test_erase_of_a_known_session_still_erases(tmp_path: Path) -> None:
    with fresh_database("sqlite", tmp_path) as url:
        store = open_store(url)
        with store.write() as tx:
            BatchWriter(store.dialect).write(tx, [turn("a", "ada", "1", time.time_ns()),
                                                  turn("b", "ada", "2", time.time_ns())], now_ns=time.time_ns())
        store.dispose()
        result = run(url, "erase", "--project", PROJECT, "--session", "a", "--yes", tmp=tmp_path)
        assert result.exit_code == 0, result.output
        assert "erased session 'a': 1 spans" in result.output
        assert counts(url) == (1, 1, 1)


# --- doctor -----------------------------------------------------------------------------------------


def test_doctor_on_a_missing_path_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "dir"
    result = run(f"sqlite:///{missing / 'x.db'}", "doctor", tmp=tmp_path / "home")
    failed(result, "no database file", "its directory does not exist", "problem(s) found")
    assert "ok" not in result.output.splitlines()
    assert not missing.parent.exists()
    assert not (tmp_path / "home").exists()


def test_doctor_leaves_an_empty_file_as_it_is(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    failed(run(f"sqlite:///{empty}", "doctor", tmp=tmp_path), "an empty database", "left as it is")
    assert empty.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def test_doctor_does_not_migrate_an_older_schema(tmp_path: Path) -> None:
    from threadline.server.store.migrate import head_revision, upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    upgrade(store, "0001")
    store.dispose()
    assert head_revision() != "0001"
    result = run(url, "doctor", tmp=tmp_path)
    assert result.exit_code == 0, result.output
    assert "revision 0001, older than" in result.output and result.output.splitlines()[-1] == "ok"
    with sqlite3.connect(tmp_path / "old.db") as conn:
        assert conn.execute("select version_num from alembic_version").fetchall() == [("0001",)]


def test_doctor_says_ok_on_a_migrated_sqlite_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ok.db'}"
    open_store(url).dispose()
    files = sorted(p.name for p in tmp_path.iterdir())
    result = run(url, "doctor", tmp=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # no -wal / -shm left behind either
    assert result.exit_code == 0, result.output
    assert "(the newest)" in result.output and "FTS5 yes" in result.output
    assert result.output.splitlines()[-1] == "ok"


def test_doctor_on_postgres_neither_migrates_nor_fails_silently(tmp_path: Path) -> None:
    with fresh_database("postgres", tmp_path) as url:
        failed(run(url, "doctor", tmp=tmp_path), "an empty database", "problem(s) found")
        schema = url.rsplit("%3D", 1)[1]
        with psycopg.connect(POSTGRES_URL) as conn:
            tables = conn.execute("select count(*) from information_schema.tables where table_schema = %s",
                                  (schema,)).fetchone()
        assert tables == (0,)
        open_store(url).dispose()
        result = run(url, "doctor", tmp=tmp_path)
        assert result.exit_code == 0, result.output
        assert "(the newest)" in result.output


def test_doctor_names_an_unreachable_postgres(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        failed(run(f"postgresql://postgres@127.0.0.1:{port}/none", "doctor", tmp=tmp_path), "cannot connect")


def test_a_key_for_a_project_without_data_is_made_with_a_warning(filled: str, tmp_path: Path) -> None:
    result = run(filled, "keys", "create", "--name", "future", "--role", "ingest", "--project", "not-yet",
                 "--project", PROJECT, tmp=tmp_path)
    assert result.exit_code == 0, result.output
    assert "no data yet" in result.output and "not-yet" in result.output
    assert result.output.strip().splitlines()[-1].startswith("tl_")
