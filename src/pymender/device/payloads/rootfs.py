"""Write a ``rootfs-image`` payload to the inactive partition, straight from the Artifact stream.

The payload is never stored anywhere else: each block read from the Artifact (already
decompressed, its SHA-256 updated on the fly by the reader) goes to the partition at once. So:

- Whether the payload fits is checked *before* the first byte is written: a block device's size
  comes from ``ioctl(BLKGETSIZE64)`` (or a seek to its end), a regular file standing in for a
  partition keeps its current size and must already be at least as large as the payload (it is
  never grown or truncated).
- Data goes out in large blocks (1 MiB by default, from a small ring of reused buffers),
  aligned to the block size from the start of the partition.
- With ``skip_identical`` (configuration key ``SkipIdenticalBlocks``) each block is first read
  back from the partition and written only when it differs, as Mender does, which spares flash
  wear when most of the image did not change; it costs one read per block.
- The reader checks the payload's SHA-256 on the read that returns its last byte and raises
  :class:`~pymender.errors.ChecksumError` from that read, so a bad payload stops the write before
  its last block and :func:`write_rootfs` never returns for it. The inactive partition then holds
  junk, which is harmless: nothing points at it until the installer switches the bootloader, and
  it does that only after this function returned.
- One ``fsync`` at the end makes the whole image durable before the bootloader is switched.

Speed: reading (decompression, SHA-256) and writing overlap. The calling thread fills one buffer
while a single writer thread writes the previous ones (a ring of :data:`BUFFERS` buffers, so
memory stays bounded whatever the image size); ``pwrite``, ``zlib``, ``zstd`` and ``hashlib`` all
release the GIL. The disk is kept busy from the first block on rather than only at the final
``fsync``, in two ways:

- every :data:`WRITEBACK_CHUNK` bytes the writer asks the kernel to start writing the range it
  just wrote back, without waiting: ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` (through
  ``ctypes``), or ``posix_fadvise(DONTNEED)`` where that call is missing. The former is much
  cheaper: ``DONTNEED`` also tries to drop the pages it has just queued for writeback, fails
  (they are still being written) and then drains the page lists of every CPU, after every
  chunk. On a loaded two-core machine that doubled the kernel time of an install.
- every :data:`SYNC_CHUNK` bytes a flusher thread runs ``fdatasync`` while the writer goes on,
  then drops the pages that flush made clean, so the image does not crowd the page cache of a
  small device. The writeback hint alone does not reach the disk through a stacked device: a
  loop device (or anything else that caches again below the partition) turns it into dirty
  pages of its backing file, which would then all be written at the final ``fsync``. The
  periodic flush pushes them through, and bounds how much unwritten data the page cache holds.

Blocks are still written in order; a failure of any write or flush is reported, and
:func:`write_rootfs` returns or raises only once no write or flush is running any more.
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from queue import SimpleQueue
from typing import Any, NamedTuple, Protocol

from pymender.errors import ArtifactTruncatedError, DeviceError, IncompatibleArtifactError
from pymender.sysio import Starter, drop_cached, pwrite_all, writeback_starter

#: Bytes per write (and per read-compare).
BLOCK_SIZE = 1 << 20
#: Buffers in the ring shared by the reading thread and the writer thread.
BUFFERS = 3
#: Bytes written between two requests to the kernel to start writing back.
WRITEBACK_CHUNK = 8 << 20
#: Bytes written between two background ``fdatasync`` calls (at most one runs at a time).
SYNC_CHUNK = 32 << 20


def _ior(group: int, number: int, size: int) -> int:
    """Linux ``_IOR()``: an ioctl request number that reads ``size`` bytes."""
    return (2 << 30) | (size << 16) | (group << 8) | number


#: ``BLKGETSIZE64`` is ``_IOR(0x12, 114, size_t)``; the kernel writes a 64-bit size.
BLKGETSIZE64 = _ior(0x12, 114, struct.calcsize("N"))


class PayloadStream(Protocol):
    """What the writer reads from: the reader's ``PayloadFile`` (or any binary stream)."""

    def readinto(self, buffer: Any) -> int: ...


class WriteStats(NamedTuple):
    """What one payload write did."""

    bytes_written: int
    blocks_written: int
    blocks_skipped: int


def partition_size(path: str | Path) -> int:
    """The usable size of a partition (block device) or of a file standing in for one."""
    try:
        info = os.stat(path)
    except OSError as err:
        raise DeviceError(f"cannot examine the partition {path}: {err.strerror}") from None
    if stat.S_ISREG(info.st_mode):
        return info.st_size
    if not stat.S_ISBLK(info.st_mode):
        raise DeviceError(f"{path} is neither a block device nor a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise DeviceError(f"cannot open the partition {path}: {err.strerror}") from None
    try:
        try:
            raw = fcntl.ioctl(fd, BLKGETSIZE64, bytes(8))
            return int(struct.unpack("=Q", raw[:8])[0])
        except OSError:
            return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def check_fits(payload_size: int, path: str | Path) -> None:
    """Refuse a payload larger than the partition, before anything is written."""
    available = partition_size(path)
    if payload_size > available:
        raise IncompatibleArtifactError(
            f"the root filesystem image ({payload_size} bytes) does not fit the inactive partition "
            f"{path} ({available} bytes)",
            hint="build a smaller image, or make the partitions larger; nothing was written",
        )


def write_rootfs(
    stream: PayloadStream,
    size: int,
    target: str | Path,
    *,
    skip_identical: bool = False,
    block_size: int = BLOCK_SIZE,
    progress: Callable[[int], None] | None = None,
) -> WriteStats:
    """Copy exactly ``size`` bytes from ``stream`` to the start of ``target``, then fsync.

    ``progress`` is called with the number of payload bytes handled after each block. Errors of
    the stream (checksum, truncation) propagate unchanged; I/O errors of the target become
    :class:`DeviceError`.
    """
    if block_size <= 0 or block_size % 4096:
        raise ValueError("block_size must be a positive multiple of 4096")
    check_fits(size, target)
    try:
        fd = os.open(target, os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        raise DeviceError(
            f"cannot open the inactive partition {target} for writing: {err.strerror}",
            hint="run as root, and make sure nothing has it mounted",
        ) from None
    writer = _BlockWriter(fd, target, block_size, skip_identical)
    offset = 0
    try:
        while offset < size:
            wanted = min(block_size, size - offset)
            view = writer.next_buffer()[:wanted]
            filled = 0
            while filled < wanted:
                count = stream.readinto(view[filled:])
                if not count:
                    raise ArtifactTruncatedError(
                        f"the root filesystem image ended after {offset + filled} of {size} bytes",
                        hint="the Artifact is incomplete; download or copy it again",
                    )
                filled += count
            writer.submit(view, offset)
            offset += wanted
            if progress is not None:
                progress(offset)
        writer.finish()
        try:
            os.fsync(fd)
        except OSError as err:
            raise DeviceError(f"cannot flush the inactive partition {target}: {err.strerror}") from None
        drop_cached(fd, 0, size)  # all clean now: none of the image stays in the page cache
    finally:
        writer.close()
        os.close(fd)
    return WriteStats(bytes_written=size, blocks_written=writer.written, blocks_skipped=writer.skipped)


class _SerialWorker:
    """Runs calls one after the other on its own thread; their outcomes come back in order.

    All a single writer or flusher thread needs of ``concurrent.futures``, which is not used
    here because it imports :mod:`logging`: start-up time every install would pay.
    """

    def __init__(self, name: str) -> None:
        self._calls: SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = SimpleQueue()
        self._outcomes: SimpleQueue[tuple[bool, Any]] = SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        self._calls.put((function, args))

    def ready(self) -> bool:
        """Whether the outcome of the oldest call not yet collected is there."""
        return not self._outcomes.empty()

    def result(self) -> Any:
        """The value of the oldest call not yet collected (waits for it); raises its error."""
        ok, value = self._outcomes.get()
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """Let the submitted calls run to their end, then stop the thread."""
        self._calls.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            function, args = call
            try:
                self._outcomes.put((True, function(*args)))
            except BaseException as err:  # handed to the caller by result()
                self._outcomes.put((False, err))


class _BlockWriter:
    """Writes blocks at their offsets on one worker thread, from a ring of reused buffers.

    :meth:`next_buffer` hands out the buffer whose earlier write has completed; :meth:`submit`
    queues it. At most ``BUFFERS - 1`` writes are queued while the caller fills the next buffer.
    The writer thread starts a background ``fdatasync`` (on a second thread) every
    :data:`SYNC_CHUNK` bytes; :meth:`finish` waits for it and reports its failure.
    """

    def __init__(self, fd: int, target: str | Path, block_size: int, skip_identical: bool) -> None:
        self._fd = fd
        self._target = target
        self._buffers = [memoryview(bytearray(block_size)) for _ in range(BUFFERS)]
        self._compare = memoryview(bytearray(block_size)) if skip_identical else None
        self._next = 0
        self._writer = _SerialWorker("pymender-write")
        self._queued = 0  # writes submitted and not yet collected
        self._unflushed_from = 0
        # The flush state: only the writer thread touches it, until finish() (after the last write).
        self._flusher: _SerialWorker | None = None
        self._flushing = False  # a flush was started and its outcome not yet collected
        self._flushed_to = 0
        self._start_writeback = _writeback_starter()
        self.written = 0
        self.skipped = 0

    def next_buffer(self) -> memoryview:
        while self._queued >= BUFFERS - 1:
            self._collect()
        buffer = self._buffers[self._next]
        self._next = (self._next + 1) % BUFFERS
        return buffer

    def submit(self, data: memoryview, offset: int) -> None:
        self._writer.submit(self._write, data, offset)
        self._queued += 1

    def finish(self) -> None:
        """Wait for every queued write and the background flush; raise the first failure."""
        while self._queued:
            self._collect()
        if self._flushing:
            assert self._flusher is not None
            self._flushing = False
            self._flusher.result()

    def close(self) -> None:
        """Let queued writes and the flush end (errors of an aborted write are not news)."""
        self._writer.close()
        if self._flusher is not None:
            self._flusher.close()

    def _collect(self) -> None:
        self._queued -= 1
        if self._writer.result():
            self.written += 1
        else:
            self.skipped += 1

    def _write(self, data: memoryview, offset: int) -> bool:
        """Runs on the writer thread: True if written, False if skipped as identical."""
        if self._compare is not None and _same_as_on_disk(self._fd, data, self._compare, offset, self._target):
            return False
        _write_at(self._fd, data, offset, self._target)
        end = offset + len(data)
        if end - self._unflushed_from >= WRITEBACK_CHUNK:
            self._start_writeback(self._fd, self._unflushed_from, end - self._unflushed_from)
            self._unflushed_from = end
        if end - self._flushed_to >= SYNC_CHUNK:
            self._start_flush(end)
        return True

    def _start_flush(self, end: int) -> None:
        """Start an ``fdatasync`` on the flusher thread, unless one is still running."""
        if self._flusher is None:
            self._flusher = _SerialWorker("pymender-flush")
        elif self._flushing:
            if not self._flusher.ready():
                return
            self._flushing = False
            self._flusher.result()  # a failed flush fails this write, and so the install
        self._flusher.submit(_flush, self._fd, self._target, self._flushed_to, end)
        self._flushing = True
        self._flushed_to = end


def _flush(fd: int, target: str | Path, start: int, end: int) -> None:
    """Make everything written so far durable, then drop the bytes ``start`` to ``end`` (clean
    now: all were written before this flush began) from the page cache."""
    try:
        os.fdatasync(fd)
    except OSError as err:
        raise DeviceError(f"cannot flush the inactive partition {target}: {err.strerror}") from None
    drop_cached(fd, start, end - start)


def _writeback_starter() -> Starter:
    """A function ``(fd, offset, length)`` that starts writeback of a range without waiting:
    ``sync_file_range`` where there is one (Linux), else ``posix_fadvise``. Only a hint either
    way: the flushes and the final ``fsync`` make the data durable, so failures are ignored.
    """
    return writeback_starter() or drop_cached


def _same_as_on_disk(fd: int, data: memoryview, scratch: memoryview, offset: int, target: str | Path) -> bool:
    want = len(data)
    got = 0
    try:
        while got < want:
            count = os.preadv(fd, [scratch[got:want]], offset + got)
            if count == 0:
                return False
            got += count
    except OSError as err:
        raise DeviceError(f"cannot read the inactive partition {target}: {err.strerror}") from None
    return scratch[:want] == data


def _write_at(fd: int, data: memoryview, offset: int, target: str | Path) -> None:
    try:
        pwrite_all(fd, data, offset)
    except OSError as err:
        raise DeviceError(f"cannot write to the inactive partition {target}: {err.strerror}") from None


__all__ = [
    "BLOCK_SIZE", "BUFFERS", "SYNC_CHUNK", "WRITEBACK_CHUNK", "WriteStats", "check_fits", "partition_size",
    "write_rootfs",
]
