"""``threadline eval run|list`` and ``threadline metrics``: thin commands over the runner and the metrics query.

Both work directly on the store ``serve`` uses (``--db`` / ``THREADLINE_DATABASE_URL`` /
``THREADLINE_HOME``), also while a server runs.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from threadline.server.cli_store import db_option, open_configured_store

_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """``2026-11-21``, ``2026-11-21T10:00:00[Z]`` (UTC unless an offset is given) or ``7d``/``24h``/``30m`` ago."""
    if value is None:
        return None
    match = _RELATIVE.match(value.strip())
    if match:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: use 2026-11-21, 2026-11-21T10:00:00Z or a duration like 7d") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)



@click.group("eval")
def eval_group() -> None:
    """Evaluate sessions and turns with LLM-as-judge and code evaluators."""


@eval_group.command("list")
def list_command() -> None:
    """List the built-in evaluators."""
    from threadline.server.evals.evaluators import BUILTIN

    for name, evaluator in sorted(BUILTIN.items()):
        flags = (("session", evaluator.judges_session), ("turn", evaluator.judges_turns))
        levels = "+".join(x for x, on in flags if on)
        click.echo(f"{name:<24} {evaluator.annotator_kind:<5} {levels:<13} {evaluator.description}")


@eval_group.command("run")
@click.option("--project", required=True, help="Project whose sessions to evaluate.")
@click.option("--evaluator", "evaluators", multiple=True, required=True,
              help="Evaluator name (repeatable): see `threadline eval list`, or package.module:attribute.")
@click.option("--since", default=None, help="Only sessions active since: 2026-11-21, …T10:00:00Z, or 7d / 24h / 30m.")
@click.option("--sessions", "session_lists", multiple=True, help="Only these sessions (comma-separated, repeatable).")
@click.option("--session", "single_sessions", multiple=True, help="Only this session (exact id, repeatable).")
@click.option("--identifier", default="threadline", show_default=True,
              help="Annotation identifier: runs with the same identifier update each other's annotations.")
@click.option("--closed-only", is_flag=True, help="Only sessions that are closed.")
@db_option
def run_command(project: str, evaluators: tuple[str, ...], since: str | None, session_lists: tuple[str, ...],
                single_sessions: tuple[str, ...], identifier: str, closed_only: bool, database_url: str | None) -> None:
    """Evaluate a project's sessions; already evaluated sessions are skipped (resumable)."""
    from threadline.server.evals.evaluators import get_evaluator
    from threadline.server.evals.judge import JudgeNotConfigured
    from threadline.server.evals.runner import ProjectNotFound, RunOptions, run_evaluations

    for name in evaluators:
        try:
            get_evaluator(name)
        except KeyError as exc:
            raise click.BadParameter(str(exc.args[0]), param_hint="--evaluator") from exc
    ids = [s for chunk in session_lists for s in chunk.split(",") if s] + list(single_sessions)
    settings, store = open_configured_store(database_url)
    options = RunOptions(project=project, evaluators=list(evaluators), since=parse_time(since),
                         session_ids=ids or None, identifier=identifier, closed_only=closed_only)
    console = Console(stderr=True)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console)
    task = progress.add_task(f"evaluating {project}", total=None)
    try:
        with progress:
            report = run_evaluations(store, settings, options,
                                     lambda done, total: progress.update(task, completed=done, total=total))
    except JudgeNotConfigured as exc:
        raise click.UsageError(str(exc)) from exc
    except ProjectNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.dispose()
    click.echo(
        f"{report.sessions_matched} session(s) matched, {report.sessions_skipped} (session, evaluator) pair(s) "
        f"already evaluated and skipped, {report.sessions_evaluated} evaluated: "
        f"{report.session_annotations} session and {report.turn_annotations} turn annotation(s) written")
    if report.judge:
        j = report.judge
        click.echo(f"judge {j['model']}: {j['requests']} request(s), {j['retries']} retr(y/ies), "
                   f"{j['prompt_tokens']} prompt + {j['completion_tokens']} completion tokens, "
                   f"${j['cost_usd']:.6f}")
    if report.failures:
        for failure in report.failures[:20]:
            where = f" turn {failure.trace_id}" if failure.trace_id else ""
            click.echo(f"FAILED {failure.evaluator} session {failure.session_id!r}{where}: {failure.message}", err=True)
        more = len(report.failures) - 20
        raise click.ClickException(
            f"{len(report.failures)} judgement(s) failed{f' ({more} not shown)' if more > 0 else ''}; "
            "run the same command again to retry only what is missing")


@click.command("metrics")
@click.option("--project", required=True, help="Project to measure.")
@click.option("--group-by", type=click.Choice(["session", "user", "model", "tag", "day"]), default="day",
              show_default=True)
@click.option("--metric", "metrics", multiple=True,
              help="agg(field), repeatable: e.g. sum(tokens), p95(latency), mean(score:user_frustration), "
              "rate(label:user_frustration=frustrated). See docs/evals.md.")
@click.option("--since", "start", default=None, help="Turns started since: 2026-11-21, …T10:00:00Z, or 7d / 24h.")
@click.option("--until", "end", default=None, help="Turns started until (same formats).")
@click.option("--user", "user_id", default=None, help="Only this user's turns.")
@click.option("--session", "session_id", default=None, help="Only this session's turns.")
@click.option("--model", default=None, help="Only turns with an LLM call of this model.")
@click.option("--tag", default=None, help="Only turns with this tag.")
@click.option("--order-by", default=None, help="Metric to sort by (default: the first).")
@click.option("--order", type=click.Choice(["asc", "desc"]), default="desc", show_default=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@db_option
def metrics_command(project: str, group_by: str, metrics: tuple[str, ...], start: str | None, end: str | None,
                    user_id: str | None, session_id: str | None, model: str | None, tag: str | None,
                    order_by: str | None, order: str, limit: int, as_json: bool, database_url: str | None) -> None:
    """Counts, sums, means and percentiles of tokens, cost, latency, turns, errors and eval scores, per group."""
    from threadline.server.query.errors import InvalidQuery
    from threadline.server.query.metrics import DEFAULT_METRICS, MetricsFilter, compute_metrics

    _settings, store = open_configured_store(database_url)
    try:
        with store.read() as conn:
            result = compute_metrics(
                conn, project, group_by, list(metrics) or list(DEFAULT_METRICS),
                MetricsFilter(start=parse_time(start), end=parse_time(end), user_id=user_id, session_id=session_id,
                              model=model, tag=tag), order_by=order_by, order=order, limit=limit)
    except InvalidQuery as exc:
        raise click.UsageError(str(exc)) from exc
    finally:
        store.dispose()
    if as_json:
        click.echo(json.dumps({"group_by": result.group_by, "metrics": result.metrics,
                               "data": [{"group": r.group, "values": r.values} for r in result.rows]}, indent=2))
        return
    table = Table(title=f"{project} by {group_by}")
    table.add_column(group_by, overflow="fold")
    for name in result.metrics:
        table.add_column(name, justify="right", overflow="fold")
    for row in result.rows:
        table.add_row(row.group, *("-" if row.values[m] is None else f"{row.values[m]:.6g}" for m in result.metrics))
    Console().print(table)
