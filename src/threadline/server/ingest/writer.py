"""The server's handle on the writer process: start it, and learn when each job is committed.

A request registers a job with :meth:`SpanWriter.expect` before it is decoded; the decode process
hands the job's records straight to the writer process (:mod:`.handoff`), and the future
resolves only after the transaction holding them has committed there
(:mod:`.writer_process`), so an acknowledged span is a stored span. The queue is bounded (spans
handed over but not yet committed): over it, :class:`QueueFull` (503). If the writer process
dies, every request waiting on it fails with :class:`StoreUnavailable` (503: the client
retries) and a new writer process starts on the same address.

What passes between this process and the writer process (:mod:`.writer_process`):

- a control pipe (``multiprocessing.Pipe``): :data:`~.writer_process.STOP`, once;
- an answers pipe: :data:`~.writer_process.READY`, then one :class:`~.writer_process.Ack`
  (MessagePack, msgspec) per group of jobs committed or failed;
- one shared integer (``RawValue``): the requests being decoded, which the writer reads each
  time it gathers a group to decide whether to linger for them. It stays a shared integer rather
  than a message: reading it costs the writer no message and no system call, and only this
  process writes it (under a lock).

The jobs themselves never pass through this process: decode processes hand them to the writer
over the :mod:`.handoff` socket.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from threadline.server.ingest.handoff import WriterAddress
from threadline.server.ingest.writer_process import READY, STOP, Failure, WriterConfig, decode_ack, run_writer

log = logging.getLogger("threadline.ingest")


class QueueFull(RuntimeError):
    """The write queue is at capacity: answer 503 + Retry-After."""


class StoreUnavailable(RuntimeError):
    """The database could not be written: answer 503 + Retry-After."""


class WriterFailed(RuntimeError):
    """The writer could not store a request for a reason other than the database (a bug)."""


class RejectedBatch(ValueError):
    """The database refused a request's spans for a reason in the data (400: resending cannot help)."""


#: Prefix of the writer's private directories in the temporary directory (see :func:`remove_stale_directories`).
DIRECTORY_PREFIX = "threadline-writer-"
_OWNER_FILE = "owner.pid"
#: The write rate is measured over the commits of this many seconds.
RATE_WINDOW_SECONDS = 10.0
#: Least busy time a rate is taken over (a group answered within microseconds of its hand-over).
MIN_BUSY_SECONDS = 0.01


def remove_stale_directories(temp_dir: str | None = None) -> int:
    """Remove the writer directories of servers that are gone (killed with -9); how many were removed."""
    base = temp_dir or tempfile.gettempdir()
    removed = 0
    try:
        names = os.listdir(base)
    except OSError:
        return 0
    for name in names:
        if not name.startswith(DIRECTORY_PREFIX):
            continue
        path = os.path.join(base, name)
        try:
            with open(os.path.join(path, _OWNER_FILE)) as owner:
                pid = int(owner.read().strip() or "0")
        except (OSError, ValueError):
            continue  # not ours to judge (no owner file, or not readable by this user)
        if pid and _alive(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


class SpanWriter:
    """Starts the writer process and resolves each job's future when the writer answers."""

    START_TIMEOUT = 120.0

    def __init__(self, config: WriterConfig, *, queue_max_spans: int) -> None:
        self.config = config
        self.queue_max_spans = queue_max_spans
        self._context = multiprocessing.get_context("spawn")
        # Requests being decoded: the writer reads it to decide whether to wait for them. A raw
        # shared int: only this process writes it, under _incoming_lock.
        self._incoming = self._context.RawValue("i", 0)
        self._incoming_lock = threading.Lock()
        self._directory = tempfile.mkdtemp(prefix=DIRECTORY_PREFIX)  # mode 0700: this user only
        with open(os.path.join(self._directory, _OWNER_FILE), "w") as owner:
            owner.write(str(os.getpid()))
        self.address = WriterAddress.new(self._directory)
        self._lock = threading.Lock()  # pending jobs, queued spans, the process and its pipes
        self._pending: dict[int, tuple[Future[None], int]] = {}
        self._handed_at: dict[int, float] = {}  # when each queued job was handed over (monotonic)
        # (when, spans, seconds the writer worked on them) of each answer: the write rate is taken
        # over the time the writer was busy, not the time since its first commit.
        self._commits: collections.deque[tuple[float, int, float]] = collections.deque()
        self._last_answer = 0.0
        self._queued_spans = 0
        self._ids = itertools.count(1)
        self._stopping = False
        self._process: BaseProcess | None = None
        self._control: Connection | None = None
        self._acks: Connection | None = None
        self._answers: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer process and wait until it listens (after clearing what dead servers left)."""
        removed = remove_stale_directories()
        if removed:
            log.info("removed %d hand-off directories left by servers that were killed", removed)
        self._spawn()
        self._answers = threading.Thread(target=self._read_answers, name="threadline-writer-answers", daemon=True)
        self._answers.start()

    def _spawn(self) -> None:
        control_reader, control_writer = self._context.Pipe(duplex=False)
        acks_reader, acks_writer = self._context.Pipe(duplex=False)
        process = self._context.Process(target=run_writer, name="threadline-writer", daemon=True,
                                        args=(self.config, self.address, control_reader, acks_writer, self._incoming))
        process.start()
        control_reader.close()
        acks_writer.close()
        try:
            ready = acks_reader.poll(self.START_TIMEOUT) and acks_reader.recv_bytes(len(READY)) == READY
        except (EOFError, OSError):
            ready = False
        if not ready:
            process.kill()
            raise RuntimeError("the writer process did not start; see the log above")
        with self._lock:
            self._process, self._control, self._acks = process, control_writer, acks_reader

    def stop(self, timeout: float = 60.0) -> None:
        """Commit what the writer has received, answer it, then stop the writer process.

        Stop the decode processes first: what they hand over after this is not committed.
        """
        with self._lock:
            self._stopping = True
            process, control = self._process, self._control
        if process is not None and control is not None:
            with contextlib.suppress(OSError):
                control.send_bytes(STOP)
            process.join(timeout)
            if process.is_alive():
                log.warning("the writer process did not stop within %.0f s; killing it", timeout)
                process.kill()
                process.join(5)
            if self._answers is not None:
                self._answers.join(timeout)
        self._fail_pending(StoreUnavailable("the server is stopping"))
        shutil.rmtree(self._directory, ignore_errors=True)

    # --- requests ----------------------------------------------------------------------------------
    @contextmanager
    def incoming(self) -> Iterator[None]:
        """Mark a request as on its way (being decoded): the writer may wait for it to group commits."""
        with self._incoming_lock:
            self._incoming.value += 1
        try:
            yield
        finally:
            with self._incoming_lock:
                self._incoming.value -= 1

    @property
    def queued_spans(self) -> int:
        """Spans handed to the writer but not yet committed."""
        return self._queued_spans

    def backlog_seconds(self) -> float:
        """How long the spans handed over and not yet committed should take to commit.

        The queued spans over the writer's rate while busy in the last :data:`RATE_WINDOW_SECONDS`
        (spans answered over the time from each group's hand-over, or the previous answer if
        later, to its answer), and at least the age of the oldest queued job (which a stalled
        writer grows without bound). Busy time, not elapsed time: after a quiet minute, or in the
        first second after start, a burst is measured against what the writer can do, not
        against the little it was given.
        """
        now = time.monotonic()
        with self._lock:
            if not self._queued_spans:
                return 0.0
            oldest = now - min(self._handed_at.values(), default=now)
            while self._commits and self._commits[0][0] < now - RATE_WINDOW_SECONDS:
                self._commits.popleft()
            if not self._commits:
                return oldest
            committed = sum(spans for _, spans, _ in self._commits)
            busy = sum(seconds for _, _, seconds in self._commits)
            rate = committed / max(busy, MIN_BUSY_SECONDS)
            return max(oldest, self._queued_spans / rate)
    def expect(self) -> tuple[int, Future[None]]:
        """Register a job about to be decoded and handed over: its id and the future of its commit.

        Raises :class:`QueueFull` when the queue is at capacity and :class:`StoreUnavailable`
        while the server is stopping.
        """
        future: Future[None] = Future()
        with self._lock:
            if self._queued_spans >= self.queue_max_spans:
                raise QueueFull(f"{self._queued_spans} spans are waiting to be written")
            if self._stopping:
                raise StoreUnavailable("the server is stopping")
            job_id = next(self._ids)
            self._pending[job_id] = (future, 0)
        return job_id, future

    def handed_over(self, job_id: int, spans: int) -> None:
        """Count a job's spans as queued (its decode process has handed them to the writer)."""
        with self._lock:
            entry = self._pending.get(job_id)
            if entry is not None:
                self._pending[job_id] = (entry[0], spans)
                self._handed_at[job_id] = time.monotonic()
                self._queued_spans += spans

    def forget(self, job_id: int) -> None:
        """Drop a job that was not handed over (nothing to store, or it failed to decode)."""
        with self._lock:
            entry = self._pending.pop(job_id, None)
            self._handed_at.pop(job_id, None)
            if entry is not None:
                self._queued_spans -= entry[1]

    # --- answers -----------------------------------------------------------------------------------
    def _read_answers(self) -> None:
        while True:
            with self._lock:
                process, acks = self._process, self._acks
            assert process is not None and acks is not None
            try:
                ready = wait([acks, process.sentinel])
                if acks in ready:
                    ack = decode_ack(acks.recv_bytes())
                    self._resolve(ack.job_ids, _error(ack.failure))
                    continue
            except (EOFError, OSError):
                pass
            # The writer process has exited: after a stop, or because it died.
            while True:
                try:
                    if not acks.poll():
                        break
                    ack = decode_ack(acks.recv_bytes())
                except (EOFError, OSError):
                    break
                self._resolve(ack.job_ids, _error(ack.failure))
            process.join(5)
            with self._lock:
                if self._stopping:
                    return
            log.warning("the writer process exited with code %s; starting a new one", process.exitcode)
            self._fail_pending(StoreUnavailable("the writer process stopped while writing this request"))
            self._restart()

    def _restart(self) -> None:
        with self._lock:
            self._control = None
        while True:
            with self._lock:
                if self._stopping:
                    return
            try:
                self._spawn()
            except (RuntimeError, OSError) as exc:
                log.error("could not restart the writer process: %s", exc)
                threading.Event().wait(1.0)
                continue
            return

    def _resolve(self, job_ids: list[int], error: Exception | None) -> None:
        done = []
        with self._lock:
            spans = 0
            now = time.monotonic()
            handed = now
            for job_id in job_ids:
                entry = self._pending.pop(job_id, None)
                handed = min(handed, self._handed_at.pop(job_id, now))
                if entry is not None:
                    done.append(entry[0])
                    self._queued_spans -= entry[1]
                    spans += entry[1]
            if spans:
                self._commits.append((now, spans, now - max(handed, self._last_answer)))
            self._last_answer = now
        for future in done:
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def _fail_pending(self, error: Exception) -> None:
        with self._lock:
            job_ids = list(self._pending)
        self._resolve(job_ids, error)


def _error(failure: Failure | None) -> Exception | None:
    if failure is None:
        return None
    kind, message = failure
    if kind == "unavailable":
        return StoreUnavailable(message)
    return RejectedBatch(message) if kind == "invalid" else WriterFailed(message)
