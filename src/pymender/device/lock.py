"""The device's one exclusive lock, so two installs, commits or rollbacks never run at once.

An ``flock`` on a file in the data directory: the kernel releases it when the holder exits, even
after SIGKILL or a crash, so a stale lock cannot block the device. The holder writes its PID into
the file so that the one who is refused can be told who holds it. The file itself is never
removed (removing it would let two processes lock two different files).
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from pymender.errors import LockedError, StateError

LOCK_FILE_NAME = "pymender.lock"


class DeviceLock:
    """An exclusive, non-blocking lock on ``<data_dir>/pymender.lock``; use it as a context manager.

    ``with DeviceLock(data_dir): ...`` raises :class:`LockedError` at once when another process
    (or another ``DeviceLock`` in this one) holds it.
    """

    def __init__(self, data_dir: Path, name: str = LOCK_FILE_NAME) -> None:
        self.path = Path(data_dir) / name
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this object")
        try:
            os.makedirs(self.path.parent, mode=0o755, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            raise StateError(
                f"cannot create the lock file {self.path}: {err.strerror or err}",
                hint="check that the data directory exists and is writable (run as root)",
            ) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_pid(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f" (process {holder})" if holder else ""
                raise LockedError(
                    f"another pymender operation is running{who}",
                    hint="wait until it has finished, then try again",
                ) from err
            raise StateError(f"cannot lock {self.path}: {err.strerror or err}") from err
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the PID is only for messages; the lock itself is held
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # still locked: nobody can read a half-cleared PID
        except OSError:
            pass
        os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> DeviceLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
