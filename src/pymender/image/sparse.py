"""Copying into a sparse image: only data is read, only non-zero blocks are written.

A 4 GiB image around a 1 GiB rootfs should cost about one copy of the rootfs, not 4 GiB of
writes. The source's own holes are found with ``SEEK_DATA``/``SEEK_HOLE`` and never read; the
data in between is streamed in large chunks, and chunks that are entirely zero are skipped, so
they stay holes in the freshly truncated output. Only the standard library is used.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

from pymender.sysio import pwrite_all

CHUNK = 1024 * 1024
"""Large enough that system-call overhead is negligible (a thousand calls per GiB), small
enough that runs of zeros inside the source's data (a rootfs copied without holes) still become
holes in the image."""


def data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` byte ranges of ``fd`` that may hold data, in order.

    Where the filesystem cannot tell holes from data, the whole file is one range.
    """
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:  # only a hole is left
                return
            if err.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield pos, size
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        pos = end


def _pread_into(fd: int, buffer: bytearray, offset: int) -> int:
    """Fill ``buffer`` from ``offset``; returns how many bytes were read (short only at EOF)."""
    view = memoryview(buffer)
    got = 0
    while got < len(buffer):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n == 0:
            break
        got += n
    return got


def copy_sparse(src_fd: int, dst_fd: int, dst_offset: int, length: int) -> int:
    """Copy ``length`` bytes of ``src_fd`` to ``dst_fd`` at ``dst_offset``, skipping zeros.

    The destination must read as zeros where nothing is written (a freshly truncated file).
    Returns the number of bytes actually written.
    """
    written = 0
    full = bytearray(CHUNK)
    zeros = bytes(CHUNK)
    for start, end in data_ranges(src_fd, length):
        pos = start
        while pos < end:
            n = min(CHUNK, end - pos)
            if n == CHUNK:
                buffer, zero = full, zeros
            else:
                buffer, zero = bytearray(n), bytes(n)
            got = _pread_into(src_fd, buffer, pos)
            if got < n:
                raise OSError(errno.EIO, f"source ended {length - pos - got} bytes early")
            # bytearray == bytes compares with memcmp: a few GB/s, far cheaper than writing.
            if buffer != zero:
                pwrite_all(dst_fd, buffer, dst_offset + pos)
                written += n
            pos += n
    if os.fstat(src_fd).st_size < length:
        raise OSError(errno.EIO, f"source ended before {length} bytes (it shrank while copied)")
    return written


def write_at(fd: int, data: bytes, offset: int) -> int:
    """Write ``data`` at ``offset``; returns its length (for byte accounting)."""
    pwrite_all(fd, data, offset)
    return len(data)
