"""From request bytes to storable records: decompress, decode, normalize (pure, picklable).

This is the CPU-heavy half of ingest. :class:`Preparer` runs it in worker processes so the
server's single writer thread and the request handlers never wait for each other's CPU.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass

from threadline.server.ingest.normalize import normalize
from threadline.server.ingest.otlp import Limits, decode_request, decompress
from threadline.server.store.records import SpanRecord


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
        self._pool: Executor | None = None
        if workers > 0:
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def run(self, body: bytes, media: str, content_encoding: str | None, project_header: str | None) -> PreparedBatch:
        """Prepare one request, blocking until done (call from a worker thread)."""
        args = (body, media, content_encoding, project_header, self.limits, self.max_text_chars)
        if self._pool is None:
            return prepare(*args)
        return self._pool.submit(prepare, *args).result()

    def warm_up(self) -> None:
        """Start the worker processes now rather than on the first request."""
        if self._pool is not None:
            self._pool.submit(int, 0).result()

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
