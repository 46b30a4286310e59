"""Record the durable I/O an operation makes on a device's files: an in-process shim over ``os``.

While :meth:`Recorder.recording` is active, the few ``os`` functions through which pymender
changes files (``open`` with ``O_CREAT``/``O_TRUNC``, ``write``, ``pwrite``, ``ftruncate``,
``fsync``, ``fdatasync``, ``rename``, ``replace``, ``unlink``, ``remove``, ``mkdir``, ``rmdir``)
are wrapped: each call is made for real, and when it touches a path under the device's root it
is appended to :attr:`Recorder.ops` in the order the calls completed (every thread's calls, one
at a time). The code under test knows nothing of it: it calls ``os`` as always.

Files are followed by *inode*, as the kernel does: a descriptor remembers the file it opened,
so the writes to a temporary file that is later renamed over the store stay the writes of that
file. An fsync of a directory descriptor is recorded as a directory sync. ``os.write`` writes at
the descriptor's position, which the shim follows (``open``, ``write``, ``read``, ``lseek``).

:meth:`Recorder.snapshot` takes the files and directories under the root before the operation:
the state every crash state starts from (see :mod:`fault.crashstates`). :func:`no_sync` turns
``fsync``/``fdatasync`` into no-ops, for the many device operations a crash-state test runs that
are not themselves under test.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

#: Kinds of recorded operations.
WRITE, TRUNCATE, FSYNC, DIRSYNC = "write", "truncate", "fsync", "dirsync"
CREATE, MKDIR, RENAME, UNLINK, RMDIR = "create", "mkdir", "rename", "unlink", "rmdir"
DATA = frozenset({WRITE, TRUNCATE})
METADATA = frozenset({CREATE, MKDIR, RENAME, UNLINK, RMDIR})


class Op(NamedTuple):
    """One recorded operation. Paths are relative to the root, with ``/`` separators."""

    index: int
    kind: str
    #: The file written, truncated or synced (WRITE, TRUNCATE, FSYNC, CREATE).
    inode: int | None = None
    #: The name created, removed, renamed (its source) or the directory synced.
    path: str | None = None
    #: The new name of a RENAME.
    target: str | None = None
    offset: int = 0
    data: bytes = b""
    #: The new length of a TRUNCATE.
    length: int = 0
    #: The call that made it, for reports (``os.pwrite``).
    call: str = ""

    def describe(self) -> str:
        if self.kind == WRITE:
            return f"{self.call} {len(self.data)} bytes at {self.offset} of inode {self.inode}"
        if self.kind == TRUNCATE:
            return f"{self.call} inode {self.inode} to {self.length}"
        if self.kind == FSYNC:
            return f"{self.call} inode {self.inode}"
        if self.kind == RENAME:
            return f"{self.call} {self.path} -> {self.target}"
        return f"{self.call} {self.path}" + (f" (inode {self.inode})" if self.inode is not None else "")


class Snapshot(NamedTuple):
    """The files (relative path -> content) and directories under the root."""

    files: dict[str, bytes]
    dirs: frozenset[str]


class _Handle:
    __slots__ = ("directory", "inode", "path", "position")

    def __init__(self, inode: int | None, path: str, directory: bool) -> None:
        self.inode = inode
        self.path = path
        self.directory = directory
        self.position = 0


_WRAPPED = ("open", "close", "write", "pwrite", "read", "lseek", "ftruncate", "fsync", "fdatasync", "rename",
            "replace", "unlink", "remove", "mkdir", "rmdir")


class Recorder:
    """Records the operations on files under ``root`` (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self.ops: list[Op] = []
        self._lock = threading.RLock()
        self._handles: dict[int, _Handle] = {}
        self._names: dict[str, int] = {}
        self._dirs: set[str] = set()
        self._next_inode = 0
        #: The inode of each file of the snapshot, by its relative path.
        self.initial_inodes: dict[str, int] = {}

    # --- the starting point ------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Take the files and directories under the root, and start following them."""
        files: dict[str, bytes] = {}
        dirs: set[str] = set()
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root).as_posix()
            if path.is_dir() and not path.is_symlink():
                dirs.add(rel)
            elif path.is_file():
                files[rel] = path.read_bytes()
        self._names = {}
        for rel in files:
            self._names[rel] = self._new_inode()
        self.initial_inodes = dict(self._names)
        self._dirs = set(dirs)
        self.ops = []
        return Snapshot(files, frozenset(dirs))

    def _new_inode(self) -> int:
        self._next_inode += 1
        return self._next_inode

    # --- paths ---------------------------------------------------------------------------------------

    def _rel(self, path: Any, dir_fd: int | None = None) -> str | None:
        raw = os.fsdecode(path)
        if dir_fd is not None and not os.path.isabs(raw):
            handle = self._handles.get(dir_fd)
            if handle is None:
                return None
            raw = os.path.join(self.root, handle.path, raw)
        full = os.path.normpath(os.path.abspath(raw))
        root = str(self.root)
        if full == root:
            return "."
        if not full.startswith(root + os.sep):
            # The real path may differ only by symbolic links above the root.
            real = os.path.realpath(os.path.dirname(full))
            full = os.path.join(real, os.path.basename(full))
            if not full.startswith(root + os.sep):
                return None
        return full[len(root) + 1:].replace(os.sep, "/")

    def _add(self, kind: str, call: str, **fields: Any) -> None:
        self.ops.append(Op(len(self.ops), kind, call=call, **fields))

    # --- the wrappers --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def recording(self) -> Iterator[Recorder]:
        real = {name: getattr(os, name) for name in _WRAPPED}
        wrappers = {name: self._wrapper(name, real[name], real) for name in _WRAPPED}
        for name, function in wrappers.items():
            setattr(os, name, function)
        try:
            yield self
        finally:
            for name, function in real.items():
                setattr(os, name, function)

    def _wrapper(self, name: str, real: Callable[..., Any], reals: dict[str, Callable[..., Any]]
                 ) -> Callable[..., Any]:
        method = getattr(self, f"_on_{name}")

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(real, reals, *args, **kwargs)

        wrapped.__name__ = name
        return wrapped

    def _on_open(self, real: Callable[..., Any], reals: Any, path: Any, flags: int, mode: int = 0o777, *,
                 dir_fd: int | None = None) -> int:
        rel = self._rel(path, dir_fd)
        existed = rel is not None and rel in self._names
        fd: int = real(path, flags, mode, dir_fd=dir_fd) if dir_fd is not None else real(path, flags, mode)
        if rel is None:
            return fd
        if rel == "." or rel in self._dirs or flags & getattr(os, "O_DIRECTORY", 0):
            self._handles[fd] = _Handle(None, rel, True)
            return fd
        if not existed:
            inode = self._new_inode()
            self._names[rel] = inode
            self._add(CREATE, "os.open", inode=inode, path=rel)
        inode = self._names[rel]
        if flags & os.O_TRUNC and flags & (os.O_WRONLY | os.O_RDWR):
            self._add(TRUNCATE, "os.open(O_TRUNC)", inode=inode, length=0)
        self._handles[fd] = _Handle(inode, rel, False)
        return fd

    def _on_close(self, real: Callable[..., Any], reals: Any, fd: int) -> None:
        self._handles.pop(fd, None)
        real(fd)

    def _on_write(self, real: Callable[..., Any], reals: Any, fd: int, data: Any) -> int:
        count: int = real(fd, data)
        handle = self._handles.get(fd)
        if handle is not None and handle.inode is not None:
            self._add(WRITE, "os.write", inode=handle.inode, offset=handle.position,
                      data=bytes(memoryview(data)[:count]))
            handle.position += count
        return count

    def _on_pwrite(self, real: Callable[..., Any], reals: Any, fd: int, data: Any, offset: int) -> int:
        count: int = real(fd, data, offset)
        handle = self._handles.get(fd)
        if handle is not None and handle.inode is not None:
            self._add(WRITE, "os.pwrite", inode=handle.inode, offset=offset, data=bytes(memoryview(data)[:count]))
        return count

    def _on_read(self, real: Callable[..., Any], reals: Any, fd: int, size: int) -> bytes:
        data: bytes = real(fd, size)
        handle = self._handles.get(fd)
        if handle is not None:
            handle.position += len(data)
        return data

    def _on_lseek(self, real: Callable[..., Any], reals: Any, fd: int, position: int, how: int) -> int:
        result: int = real(fd, position, how)
        handle = self._handles.get(fd)
        if handle is not None:
            handle.position = result
        return result

    def _on_ftruncate(self, real: Callable[..., Any], reals: Any, fd: int, length: int) -> None:
        real(fd, length)
        handle = self._handles.get(fd)
        if handle is not None and handle.inode is not None:
            self._add(TRUNCATE, "os.ftruncate", inode=handle.inode, length=length)

    def _sync(self, call: str, real: Callable[..., Any], fd: int) -> None:
        real(fd)
        handle = self._handles.get(fd)
        if handle is None:
            return
        if handle.directory:
            self._add(DIRSYNC, call, path=handle.path)
        else:
            self._add(FSYNC, call, inode=handle.inode)

    def _on_fsync(self, real: Callable[..., Any], reals: Any, fd: int) -> None:
        self._sync("os.fsync", real, fd)

    def _on_fdatasync(self, real: Callable[..., Any], reals: Any, fd: int) -> None:
        self._sync("os.fdatasync", real, fd)

    def _on_rename(self, real: Callable[..., Any], reals: Any, src: Any, dst: Any, **kwargs: Any) -> None:
        self._rename("os.rename", real, src, dst, **kwargs)

    def _on_replace(self, real: Callable[..., Any], reals: Any, src: Any, dst: Any, **kwargs: Any) -> None:
        self._rename("os.replace", real, src, dst, **kwargs)

    def _rename(self, call: str, real: Callable[..., Any], src: Any, dst: Any, *,
                src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        old, new = self._rel(src, src_dir_fd), self._rel(dst, dst_dir_fd)
        if src_dir_fd is None and dst_dir_fd is None:
            real(src, dst)
        else:
            real(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        if old is None or new is None:
            return
        self._add(RENAME, call, path=old, target=new)
        if old in self._dirs:
            moved = {name for name in self._dirs if name == old or name.startswith(old + "/")}
            self._dirs -= moved
            self._dirs |= {new + name[len(old):] for name in moved}
            for name in [n for n in self._names if n.startswith(old + "/")]:
                self._names[new + name[len(old):]] = self._names.pop(name)
        elif old in self._names:
            self._names[new] = self._names.pop(old)

    def _on_unlink(self, real: Callable[..., Any], reals: Any, path: Any, *, dir_fd: int | None = None) -> None:
        self._remove("os.unlink", real, path, dir_fd)

    def _on_remove(self, real: Callable[..., Any], reals: Any, path: Any, *, dir_fd: int | None = None) -> None:
        self._remove("os.remove", real, path, dir_fd)

    def _remove(self, call: str, real: Callable[..., Any], path: Any, dir_fd: int | None) -> None:
        rel = self._rel(path, dir_fd)
        real(path) if dir_fd is None else real(path, dir_fd=dir_fd)
        if rel is not None:
            self._add(UNLINK, call, path=rel, inode=self._names.pop(rel, None))

    def _on_mkdir(self, real: Callable[..., Any], reals: Any, path: Any, mode: int = 0o777, *,
                  dir_fd: int | None = None) -> None:
        rel = self._rel(path, dir_fd)
        real(path, mode) if dir_fd is None else real(path, mode, dir_fd=dir_fd)
        if rel is not None:
            self._dirs.add(rel)
            self._add(MKDIR, "os.mkdir", path=rel)

    def _on_rmdir(self, real: Callable[..., Any], reals: Any, path: Any, *, dir_fd: int | None = None) -> None:
        rel = self._rel(path, dir_fd)
        real(path) if dir_fd is None else real(path, dir_fd=dir_fd)
        if rel is not None:
            self._dirs.discard(rel)
            self._add(RMDIR, "os.rmdir", path=rel)


@contextlib.contextmanager
def no_sync() -> Iterator[None]:
    """``fsync`` and ``fdatasync`` do nothing meanwhile (operations not under test run faster)."""
    real = os.fsync, os.fdatasync
    os.fsync = os.fdatasync = lambda fd: None
    try:
        yield
    finally:
        os.fsync, os.fdatasync = real


__all__ = [
    "CREATE", "DATA", "DIRSYNC", "FSYNC", "METADATA", "MKDIR", "RENAME", "RMDIR", "TRUNCATE", "UNLINK", "WRITE",
    "Op", "Recorder", "Snapshot", "no_sync",
]
