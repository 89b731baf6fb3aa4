"""The session lifecycle loop: close idle sessions, then run the projects' online evaluators.

Every ``lifecycle_interval_seconds`` (or at once after :meth:`Lifecycle.wake`) the loop closes the
open sessions idle for longer than their project's idle timeout (since their latest span, capped at
when it arrived: :func:`~threadline.server.store.lifecycle.idle_condition`), then runs each
project's ``online_evaluators`` on its closed sessions that are due (never evaluated, or changed
since). Ingest re-opens a session when a new turn arrives; when it closes again it is due again.
Last, it applies retention: each project's sessions (and traces without a session) whose latest
span ended more than its ``retention_days`` ago (else ``THREADLINE_RETENTION_DAYS``; 0 keeps
forever) are purged in small batches (:mod:`~threadline.server.store.retention`).
Several server processes sharing a PostgreSQL database may all run the loop: closing is a
conditional update and annotations are upserts, so nothing is duplicated.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from threadline.server.evals.evaluators import get_evaluator
from threadline.server.evals.runner import RunOptions, run_evaluations
from threadline.server.query.lifecycle import all_project_settings
from threadline.server.settings import Settings
from threadline.server.store.engine import Store
from threadline.server.store.lifecycle import close_idle_sessions, has_idle_sessions
from threadline.server.store.retention import purge_project

log = logging.getLogger("threadline.lifecycle")

#: Most sessions one tick evaluates per project and evaluator (the rest wait for the next tick).
ONLINE_BATCH = 200


def idle_timeout_seconds(settings: Settings, project_settings: dict[str, Any]) -> float:
    """The project's idle timeout (its own setting, else the server default); 0 means never."""
    value = project_settings.get("idle_timeout_seconds")
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return float(settings.session_idle_timeout_seconds)


def retention_days(settings: Settings, project_settings: dict[str, Any]) -> float:
    """The project's retention in days (its own setting, else the server default); 0 means forever."""
    value = project_settings.get("retention_days")
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return float(settings.retention_days)


@dataclass(slots=True)
class TickReport:
    """What one pass of the loop did."""

    closed: dict[str, list[str]] = field(default_factory=dict)
    evaluated: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    #: Per project: (sessions, traces, spans) removed by retention.
    purged: dict[str, tuple[int, int, int]] = field(default_factory=dict)


class Lifecycle:
    """Background thread running :meth:`tick` periodically; the server starts and stops it."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings, self.store = settings, store
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()

    def start(self) -> None:
        """Start the loop thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="threadline-lifecycle", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the loop and wait for the current pass to finish."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def wake(self) -> None:
        """Run a pass now (after an explicit close, for example)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the loop must survive a database hiccup; the log says what happened
                log.exception("session lifecycle pass failed")
            self._wake.wait(self.settings.lifecycle_interval_seconds)
            self._wake.clear()

    def tick(self, now_ns: int | None = None) -> TickReport:
        """Close idle sessions of every project, then run online evaluators on due closed sessions."""
        report = TickReport()
        now = now_ns if now_ns is not None else time.time_ns()
        due: dict[int, bool] = {}
        with self.store.read() as conn:  # reads first: most passes write nothing and take no write lock
            projects = all_project_settings(conn)
            for pid, _name, project_settings in projects:
                timeout = idle_timeout_seconds(self.settings, project_settings)
                due[pid] = timeout > 0 and has_idle_sessions(conn, pid, now - int(timeout * 1e9))
        for pid, name, project_settings in projects:
            timeout = idle_timeout_seconds(self.settings, project_settings)
            if due[pid]:
                with self.store.write() as tx:
                    closed = close_idle_sessions(tx, pid, now - int(timeout * 1e9), now)
                if closed:
                    report.closed[name] = closed
                    log.info("closed %d idle session(s) of project %s", len(closed), name)
            evaluators = [e for e in project_settings.get("online_evaluators") or [] if isinstance(e, str)]
            if evaluators and not self._stop.is_set():
                self._evaluate(name, evaluators, report)
        for pid, name, project_settings in projects:
            if not self._stop.is_set():
                self._retain(pid, name, project_settings, now, report)
        return report

    def _retain(self, pid: int, project: str, project_settings: dict[str, Any], now_ns: int,
                report: TickReport) -> None:
        """Purge what the project's retention no longer keeps (one short transaction per batch)."""
        days = retention_days(self.settings, project_settings)
        if days <= 0:
            return
        purged = purge_project(self.store, pid, now_ns - int(days * 86_400e9),
                               batch=self.settings.retention_batch_sessions, should_stop=self._stop.is_set)
        if purged.removed_anything:
            report.purged[project] = (purged.sessions, purged.traces, purged.spans)
            log.info("retention (%g days) purged from project %s: %d session(s), %d trace(s), %d span(s), "
                     "%d user(s), %d annotation(s) in %d batch(es)", days, project, purged.sessions, purged.traces,
                     purged.spans, purged.users, purged.annotations, purged.batches)

    def _evaluate(self, project: str, names: list[str], report: TickReport) -> None:
        usable = []
        for name in names:
            try:
                evaluator = get_evaluator(name, builtin_only=True)
            except KeyError as exc:
                self._warn_once(f"{project}:{name}", f"project {project}: online evaluator skipped: {exc}")
                continue
            if evaluator.annotator_kind == "LLM" and not self.settings.judge_base_url:
                self._warn_once(f"{project}:{name}", f"project {project}: online evaluator {name} needs "
                                "THREADLINE_JUDGE_BASE_URL; skipped")
                continue
            usable.append(name)
        if not usable:
            return
        result = run_evaluations(self.store, self.settings, RunOptions(
            project=project, evaluators=usable, closed_only=True, limit=ONLINE_BATCH, builtin_only=True))
        report.evaluated[project] = result.sessions_evaluated
        report.failures += len(result.failures)
        if result.sessions_evaluated:
            log.info("online evals of project %s: %d session(s) evaluated", project, result.sessions_evaluated)
        for failure in result.failures:
            log.warning("online eval %s failed on session %s%s: %s (it stays due and is retried)",
                        failure.evaluator, failure.session_id,
                        f" turn {failure.trace_id}" if failure.trace_id else "", failure.message)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)
