"""The writer process: the one place that commits ingested spans, in groups.

It runs apart from the HTTP process so that the database work (binding parameters, SQLite's own
CPU, fsync waits) never competes with request handling for one interpreter lock. Decode
processes hand it *jobs* — the packed records of one request — over the
:mod:`~threadline.server.ingest.handoff` socket; it commits queued jobs together (group commit:
while one transaction commits, the next requests queue up and share the next fsync) and tells
the server process about each job only after its transaction has committed and is on disk, so
an acknowledged span is a stored span.

Its event loop waits on the hand-off socket (new connections, authenticated by greeter threads
and handed back through :attr:`~.handoff.JobListener.arrivals`), the clients' connections (jobs)
and the control pipe, all with :func:`multiprocessing.connection.wait`. Both pipes with the
server process carry bytes, never pickles:

- server process → writer, on the control pipe: :data:`STOP` (take what has arrived, commit it,
  exit);
- writer → server process, on the answers pipe: :data:`READY` once the store is open and the
  socket listens, then one :class:`Ack` (MessagePack) per group of jobs answered: ``failure`` is
  ``None`` when they are committed, else ``(kind, message)``: ``kind`` is ``"unavailable"`` (the
  database could not be written; retry), ``"invalid"`` (the database refused the data, e.g. a
  constraint; resending cannot help) or ``"failed"`` (a bug).

The server process also shares one integer with the writer, the number of requests being
decoded (:meth:`.writer.SpanWriter.incoming`), read to decide whether to linger for them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

import msgspec
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from threadline.server.ingest.handoff import Job, JobListener, JobReader, WriterAddress
from threadline.server.ingest.heap import HeapTrimmer
from threadline.server.store.engine import Store, open_store
from threadline.server.store.records import SpanRecord
from threadline.server.store.write import BatchResult, BatchWriter

log = logging.getLogger("threadline.ingest")

Failure = tuple[str, str]

#: The writer's first message on the answers pipe: the store is open and the socket listens.
READY = b"ready"
#: The server's one message on the control pipe: commit what has arrived, answer it, exit.
STOP = b"stop"


class Ack(msgspec.Struct, array_like=True, frozen=True):
    """The writer's answer for some jobs: committed (``failure`` is ``None``) or not."""

    job_ids: list[int]
    failure: Failure | None = None


_ACK_ENCODER = msgspec.msgpack.Encoder()
_ACK_DECODER = msgspec.msgpack.Decoder(Ack)


def encode_ack(ack: Ack) -> bytes:
    """``ack`` as it crosses the answers pipe."""
    return _ACK_ENCODER.encode(ack)


def decode_ack(message: bytes) -> Ack:
    """The :class:`Ack` :func:`encode_ack` encoded."""
    return _ACK_DECODER.decode(message)


@dataclass(frozen=True, slots=True)
class WriterConfig:
    """What the writer process needs to know (picklable: it crosses to the new process)."""

    database_url: str
    sqlite_synchronous: str
    commit_max_spans: int
    commit_linger_seconds: float
    log_level: str


class _Acknowledger:
    """Answers committed jobs once they are durable, in a thread of its own.

    The writer's commits return once the write-ahead log is written
    (:class:`~threadline.server.store.engine.Store` ``ingest_writer``); this thread fsyncs it
    (:meth:`Store.sync`) and then answers every job committed before that fsync — while the
    writer is already writing the next transaction.
    """

    def __init__(self, store: Store, answer: Callable[[list[int], Failure | None], None]) -> None:
        self.store = store
        self.answer = answer
        self._committed: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="threadline-acknowledger", daemon=True)
        self._thread.start()

    def committed(self, job_ids: list[int]) -> None:
        """Answer these jobs after the next fsync."""
        self._committed.put(job_ids)

    def stop(self) -> None:
        """Answer what is committed, then stop."""
        self._committed.put(None)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batches = [self._committed.get()]
            while not self._committed.empty():
                batches.append(self._committed.get())
            stopping = None in batches
            job_ids = [job_id for batch in batches if batch for job_id in batch]
            if not job_ids:
                continue
            failure: Failure | None = None
            try:
                self.store.sync()
            except OSError as exc:
                log.error("could not make %d committed requests durable (fsync failed): %s", len(job_ids), exc)
                failure = ("unavailable", f"the database could not be synced to disk: {exc.strerror}")
            self.answer(job_ids, failure)


class CommitLoop:
    """Reads jobs, commits them in groups, acknowledges each job after its commit is durable."""

    #: Refresh the planner's statistics (SQLite ``PRAGMA optimize``) every this many commits.
    OPTIMIZE_EVERY = 2000
    #: A group stops growing once its records crossed in this many bytes (packed), whatever
    #: ``commit_max_spans`` allows: the writer holds one group's records until its commit, and a
    #: few large requests (4,000 chat spans pack into ~6 MB) would otherwise make one group.
    COMMIT_MAX_BYTES = 4 * 1024 * 1024

    def __init__(self, config: WriterConfig, store: Store, listener: JobListener, control: Connection,
                 acks: Connection, incoming: ctypes.c_int | None) -> None:
        self.config = config
        self.store = store
        self.listener = listener
        self.control = control
        self.acks = acks
        self.incoming = incoming
        self.clients: dict[Connection, JobReader] = {}
        self.batch_writer = BatchWriter(store.dialect)
        self.trimmer = HeapTrimmer()
        self.commits = 0
        self._stopping = False
        self._answer_lock = threading.Lock()
        self._acknowledger = _Acknowledger(store, self._answer)

    def run(self) -> None:
        """Commit jobs until told to stop (or the server process is gone)."""
        try:
            while True:
                group = self._gather()
                if group:
                    self.commit(group)
                elif self._stopping:
                    return
        finally:
            self._acknowledger.stop()

    def _gather(self) -> list[Job]:
        """The next group: wait for a first job, then take what is queued, lingering while more
        requests are being decoded so they share this transaction (one fsync) instead of each
        paying for one."""
        group: list[Job] = []
        size = nbytes = 0
        linger_until = 0.0
        while size < self.config.commit_max_spans and nbytes < self.COMMIT_MAX_BYTES:
            if not group:
                timeout: float | None = 0.0 if self._stopping else None
            elif self.incoming is not None and self.incoming.value > 0:
                timeout = max(0.0, linger_until - time.monotonic())
            else:
                timeout = 0.0
            sources: list[Connection | socket.socket] = [self.listener.sock, self.listener.arrivals, *self.clients]
            if not self._stopping:  # after a stop (or EOF) the pipe stays readable: stop watching it
                sources.append(self.control)
            ready = wait(sources, timeout)
            if not ready:
                break
            for source in ready:
                if source is self.control:
                    self._on_control()
                elif source is self.listener.sock:
                    self.listener.accept()  # authenticated in a greeter thread: never blocks
                elif source is self.listener.arrivals:
                    for client in self.listener.greeted():
                        self.clients[client] = JobReader(client)
                else:
                    assert isinstance(source, Connection)
                    job = self.clients[source].read()
                    if job is None:
                        del self.clients[source]
                        source.close()
                        continue
                    if not group:
                        linger_until = time.monotonic() + self.config.commit_linger_seconds
                    group.append(job)
                    size += job.spans
                    nbytes += job.nbytes
        return group

    def _on_control(self) -> None:
        with contextlib.suppress(EOFError):  # EOF: the server process is gone, nobody awaits answers
            self.control.recv_bytes()
        self._stopping = True

    def commit(self, group: list[Job]) -> None:
        """Write one group in one transaction and answer every job in it."""
        started = time.thread_time()
        wall = time.perf_counter()
        records = [r for job in group for r in job.records]
        try:
            result = self._write(records)
        except Exception as exc:
            kind = _database_failure(exc)
            if kind is None:  # a bug: fail these requests, keep the writer alive
                log.exception("write of %d spans failed", len(records))
                self._answer(_ids(group), ("failed", f"{exc.__class__.__name__}: {exc}"))
                return
            if kind == "invalid" and len(group) > 1:
                for job in group:  # isolate the request that cannot be written
                    self.commit([job])
                return
            if kind == "invalid":  # the database refused this request's data: resending cannot help
                log.warning("the database refused a request of %d spans: %s", len(records), _reason(exc))
                self._answer(_ids(group), ("invalid", f"the database refused these spans: {_reason(exc)}"))
                return
            log.warning("write of %d spans failed: %s", len(records), exc)
            self._answer(_ids(group), ("unavailable", f"the database is unavailable: {exc.__class__.__name__}"))
            return
        self.commits += 1
        log.debug("committed %d spans of %d requests (%d new) in %.1f ms using %.1f ms of writer CPU",
                  len(records), len(group), result.spans, (time.perf_counter() - wall) * 1000,
                  (time.thread_time() - started) * 1000)
        self._acknowledger.committed(_ids(group))
        self.trimmer.processed(sum(job.nbytes for job in group))
        if self.commits % self.OPTIMIZE_EVERY == 0:
            try:
                self.store.optimize()
            except (OperationalError, DBAPIError) as exc:
                log.warning("PRAGMA optimize failed: %s", exc)

    def _write(self, records: list[SpanRecord]) -> BatchResult:
        with self.store.write() as tx:
            return self.batch_writer.write(tx, records, time.time_ns())

    def _answer(self, job_ids: list[int], failure: Failure | None) -> None:
        with self._answer_lock, contextlib.suppress(OSError):  # OSError: the server process is gone
            self.acks.send_bytes(encode_ack(Ack(job_ids, failure)))


def _ids(group: list[Job]) -> list[int]:
    return [job.job_id for job in group]


#: DB-API exception classes (PEP 249 names, in any driver) whose cause is in the data: resending cannot help.
_DATA_ERRORS = frozenset({"IntegrityError", "DataError"})
#: DB-API exception classes whose cause is the database or the connection: retry later.
_UNAVAILABLE_ERRORS = frozenset({"OperationalError", "InterfaceError"})


def _database_failure(exc: BaseException) -> str | None:
    """``"unavailable"``, ``"invalid"`` or ``None`` (not the database's doing: a bug) for a write's error.

    SQLAlchemy wraps driver errors in ``DBAPIError``; the bulk paths that use the driver directly
    (psycopg ``COPY``) raise the driver's own classes, told apart by their PEP 249 names.
    """
    if isinstance(exc, DBAPIError):
        if _is_unavailable(exc):
            return "unavailable"
        return "invalid" if isinstance(exc, IntegrityError | DataError) else None
    if type(exc).__module__.split(".")[0] not in ("psycopg", "sqlite3"):
        return None
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & _UNAVAILABLE_ERRORS:
        return "unavailable"
    if names & _DATA_ERRORS:
        return "invalid"
    return None


def _reason(exc: BaseException) -> str:
    """The first line of the driver's message (no SQL, no parameters: they may hold other tenants' data)."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    text = str(orig or exc).strip().splitlines()
    return text[0][:300] if text else exc.__class__.__name__


def _is_unavailable(exc: Exception) -> bool:
    return isinstance(exc, OperationalError) or bool(getattr(exc, "connection_invalidated", False))


def run_writer(config: WriterConfig, address: WriterAddress, control: Connection, acks: Connection,
               incoming: ctypes.c_int) -> None:
    """Entry point of the writer process."""
    # Ctrl-C and SIGTERM reach the whole process group; the server process decides when the
    # writer stops (after the last request is answered), so the writer ignores them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = open_store(config.database_url, sqlite_synchronous=config.sqlite_synchronous, migrate=False,
                       pool_size=1, ingest_writer=True)
    listener = JobListener(address)
    try:
        acks.send_bytes(READY)
        CommitLoop(config, store, listener, control, acks, incoming).run()
    finally:
        listener.close()
        store.dispose()
