"""Length-prefixed frames over a stream socket: how ingest's processes pass bytes to each other.

A frame is an 8-byte little-endian length and that many bytes, read straight into one buffer:
no intermediate copies, whatever the size (request bodies and packed records run to megabytes).
"""

from __future__ import annotations

import socket
import struct

_LENGTH = struct.Struct("<Q")
#: Socket buffers sized for a few megabyte-sized frames (fewer wake-ups per frame).
BUFFER_BYTES = 4 * 1024 * 1024


def tune(sock: socket.socket) -> socket.socket:
    """Give ``sock`` large send and receive buffers; returns it."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER_BYTES)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER_BYTES)
    return sock


def _receive_into(sock: socket.socket, view: memoryview) -> bool:
    """Fill ``view`` from ``sock``; ``False`` if it closes first."""
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if n == 0:
            return False
        got += n
    return True


def read_exactly(sock: socket.socket, size: int) -> bytearray | None:
    """``size`` bytes from ``sock``, or ``None`` if it closes first."""
    buffer = bytearray(size)
    return buffer if _receive_into(sock, memoryview(buffer)) else None


class FrameReader:
    """Reads frames into one buffer that is reused, for a reader that consumes each frame before
    reading the next: no allocation (and zero-filling) of a new megabyte-sized buffer per frame."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray(64 * 1024)

    def read(self) -> memoryview | None:
        """The next frame, valid until the next call; ``None`` when the peer has gone."""
        try:
            header = self._fill(_LENGTH.size)
            if header is None:
                return None
            (size,) = _LENGTH.unpack(header)
            return self._fill(size)
        except OSError:
            return None

    def _fill(self, size: int) -> memoryview | None:
        if len(self._buffer) < size:
            self._buffer = bytearray(max(size, 2 * len(self._buffer)))
        view = memoryview(self._buffer)[:size]
        return view if _receive_into(self.sock, view) else None


def send_frames(sock: socket.socket, *frames: bytes | bytearray | memoryview) -> None:
    """Send each of ``frames`` as one frame. Raises ``OSError`` when the peer is gone."""
    for frame in frames:
        sock.sendall(_LENGTH.pack(len(frame)))
        sock.sendall(frame)

