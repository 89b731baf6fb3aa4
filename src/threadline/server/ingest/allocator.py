"""Ask the C allocator to give large buffers back to the system as soon as they are freed.

Request bodies of tens of MiB pass through the server process and the decode processes. glibc's
``malloc`` serves allocations of 128 KiB and more with their own ``mmap`` and unmaps them on
``free`` — but each time such a buffer is freed it raises that threshold to the buffer's size (up
to 32 MiB), after which buffers of that size come from the heap and their memory stays with the
process when freed. Under a steady stream of 20 MiB requests the freed heap grows with every
request of a new size and the process's RSS with it. :func:`return_large_buffers` fixes the
threshold (``mallopt(M_MMAP_THRESHOLD)``, which also turns the adjustment off) and the heap's trim
threshold at :data:`LARGE_BUFFER_BYTES`. It costs one ``mmap``/``munmap`` per large buffer.

Every Threadline process that handles request bodies calls it first: the server process
(``web/serve.py``), the decode processes and the writer process. Elsewhere than glibc it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: Allocations of at least this size are mapped on their own and unmapped when freed.
LARGE_BUFFER_BYTES = 128 * 1024
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def return_large_buffers() -> bool:
    """Fix glibc's mmap and trim thresholds at :data:`LARGE_BUFFER_BYTES`; ``True`` when applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, LARGE_BUFFER_BYTES))
