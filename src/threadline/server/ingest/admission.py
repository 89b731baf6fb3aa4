"""Admission control: how much ingest work may wait at once, so overload is answered in time.

Every export request, on every transport, takes a :class:`Ticket` before its body is read (HTTP
with a ``Content-Length``) or decoded (gRPC, chunked HTTP), and gives it back when it is answered.
A request that would take the count of requests or of body bytes past their limits is refused at
once with :class:`Overloaded` (503 + ``Retry-After`` / gRPC ``UNAVAILABLE`` with retry info), as
the OpenTelemetry Collector's memory limiter refuses data instead of queueing it without bound.
The wait for a decode process and the write backlog are bounded in time by
:class:`~threadline.server.ingest.service.IngestService` with the same error.
"""

from __future__ import annotations

import threading
from types import TracebackType


class Overloaded(RuntimeError):
    """More ingest work is waiting than the limits allow: answer 503 + Retry-After, the client retries."""


class Ticket:
    """One admitted request's share of the limits; give it back with ``with`` or :meth:`release`."""

    def __init__(self, admission: Admission, nbytes: int) -> None:
        self._admission = admission
        self.nbytes = nbytes
        self._released = False

    def grow(self, extra: int) -> None:
        """Count ``extra`` more body bytes (a body without ``Content-Length``); :class:`Overloaded` past the limit."""
        self._admission._take(0, extra)
        self.nbytes += extra

    def release_bytes(self) -> None:
        """Give back the body's share of the bytes (the body is no longer held); the request keeps its place."""
        if not self._released:
            self._admission._give(0, self.nbytes)
            self.nbytes = 0

    def release(self) -> None:
        """Give the share back (idempotent)."""
        if not self._released:
            self._released = True
            self._admission._give(1, self.nbytes)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()


class Admission:
    """Counts the requests and body bytes admitted and not yet answered, against their limits."""

    def __init__(self, max_requests: int, max_bytes: int) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.requests = 0
        self.bytes = 0
        self.refused = 0

    def admit(self, nbytes: int) -> Ticket:
        """A ticket for a request of ``nbytes`` (as sent; 0 when not known yet), or :class:`Overloaded`."""
        self._take(1, nbytes)
        return Ticket(self, nbytes)

    def _take(self, requests: int, nbytes: int) -> None:
        with self._lock:
            if self.requests + requests > self.max_requests:
                self.refused += 1
                raise Overloaded(f"{self.requests} export requests are already being handled")
            # A single body larger than the whole budget is still admitted when nothing else
            # waits (the size caps bound it), so a big batch is slow, never refused forever.
            if self.bytes and self.bytes + nbytes > self.max_bytes:
                self.refused += 1
                raise Overloaded(f"{self.bytes} bytes of export requests are already waiting to be decoded")
            self.requests += requests
            self.bytes += nbytes

    def _give(self, requests: int, nbytes: int) -> None:
        with self._lock:
            self.requests -= requests
            self.bytes -= nbytes
