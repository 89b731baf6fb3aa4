"""Evaluation runs started through the API: each runs in a background thread with live progress.

Runs are kept in memory (the server's lifetime); a run interrupted by a restart is simply started
again, and — like every run — only does what is still due.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from threadline.server.evals.runner import RunOptions, RunReport, run_evaluations
from threadline.server.settings import Settings
from threadline.server.store.engine import Store

log = logging.getLogger("threadline.evals")

#: Finished runs kept for inspection.
KEEP_FINISHED = 100


@dataclass(slots=True)
class EvalJob:
    """One run: what was asked, how far it got, and its report."""

    id: int
    options: RunOptions
    state: str = "running"  # running | done | failed
    done: int = 0
    total: int | None = None
    started_ns: int = field(default_factory=time.time_ns)
    finished_ns: int | None = None
    report: RunReport | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        report = self.report
        return {
            "id": self.id, "project": self.options.project, "evaluators": list(self.options.evaluators),
            "state": self.state, "done": self.done, "total": self.total, "error": self.error,
            "report": None if report is None else {
                "sessions_matched": report.sessions_matched, "sessions_skipped": report.sessions_skipped,
                "sessions_evaluated": report.sessions_evaluated,
                "session_annotations": report.session_annotations, "turn_annotations": report.turn_annotations,
                "failures": [{"evaluator": f.evaluator, "session_id": f.session_id, "trace_id": f.trace_id,
                              "message": f.message} for f in report.failures[:100]],
                "failure_count": len(report.failures), "judge": report.judge,
            },
        }


class EvalJobs:
    """Start runs in threads and look them up by id."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings, self.store = settings, store
        self._jobs: dict[int, EvalJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, options: RunOptions) -> EvalJob:
        """Start a run now; return its job (state ``running``)."""
        with self._lock:
            job = EvalJob(id=next(self._ids), options=options)
            self._jobs[job.id] = job
            finished = sorted(j.id for j in self._jobs.values() if j.state != "running")
            for old in finished[:-KEEP_FINISHED]:
                del self._jobs[old]
        threading.Thread(target=self._run, args=(job,), name=f"threadline-eval-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: int) -> EvalJob | None:
        """A job by id."""
        with self._lock:
            return self._jobs.get(job_id)

    def _run(self, job: EvalJob) -> None:
        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        try:
            job.report = run_evaluations(self.store, self.settings, job.options, progress)
            job.state = "done"
        except Exception as exc:  # reported in the job, and logged
            log.exception("evaluation run %d failed", job.id)
            job.state, job.error = "failed", str(exc)
        finally:
            job.finished_ns = time.time_ns()
