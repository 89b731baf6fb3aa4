"""The ``threadline`` command line: a thin shell over the library.

Every command that works on data reads the same settings as ``serve`` (``--db`` /
``THREADLINE_DATABASE_URL`` / ``THREADLINE_HOME``) and works directly on that store.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

import click
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from threadline.server.cli_args import TIME, TIME_FORMATS, require_known, require_project
from threadline.server.cli_footprint import report_footprint
from threadline.server.cli_keys import keys_group
from threadline.server.cli_people import users_group
from threadline.server.cli_store import db_option, load_settings, open_configured_store
from threadline.server.demo.command import demo_command
from threadline.server.evals.commands import eval_group, metrics_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="threadline")
def cli() -> None:
    """Threadline: sessions, users and traces of LLM applications."""


cli.add_command(demo_command, "demo")
cli.add_command(eval_group, "eval")
cli.add_command(metrics_command, "metrics")
cli.add_command(keys_group, "keys")
cli.add_command(users_group, "users")


@cli.command()
@click.option("--host", default=None, help="Interface to bind (THREADLINE_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Main HTTP port: UI, API, OTLP/HTTP (THREADLINE_PORT, 6006).")
@click.option("--grpc-port", type=int, default=None, help="OTLP/gRPC port (THREADLINE_GRPC_PORT, 4317); 0 disables.")
@click.option("--otlp-http-port", type=int, default=None,
              help="OTLP/HTTP port (THREADLINE_OTLP_HTTP_PORT, 4318); 0 disables.")
@click.option("--db", "database_url", default=None,
              help="Database URL (THREADLINE_DATABASE_URL); default SQLite under THREADLINE_HOME.")
def serve(host: str | None, port: int | None, grpc_port: int | None, otlp_http_port: int | None,
          database_url: str | None) -> None:
    """Run the server (UI, REST API, OTLP/HTTP and OTLP/gRPC)."""
    from threadline.server.store.engine import StoreConfigError
    from threadline.server.web.serve import InsecureBind, run

    settings = load_settings(host=host, port=port, grpc_port=grpc_port, otlp_http_port=otlp_http_port,
                             database_url=database_url)
    try:
        run(settings)
    except StoreConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    except (OSError, InsecureBind) as exc:
        raise click.ClickException(f"cannot start: {exc}") from exc


@cli.command()
@click.option("--project", required=True, help="Project to export.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True, allow_dash=True), default="-",
              help="File to write (JSON Lines); - for standard output.")
@click.option("--since", type=TIME, default=None, help=f"Only sessions active since: {TIME_FORMATS}.")
@db_option
def export(project: str, output: str, since: datetime | None, database_url: str | None) -> None:
    """Write a project's sessions, turn by turn, as JSON Lines (one session per line)."""
    from threadline.server.query.sessions import SessionFilter, iter_session_details
    from threadline.server.web.api.serialize import to_json

    _settings, store = open_configured_store(database_url)
    filters = SessionFilter(start=since)
    count = 0
    with store.read() as conn:  # an unknown project fails before the output file is created
        require_project(conn, project)
    with store.read() as conn, click.open_file(output, "w", encoding="utf-8") as out, _progress() as progress:
        task = progress.add_task(f"exporting {project}", total=None)
        for detail in iter_session_details(conn, project, filters):
            line = to_json(detail.summary)
            line["turns"] = to_json(detail.turns)
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
            count += 1
            progress.update(task, advance=1)
    click.echo(f"exported {count} sessions of project {project!r}", err=True)


@cli.command()
@click.option("--project", required=True, help="Project to erase from.")
@click.option("--session", "session_id", default=None, help="Erase only this session.")
@click.option("--user", "user_id", default=None, help="Erase only this user's turns.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@db_option
def erase(project: str, session_id: str | None, user_id: str | None, yes: bool, database_url: str | None) -> None:
    """Erase a whole project, one session, or every trace of one user (rollups are repaired; on SQLite
    the erased text is also scrubbed from the database and write-ahead log files)."""
    from threadline.server.store.erase import EraseTargetMissing
    from threadline.server.store.erase import erase as erase_data

    if session_id is not None and user_id is not None:
        raise click.UsageError("pass --session or --user, not both")
    _settings, store = open_configured_store(database_url)
    with store.read() as conn:
        require_known(conn, project, sessions=[session_id] if session_id is not None else [], user=user_id)
    what = (f"session {session_id!r}" if session_id is not None else f"user {user_id!r}" if user_id is not None
            else "the whole project")
    if not yes:
        click.confirm(f"Erase {what} of project {project!r}? This cannot be undone", abort=True)
    try:
        # Looked up again in the erasing transaction: what was confirmed must still be there.
        result = erase_data(store, project, session_id=session_id, user_id=user_id)
    except EraseTargetMissing as exc:
        raise click.ClickException(f"{exc.message}; nothing was done") from exc
    click.echo(f"erased {what}: {result.spans} spans, {result.traces} turns, {result.sessions} sessions, "
               f"{result.users} users, {result.annotations} annotations")
    if result.checkpointed is False:
        click.echo("warning: the SQLite write-ahead log was busy and is not truncated yet: run "
                   "sqlite3 <database> 'PRAGMA wal_checkpoint(TRUNCATE)' or stop the server, so that no erased "
                   "text is left in the -wal file (docs/security.md)", err=True)


@cli.command()
@db_option
def doctor(database_url: str | None) -> None:
    """Check the configuration, the database and the ports, and say what to fix (creates and changes nothing)."""
    import socket

    settings = load_settings(database_url=database_url)
    problems = _check_database(settings.resolved_database_url)
    click.echo(f"decode     {settings.effective_decode_workers()} worker process(es)")
    for label, port in (("http", settings.port), ("otlp-http", settings.otlp_http_port), ("grpc", settings.grpc_port)):
        if not port:
            click.echo(f"{label:<10} disabled")
            continue
        with socket.socket() as sock:
            busy = sock.connect_ex((settings.host, port)) == 0
        click.echo(f"{label:<10} {settings.host}:{port} {'in use (a server is running?)' if busy else 'free'}")
    judge = settings.judge_base_url or "not configured (THREADLINE_JUDGE_BASE_URL)"
    click.echo(f"judge      {judge}")
    if not problems:
        report_footprint(settings.resolved_database_url)
    if problems:
        raise click.ClickException(f"{problems} problem(s) found")
    click.echo("ok")


def _check_database(url: str) -> int:
    """Print what the database is (never creating, migrating or writing it); return the problems found."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from threadline.server.store.engine import StoreConfigError, normalize_url

    try:
        parsed = make_url(normalize_url(url))
    except (StoreConfigError, ArgumentError) as exc:
        click.echo(f"database   {_redact(url)}: {exc}")
        return 1
    if parsed.get_backend_name() == "sqlite":
        return _check_sqlite(parsed.database or "")
    click.echo(f"database   postgresql: {_redact(url)}")
    try:
        revision, has_tables = _postgres_revision(url)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        click.echo(f"schema     cannot connect: {reason}")
        return 1
    return _report_revision(revision, has_tables=has_tables)


def _postgres_revision(url: str) -> tuple[str | None, bool]:
    """The schema revision of a PostgreSQL store (``None``: no schema yet) and whether its schema
    has tables at all, read without migrating."""
    from threadline.server.store.engine import Store
    from threadline.server.store.migrate import current_revision

    store = Store(url, pool_size=1)  # PostgreSQL: connecting creates nothing
    try:
        with store.read() as conn:
            tables = conn.exec_driver_sql("select count(*) from information_schema.tables "
                                          "where table_schema = current_schema()").scalar()
        return current_revision(store), bool(tables)
    finally:
        store.dispose()


def _check_sqlite(database: str) -> int:
    """Inspect a SQLite file read-only: whether it exists, its schema revision and FTS5."""
    import sqlite3
    from pathlib import Path
    from urllib.parse import quote

    if not database or database == ":memory:":
        click.echo("database   sqlite: in memory (nothing is kept: use a file)")
        return 1
    path = Path(database).expanduser()
    click.echo(f"database   sqlite: {path}")
    if not path.is_file():
        where = "its directory does not exist either" if not path.parent.is_dir() else "the directory exists"
        click.echo(f"schema     no database file ({where}); `threadline serve` creates it, or check --db / "
                   "THREADLINE_DATABASE_URL / THREADLINE_HOME")
        return 1
    try:
        # mode=rw: never creates the file, and only reads here; unlike mode=ro it lets SQLite remove
        # the -wal / -shm files it opens beside a WAL database when it is the last one to close it.
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=rw", uri=True)
    except sqlite3.Error as exc:
        click.echo(f"schema     cannot open the file: {exc}")
        return 1
    problems = 0
    try:
        version = conn.execute("select sqlite_version()").fetchone()[0]
        fts = conn.execute("select sqlite_compileoption_used('ENABLE_FTS5')").fetchone()[0]
        click.echo(f"sqlite     {version}, FTS5 {'yes' if fts else 'NO'}")
        problems += 0 if fts else 1
        try:
            tables = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
            revision = (conn.execute("select version_num from alembic_version").fetchone() or [None])[0] \
                if "alembic_version" in tables else None
        except sqlite3.DatabaseError as exc:
            click.echo(f"schema     not a readable SQLite database: {exc}")
            return problems + 1
    finally:
        conn.close()
    return problems + _report_revision(revision, has_tables=bool(tables))


def _report_revision(revision: str | None, *, has_tables: bool) -> int:
    """Print the schema revision against the newest one; return 1 when it is a problem."""
    from threadline.server.store.migrate import head_revision

    head = head_revision()
    if revision is None:
        found = "an empty database" if not has_tables else "tables, but not a Threadline schema"
        click.echo(f"schema     none: {found} (left as it is; `threadline serve` creates the schema)")
        return 1
    if revision == head:
        click.echo(f"schema     revision {revision} (the newest)")
        return 0
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    from threadline.server.store.migrate import MIGRATIONS_DIR

    try:
        known = ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(revision) is not None
    except (CommandError, RevisionError):
        known = False
    if known:
        click.echo(f"schema     revision {revision}, older than {head}: `threadline serve` upgrades it")
        return 0
    click.echo(f"schema     revision {revision} is unknown to this version (newest {head}): "
               "written by a newer Threadline?")
    return 1


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=False)
