"""The single writer: a bounded queue of prepared batches, committed in groups.

Request handlers call :meth:`SpanWriter.submit` and wait on the returned future; it resolves
only after the transaction holding their spans has committed, so an acknowledged span is a
stored span. While one transaction commits, further requests queue up and are committed
together in the next one (group commit), which is what makes per-request durability cheap.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError, OperationalError

from threadline.server.store.engine import Store
from threadline.server.store.records import SpanRecord
from threadline.server.store.write import BatchResult, BatchWriter

log = logging.getLogger("threadline.ingest")


class QueueFull(RuntimeError):
    """The write queue is at capacity: answer 503 + Retry-After."""


class StoreUnavailable(RuntimeError):
    """The database could not be written: answer 503 + Retry-After."""


@dataclass(slots=True)
class _Job:
    records: list[SpanRecord]
    future: Future[BatchResult] = field(default_factory=Future)


class SpanWriter:
    """One thread that owns all span writes of this process."""

    #: Refresh the planner's statistics (SQLite ``PRAGMA optimize``) every this many commits.
    OPTIMIZE_EVERY = 2000

    def __init__(
        self, store: Store, *, queue_max_spans: int, commit_max_spans: int, commit_linger_seconds: float = 0.0
    ) -> None:
        self.store = store
        self.queue_max_spans = queue_max_spans
        self.commit_max_spans = commit_max_spans
        self.commit_linger_seconds = commit_linger_seconds
        self._incoming = 0
        self._batch_writer = BatchWriter(store.dialect)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._queued_spans = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="threadline-writer", daemon=True)
        self.commits = 0

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    @contextmanager
    def incoming(self) -> Iterator[None]:
        """Mark a request as on its way (being decoded): the writer may wait for it to group commits."""
        with self._lock:
            self._incoming += 1
        try:
            yield
        finally:
            with self._lock:
                self._incoming -= 1

    @property
    def queued_spans(self) -> int:
        """Spans accepted but not yet committed."""
        return self._queued_spans

    def submit(self, records: list[SpanRecord]) -> Future[BatchResult]:
        """Queue records for the next commit; raise :class:`QueueFull` when over capacity."""
        job = _Job(records)
        if not records:
            job.future.set_result(BatchResult())
            return job.future
        with self._lock:
            if self._queued_spans and self._queued_spans + len(records) > self.queue_max_spans:
                raise QueueFull(f"{self._queued_spans} spans are waiting to be written")
            self._queued_spans += len(records)
        self._queue.put(job)
        return job.future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            jobs = [first]
            size = len(first.records)
            linger_until = time.monotonic() + self.commit_linger_seconds
            while size < self.commit_max_spans:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    # Group commit: when more requests are being decoded, wait a moment for them
                    # so they share this transaction (one fsync) instead of each paying for one.
                    wait = linger_until - time.monotonic()
                    if wait <= 0 or not self._incoming:
                        break
                    try:
                        job = self._queue.get(timeout=wait)
                    except queue.Empty:
                        break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
                size += len(job.records)
            self._commit(jobs)
            with self._lock:
                self._queued_spans -= size

    def _commit(self, jobs: list[_Job]) -> None:
        records = [r for job in jobs for r in job.records]
        started = time.thread_time()
        try:
            result = self._write(records)
        except (OperationalError, DBAPIError) as exc:
            if len(jobs) > 1 and not _is_unavailable(exc):
                for job in jobs:  # isolate the request that cannot be written
                    self._commit([job])
                return
            log.warning("write of %d spans failed: %s", len(records), exc)
            error = StoreUnavailable(f"the database is unavailable: {exc.__class__.__name__}")
            for job in jobs:
                job.future.set_exception(error)
            return
        except Exception as exc:  # a bug: fail these requests, keep the writer alive
            log.exception("write of %d spans failed", len(records))
            for job in jobs:
                job.future.set_exception(exc)
            return
        self.commits += 1
        log.debug("committed %d spans of %d requests (%d new) using %.1f ms of writer CPU", len(records), len(jobs),
                  result.spans, (time.thread_time() - started) * 1000)
        for job in jobs:
            job.future.set_result(result)
        if self.commits % self.OPTIMIZE_EVERY == 0:
            try:
                self.store.optimize()
            except (OperationalError, DBAPIError) as exc:
                log.warning("PRAGMA optimize failed: %s", exc)

    def _write(self, records: list[SpanRecord]) -> BatchResult:
        with self.store.write() as tx:
            return self._batch_writer.write(tx, records, time.time_ns())


def _is_unavailable(exc: Exception) -> bool:
    return isinstance(exc, OperationalError) or bool(getattr(exc, "connection_invalidated", False))
