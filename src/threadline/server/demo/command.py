"""``threadline demo``: fill a project with realistic generated conversations over OTLP.

The default endpoint is the main port of ``threadline serve`` as the settings name it
(``THREADLINE_HOST`` / ``THREADLINE_PORT``, read through :class:`~threadline.server.settings.Settings`).
Before generating anything the command sends an empty OTLP request to the endpoint, so a wrong
address, a wrong path (404) or a refused key is reported clearly instead of mid-way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import ip_address
from urllib.parse import urlsplit

import click
import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from threadline import conventions as cv
from threadline.server.cli_store import load_settings
from threadline.server.demo.conversations import plan_demo
from threadline.server.demo.traffic import DemoExportError, DemoSender
from threadline.server.settings import Settings

TRACES_PATH = "/v1/traces"


@click.command("demo")
@click.option("--endpoint", default=None,
              help="OTLP/HTTP traces endpoint of a running Threadline server "
              "[default: http://THREADLINE_HOST:THREADLINE_PORT/v1/traces, i.e. http://127.0.0.1:6006/v1/traces].")
@click.option("--project", default="demo", show_default=True, help="Project to fill.")
@click.option("--sessions", type=click.IntRange(1, 100_000), default=300, show_default=True,
              help="Number of conversations to generate.")
@click.option("--seed", type=int, default=7, show_default=True,
              help="Random seed: the same seed generates the same conversations (and ids, so a rerun adds nothing).")
@click.option("--days", type=click.FloatRange(min=0.01, max=3650), default=7.0, show_default=True,
              help="Spread the conversations over this many days before now.")
@click.option("--api-key", envvar="THREADLINE_API_KEY", default=None,
              help="API key (role ingest or admin) for a server with THREADLINE_AUTH=true [env: THREADLINE_API_KEY].")
def demo_command(endpoint: str | None, project: str, sessions: int, seed: int, days: float,
                 api_key: str | None) -> None:
    """Fill a project with generated conversations (users, tools, errors, frustrated users).

    Two thirds are traced with an agent span per user message; one third like the OpenAI
    instrumentor with no parent span (one trace per LLM call, tool loops, Markdown replies).
    """
    endpoint = endpoint or default_endpoint(load_settings())
    _check_endpoint(endpoint, project, api_key)
    plans = plan_demo(sessions, seed, days, datetime.now(UTC))
    sender = DemoSender(endpoint, project, seed, api_key=api_key)
    total_spans = sum(t.span_count for p in plans for t in p.turns)
    try:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[spans]} spans sent"), TimeElapsedColumn()) as progress:
            task = progress.add_task(f"demo → {project}", total=len(plans), spans=0)
            for plan in plans:
                sender.emit(plan)
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


def default_endpoint(settings: Settings) -> str:
    """The traces endpoint of the server these settings start: the main port, else the OTLP/HTTP
    port; a wildcard bind address is reached on loopback."""
    port = settings.port or settings.otlp_http_port
    if not port:
        raise click.UsageError("THREADLINE_PORT and THREADLINE_OTLP_HTTP_PORT are both 0: pass --endpoint")
    host = settings.host.strip("[]") or "127.0.0.1"
    try:
        address = ip_address(host)
    except ValueError:
        return f"http://{host}:{port}{TRACES_PATH}"
    if address.is_unspecified:
        host = "127.0.0.1" if address.version == 4 else "::1"
    return f"http://{host}:{port}{TRACES_PATH}" if ":" not in host else f"http://[{host}]:{port}{TRACES_PATH}"


def _check_endpoint(endpoint: str, project: str, api_key: str | None = None) -> None:
    """Fail fast, with a hint, when nothing receives traces at ``endpoint``: an empty OTLP request
    (no spans) must be accepted."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"not an http(s) URL: {endpoint!r}", param_hint="--endpoint")
    headers = {"Content-Type": "application/x-protobuf", cv.PROJECT_HEADER: project}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        response = httpx.post(endpoint, content=b"", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise click.ClickException(
            f"cannot reach {endpoint} ({exc}); start a server with `threadline serve`, or set "
            "THREADLINE_PORT / THREADLINE_HOST (or --endpoint) to where it listens") from exc
    if response.status_code == 404:
        raise click.ClickException(
            f"{endpoint} answered 404 Not Found: a server listens there, but nothing receives traces at "
            f"{parts.path or '/'!r}. Threadline's OTLP/HTTP endpoint is "
            f"{parts.scheme}://{parts.netloc}{TRACES_PATH}")
    if response.status_code == 401:
        raise click.ClickException(f"{endpoint} answered 401: this server requires an API key (THREADLINE_AUTH); "
                                   "pass one of role ingest with --api-key or THREADLINE_API_KEY"
                                   + (" (the one given was not accepted)" if api_key else ""))
    if response.status_code == 403:
        raise click.ClickException(f"{endpoint} answered 403: this API key may not send spans to project "
                                   f"{project!r} (it needs role ingest or admin, and that project)")
    if response.status_code >= 300:
        raise click.ClickException(f"{endpoint} answered {response.status_code} to an empty OTLP request; "
                                   "is it a Threadline (or OTLP/HTTP) traces endpoint?")
