"""Evaluation runs started through the API: each runs in a background thread, recorded in ``eval_runs``.

A run is stored ``queued`` when asked for, ``running`` once its thread starts, then ``done`` or
``failed`` with its report, so ``GET …/eval-runs/{id}`` answers after a restart and from any
server sharing the database. A run whose process is gone reads ``interrupted`` (and is stored so):
its ``runner`` (``host:pid:token``) is this process under an earlier token, or a dead process of
this host, or its heartbeat (refreshed while it runs) is older than :data:`STALE_SECONDS`. An
interrupted run is started again by asking again; like every run it only does what is still due.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime
from typing import Any

from threadline.server.evals.runner import RunOptions, RunReport, run_evaluations
from threadline.server.query.timeconv import to_datetime
from threadline.server.settings import Settings
from threadline.server.store.engine import Store
from threadline.server.store.eval_runs import UNFINISHED, EvalRunRow, create_eval_run, get_eval_run, update_eval_run

log = logging.getLogger("threadline.evals")

#: How often a running run's heartbeat (and progress) is written, in seconds.
HEARTBEAT_SECONDS = 15.0
#: A run of another host whose heartbeat is older than this reads ``interrupted``.
STALE_SECONDS = 120.0
#: Progress is written at most this often, in seconds.
PROGRESS_SECONDS = 1.0


def report_dict(report: RunReport) -> dict[str, Any]:
    """JSON-ready view of a run's report (at most 100 failures listed, all counted)."""
    return {
        "sessions_matched": report.sessions_matched, "sessions_skipped": report.sessions_skipped,
        "sessions_evaluated": report.sessions_evaluated,
        "session_annotations": report.session_annotations, "turn_annotations": report.turn_annotations,
        "failures": [{"evaluator": f.evaluator, "session_id": f.session_id, "trace_id": f.trace_id,
                      "message": f.message} for f in report.failures[:100]],
        "failure_count": len(report.failures), "judge": report.judge,
    }


def _time(ns: int | None) -> datetime | None:
    return to_datetime(ns) if ns is not None else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Progress:
    """Progress of a run in this process, written to the store by its heartbeat thread."""

    def __init__(self) -> None:
        self.done: int = 0
        self.total: int | None = None
        self.finished = threading.Event()  # the run returned (its heartbeat stops)
        self.recorded = threading.Event()  # its end is stored


class EvalJobs:
    """Start runs in threads, record them in the store and look them up by id."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings, self.store = settings, store
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.runner = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:12]}"
        self._live: dict[int, _Progress] = {}
        self._lock = threading.Lock()

    def start(self, project_id: int, options: RunOptions) -> int:
        """Record a run and start it now; return its id."""
        filters = {"session_ids": list(options.session_ids) if options.session_ids is not None else None,
                   "since": options.since.isoformat() if options.since is not None else None,
                   "identifier": options.identifier, "closed_only": options.closed_only}
        progress = _Progress()
        with self._lock:  # registered before anyone can read it as orphaned
            with self.store.write() as tx:
                run_id = create_eval_run(tx, project_id, list(options.evaluators), filters, self.runner,
                                         time.time_ns())
            self._live[run_id] = progress
        threading.Thread(target=self._run, args=(run_id, options, progress), name=f"threadline-eval-{run_id}",
                         daemon=True).start()
        return run_id

    def get(self, project: str, project_id: int, run_id: int) -> dict[str, Any] | None:
        """A run of the project as JSON-ready data, or ``None``; an orphaned unfinished run becomes interrupted."""
        with self.store.read() as conn:
            row = get_eval_run(conn, project_id, run_id)
        if row is None:
            return None
        if row.status in UNFINISHED and self._orphaned(row):
            with self.store.write() as tx:
                update_eval_run(tx, row.id, status="interrupted", finished_ns=time.time_ns(),
                                error="the server running this evaluation stopped before it finished")
            with self.store.read() as conn:
                row = get_eval_run(conn, project_id, run_id) or row
        with self._lock:
            live = self._live.get(run_id)
        return self._view(project, row, live)

    def wait(self, run_id: int, timeout: float | None = None) -> bool:
        """Block until a run started here has stored its end (``True``), or ``timeout`` seconds passed."""
        with self._lock:
            live = self._live.get(run_id)
        return live is None or live.recorded.wait(timeout)

    def _orphaned(self, row: EvalRunRow) -> bool:
        if row.runner == self.runner:
            with self._lock:
                return row.id not in self._live
        host, _, rest = (row.runner or "").partition(":")
        pid_text = rest.partition(":")[0]
        if host == self.host and pid_text.isdigit():
            pid = int(pid_text)
            if pid == self.pid or not _pid_alive(pid):  # an earlier instance of this process, or a dead one
                return True
        beat = row.heartbeat_ns or row.created_ns
        return time.time_ns() - beat > STALE_SECONDS * 1e9

    @staticmethod
    def _view(project: str, row: EvalRunRow, live: _Progress | None) -> dict[str, Any]:
        done, total = row.done, row.total
        if live is not None and row.status in UNFINISHED:
            done, total = live.done, live.total
        return {
            "id": row.id, "project": project, "evaluators": row.evaluators, "filters": row.filters,
            "state": row.status, "done": done, "total": total, "error": row.error, "report": row.report,
            "created_at": _time(row.created_ns), "started_at": _time(row.started_ns),
            "finished_at": _time(row.finished_ns),
        }

    def _run(self, run_id: int, options: RunOptions, progress: _Progress) -> None:
        def on_progress(done: int, total: int) -> None:
            progress.done, progress.total = done, total

        beat = threading.Thread(target=self._heartbeat, args=(run_id, progress), name=f"threadline-eval-{run_id}-beat",
                                daemon=True)
        try:
            with self.store.write() as tx:
                now = time.time_ns()
                update_eval_run(tx, run_id, status="running", started_ns=now, heartbeat_ns=now)
            beat.start()
            report = run_evaluations(self.store, self.settings, options, on_progress)
            final: dict[str, Any] = {"status": "done", "report": report_dict(report)}
        except Exception as exc:  # reported in the run, and logged
            log.exception("evaluation run %d failed", run_id)
            final = {"status": "failed", "error": str(exc)}
        finally:
            progress.finished.set()
        try:
            with self.store.write() as tx:
                update_eval_run(tx, run_id, done=progress.done, total=progress.total, finished_ns=time.time_ns(),
                                **final)
        except Exception:
            log.exception("could not record the end of evaluation run %d", run_id)
        finally:
            with self._lock:
                self._live.pop(run_id, None)
            progress.recorded.set()

    def _heartbeat(self, run_id: int, progress: _Progress) -> None:
        """Write the run's progress when it changes (at most every second) and a heartbeat regularly."""
        written: tuple[int, int | None] = (-1, None)
        last_beat = time.monotonic()
        while not progress.finished.wait(PROGRESS_SECONDS):
            current = (progress.done, progress.total)
            if current == written and time.monotonic() - last_beat < HEARTBEAT_SECONDS:
                continue
            try:
                with self.store.write() as tx:
                    update_eval_run(tx, run_id, done=current[0], total=current[1], heartbeat_ns=time.time_ns())
                written, last_beat = current, time.monotonic()
            except Exception:  # the store may be down for a moment; the next beat retries
                log.warning("could not record the progress of evaluation run %d", run_id, exc_info=True)
