"""``threadline demo``: fill a project with realistic generated conversations over OTLP."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from urllib.parse import urlsplit

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from threadline.server.demo.conversations import plan_demo
from threadline.server.demo.traffic import DemoExportError, DemoSender, emit_session

DEFAULT_ENDPOINT = "http://127.0.0.1:6006/v1/traces"


@click.command("demo")
@click.option("--endpoint", default=DEFAULT_ENDPOINT, show_default=True,
              help="OTLP/HTTP traces endpoint of a running Threadline server.")
@click.option("--project", default="demo", show_default=True, help="Project to fill.")
@click.option("--sessions", type=click.IntRange(1, 100_000), default=300, show_default=True,
              help="Number of conversations to generate.")
@click.option("--seed", type=int, default=7, show_default=True,
              help="Random seed: the same seed generates the same conversations (and ids, so a rerun adds nothing).")
@click.option("--days", type=click.FloatRange(min=0.01, max=3650), default=7.0, show_default=True,
              help="Spread the conversations over this many days before now.")
def demo_command(endpoint: str, project: str, sessions: int, seed: int, days: float) -> None:
    """Fill a project with generated conversations (users, tools, errors, frustrated users)."""
    _check_reachable(endpoint)
    plans = plan_demo(sessions, seed, days, datetime.now(UTC))
    sender = DemoSender(endpoint, project, seed)
    total_spans = sum(t.span_count for p in plans for t in p.turns)
    try:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[spans]} spans sent"), TimeElapsedColumn()) as progress:
            task = progress.add_task(f"demo → {project}", total=len(plans), spans=0)
            for plan in plans:
                emit_session(sender.tracer, plan)
                sender.flush()
                progress.update(task, advance=1, spans=sender.sent)
            sender.flush(force=True)
            progress.update(task, spans=sender.sent)
    except DemoExportError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        sender.close()
    users = len({p.user_id for p in plans})
    turns = sum(len(p.turns) for p in plans)
    click.echo(f"Sent {total_spans} spans: {len(plans)} sessions, {turns} turns, {users} users "
               f"to project {project!r} at {endpoint}.")


def _check_reachable(endpoint: str) -> None:
    """Fail fast, with a hint, when nothing listens at ``endpoint``."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"not an http(s) URL: {endpoint!r}", param_hint="--endpoint")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=5).close()
    except OSError as exc:
        raise click.ClickException(f"cannot reach {endpoint} ({exc}); start a server with `threadline serve`") from exc
