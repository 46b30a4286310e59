"""Update Modules: Mender's protocol v3, run as Mender 5.x runs it in standalone mode.

An Artifact whose payload type is not ``rootfs-image`` (nor empty) is installed by the program
named after its type, an *Update Module*, looked up in :attr:`DeviceConfig.module_dirs` in
order (Mender's ``<MENDER_DATA_DIR>/modules/v3`` first, then pymender's
``/usr/share/pymender/modules/v3``). ``rootfs-image`` stays built in: a ``rootfs-image`` module in
those directories is never run (it is logged when present).

Each call is ``<module> <State> <file tree>`` with the file tree as its working directory. The
tree is ``<DataDir>/modules/v3/payloads/0000/tree``, laid out byte for byte as Mender lays it
out (:func:`prepare_tree`). In Download the payload files are streamed through FIFOs:
``stream-next`` names each stream (``streams/<file>``, with `` <size>`` after
DownloadWithFileSizes), a zero-length read of it ends the download. A module that returns from
Download without opening ``stream-next`` gets the files in ``files/`` instead, written while
they are read (never held in memory).

Queries (ProvidePayloadFileSizes, NeedsArtifactReboot, SupportsRollback) read the first line of
the module's standard output; any other output of the module goes to pymender's standard error.
Every call is bounded by ``ModuleTimeoutSeconds``: a module that takes longer is terminated
(its whole process group), and the state fails. Which state is called when is the business of
the update state machine (:mod:`pymender.device.flow`) and its front door
(:mod:`pymender.device.install`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pymender.device.log import get_logger
from pymender.device.payloads import payload_kind
from pymender.errors import ArtifactUnsupportedError, UnsafeArtifactError, UpdateModuleError
from pymender.sysio import fsync_dir, write_all

if TYPE_CHECKING:
    from pymender.artifact.reader import PayloadFile

log = get_logger(__name__)

#: Mender's protocol version, the content of the tree's ``version`` file.
PROTOCOL_VERSION = 3
#: Where the file tree lives, under the data directory (Mender's ``ModulesWorkPath``).
TREE = Path("modules", "v3", "payloads", "0000", "tree")

#: The answers each query accepts (an empty answer is the first of them, as with Mender).
QUERIES: dict[str, tuple[str, ...]] = {
    "ProvidePayloadFileSizes": ("No", "Yes"),
    "NeedsArtifactReboot": ("No", "Yes", "Automatic"),
    "SupportsRollback": ("No", "Yes"),
}

#: Bytes per write into a stream: 256 KiB copies stay in the CPU's caches (1 MiB ones measured
#: 40 % slower); the pipe holds four of them.
_CHUNK = 1 << 18
_PIPE_SIZE = 1 << 20
#: Where a module's standard output goes outside queries: pymender's standard error.
_STDERR = 2
_F_SETPIPE_SZ = 1031
#: Seconds between two tries to open a FIFO whose reader has not come yet (doubling up to max):
#: a module opens its next stream within a millisecond, a new process within a few.
_OPEN_POLL = (0.00005, 0.001)
#: Seconds a module gets between SIGTERM and SIGKILL.
_TERM_GRACE = 5.0


def find_module(payload_type: str, dirs: Sequence[Path]) -> Path:
    """The executable Update Module for ``payload_type``: the first found in ``dirs``."""
    payload_kind(payload_type)  # refuses a type that cannot name a file
    for directory in dirs:
        path = directory / payload_type
        if path.is_file() and os.access(path, os.X_OK):
            return path
        if path.exists():
            log.warning("%s is not an executable file: not used as the %s Update Module", path, payload_type)
    where = ", ".join(str(d) for d in dirs) or "(no directory configured)"
    raise ArtifactUnsupportedError(
        f"no Update Module for the payload type {payload_type!r}: none executable in {where}",
        hint=f"install the {payload_type} Update Module on the device; nothing was changed")


def shadowed_rootfs_modules(dirs: Sequence[Path]) -> list[Path]:
    """``rootfs-image`` modules in ``dirs``: pymender never runs them (it writes rootfs-image itself)."""
    return [d / "rootfs-image" for d in dirs if (d / "rootfs-image").is_file()]


def mender_json(value: Any) -> str:
    """``value`` as Mender's client writes JSON into the file tree: two-space indentation,
    object keys in case-insensitive order, UTF-8 as is; ``null`` for nothing."""
    return json.dumps(_sorted(value), indent=2, ensure_ascii=False, separators=(",", ": "))


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value, key=str.lower)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def prepare_tree(tree: Path, *, header_info: Any, type_info: Any, meta_data: Any, artifact_name: str,
                 artifact_group: str, payload_type: str, provides: dict[str, str], device_type: str) -> None:
    """Clean ``tree`` and lay it out as Mender does before Download (every file synced)."""
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "tmp").mkdir(parents=True)
    _write(tree / "version", f"{PROTOCOL_VERSION}\n")
    for key in ("artifact_name", "artifact_group"):
        _write(tree / f"current_{key}", f"{provides[key]}\n" if key in provides else "")
    _write(tree / "current_device_type", f"{device_type}\n")
    header = tree / "header"
    header.mkdir()
    _write(header / "artifact_group", artifact_group)
    _write(header / "artifact_name", artifact_name)
    _write(header / "payload_type", payload_type)
    _write(header / "header-info", mender_json(header_info))
    _write(header / "type-info", mender_json(type_info))
    _write(header / "meta-data", mender_json(meta_data))
    for directory in (header, tree, tree.parent, tree.parent.parent):
        fsync_dir(directory)


class UpdateModule:
    """One Update Module and its file tree: the calls of Mender's protocol v3."""

    def __init__(self, path: Path, tree: Path, *, timeout: float, payload_type: str | None = None) -> None:
        self.path = path
        self.tree = tree
        self.timeout = timeout
        self.payload_type = payload_type or path.name
        self._expired = False

    # --- one call -----------------------------------------------------------------------------

    def _start(self, state: str, *, capture: bool) -> subprocess.Popen[bytes]:
        log.debug("calling %s %s %s", self.path, state, self.tree)
        try:
            return subprocess.Popen(
                [str(self.path), state, str(self.tree)], cwd=self.tree, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture else _STDERR, start_new_session=True)
        except OSError as err:
            raise UpdateModuleError(f"cannot run the {self.payload_type} Update Module {self.path} for {state}: "
                                    f"{err.strerror or err}") from err

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Terminate the module and whatever it started, then make sure they are gone."""
        for sig, grace in ((signal.SIGTERM, _TERM_GRACE), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def _failure(self, state: str, code: int) -> UpdateModuleError:
        if code < 0:
            return UpdateModuleError(
                f"the {self.payload_type} Update Module was killed by signal {-code} in {state}",
                hint="see the module's output above and the log")
        return UpdateModuleError(f"the {self.payload_type} Update Module failed in {state} (exit code {code})",
                                 hint="see the module's output above and the log")

    def _timed_out(self, state: str) -> UpdateModuleError:
        return UpdateModuleError(
            f"the {self.payload_type} Update Module did not finish {state} within {self.timeout:g} s "
            "(ModuleTimeoutSeconds) and was stopped", hint="see the module's output above and the log")

    def call(self, state: str) -> None:
        """Run ``state``; a non-zero exit, a signal or the timeout fails it."""
        if state == "Cleanup" and not self.tree.is_dir():
            return
        proc = self._start(state, capture=False)
        try:
            code = proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self._stop(proc)
            raise self._timed_out(state) from None
        finally:
            if state == "Cleanup":
                shutil.rmtree(self.tree, ignore_errors=True)
        if code != 0:
            raise self._failure(state, code)

    def query(self, state: str) -> str:
        """Run a query state and return its answer, one of :data:`QUERIES` ``[state]``."""
        proc = self._start(state, capture=True)
        try:
            out, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self._stop(proc)
            raise self._timed_out(state) from None
        if proc.returncode != 0:
            raise self._failure(state, proc.returncode)
        lines = out.decode("utf-8", "replace").split("\n")
        if len(lines) > 2 or (len(lines) == 2 and lines[1] != ""):
            raise UpdateModuleError(f"the {self.payload_type} Update Module printed more than one line for {state}",
                                    hint=f"it must print only one of {', '.join(QUERIES[state])}")
        answer = lines[0] or QUERIES[state][0]
        if answer not in QUERIES[state]:
            raise UpdateModuleError(
                f"the {self.payload_type} Update Module answered {lines[0]!r} to {state}",
                hint=f"it must print one of {', '.join(QUERIES[state])}")
        return answer

    # --- Download -----------------------------------------------------------------------------

    def download(self, files: Iterable[PayloadFile], progress: Callable[[int], None] | None = None) -> None:
        """ProvidePayloadFileSizes, then Download or DownloadWithFileSizes with the payload
        ``files`` streamed through ``stream-next`` (or written to ``files/``, see the module
        docstring). Every file is read to its end (its checksum checked there)."""
        with_sizes = self.query("ProvidePayloadFileSizes") == "Yes"
        state = "DownloadWithFileSizes" if with_sizes else "Download"
        stream_next = self.tree / "stream-next"
        os.mkfifo(stream_next, 0o600)
        proc = self._start(state, capture=False)
        timer = threading.Timer(self.timeout, self._expire, (proc,))
        timer.daemon = True
        self._expired = False
        timer.start()
        try:
            self._stream(proc, state, iter(files), with_sizes, progress)
        except BaseException:
            if proc.poll() is None:
                self._stop(proc)
            raise
        finally:
            timer.cancel()

    def _expire(self, proc: subprocess.Popen[bytes]) -> None:
        self._expired = True
        self._stop(proc)

    def _check_time(self, state: str) -> None:
        if self._expired:
            raise self._timed_out(state)

    def _open_writer(self, path: Path, proc: subprocess.Popen[bytes]) -> int | None:
        """``path`` (a FIFO) opened for writing once the module opened it for reading; None
        when the module exits first."""
        delay = _OPEN_POLL[0]
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as err:
                if err.errno != errno.ENXIO:
                    raise
            else:
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
                return fd
            if proc.poll() is not None:
                return None
            time.sleep(delay)
            delay = min(delay * 2, _OPEN_POLL[1])

    def _stream(self, proc: subprocess.Popen[bytes], state: str, files: Iterator[PayloadFile], with_sizes: bool,
                progress: Callable[[int], None] | None) -> None:
        stream_next = self.tree / "stream-next"
        started = False
        for payload in files:
            _check_name(payload.name)
            fd = self._open_writer(stream_next, proc)
            self._check_time(state)
            if fd is None:
                self._ended(proc, state, started)
                self._to_files(payload, files, progress)
                return
            started = True
            streams = self.tree / "streams"
            streams.mkdir(exist_ok=True)
            os.mkfifo(streams / payload.name, 0o600)
            line = f"streams/{payload.name}" + (f" {payload.size}" if with_sizes else "") + "\n"
            try:
                write_all(fd, line.encode())
            except BrokenPipeError:
                raise self._broken(state, "stream-next", 0, len(line)) from None
            finally:
                os.close(fd)
            fd = self._open_writer(streams / payload.name, proc)
            self._check_time(state)
            if fd is None:
                self._ended(proc, state, started)
                raise UpdateModuleError(
                    f"the {self.payload_type} Update Module read stream-next but returned from {state} without "
                    f"opening streams/{payload.name}", hint="the module must read every stream it is given")
            try:
                self._copy(payload, fd, state, progress)
            finally:
                os.close(fd)
        fd = self._open_writer(stream_next, proc)
        self._check_time(state)
        if fd is None:
            self._ended(proc, state, started)
            if started:
                raise UpdateModuleError(
                    f"the {self.payload_type} Update Module returned from {state} without reading stream-next "
                    "to its end (the empty read after the last stream)",
                    hint="the module must read stream-next until it reads nothing")
            return  # no payload file at all, and a module that wants files
        os.close(fd)  # the zero-length read: no more streams
        try:
            code = proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self._stop(proc)
            raise self._timed_out(state) from None
        self._check_time(state)
        if code != 0:
            raise self._failure(state, code)

    def _ended(self, proc: subprocess.Popen[bytes], state: str, started: bool) -> None:
        """The module returned: fail unless it returned 0 before taking any stream."""
        self._check_time(state)
        code = proc.wait()
        if code != 0:
            raise self._failure(state, code)
        if started:
            return
        (self.tree / "stream-next").unlink(missing_ok=True)
        shutil.rmtree(self.tree / "streams", ignore_errors=True)

    def _broken(self, state: str, name: str, done: int, size: int) -> UpdateModuleError:
        self._check_time(state)
        return UpdateModuleError(
            f"the {self.payload_type} Update Module stopped reading {name} after {done} of {size} bytes in {state}",
            hint="the module must read each stream to its end; see its output above")

    def _copy(self, payload: PayloadFile, fd: int, state: str, progress: Callable[[int], None] | None) -> None:
        try:
            fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:
            pass
        buffer = bytearray(min(_CHUNK, max(payload.size, 1)))
        view = memoryview(buffer)
        done = 0
        while True:
            count = payload.readinto(buffer)
            if not count:
                break
            try:
                write_all(fd, view[:count])
            except BrokenPipeError:
                raise self._broken(state, f"streams/{payload.name}", done, payload.size) from None
            done += count
            if progress is not None:
                progress(count)
        if done != payload.size:
            raise UpdateModuleError(f"the payload file {payload.name} ended after {done} of {payload.size} bytes")

    def _to_files(self, first: PayloadFile, rest: Iterator[PayloadFile],
                  progress: Callable[[int], None] | None) -> None:
        """Download returned without taking the streams: the payload files go to ``files/``."""
        directory = self.tree / "files"
        directory.mkdir(exist_ok=True)
        for payload in _chain(first, rest):
            _check_name(payload.name)
            fd = os.open(directory / payload.name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                buffer = bytearray(min(_CHUNK, max(payload.size, 1)))
                view = memoryview(buffer)
                while True:
                    count = payload.readinto(buffer)
                    if not count:
                        break
                    write_all(fd, view[:count])
                    if progress is not None:
                        progress(count)
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(directory)


def _chain(first: PayloadFile, rest: Iterator[PayloadFile]) -> Iterator[PayloadFile]:
    yield first
    yield from rest


def _check_name(name: str) -> None:
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise UnsafeArtifactError(f"the payload file name {name!r} would point outside the module's tree",
                                  hint="nothing was installed")


__all__ = [
    "PROTOCOL_VERSION",
    "QUERIES",
    "TREE",
    "UpdateModule",
    "find_module",
    "mender_json",
    "prepare_tree",
    "shadowed_rootfs_modules",
]
