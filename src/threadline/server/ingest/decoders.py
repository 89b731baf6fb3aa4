"""Decode processes: the CPU-heavy half of ingest, apart from the server process.

Each decode process is connected to the server process by one duplex
:class:`multiprocessing.connection.Connection` (``Pipe``: a socket pair, :mod:`.messages`). A
request is two messages — a small :class:`DecodeRequest` header (job id, media type, encoding,
project header, allowed projects) and the body as sent, with ``send_bytes``, which copies nothing
— and the answer one message: a :class:`DecodeAnswer`, holding either a
:class:`~threadline.server.ingest.prepare.Prepared` summary or the error to report as
``(kind, message)`` (``otlp.DecodeError`` and friends, ``handoff.WriterUnreachable``,
:class:`WorkerFailed`), rebuilt into the same exception class on the server side. Header and
answer are MessagePack (msgspec): nothing received is unpickled. The decode process receives
bodies into one buffer that it reuses (:class:`~.messages.MessageReader`). The records
themselves go from the decode process straight to the writer process (:mod:`.handoff`).

A plain pipe costs a fraction of a process pool's queues for megabyte-sized bodies (no pickled
copies, no feeder threads). A decode process that dies (killed, out of memory) costs the request
it was working on a :class:`WorkerLost` (503) and is replaced before its next request.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import msgspec

from threadline.server.ingest import messages
from threadline.server.ingest.admission import Overloaded
from threadline.server.ingest.handoff import JobSender, WriterAddress, WriterUnreachable
from threadline.server.ingest.heap import HeapTrimmer
from threadline.server.ingest.otlp import (
    Body,
    DecodeError,
    Limits,
    PayloadTooLarge,
    ProjectNotAllowed,
    UnsupportedContentType,
)
from threadline.server.ingest.prepare import Prepared, prepare_and_hand_over

log = logging.getLogger("threadline.ingest")

#: What a decode process sends once it is ready for requests.
READY = b"ready"


class WorkerLost(RuntimeError):
    """A decode process died during this request; it is replaced (answer 503)."""


class WorkerFailed(RuntimeError):
    """A decode process failed on this request with an unexpected error (a bug)."""


#: Errors a decode process reports as they are; anything else is a bug, reported as WorkerFailed.
_EXPECTED = (DecodeError, PayloadTooLarge, UnsupportedContentType, ProjectNotAllowed, WriterUnreachable)
#: The errors an answer can carry, by the name that crosses (``kind``).
_ERRORS: dict[str, type[Exception]] = {kind.__name__: kind for kind in (*_EXPECTED, WorkerFailed)}


class DecodeRequest(msgspec.Struct, array_like=True, frozen=True):
    """The header of one request to a decode process (its body follows as the next message)."""

    job_id: int
    media: str
    content_encoding: str | None
    project_header: str | None
    allowed_projects: frozenset[str] | None


class DecodeAnswer(msgspec.Struct, array_like=True, frozen=True):
    """A decode process's answer: the summary, or the error as ``(kind, message)``."""

    prepared: Prepared | None = None
    error: tuple[str, str] | None = None

    @staticmethod
    def of_error(exc: Exception) -> DecodeAnswer:
        """The answer reporting ``exc`` (one of the errors in :data:`_ERRORS`)."""
        kind = next(name for name, cls in _ERRORS.items() if isinstance(exc, cls))
        return DecodeAnswer(error=(kind, str(exc)))

    def result(self) -> Prepared:
        """The summary, or raise the error the decode process reported, as its own class."""
        if self.error is not None:
            kind, message = self.error
            raise _ERRORS.get(kind, WorkerFailed)(message)
        if self.prepared is None:
            raise WorkerFailed("a decode process answered neither a summary nor an error")
        return self.prepared


_ENCODER = msgspec.msgpack.Encoder()
_REQUESTS = msgspec.msgpack.Decoder(DecodeRequest)
_ANSWERS = msgspec.msgpack.Decoder(DecodeAnswer)


@dataclass(frozen=True, slots=True)
class DecodeSetup:
    """What every decode process needs (picklable: it crosses to the new process)."""

    address: WriterAddress
    limits: Limits
    max_text_chars: int
    log_level: str = "info"


def _serve(conn: Connection, setup: DecodeSetup) -> None:
    """Entry point of a decode process: answer requests until the server closes the connection."""
    # Ctrl-C and SIGTERM reach the whole process group; the server process closes the connection
    # when it stops, after the requests under way are answered.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=setup.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sender = JobSender(setup.address)
    trimmer = HeapTrimmer()
    reader = messages.MessageReader(conn)
    conn.send_bytes(READY)
    while True:
        try:
            request = _REQUESTS.decode(conn.recv_bytes())
            body = reader.read()  # valid until the next read: decoded (copied out) before then
        except (EOFError, OSError):
            break
        answer: DecodeAnswer
        try:
            answer = DecodeAnswer(prepared=prepare_and_hand_over(
                sender, request.job_id, body, request.media, request.content_encoding, request.project_header,
                setup.limits, setup.max_text_chars, request.allowed_projects))
        except _EXPECTED as exc:
            answer = DecodeAnswer.of_error(exc)
        except Exception as exc:  # a bug: report it, keep serving
            log.exception("decoding request %d failed", request.job_id)
            answer = DecodeAnswer.of_error(WorkerFailed(f"{exc.__class__.__name__}: {exc}"))
        size = len(body)
        del body
        reader.done()
        try:
            conn.send_bytes(_ENCODER.encode(answer))
        except OSError:
            break
        trimmer.processed(size)
    sender.close()


class _Decoder:
    """One decode process and the server's end of its connection."""

    START_TIMEOUT = 120.0

    def __init__(self, context: multiprocessing.context.SpawnContext, setup: DecodeSetup) -> None:
        ours, theirs = context.Pipe(duplex=True)
        self.conn = messages.tune(ours)
        messages.tune(theirs)
        self.process: BaseProcess = context.Process(target=_serve, args=(theirs, setup), name="threadline-decode",
                                                    daemon=True)
        self.process.start()
        theirs.close()
        try:  # a process that never gets ready counts as broken
            self.broken = not (ours.poll(self.START_TIMEOUT) and ours.recv_bytes(len(READY)) == READY)
        except (EOFError, OSError):
            self.broken = True

    def usable(self) -> bool:
        return not self.broken and self.process.is_alive()

    def stop(self, timeout: float) -> None:
        messages.shut_down(self.conn)
        self.conn.close()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


class DecodePool:
    """A fixed number of decode processes; a request waits for a free one."""

    def __init__(self, workers: int, setup: DecodeSetup) -> None:
        self.workers = workers
        self.setup = setup
        self._context = multiprocessing.get_context("spawn")
        self._idle: queue.Queue[_Decoder] = queue.Queue()

    def start(self) -> None:
        """Start the decode processes and wait until each is ready."""
        for _ in range(self.workers):
            self._idle.put(_Decoder(self._context, self.setup))

    def run(self, job_id: int, body: Body, media: str, content_encoding: str | None,
            project_header: str | None, allowed_projects: frozenset[str] | None = None,
            wait: float | None = None, body_taken: Callable[[], None] | None = None) -> Prepared:
        """Prepare one request in a decode process (blocking); raises what the process reports.

        ``wait``: longest wait for a free decode process, then :class:`Overloaded` (``None``: no limit).
        ``body_taken``: called as soon as the decode process has the whole body (the caller may
        let go of it while the request is decoded and committed).
        """
        try:
            decoder = self._idle.get(timeout=wait)
        except queue.Empty:
            raise Overloaded(f"no decode process was free within {wait:.1f} s") from None
        try:
            if not decoder.usable():
                try:
                    decoder = self._replace(decoder)
                except OSError as exc:  # no new process (limits, memory): this request gets a 503
                    raise WorkerLost(f"no decode process could be started: {exc}") from exc
            header = _ENCODER.encode(DecodeRequest(job_id, media, content_encoding, project_header, allowed_projects))
            try:
                decoder.conn.send_bytes(header)
                decoder.conn.send_bytes(body)
                if body_taken is not None:
                    body_taken()
                answer = decoder.conn.recv_bytes()
            except (EOFError, OSError):
                decoder.broken = True
                log.warning("a decode process stopped while decoding a request; it will be replaced")
                raise WorkerLost("a decode process stopped while decoding this request") from None
            try:
                decoded = _ANSWERS.decode(answer)
            except msgspec.DecodeError as exc:  # a bug: never from a decode process of this version
                raise WorkerFailed(f"a decode process sent an answer that could not be read: {exc}") from exc
            return decoded.result()
        finally:
            self._idle.put(decoder)

    def _replace(self, dead: _Decoder) -> _Decoder:
        dead.stop(timeout=1.0)
        return _Decoder(self._context, self.setup)

    def close(self, timeout: float = 30.0) -> None:
        """Stop every decode process once the request it is working on is answered."""
        for _ in range(self.workers):
            try:
                decoder = self._idle.get(timeout=timeout)
            except queue.Empty:
                log.warning("a decode process is still busy after %.0f s; leaving it", timeout)
                continue
            decoder.stop(timeout)
