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
    evaluators = [get_evaluator(name) for name in options.evaluators]
    report = RunReport(project=options.project, evaluators=[e.name for e in evaluators])
    since_ns = to_ns(options.since) if options.since is not None else None

    def plan() -> tuple[int, int, list[tuple[Evaluator, str]]]:
        with store.read() as conn:
            pid = project_id(conn, options.project)
            if pid is None:
                raise ProjectNotFound(f"no project {options.project!r} in this store")
            matched = count_sessions(conn, pid, since_ns=since_ns, session_ids=options.session_ids)
            work = [(ev, sid) for ev in evaluators for sid in sessions_to_evaluate(
                conn, pid, ev.name, options.identifier, since_ns=since_ns, session_ids=options.session_ids,
                closed_only=options.closed_only, limit=options.limit)]
        return pid, matched, work

    pid, matched, work = await asyncio.to_thread(plan)
    report.sessions_matched = matched
    report.sessions_skipped = matched * len(evaluators) - len(work)
    judge = make_judge(settings) if any(e.annotator_kind == "LLM" for e in evaluators) and work else None
    ctx = EvalContext(judge=judge, token_budget=settings.judge_token_budget)
    queue: asyncio.Queue[tuple[Evaluator, str]] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    done = 0
    if on_progress:
        on_progress(0, len(work))

    async def worker() -> None:
        nonlocal done
        while True:
            try:
                evaluator, session_id = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await _evaluate_session(store, pid, options, evaluator, session_id, ctx, report)
            done += 1
            if on_progress:
                on_progress(done, len(work))

    try:
        workers = max(2, settings.judge_concurrency * 2)
        await asyncio.gather(*(worker() for _ in range(min(workers, len(work)) or 1)))
    finally:
        if judge is not None:
            report.judge = {"model": judge.model, **judge.usage.as_dict()}
            await judge.aclose()
    return report


async def _evaluate_session(
    store: Store, pid: int, options: RunOptions, evaluator: Evaluator, session_id: str, ctx: EvalContext,
    report: RunReport,
) -> None:
    snapshot_ns = time.time_ns()

    def read() -> tuple[list[Turn], dict[str, tuple[str | None, float | None]]]:
        with store.read() as conn:
            detail = get_session(conn, options.project, session_id)
            if detail is None:
                return [], {}
            found = existing_targets(conn, pid, "trace", evaluator.name, options.identifier,
                                     [t.trace_id for t in detail.turns])
        return detail.turns, {k: (v.label, v.score) for k, v in found.items()}

    turns, verdicts = await asyncio.to_thread(read)
    if not turns:
        return
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
        writes.append(_write(evaluator, "trace", trace_id, outcome, options.identifier, {"session_id": session_id}))
    session_result: EvalResult | None = None
    if not failed:
        try:
            if evaluator.judges_session:
                session_result = await evaluator.evaluate_session(turns, ctx)
            else:
                session_result = evaluator.derive_session(
                    [v for v in verdicts.values() if v[0] != "not_applicable"])
        except (JudgeError, ValueError) as exc:
            report.failures.append(Failure(evaluator.name, session_id, None, str(exc)))
    if session_result is not None:
        writes.append(_write(evaluator, "session", session_id, session_result, options.identifier,
                             {"turns": len(turns)}))

    def write() -> None:
        with store.write() as tx:
            upsert_annotations(tx, pid, writes, snapshot_ns)

    if writes:
        await asyncio.to_thread(write)
    report.turn_annotations += sum(1 for w in writes if w.target_kind == "trace")
    if session_result is not None:
        report.session_annotations += 1
        report.sessions_evaluated += 1


def _write(evaluator: Evaluator, kind: str, target_id: str, result: EvalResult, identifier: str,
           extra: dict[str, Any]) -> AnnotationWrite:
    return AnnotationWrite(
        target_kind=kind, target_id=target_id, name=evaluator.name, annotator_kind=evaluator.annotator_kind,
        label=result.label, score=result.score, explanation=result.explanation, identifier=identifier,
        metadata={**result.metadata, **extra, "evaluator": evaluator.name},
    )
