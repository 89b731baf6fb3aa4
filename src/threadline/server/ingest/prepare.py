"""From request bytes to records in the writer's hands: decompress, decode, normalize, pack, hand over.

This is the CPU-heavy half of ingest. :class:`Preparer` runs it in decode processes, so neither
the request handlers nor the writer process wait for its CPU. A decode process hands the packed
records straight to the writer process (:mod:`.handoff`) and returns only a summary to the
server process.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from threadline.server.ingest.handoff import JobSender, WriterAddress
from threadline.server.ingest.normalize import normalize
from threadline.server.ingest.otlp import Limits, decode_request, decompress
from threadline.server.store.records import SpanRecord, pack_records

log = logging.getLogger("threadline.ingest")


class WorkerLost(RuntimeError):
    """A decode worker process died during this request; the pool was restarted (answer 503)."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """What became of one request: spans handed to the writer, and what was rejected (OTLP
    partial success)."""

    spans: int
    rejected: int
    error_message: str


def prepare(
    body: bytes, media: str, content_encoding: str | None, project_header: str | None, limits: Limits,
    max_text_chars: int,
) -> tuple[list[SpanRecord], int, str]:
    """Decompress, decode and normalize one export request: (records, rejected, error message).

    Raises the ``otlp`` errors.
    """
    raw = decompress(body, content_encoding, limits.max_decompressed_bytes)
    decoded = decode_request(raw, media, project_header=project_header, limits=limits)
    records = [normalize(span, max_text_chars=max_text_chars) for span in decoded.spans]
    return records, decoded.rejected, decoded.error_message()


@dataclass(frozen=True, slots=True)
class _Setup:
    address: WriterAddress
    limits: Limits
    max_text_chars: int


_setup: _Setup | None = None
_sender: JobSender | None = None


def _init_worker(setup: _Setup) -> None:
    global _setup, _sender
    _setup, _sender = setup, JobSender(setup.address)


def _prepare_and_hand_over(job_id: int, body: bytes, media: str, content_encoding: str | None,
                           project_header: str | None) -> Prepared:
    assert _setup is not None and _sender is not None, "a decode process starts with _init_worker"
    records, rejected, message = prepare(body, media, content_encoding, project_header, _setup.limits,
                                         _setup.max_text_chars)
    if records:
        _sender.send(job_id, len(records), pack_records(records))
    return Prepared(len(records), rejected, message)


class Preparer:
    """Runs :func:`prepare` and the hand-over in decode processes (or inline when ``workers`` is 0)."""

    def __init__(self, workers: int, address: WriterAddress, limits: Limits, max_text_chars: int) -> None:
        self._setup = _Setup(address, limits, max_text_chars)
        self._workers = workers
        self._lock = threading.Lock()
        self._pool: Executor | None = self._new_pool() if workers > 0 else None
        self._inline_sender = JobSender(address) if workers == 0 else None

    def _new_pool(self) -> Executor:
        return ProcessPoolExecutor(max_workers=self._workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(self._setup,))

    def run(self, job_id: int, body: bytes, media: str, content_encoding: str | None, project_header: str | None
            ) -> Prepared:
        """Prepare one request and hand it to the writer as job ``job_id``, blocking until done."""
        pool = self._pool
        if pool is None:
            records, rejected, message = prepare(body, media, content_encoding, project_header,
                                                 self._setup.limits, self._setup.max_text_chars)
            if records:
                packed = pack_records(records)
                assert self._inline_sender is not None
                with self._lock:  # one job at a time on the one connection
                    self._inline_sender.send(job_id, len(records), packed)
            return Prepared(len(records), rejected, message)
        try:
            return pool.submit(_prepare_and_hand_over, job_id, body, media, content_encoding, project_header
                               ).result()
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
        """Stop the worker processes (after the requests they are working on)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._inline_sender is not None:
            self._inline_sender.close()
