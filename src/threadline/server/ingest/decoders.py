"""Decode processes: the CPU-heavy half of ingest, apart from the server process.

Each decode process is connected to the server process by one socket pair. A request is two
:mod:`.frames` — a small header (job id, media type, encoding, project header) and the body as
sent — and the answer one frame: a :class:`~threadline.server.ingest.prepare.Prepared` summary, or
the error to report (``otlp.DecodeError`` and friends, ``handoff.WriterUnreachable``). The
records themselves go from the decode process straight to the writer process (:mod:`.handoff`).

A plain socket pair costs a fraction of a process pool's queues for megabyte-sized bodies (no
pickled copies, no feeder threads). A decode process that dies (killed, out of memory) costs the
request it was working on a :class:`WorkerLost` (503) and is replaced before its next request.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
import queue
import signal
import socket
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

from threadline.server.ingest import frames
from threadline.server.ingest.admission import Overloaded
from threadline.server.ingest.handoff import JobSender, WriterAddress, WriterUnreachable
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

#: Errors a decode process reports as they are; anything else is a bug, reported as WorkerFailed.
_EXPECTED = (DecodeError, PayloadTooLarge, UnsupportedContentType, ProjectNotAllowed, WriterUnreachable)


class WorkerLost(RuntimeError):
    """A decode process died during this request; it is replaced (answer 503)."""


class WorkerFailed(RuntimeError):
    """A decode process failed on this request with an unexpected error (a bug)."""


@dataclass(frozen=True, slots=True)
class DecodeSetup:
    """What every decode process needs (picklable: it crosses to the new process)."""

    address: WriterAddress
    limits: Limits
    max_text_chars: int
    log_level: str = "info"


def _serve(sock: socket.socket, setup: DecodeSetup) -> None:
    """Entry point of a decode process: answer requests until the server closes the socket."""
    # Ctrl-C and SIGTERM reach the whole process group; the server process closes the socket
    # when it stops, after the requests under way are answered.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=setup.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sender = JobSender(setup.address)
    reader = frames.FrameReader(sock)
    frames.send_frames(sock, b"ready")
    while True:
        header = reader.read()
        if header is None:
            break
        job_id, media, content_encoding, project_header, allowed_projects = pickle.loads(header)
        body = reader.read()  # valid until the next read: decoded (copied out) before then
        if body is None:
            break
        answer: tuple[str, object]
        try:
            answer = ("ok", prepare_and_hand_over(sender, job_id, body, media, content_encoding,
                                                  project_header, setup.limits, setup.max_text_chars,
                                                  allowed_projects))
        except _EXPECTED as exc:
            answer = ("error", exc)
        except Exception as exc:  # a bug: report it, keep serving
            log.exception("decoding request %d failed", job_id)
            answer = ("error", WorkerFailed(f"{exc.__class__.__name__}: {exc}"))
        try:
            frames.send_frames(sock, pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            break
    sender.close()


class _Decoder:
    """One decode process and the server's end of its socket."""

    START_TIMEOUT = 120.0

    def __init__(self, context: multiprocessing.context.SpawnContext, setup: DecodeSetup) -> None:
        ours, theirs = socket.socketpair()
        frames.tune(ours)
        frames.tune(theirs)
        self.sock = ours
        self.reader = frames.FrameReader(ours)
        self.process: BaseProcess = context.Process(target=_serve, args=(theirs, setup), name="threadline-decode",
                                                    daemon=True)
        self.process.start()
        theirs.close()
        ours.settimeout(self.START_TIMEOUT)  # a process that never gets ready counts as broken
        greeting = self.reader.read()
        ours.settimeout(None)
        self.broken = greeting is None or bytes(greeting) != b"ready"

    def usable(self) -> bool:
        return not self.broken and self.process.is_alive()

    def stop(self, timeout: float) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
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
            wait: float | None = None) -> Prepared:
        """Prepare one request in a decode process (blocking); raises what the process reports.

        ``wait``: longest wait for a free decode process, then :class:`Overloaded` (``None``: no limit).
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
            header = pickle.dumps((job_id, media, content_encoding, project_header, allowed_projects),
                                  protocol=pickle.HIGHEST_PROTOCOL)
            try:
                frames.send_frames(decoder.sock, header, body)
            except OSError:
                answer = None
            else:
                answer = decoder.reader.read()
            if answer is None:
                decoder.broken = True
                log.warning("a decode process stopped while decoding a request; it will be replaced")
                raise WorkerLost("a decode process stopped while decoding this request")
            kind, value = pickle.loads(answer)
            if kind == "error":
                assert isinstance(value, Exception)
                raise value
            assert isinstance(value, Prepared)
            return value
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
