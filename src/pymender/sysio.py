"""What pymender asks of the operating system, in one place: durable writes and the rest.

Every part of pymender that must not lose data to a power cut writes through these functions,
so there is one answer to "when is it on the disk":

- :func:`write_all`, :func:`pwrite_all`: a whole buffer, however many calls the kernel needs;
- :func:`fsync_dir`: make a new or renamed directory entry durable (tolerating filesystems that
  refuse to fsync a directory);
- :func:`replace_file`: replace a file so that a power cut leaves the old or the new content,
  never a mix (write a temporary file, fsync, rename over, fsync the directory);
- :func:`create_file`: a new file with its content and mode, fsynced (refuses to follow links);
- :func:`overwrite_file`: rewrite a small file in place and fsync it, for formats whose
  crash-safety comes from their own redundancy (the GRUB environment's two copies);
- :func:`writeback_starter`, :class:`WriteBehind`: ask the kernel to start writing back what a
  long write has produced so far, so its final fsync has little left to do (only a hint).

And the small questions every part asks the same way: :func:`cores` (the CPUs this process may
run on) and :func:`source_date_epoch` (the build time of a reproducible output).

Standard library only, and cheap to import: the device command imports it on every start.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path

from pymender.errors import UsageError

Buffer = bytes | bytearray | memoryview

#: ``(fd, offset, length)``: start writing back that range of the file (length 0: to its end).
Starter = Callable[[int, int, int], object]
_SYNC_FILE_RANGE_WRITE = 2


# --- Writing everything ------------------------------------------------------------------------


def write_all(fd: int, data: Buffer) -> None:
    """Write all of ``data`` at the file position of ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def pwrite_all(fd: int, data: Buffer, offset: int) -> None:
    """Write all of ``data`` at ``offset`` of ``fd`` (the file position does not move)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


# --- Durable files -----------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    """Make a change of a directory's entries (create, rename) durable.

    Some filesystems (vfat on older kernels) refuse to fsync a directory; there the entry is
    as durable as the filesystem makes it, and the refusal is not an error.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def replace_file(path: Path, data: Buffer) -> None:
    """Replace ``path`` with ``data`` so that a power cut leaves either the old or the new file.

    Steps: write a temporary file beside it, fsync it, rename it over ``path``, fsync the
    directory (without that, the rename itself may be lost). The temporary name is fixed, so a
    leftover from an interrupted write is simply overwritten next time.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def create_file(path: Path, data: Buffer, mode: int) -> None:
    """Create ``path`` (it must not exist, and is never a link followed) holding ``data`` with
    exactly ``mode`` (not narrowed by the umask), and fsync it. The caller fsyncs the directory
    once it has created all its files."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        write_all(fd, data)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def overwrite_file(path: Path, data: Buffer) -> None:
    """Rewrite ``path`` in place with ``data`` (created if missing) and make it durable.

    Not atomic: a power cut in the middle leaves a mix of old and new bytes. For formats that
    protect themselves (a checksum, a second copy written after this one).
    """
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, data)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


# --- Write-back hints --------------------------------------------------------------------------


def writeback_starter() -> Starter | None:
    """``sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)`` from the C library: start
    writing back a range and return at once. None where the call is missing (not Linux, no C
    library). Only a hint: its callers ignore its failures, and an fsync makes data durable.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes  # here, not at the top: only long writes need it

        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (ImportError, OSError, AttributeError):  # pragma: no cover - no usable C library
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    function.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> object:
        return function(fd, offset, length, _SYNC_FILE_RANGE_WRITE)

    return start


def drop_cached(fd: int, offset: int, length: int) -> None:
    """``posix_fadvise(DONTNEED)``: drop the clean cached pages of a range (and start writing
    back the dirty ones). Only a hint, so a refusal is ignored."""
    try:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except (OSError, AttributeError):  # pragma: no cover - not Linux, or a device without it
        pass


class WriteBehind:
    """Lets the kernel write a growing output file back while it is still being written.

    Call :meth:`wrote` after each write; every :attr:`step` bytes it starts write-back of what
    was written since the last request (``sync_file_range``, or nothing where that is missing).
    Left alone, the kernel starts writing a file back only after some seconds, and the final
    fsync then waits for the whole file; asked every few MiB, the disk works while the CPU does,
    and the pages stay cached (a read right after the write comes from memory).
    """

    #: Bytes written between two requests to start write-back.
    STEP = 4 << 20

    def __init__(self, fd: int, starter: Starter | None = None, step: int = STEP) -> None:
        self._fd = fd
        self._start = starter if starter is not None else writeback_starter()
        self.step = step
        self._started_at = 0  # offset up to which write-back was requested

    def wrote(self, position: int) -> None:
        """The file now holds ``position`` bytes (buffered data may lag a little behind)."""
        if self._start is not None and position - self._started_at >= self.step:
            self._start(self._fd, self._started_at, 0)  # 0: from there to the end
            self._started_at = position


# --- Small questions ---------------------------------------------------------------------------


def cores() -> int:
    """The number of CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def source_date_epoch() -> int | None:
    """The build time ``SOURCE_DATE_EPOCH`` asks for (whole seconds since 1970), or None when it
    is unset or empty. Anything else is refused: an output the user asked to be reproducible
    must not silently depend on the clock."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()):
        raise UsageError(
            f"SOURCE_DATE_EPOCH must be a number of seconds, not {value!r}",
            hint="set it to a whole number of seconds since 1970 (e.g. date +%s), or unset it",
        )
    return int(value)


__all__ = [
    "Starter",
    "WriteBehind",
    "cores",
    "create_file",
    "drop_cached",
    "fsync_dir",
    "overwrite_file",
    "pwrite_all",
    "replace_file",
    "source_date_epoch",
    "write_all",
    "writeback_starter",
]
