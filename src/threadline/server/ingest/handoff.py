"""The channel that carries decoded requests from the decode processes to the writer process.

A Unix socket (mode 0600) in a directory only the server's user can enter (0700), spoken as
:class:`multiprocessing.connection.Connection` messages (:mod:`.messages`). A client and the
writer prove to each other that they hold the same random key with multiprocessing's HMAC
challenge, in both directions (``deliver_challenge`` / ``answer_challenge``, what
``multiprocessing.connection.Listener`` and ``Client`` do): the key itself never crosses the
socket. Each *job* — the records of one request, packed by
:func:`~threadline.server.store.records.pack_records` — is then two messages: the job id and the
packed records, which the writer receives into one buffer per client that it reuses. The records
cross from the decode process to the writer without passing through the server process, which
only hears back the job's outcome.

The writer's event loop only accepts connections (:meth:`JobListener.accept`, never blocking);
the challenge runs in a short-lived greeter thread per connection, under socket timeouts, which
hands an authenticated connection back to the loop (:attr:`JobListener.arrivals`). So a client
that connects and sends nothing holds up neither a commit nor another client.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import struct
import threading
import time
from dataclasses import dataclass
from multiprocessing import AuthenticationError, Pipe
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge

import msgspec

from threadline.server.ingest import messages
from threadline.server.store.records import SpanRecord, unpack_records

log = logging.getLogger("threadline.ingest")

_JOB_ID = struct.Struct("<q")
_KEY_BYTES = 32


class WriterUnreachable(RuntimeError):
    """The writer process did not take the job (it is restarting or gone): answer 503."""


@dataclass(frozen=True, slots=True)
class WriterAddress:
    """Where the writer process listens, and the key both ends prove they hold."""

    path: str
    key: bytes

    @staticmethod
    def new(directory: str) -> WriterAddress:
        """A fresh address in ``directory`` (which should be private to this user)."""
        return WriterAddress(os.path.join(directory, "writer.sock"), os.urandom(_KEY_BYTES))


@dataclass(frozen=True, slots=True)
class Job:
    """One request's records as the writer receives them."""

    job_id: int
    records: list[SpanRecord]
    #: The size of the packed records as they crossed.
    nbytes: int = 0

    @property
    def spans(self) -> int:
        """How many spans the job holds."""
        return len(self.records)


class JobSender:
    """A connection to the writer; reconnects when the writer has restarted. Thread-safe: one
    job at a time goes over the connection."""

    def __init__(self, address: WriterAddress, connect_timeout: float = 30.0) -> None:
        self.address = address
        self.connect_timeout = connect_timeout
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> Connection:
        """Connect and authenticate (what ``multiprocessing.connection.Client`` does, with large
        socket buffers, and a handshake that cannot outlast ``connect_timeout``)."""
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.01
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.address.path)
            except OSError as exc:
                sock.close()
                failure: Exception = exc
            else:
                conn = messages.tune(Connection(sock.detach()))
                try:
                    messages.set_timeouts(conn, max(1.0, deadline - time.monotonic()))
                    answer_challenge(conn, self.address.key)
                    deliver_challenge(conn, self.address.key)
                    messages.set_timeouts(conn, 0)
                    return conn
                except (OSError, EOFError, AuthenticationError) as exc:
                    conn.close()
                    failure = exc
            if time.monotonic() + delay > deadline:
                raise WriterUnreachable(f"the writer process is not reachable: {failure}") from failure
            time.sleep(delay)  # it is starting or restarting
            delay = min(delay * 2, 0.5)

    def send(self, job_id: int, payload: bytes | bytearray) -> None:
        """Hand one job to the writer (blocks while the writer's buffer is full)."""
        header = _JOB_ID.pack(job_id)
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None:
                    self._conn = self._connect()
                try:
                    self._conn.send_bytes(header)
                    self._conn.send_bytes(payload)
                    return
                except OSError as exc:  # the writer restarted since the last job: connect again, once
                    self._disconnect()
                    if attempt == 2:
                        raise WriterUnreachable(f"the writer process closed the connection: {exc}") from exc

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._disconnect()

    def _disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None


class JobListener:
    """The writer's listening socket, and the connections being authenticated.

    :meth:`accept` takes a connection at once and starts a greeter thread for it, which runs the
    challenge with socket timeouts of :attr:`GREETING_SECONDS` per read or write, then clears them
    and queues the connection; :attr:`arrivals` turns readable, and :meth:`greeted` returns the
    queued connections. A failed challenge closes the connection before anything else it sent is
    read. At most :attr:`MAX_GREETING` connections are greeted at once (the oldest is cut off),
    none for longer than :attr:`GREETING_SECONDS` once another connection arrives.
    """

    MAX_GREETING = 64
    GREETING_SECONDS = 5.0

    def __init__(self, address: WriterAddress) -> None:
        self.address = address
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address.path)  # left by a writer process that died
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(address.path)
        os.chmod(address.path, 0o600)
        self.sock.listen(64)
        self.sock.setblocking(False)
        #: Readable once a connection has been authenticated: then call :meth:`greeted`.
        self.arrivals, self._wake = Pipe(duplex=False)
        self._lock = threading.Lock()  # _greeting, _closed, and the queueing of a greeted connection
        self._greeting: dict[Connection, float] = {}  # connection → when it was accepted (monotonic)
        self._greeted: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self._closed = False

    @property
    def greeting(self) -> int:
        """How many connections are being authenticated."""
        with self._lock:
            return len(self._greeting)

    def accept(self) -> None:
        """Take the next connection, if any, and start authenticating it in a thread (never blocks)."""
        try:
            sock, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        sock.setblocking(True)  # Connection reads and writes the descriptor directly
        conn = messages.tune(Connection(sock.detach()))
        messages.set_timeouts(conn, self.GREETING_SECONDS)
        now = time.monotonic()
        with self._lock:
            for stale in [c for c, since in self._greeting.items() if now - since > self.GREETING_SECONDS]:
                self._cut(stale)
            if len(self._greeting) >= self.MAX_GREETING:
                self._cut(next(iter(self._greeting)))
            self._greeting[conn] = now
        threading.Thread(target=self._greet, args=(conn,), name="threadline-greeter", daemon=True).start()

    def _cut(self, conn: Connection) -> None:
        """Stop greeting ``conn``: its thread wakes up and closes it (call under ``_lock``)."""
        del self._greeting[conn]
        messages.shut_down(conn)

    def _greet(self, conn: Connection) -> None:
        try:
            deliver_challenge(conn, self.address.key)
            answer_challenge(conn, self.address.key)
            messages.set_timeouts(conn, 0)
        except AuthenticationError as exc:
            log.warning("refused a connection to the hand-off socket: %s", exc)
            self._forget(conn)
            return
        except Exception as exc:  # gone, silent, cut off, or not speaking the protocol at all
            log.debug("dropped a connection to the hand-off socket before it authenticated: %r", exc)
            self._forget(conn)
            return
        with self._lock:
            if self._greeting.pop(conn, None) is not None and not self._closed:
                self._greeted.put(conn)
                with contextlib.suppress(OSError):
                    self._wake.send_bytes(b"")
                return
        conn.close()  # cut off (too slow) or the listener closed meanwhile

    def _forget(self, conn: Connection) -> None:
        with self._lock:
            self._greeting.pop(conn, None)
        conn.close()

    def greeted(self) -> list[Connection]:
        """The connections authenticated since the last call (call when :attr:`arrivals` is readable)."""
        with contextlib.suppress(EOFError, OSError):
            while self.arrivals.poll():
                self.arrivals.recv_bytes()
        ready = []
        while True:
            try:
                ready.append(self._greeted.get_nowait())
            except queue.Empty:
                return ready

    def close(self) -> None:
        """Stop listening, remove the socket file, and close the connections not handed over yet."""
        with self._lock:
            self._closed = True
            for conn in list(self._greeting):
                self._cut(conn)
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address.path)
        for conn in self.greeted():
            conn.close()
        self.arrivals.close()
        with self._lock:
            self._wake.close()


class JobReader:
    """Reads the jobs of one authenticated client, each payload into one buffer that is reused."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._reader = messages.MessageReader(conn)

    def read(self) -> Job | None:
        """The next job, unpacked; ``None`` when the client has gone (or sent what is not a job)."""
        try:
            header = self.conn.recv_bytes(_JOB_ID.size)
            if len(header) != _JOB_ID.size:
                return None
            (job_id,) = _JOB_ID.unpack(header)
            payload = self._reader.read()
            job = Job(job_id, unpack_records(payload), len(payload))  # copied out of the reused buffer
            del payload
            self._reader.done()
            return job
        except (EOFError, OSError):
            return None
        except msgspec.DecodeError as exc:  # a decode process would never send this: a bug
            log.error("a hand-off client sent a job that is not packed records (%s); dropping it", exc)
            return None
