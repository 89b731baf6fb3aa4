"""Messages between ingest's processes: every stream channel is a :class:`multiprocessing.connection.Connection`.

A message is a length and that many bytes (``Connection.send_bytes``, which takes bytes, a
bytearray or a memoryview without copying it). The channels that carry megabytes — request bodies
to a decode process, packed records to the writer — are read with a :class:`MessageReader`, into
one buffer that is reused: no new megabyte-sized buffer (allocated and zero-filled) per message.

The socket options here act on a connection's file descriptor: ``Connection`` reads and writes
it with ``os.read`` and ``os.write``, so a timeout must be the kernel's (``SO_RCVTIMEO``), not a
Python socket's.
"""

from __future__ import annotations

import os
import socket
import struct
from multiprocessing.connection import Connection

#: Socket buffers sized for a few megabyte-sized messages (fewer wake-ups per message).
BUFFER_BYTES = 4 * 1024 * 1024


def _setsockopt(fd: int, option: int, value: int | bytes) -> None:
    sock = socket.socket(fileno=fd)  # borrowed: detached below, so the descriptor stays open
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, value)
    finally:
        sock.detach()


def tune(conn: Connection) -> Connection:
    """Give the socket under ``conn`` large send and receive buffers; returns ``conn``."""
    _setsockopt(conn.fileno(), socket.SO_SNDBUF, BUFFER_BYTES)
    _setsockopt(conn.fileno(), socket.SO_RCVBUF, BUFFER_BYTES)
    return conn


def set_timeouts(conn: Connection, seconds: float) -> None:
    """Make each read and write on ``conn``'s socket fail (``OSError``) after ``seconds`` without
    progress; ``0``: wait as long as it takes."""
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    _setsockopt(conn.fileno(), socket.SO_RCVTIMEO, timeval)
    _setsockopt(conn.fileno(), socket.SO_SNDTIMEO, timeval)


def shut_down(conn: Connection) -> None:
    """End ``conn``'s socket in both directions without closing it: a thread blocked reading it
    wakes up (end of file) and closes it itself."""
    try:
        sock = socket.socket(fileno=conn.fileno())
    except OSError:  # closed already
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already disconnected
    finally:
        sock.detach()


#: ``Connection``'s wire format (CPython ``multiprocessing.connection``): a signed big-endian 4-byte
#: length, or -1 and an 8-byte length for a message over 2 GiB, then the message.
_LENGTH = struct.Struct("!i")
_LONG_LENGTH = struct.Struct("!Q")


def _fill(fd: int, view: memoryview) -> None:
    """Fill ``view`` from ``fd``; ``EOFError`` if the peer goes first."""
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if n == 0:
            raise EOFError("the peer closed the connection")
        got += n


class MessageReader:
    """Receives the messages of one connection into a buffer that is reused, for a reader that
    is done with each message before it reads the next.

    The message is read from the descriptor straight into the buffer, in ``Connection``'s own
    format: ``Connection.recv_bytes_into`` would first receive it whole into a buffer of its own
    and then copy it (a second request-sized allocation per message, up to the 32 MiB cap).
    """

    #: A buffer grown past this is let go once its message is done with (:meth:`done`): an
    #: occasional 20 MB request does not keep 20 MB resident in every process it went through.
    KEEP_BYTES = 4 * 1024 * 1024

    def __init__(self, conn: Connection, size: int = 64 * 1024) -> None:
        self.conn = conn
        self._size = size
        self._buffer = bytearray(size)
        self._header = bytearray(_LONG_LENGTH.size)

    def read(self) -> memoryview:
        """The next message, valid until the next call. Raises ``EOFError`` when the peer has
        gone, ``OSError`` when the connection broke."""
        fd = self.conn.fileno()
        header = memoryview(self._header)
        _fill(fd, header[:_LENGTH.size])
        (size,) = _LENGTH.unpack_from(header)
        if size == -1:
            _fill(fd, header)
            (size,) = _LONG_LENGTH.unpack_from(header)
        if size > len(self._buffer):  # grown to what is needed, no more: it stays resident
            self._buffer = bytearray(size)
        view = memoryview(self._buffer)[:size]
        _fill(fd, view)
        return view

    @property
    def held(self) -> int:
        """Bytes of the buffer kept for the next message."""
        return len(self._buffer)

    def done(self) -> None:
        """The last message is no longer used: a buffer larger than :attr:`KEEP_BYTES` is freed
        (the next large message allocates one again, a millisecond per 10 MB)."""
        if len(self._buffer) > self.KEEP_BYTES:
            self._buffer = bytearray(self._size)
