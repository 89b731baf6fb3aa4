"""Giving the memory of finished requests back to the operating system.

glibc's ``malloc`` keeps what a process frees for its own reuse: after decoding a 20 MiB request
a process goes on holding the request's high-water mark, and the server, each decode process and
the writer all hold theirs at once, whatever they are doing now. ``malloc_trim`` returns the free
pages. It walks the heap (a millisecond or two for a few hundred MB), so a :class:`HeapTrimmer`
calls it only after enough bytes have gone through, and at most once per interval: small
requests never pay for it, large ones a fraction of a percent of their decoding time.
Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        function: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc
        return None
    return function


_TRIM = _malloc_trim()


class HeapTrimmer:
    """Calls ``malloc_trim`` once ``every_bytes`` have been processed since the last call, at most
    once per ``min_interval`` seconds. Thread-safe."""

    def __init__(self, every_bytes: int = 16 * 1024 * 1024, min_interval: float = 1.0) -> None:
        self.every_bytes = every_bytes
        self.min_interval = min_interval
        self._pending = 0
        self._last = 0.0
        self._lock = threading.Lock()

    def processed(self, nbytes: int) -> None:
        """Count ``nbytes`` of finished work (a request's body, a committed job); trim when due."""
        now = time.monotonic()
        with self._lock:
            self._pending += nbytes
            if self._pending < self.every_bytes or now - self._last < self.min_interval:
                return
            self._pending = 0
            self._last = now
        if _TRIM is not None:
            _TRIM(0)
