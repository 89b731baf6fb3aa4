"""Run evaluators over a project's sessions: resumable, idempotent, concurrent, honest about failures.

For each (evaluator, session) still due — no session annotation of that evaluator, or one older
than the session's last activity — the runner reads the session, judges the turns that have no
turn annotation yet, then the session, and writes everything of that session in one transaction.
Annotations carry ``updated_ns`` = the time the data was read, so a session that changes while it
is being judged stays due. A judge failure (after the judge's retries) is reported and leaves the
session due (its successful turn verdicts are kept), so the next run only redoes what failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from threadline.server.evals.evaluators import EvalContext, EvalResult, Evaluator, get_evaluator
from threadline.server.evals.judge import Judge, JudgeError
from threadline.server.model import Turn
from threadline.server.query.annotations import existing_targets
from threadline.server.query.lifecycle import count_sessions, sessions_to_evaluate
from threadline.server.query.projects import project_id
from threadline.server.query.sessions import get_session
from threadline.server.query.timeconv import to_ns
from threadline.server.settings import Settings
from threadline.server.store.annotations import AnnotationWrite, upsert_annotations
from threadline.server.store.engine import Store

DEFAULT_IDENTIFIER = "threadline"


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What to evaluate."""

    project: str
    evaluators: Sequence[str]
    since: datetime | None = None
    session_ids: Sequence[str] | None = None
    identifier: str = DEFAULT_IDENTIFIER
    closed_only: bool = False
    limit: int | None = None
    builtin_only: bool = False  # runs asked for over the network never load package.module:attribute


@dataclass(frozen=True, slots=True)
class Failure:
    """One judgement that could not be made."""

    evaluator: str
    session_id: str
    trace_id: str | None
    message: str


@dataclass(slots=True)
class RunReport:
    """What a run did, what it skipped, what failed and what the judge cost."""

    project: str
    evaluators: list[str]
    sessions_matched: int = 0
    sessions_skipped: int = 0
    sessions_evaluated: int = 0
    session_annotations: int = 0
    turn_annotations: int = 0
    failures: list[Failure] = field(default_factory=list)
    judge: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No judgement failed."""
        return not self.failures


ProgressCallback = Callable[[int, int], None]


class ProjectNotFound(LookupError):
    """The project has no data."""


def run_evaluations(
    store: Store, settings: Settings, options: RunOptions, on_progress: ProgressCallback | None = None
) -> RunReport:
    """Evaluate the due sessions of a project (blocking; runs its own event loop)."""
    return asyncio.run(run_evaluations_async(store, settings, options, on_progress))


def make_judge(settings: Settings) -> Judge:
    """The judge described by the settings (raises JudgeNotConfigured without a base URL)."""
    return Judge(settings.judge_base_url, settings.judge_model, settings.judge_api_key,
                 concurrency=settings.judge_concurrency, timeout=settings.judge_timeout_seconds,
                 max_retries=settings.judge_max_retries, backoff=settings.judge_retry_backoff_seconds)


async def run_evaluations_async(
    store: Store, settings: Settings, options: RunOptions, on_progress: ProgressCallback | None = None
) -> RunReport:
    """The asynchronous body of :func:`run_evaluations`."""
    evaluators = [get_evaluator(name, builtin_only=options.builtin_only) for name in options.evaluators]
    report = RunReport(project=options.project, evaluators=[e.name for e in evaluators])
    since_ns = to_ns(options.since) if options.since is not None else None

    def plan() -> tuple[int, int, dict[str, list[Evaluator]]]:
        with store.read() as conn:
            pid = project_id(conn, options.project)
            if pid is None:
                raise ProjectNotFound(f"no project {options.project!r} in this store")
            matched = count_sessions(conn, pid, since_ns=since_ns, session_ids=options.session_ids,
                                     closed_only=options.closed_only)
            due: dict[str, list[Evaluator]] = {}
            for ev in evaluators:
                for sid in sessions_to_evaluate(
                        conn, pid, ev.name, options.identifier, since_ns=since_ns, session_ids=options.session_ids,
                        closed_only=options.closed_only, limit=options.limit):
                    due.setdefault(sid, []).append(ev)
        return pid, matched, due

    pid, matched, due = await asyncio.to_thread(plan)
    pairs = sum(len(v) for v in due.values())
    report.sessions_matched = matched
    report.sessions_skipped = matched * len(evaluators) - pairs
    judge = make_judge(settings) if any(e.annotator_kind == "LLM" for e in evaluators) and due else None
    ctx = EvalContext(judge=judge, token_budget=settings.judge_token_budget)
    queue: asyncio.Queue[tuple[str, list[Evaluator]]] = asyncio.Queue()
    for item in due.items():
        queue.put_nowait(item)
    done = 0
    if on_progress:
        on_progress(0, pairs)

    async def worker() -> None:
        nonlocal done
        while True:
            try:
                session_id, session_evaluators = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await _evaluate_session(store, pid, options, session_evaluators, session_id, ctx, report)
            done += len(session_evaluators)
            if on_progress:
                on_progress(done, pairs)

    try:
        workers = max(2, settings.judge_concurrency * 2)
        await asyncio.gather(*(worker() for _ in range(min(workers, len(due)) or 1)))
    finally:
        if judge is not None:
            report.judge = {"model": judge.model, **judge.usage.as_dict()}
            await judge.aclose()
    return report


Verdicts = dict[str, tuple[str | None, float | None]]


async def _evaluate_session(
    store: Store, pid: int, options: RunOptions, evaluators: list[Evaluator], session_id: str, ctx: EvalContext,
    report: RunReport,
) -> None:
    """Read a session once, run every due evaluator on it, write all their annotations in one transaction."""
    snapshot_ns = time.time_ns()

    def read() -> tuple[list[Turn], dict[str, Verdicts]]:
        with store.read() as conn:
            detail = get_session(conn, options.project, session_id)
            if detail is None:
                return [], {}
            trace_ids = [t.trace_id for t in detail.turns]
            found = {ev.name: {k: (v.label, v.score) for k, v in existing_targets(
                conn, pid, "trace", ev.name, options.identifier, trace_ids).items()} for ev in evaluators}
        return detail.turns, found

    turns, existing = await asyncio.to_thread(read)
    if not turns:
        return
    results = await asyncio.gather(*(
        _judge_session(ev, session_id, turns, existing[ev.name], options.identifier, ctx, report)
        for ev in evaluators))
    writes = [w for ws in results for w in ws]

    def write() -> None:
        with store.write() as tx:
            upsert_annotations(tx, pid, writes, snapshot_ns)

    if writes:
        await asyncio.to_thread(write)
    report.turn_annotations += sum(1 for w in writes if w.target_kind == "trace")
    finished = sum(1 for w in writes if w.target_kind == "session")
    report.session_annotations += finished
    report.sessions_evaluated += finished


async def _judge_session(
    evaluator: Evaluator, session_id: str, turns: list[Turn], verdicts: Verdicts, identifier: str,
    ctx: EvalContext, report: RunReport,
) -> list[AnnotationWrite]:
    """One evaluator on one session: the turns it has not judged yet, then the session verdict."""
    pending = [i for i, turn in enumerate(turns)
               if evaluator.judges_turns and evaluator.applies_to(turn) and turn.trace_id not in verdicts]
    outcomes = await asyncio.gather(*(evaluator.evaluate_turn(turns, i, ctx) for i in pending),
                                    return_exceptions=True)
    writes: list[AnnotationWrite] = []
    failed = False
    for i, outcome in zip(pending, outcomes, strict=True):
        trace_id = turns[i].trace_id
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, JudgeError | ValueError):
                raise outcome
            failed = True
            report.failures.append(Failure(evaluator.name, session_id, trace_id, str(outcome)))
            continue
        verdicts[trace_id] = (outcome.label, outcome.score)
        writes.append(_write(evaluator, "trace", trace_id, outcome, identifier, {"session_id": session_id}))
    if failed:
        return writes  # the session stays due; the next run judges only the failed turns
    try:
        if evaluator.judges_session:
            result = await evaluator.evaluate_session(turns, ctx)
        else:
            result = evaluator.derive_session([v for v in verdicts.values() if v[0] != "not_applicable"])
    except (JudgeError, ValueError) as exc:
        report.failures.append(Failure(evaluator.name, session_id, None, str(exc)))
        return writes
    writes.append(_write(evaluator, "session", session_id, result, identifier, {"turns": len(turns)}))
    return writes


def _write(evaluator: Evaluator, kind: str, target_id: str, result: EvalResult, identifier: str,
           extra: dict[str, Any]) -> AnnotationWrite:
    return AnnotationWrite(
        target_kind=kind, target_id=target_id, name=evaluator.name, annotator_kind=evaluator.annotator_kind,
        label=result.label, score=result.score, explanation=result.explanation, identifier=identifier,
        metadata={**result.metadata, **extra, "evaluator": evaluator.name},
    )
