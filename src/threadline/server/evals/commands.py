"""``threadline eval run|list`` and ``threadline metrics``: thin commands over the runner and the metrics query.

Both work directly on the store ``serve`` uses (``--db`` / ``THREADLINE_DATABASE_URL`` /
``THREADLINE_HOME``), also while a server runs.
"""

from __future__ import annotations

import json
from datetime import datetime

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from threadline.server.cli_args import TIME, TIME_FORMATS, require_known
from threadline.server.cli_store import db_option, open_configured_store
from threadline.server.query.metrics import GROUPS


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
        better = f"{evaluator.direction.split('_')[0]} is better, bad: {evaluator.bad_label}"
        click.echo(f"{name:<24} {evaluator.annotator_kind:<5} {levels:<13} {better:<38} {evaluator.description}")


@eval_group.command("run")
@click.option("--project", required=True, help="Project whose sessions to evaluate.")
@click.option("--evaluator", "evaluators", multiple=True, required=True,
              help="Evaluator name (repeatable): see `threadline eval list`, or package.module:attribute.")
@click.option("--since", type=TIME, default=None, help=f"Only sessions active since: {TIME_FORMATS}.")
@click.option("--sessions", "session_lists", multiple=True, help="Only these sessions (comma-separated, repeatable).")
@click.option("--session", "single_sessions", multiple=True, help="Only this session (exact id, repeatable).")
@click.option("--identifier", default="threadline", show_default=True,
              help="Annotation identifier: runs with the same identifier update each other's annotations.")
@click.option("--closed-only", is_flag=True, help="Only sessions that are closed.")
@db_option
def run_command(project: str, evaluators: tuple[str, ...], since: datetime | None, session_lists: tuple[str, ...],
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
    try:
        with store.read() as conn:
            require_known(conn, project, sessions=ids)
    except click.ClickException:
        store.dispose()
        raise
    options = RunOptions(project=project, evaluators=list(evaluators), since=since,
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
@click.option("--group-by", type=click.Choice(GROUPS), default="day",
              show_default=True)
@click.option("--metric", "metrics", multiple=True,
              help="agg(field), repeatable: e.g. sum(tokens), p95(latency), mean(score:user_frustration), "
              "rate(label:user_frustration=frustrated). See docs/evals.md.")
@click.option("--since", "start", type=TIME, default=None, help=f"Turns started since: {TIME_FORMATS}.")
@click.option("--until", "end", type=TIME, default=None, help="Turns started until (same formats).")
@click.option("--user", "user_id", default=None, help="Only this user's turns.")
@click.option("--session", "session_id", default=None, help="Only this session's turns.")
@click.option("--model", default=None, help="Only turns with an LLM call of this model.")
@click.option("--tag", default=None, help="Only turns with this tag.")
@click.option("--order-by", default=None, help="Metric to sort by (default: the first).")
@click.option("--order", type=click.Choice(["asc", "desc"]), default="desc", show_default=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@db_option
def metrics_command(project: str, group_by: str, metrics: tuple[str, ...], start: datetime | None,
                    end: datetime | None,
                    user_id: str | None, session_id: str | None, model: str | None, tag: str | None,
                    order_by: str | None, order: str, limit: int, as_json: bool, database_url: str | None) -> None:
    """Counts, sums, means and percentiles of tokens, cost, latency, turns, errors and eval scores, per group."""
    from threadline.server.query.errors import InvalidQuery
    from threadline.server.query.metrics import DEFAULT_METRICS, MetricsFilter, compute_metrics

    _settings, store = open_configured_store(database_url)
    try:
        with store.read() as conn:
            require_known(conn, project, sessions=[session_id] if session_id is not None else [], user=user_id)
            result = compute_metrics(
                conn, project, group_by, list(metrics) or list(DEFAULT_METRICS),
                MetricsFilter(start=start, end=end, user_id=user_id, session_id=session_id,
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
