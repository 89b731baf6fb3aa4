"""The ``threadline`` command line: a thin shell over the library.

Every command that works on data reads the same settings as ``serve`` (``--db`` /
``THREADLINE_DATABASE_URL`` / ``THREADLINE_HOME``) and works directly on that store.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from threadline.server.cli_store import db_option, load_settings, open_configured_store
from threadline.server.demo.command import demo_command
from threadline.server.evals.commands import eval_group, metrics_command

if TYPE_CHECKING:
    pass


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="threadline")
def cli() -> None:
    """Threadline: sessions, users and traces of LLM applications."""


cli.add_command(demo_command, "demo")
cli.add_command(eval_group, "eval")
cli.add_command(metrics_command, "metrics")


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
    from threadline.server.web.serve import run

    settings = load_settings(host=host, port=port, grpc_port=grpc_port, otlp_http_port=otlp_http_port,
                             database_url=database_url)
    try:
        run(settings)
    except StoreConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot start: {exc}") from exc


@cli.command()
@click.option("--project", required=True, help="Project to export.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True, allow_dash=True), default="-",
              help="File to write (JSON Lines); - for standard output.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]), default=None,
              help="Only sessions active since this UTC time.")
@db_option
def export(project: str, output: str, since: datetime | None, database_url: str | None) -> None:
    """Write a project's sessions, turn by turn, as JSON Lines (one session per line)."""
    from threadline.server.query.sessions import SessionFilter, iter_session_details
    from threadline.server.web.api.serialize import to_json

    _settings, store = open_configured_store(database_url)
    filters = SessionFilter(start=since.replace(tzinfo=UTC) if since else None)
    count = 0
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
    """Erase a whole project, one session, or every turn of one user (rollups are repaired)."""
    from threadline.server.query.projects import project_id
    from threadline.server.store.erase import erase_project, erase_turns

    if session_id and user_id:
        raise click.UsageError("pass --session or --user, not both")
    _settings, store = open_configured_store(database_url)
    with store.read() as conn:
        pid = project_id(conn, project)
    if pid is None:
        raise click.ClickException(f"no project {project!r} in this store")
    what = f"session {session_id!r}" if session_id else f"user {user_id!r}" if user_id else "the whole project"
    if not yes:
        click.confirm(f"Erase {what} of project {project!r}? This cannot be undone", abort=True)
    with store.write() as tx:
        if session_id or user_id:
            result = erase_turns(tx, pid, session_id=session_id, user_id=user_id)
        else:
            result = erase_project(tx, pid)
    click.echo(f"erased {what}: {result.spans} spans, {result.traces} turns, {result.sessions} sessions, "
               f"{result.users} users")


@cli.command()
@db_option
def doctor(database_url: str | None) -> None:
    """Check the configuration, the database and the ports, and say what to fix."""
    import socket

    from threadline.server.store.migrate import current_revision, head_revision

    settings, store = open_configured_store(database_url)
    problems = 0
    click.echo(f"database   {store.dialect}: {_redact(settings.resolved_database_url)}")
    current, head = current_revision(store), head_revision()
    click.echo(f"schema     revision {current} (newest {head})")
    if store.dialect == "sqlite":
        with store.read() as conn:
            version = conn.exec_driver_sql("select sqlite_version()").scalar()
            fts = conn.exec_driver_sql("select sqlite_compileoption_used('ENABLE_FTS5')").scalar()
        click.echo(f"sqlite     {version}, FTS5 {'yes' if fts else 'NO'}")
        problems += 0 if fts else 1
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
    store.dispose()
    if problems:
        raise click.ClickException(f"{problems} problem(s) found")
    click.echo("ok")


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=False)
