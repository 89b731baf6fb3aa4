"""From request bytes to storable records: decompress, decode, normalize (pure, picklable).

This is the CPU-heavy half of ingest. :class:`Preparer` runs it in worker processes so the
server's single writer thread and the request handlers never wait for each other's CPU.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from threadline.server.ingest.normalize import normalize
from threadline.server.ingest.otlp import Limits, decode_request, decompress
from threadline.server.store.records import SpanRecord

log = logging.getLogger("threadline.ingest")


class WorkerLost(RuntimeError):
    """A decode worker process died during this request; the pool was restarted (answer 503)."""


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """The records of one request and what was rejected (for OTLP partial success)."""

    records: list[SpanRecord]
    rejected: int
    error_message: str


def prepare(
    body: bytes, media: str, content_encoding: str | None, project_header: str | None, limits: Limits,
    max_text_chars: int,
) -> PreparedBatch:
    """Decompress, decode and normalize one export request. Raises the ``otlp`` errors."""
    raw = decompress(body, content_encoding, limits.max_decompressed_bytes)
    decoded = decode_request(raw, media, project_header=project_header, limits=limits)
    records = [normalize(span, max_text_chars=max_text_chars) for span in decoded.spans]
    return PreparedBatch(records=records, rejected=decoded.rejected, error_message=decoded.error_message())


class Preparer:
    """Runs :func:`prepare` in worker processes (or inline when ``workers`` is 0)."""

    def __init__(self, workers: int, limits: Limits, max_text_chars: int) -> None:
        self.limits = limits
        self.max_text_chars = max_text_chars
        self._workers = workers
        self._lock = threading.Lock()
        self._pool: Executor | None = self._new_pool() if workers > 0 else None

    def _new_pool(self) -> Executor:
        return ProcessPoolExecutor(max_workers=self._workers, mp_context=multiprocessing.get_context("spawn"))

    def run(self, body: bytes, media: str, content_encoding: str | None, project_header: str | None) -> PreparedBatch:
        """Prepare one request, blocking until done (call from a worker thread)."""
        args = (body, media, content_encoding, project_header, self.limits, self.max_text_chars)
        pool = self._pool
        if pool is None:
            return prepare(*args)
        try:
            return pool.submit(prepare, *args).result()
        except BrokenProcessPool as exc:
            # A worker died (killed, out of memory): without a new pool every later request
            # would fail too. This request may have been the cause, so it is not retried here.
            with self._lock:
                if self._pool is pool:
                    log.warning("a decode worker died; restarting the decode pool")
                    self._pool = self._new_pool()
                    pool.shutdown(wait=False, cancel_futures=True)
            raise WorkerLost("a decode worker stopped while decoding this request") from exc

    def warm_up(self) -> None:
        """Start the worker processes now rather than on the first request."""
        if self._pool is not None:
            self._pool.submit(int, 0).result()

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
