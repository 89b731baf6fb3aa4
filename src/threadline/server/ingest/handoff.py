"""The channel that carries decoded requests from the decode processes to the writer process.

A Unix socket in a directory only the server's user can enter; a client proves itself with a
random key first. Each *job* — the packed records of one request — is two :mod:`.frames`: the
job id and the payload, read straight into one buffer. The records cross
from the decode process to the writer without passing through the server process, which only
hears back the job's outcome.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass

from threadline.server.ingest import frames
from threadline.server.store.records import SpanRecord, unpack_records

_JOB_ID = struct.Struct("<q")
_KEY_BYTES = 32


class WriterUnreachable(RuntimeError):
    """The writer process did not take the job (it is restarting or gone): answer 503."""


@dataclass(frozen=True, slots=True)
class WriterAddress:
    """Where the writer process listens, and the key a client must present."""

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
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.01
        while True:
            sock = frames.tune(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            try:
                sock.connect(self.address.path)
                sock.sendall(self.address.key)
                return sock
            except OSError as exc:
                sock.close()
                if time.monotonic() + delay > deadline:
                    raise WriterUnreachable(f"the writer process is not reachable: {exc}") from exc
                time.sleep(delay)  # it is starting or restarting
                delay = min(delay * 2, 0.5)

    def send(self, job_id: int, payload: bytes) -> None:
        """Hand one job to the writer (blocks while the writer's buffer is full)."""
        header = _JOB_ID.pack(job_id)
        with self._lock:
            for attempt in (1, 2):
                if self._sock is None:
                    self._sock = self._connect()
                try:
                    frames.send_frames(self._sock, header, payload)
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
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


class JobListener:
    """The writer's listening socket, and the clients that have not presented the key yet.

    Nothing here blocks: a new connection waits in :attr:`greeting` (non-blocking) until its key
    has arrived, read as it comes by :meth:`greet` from the writer's event loop, so a client that
    connects and sends nothing holds up no commit. At most :data:`MAX_GREETING` wait at once (the
    oldest is dropped), each for at most :data:`GREETING_SECONDS`.
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
        self.greeting: dict[socket.socket, tuple[bytearray, float]] = {}

    def accept(self) -> None:
        """Take the next connection into :attr:`greeting` (and drop greetings that took too long)."""
        client, _ = self.sock.accept()
        client.setblocking(False)
        now = time.monotonic()
        for stale in [c for c, (_, since) in self.greeting.items() if now - since > self.GREETING_SECONDS]:
            self._drop(stale)
        if len(self.greeting) >= self.MAX_GREETING:
            self._drop(next(iter(self.greeting)))
        self.greeting[client] = (bytearray(), now)

    def greet(self, client: socket.socket) -> socket.socket | None:
        """Read what ``client`` (readable) sent of its key; the client once it has presented the
        right key, else ``None`` (still greeting, or dropped)."""
        received, _since = self.greeting[client]
        try:
            chunk = client.recv(_KEY_BYTES - len(received))
        except BlockingIOError:
            return None
        except OSError:
            chunk = b""
        if not chunk:  # gone before presenting the key
            self._drop(client)
            return None
        received += chunk
        if len(received) < _KEY_BYTES:
            return None
        del self.greeting[client]
        if not hmac.compare_digest(bytes(received), self.address.key):
            client.close()
            return None
        client.setblocking(True)
        return frames.tune(client)

    def _drop(self, client: socket.socket) -> None:
        self.greeting.pop(client, None)
        client.close()

    def close(self) -> None:
        """Stop listening and remove the socket file."""
        for client in list(self.greeting):
            self._drop(client)
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address.path)


def read_job(reader: frames.FrameReader) -> Job | None:
    """The next job on a client connection, unpacked; ``None`` when the client has gone."""
    header = reader.read()
    if header is None or len(header) != _JOB_ID.size:
        return None
    (job_id,) = _JOB_ID.unpack(header)
    payload = reader.read()
    return None if payload is None else Job(job_id, unpack_records(payload))
