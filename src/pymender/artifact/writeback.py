"""Let the kernel write a growing output file back while it is still being written.

The writer ends with an ``fsync``, so a renamed Artifact is on disk, not just in the page cache.
Left alone, the kernel starts writing a file back only after some seconds, and that ``fsync``
then waits for the whole file (0.3 s for 150 MB here). Asking for write-back every few MiB
(``sync_file_range`` with ``SYNC_FILE_RANGE_WRITE``: start, do not wait) lets the disk work
while the CPU compresses, and the final ``fsync`` finds little left to do. Unlike
``posix_fadvise(POSIX_FADV_DONTNEED)`` it leaves the pages in the cache, so a ``validate`` right
after ``write`` reads from memory.

Only a hint: where the call is missing (not Linux, no C library found) nothing is done, and the
final ``fsync`` alone makes the file durable.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

#: Bytes written between two requests to start write-back.
STEP = 4 << 20
_SYNC_FILE_RANGE_WRITE = 2

#: ``(fd, offset, length)``: start writing back that range of the file (length 0: to its end).
Starter = Callable[[int, int, int], object]


def sync_file_range_starter() -> Starter | None:
    """``sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)`` from the C library: start
    write-back of a range and return at once. None where the call is missing (not Linux, no C
    library). Failures of the call itself are ignored by its callers: it is only a hint.

    Shared by the Artifact writer and the device's partition writer.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes  # here, not at the top: only writers need it

        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (ImportError, OSError, AttributeError):  # pragma: no cover - no usable C library
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    function.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> object:
        return function(fd, offset, length, _SYNC_FILE_RANGE_WRITE)

    return start


class WriteBehind:
    """Call :meth:`wrote` after each write; every :data:`STEP` bytes it starts write-back."""

    def __init__(self, fd: int, starter: Starter | None = None) -> None:
        self._fd = fd
        self._start = starter if starter is not None else sync_file_range_starter()
        self._started_at = 0  # offset up to which write-back was requested

    def wrote(self, position: int) -> None:
        """The file now holds ``position`` bytes (buffered data may lag a little behind)."""
        if self._start is not None and position - self._started_at >= STEP:
            self._start(self._fd, self._started_at, 0)  # 0: from there to the end
            self._started_at = position
