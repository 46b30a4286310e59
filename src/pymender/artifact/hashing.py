"""SHA-256 on a worker thread, fed the very buffers the caller reads into.

Hashing a large payload is a single sequential computation, but it need not wait for anything
else: ``hashlib`` releases the GIL while it hashes a buffer, so one worker thread can hash chunk
*n* while the caller reads, decompresses or compresses chunk *n + 1* on another core. A payload
then costs the slower of the two, not their sum.

The caller borrows a buffer (:meth:`BackgroundSha256.buffer`), fills it, and hands it back with
:meth:`BackgroundSha256.submit`; the buffer returns to the pool once it is hashed. A handful of
buffers circulate, so memory stays flat and nothing is copied. Immutable ``bytes`` (what a gzip
or xz decompressor returns) are hashed as they are; other buffers the caller keeps are copied
into a pooled buffer first (:meth:`BackgroundSha256.update`).

Only ``threading`` and ``_queue`` are needed: ``concurrent.futures`` (and the ``logging`` it
imports) would cost a command-line tool more start-up time than a small payload takes to hash.
"""

from __future__ import annotations

import hashlib
import threading
from queue import SimpleQueue

from pymender.sysio import cores

#: Bytes per buffer: 1 MiB stays in a core's cache between being read and being hashed.
BUFFER_SIZE = 1 << 20
#: Buffers in circulation: one being filled, one being hashed, the rest absorb the moments when
#: the hashing thread gets no CPU (the compressor's threads want both cores too) so the reader
#: does not stall on it. 8 MiB in all.
BUFFERS = 8
#: Payloads at least this large are worth a thread; smaller ones are hashed inline.
THREAD_MIN = 4 * 1024 * 1024


_Queue = SimpleQueue["tuple[bytes | bytearray, int] | None"]


def _work(digest: hashlib._Hash, todo: _Queue, done: SimpleQueue[bytes | bytearray],
          errors: list[BaseException]) -> None:
    """The worker thread: hash each queued chunk in order and hand its buffer back."""
    while True:
        item = todo.get()
        if item is None:
            return
        data, count = item
        try:
            if not errors:
                digest.update(memoryview(data)[:count] if count != len(data) else data)
        except BaseException as err:  # pragma: no cover - hashlib does not fail on bytes
            errors.append(err)
        done.put(data)


class BackgroundSha256:
    """SHA-256 of a sequence of chunks, computed in order on one worker thread.

    Not thread-safe: one caller thread feeds it. :meth:`hexdigest` waits for every chunk and
    stops the worker; :meth:`close` stops it without a result (on errors).
    """

    def __init__(self, buffer_size: int | None = None, buffers: int | None = None) -> None:
        self._hash = hashlib.sha256()
        self._buffer_size = BUFFER_SIZE if buffer_size is None else buffer_size
        self._buffers = BUFFERS if buffers is None else buffers
        self._made = 0
        self._free: list[bytearray] = []
        self._outstanding = 0  # chunks queued and not yet acknowledged by the worker
        self._todo: _Queue = SimpleQueue()
        self._done: SimpleQueue[bytes | bytearray] = SimpleQueue()
        self._errors: list[BaseException] = []
        # The thread holds the queues, not this object: an abandoned hash is collected, and
        # __del__ then lets the thread end.
        self._thread = threading.Thread(target=_work, args=(self._hash, self._todo, self._done, self._errors),
                                        name="pymender-sha256", daemon=True)
        self._thread.start()
        self._closed = False

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self._todo.put(None)

    def _reclaim(self) -> None:
        """Wait for the oldest outstanding chunk to be hashed; pool its buffer."""
        data = self._done.get()
        self._outstanding -= 1
        if type(data) is bytearray and len(data) == self._buffer_size:
            self._free.append(data)

    def buffer(self) -> bytearray:
        """A buffer to fill and pass to :meth:`submit` (waits while all are in use)."""
        if self._free:
            return self._free.pop()
        if self._made < self._buffers:
            self._made += 1
            return bytearray(self._buffer_size)
        while not self._free:
            self._reclaim()
        return self._free.pop()

    def give_back(self, buffer: bytearray) -> None:
        """Return a buffer from :meth:`buffer` that holds nothing to hash."""
        self._free.append(buffer)

    def submit(self, buffer: bytearray, count: int) -> None:
        """Hash the first ``count`` bytes of ``buffer`` (from :meth:`buffer`); the caller must
        not change it afterwards (it comes back through :meth:`buffer` once hashed)."""
        self._outstanding += 1
        self._todo.put((buffer, count))

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Hash ``data``; the caller may reuse its buffer as soon as this returns."""
        if not data:
            return
        if type(data) is bytes:
            while self._outstanding >= self._buffers:  # bound the memory held for the hash
                self._reclaim()
            self._outstanding += 1
            self._todo.put((data, len(data)))
            return
        view = memoryview(data).cast("B")
        while len(view):
            buffer = self.buffer()
            count = min(len(view), len(buffer))
            buffer[:count] = view[:count]
            self.submit(buffer, count)
            view = view[count:]

    def _stop(self) -> None:
        if not self._closed:
            self._closed = True
            self._todo.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        """The digest of everything submitted (waits for the worker, then stops it)."""
        while self._outstanding:
            self._reclaim()
        self._stop()
        if self._errors:  # pragma: no cover - see _work
            raise self._errors[0]
        return self._hash.hexdigest()

    def close(self) -> None:
        """Stop the worker without waiting for a result (the caller gave up on this hash)."""
        self._stop()


def new_sha256(size: int) -> BackgroundSha256 | hashlib._Hash:
    """A hash object for ``size`` bytes: on a worker thread when that can pay off (a large
    payload, and more than one CPU: with only one, hashing on a thread gains nothing)."""
    if size >= THREAD_MIN and cores() > 1:
        return BackgroundSha256()
    return hashlib.sha256()
