"""The operating-system layer: whole writes, durable files, write-back hints, CPUs, build time."""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from pymender import sysio
from pymender.errors import UsageError


class Recorder:
    """Stands in for ``os`` in :mod:`pymender.sysio`: records the calls named in ``watched``;
    ``short`` makes every write and pwrite take at most that many bytes; ``fail`` maps a call
    name to the errno it raises."""

    def __init__(self, watched: tuple[str, ...] = (), *, short: int | None = None,
                 fail: dict[str, int] | None = None) -> None:
        self.calls: list[str] = []
        self.watched = watched
        self.short = short
        self.fail = fail or {}

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if not callable(real) or (name not in self.watched and name not in self.fail
                                  and name not in ("write", "pwrite")):
            return real

        def call(*args: Any) -> Any:
            if name in self.watched:
                self.calls.append(name)
            if name in self.fail:
                raise OSError(self.fail[name], os.strerror(self.fail[name]))
            if name in ("write", "pwrite") and self.short is not None:
                args = (args[0], bytes(args[1])[: self.short], *args[2:])
            return real(*args)

        return call


@pytest.fixture
def fake_os(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(*watched: str, **options: Any) -> Recorder:
        recorder = Recorder(watched, **options)
        monkeypatch.setattr(sysio, "os", recorder)
        return recorder

    return install


def test_write_all_and_pwrite_all_finish_short_writes(tmp_path: Path, fake_os: Any) -> None:
    recorder = fake_os("write", "pwrite", short=3)
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        sysio.write_all(fd, b"0123456789")
        sysio.pwrite_all(fd, memoryview(b"abcdefg"), 2)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"01abcdefg9"
    assert recorder.calls == ["write"] * 4 + ["pwrite"] * 3


def test_replace_file_steps_in_order(tmp_path: Path, fake_os: Any) -> None:
    recorder = fake_os("open", "write", "fsync", "replace", "close")
    (tmp_path / "f").write_bytes(b"old")
    sysio.replace_file(tmp_path / "f", b"data")
    # temporary file written and flushed, renamed over, then the directory flushed
    assert recorder.calls == ["open", "write", "fsync", "close", "replace", "open", "fsync", "close"]
    assert (tmp_path / "f").read_bytes() == b"data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_leftover_temporary_file_does_not_disturb_the_next_replace(tmp_path: Path) -> None:
    (tmp_path / ".f.tmp").write_bytes(b"half of an interrupted write")
    sysio.replace_file(tmp_path / "f", b"new")
    assert (tmp_path / "f").read_bytes() == b"new"
    assert not (tmp_path / ".f.tmp").exists()


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOTSUP])
def test_fsync_dir_accepts_filesystems_that_refuse_it(tmp_path: Path, fake_os: Any, code: int) -> None:
    fake_os(fail={"fsync": code})
    sysio.fsync_dir(tmp_path)


def test_fsync_dir_reports_real_failures(tmp_path: Path, fake_os: Any) -> None:
    fake_os(fail={"fsync": errno.EIO})
    with pytest.raises(OSError) as caught:
        sysio.fsync_dir(tmp_path)
    assert caught.value.errno == errno.EIO


def test_create_file_sets_the_mode_and_never_replaces_or_follows(tmp_path: Path) -> None:
    old_umask = os.umask(0o077)
    try:
        sysio.create_file(tmp_path / "script", b"#!/bin/sh\n", 0o755)
    finally:
        os.umask(old_umask)
    assert (tmp_path / "script").read_bytes() == b"#!/bin/sh\n"
    assert stat.S_IMODE((tmp_path / "script").stat().st_mode) == 0o755  # not narrowed by the umask
    with pytest.raises(FileExistsError):
        sysio.create_file(tmp_path / "script", b"again", 0o755)
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError):
        sysio.create_file(tmp_path / "link", b"x", 0o644)
    assert not (tmp_path / "elsewhere").exists()


def test_overwrite_file_rewrites_in_place(tmp_path: Path, fake_os: Any) -> None:
    path = tmp_path / "env"
    path.write_bytes(b"a much longer old content")
    inode = path.stat().st_ino
    recorder = fake_os("open", "ftruncate", "fsync")
    sysio.overwrite_file(path, b"short")
    assert path.read_bytes() == b"short" and path.stat().st_ino == inode
    assert recorder.calls == ["open", "ftruncate", "fsync"]  # an existing entry: no directory flush


def test_overwrite_file_flushes_the_directory_of_a_new_file(tmp_path: Path, fake_os: Any) -> None:
    recorder = fake_os("open", "fsync")
    sysio.overwrite_file(tmp_path / "new", b"content")
    assert (tmp_path / "new").read_bytes() == b"content"
    assert recorder.calls == ["open", "fsync", "open", "fsync"]


def test_write_behind_asks_for_write_back_every_step() -> None:
    calls: list[tuple[int, int, int]] = []
    behind = sysio.WriteBehind(7, lambda fd, offset, length: calls.append((fd, offset, length)))
    step = behind.step
    for position in range(step // 4, 3 * step + 1, step // 4):  # quarter-steps up to 3 steps
        behind.wrote(position)
    assert calls == [(7, 0, 0), (7, step, 0), (7, 2 * step, 0)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux only")
def test_writeback_starter_is_sync_file_range_on_linux(tmp_path: Path) -> None:
    with open(tmp_path / "f", "wb") as handle:
        handle.write(b"x" * 4096)
        handle.flush()
        start = sysio.writeback_starter()
        assert start is not None
        assert start(handle.fileno(), 0, 0) == 0  # the C call's result: 0 is success


def test_cores_follows_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})
    assert sysio.cores() == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set())
    assert sysio.cores() == 1


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), (" ", None), ("0", 0),
                                                 ("1700000000", 1700000000), (" 42\n", 42)])
def test_source_date_epoch(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: int | None) -> None:
    if value is None:
        monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    else:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    assert sysio.source_date_epoch() == expected


@pytest.mark.parametrize("value", ["yesterday", "-5", "1.5", "1e9", "１２"])
def test_source_date_epoch_refuses_what_is_not_seconds(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH must be a number of seconds"):
        sysio.source_date_epoch()
