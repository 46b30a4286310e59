"""Fixtures for the device tests: power cuts at a chosen I/O step, fast scratch space.

Modules that rewrite files many times use ``pytestmark = pytest.mark.usefixtures("no_fsync")``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


class PowerCut(BaseException):
    """Raised where the power went; a BaseException so no ``except Exception`` swallows it."""


class CrashingOs:
    """Wraps the ``os`` module; the ``crash_at``-th I/O step raises :class:`PowerCut`.

    Counted steps are the calls that change or commit state: open, write, pwrite, ftruncate,
    fsync, replace. With ``torn=True`` a crashing write first writes half its bytes, as a
    power cut in the middle of a write may do.
    """

    STEPS = frozenset({"open", "write", "pwrite", "ftruncate", "fsync", "replace"})

    def __init__(self, crash_at: int | None = None, *, torn: bool = False) -> None:
        self.crash_at = crash_at
        self.torn = torn
        self.count = 0
        self.crashed_in: str | None = None

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name not in self.STEPS:
            return real

        def step(*args: Any, **kwargs: Any) -> Any:
            index = self.count
            self.count += 1
            if index == self.crash_at:
                self.crashed_in = name
                if self.torn and name == "write":
                    fd, data = args[0], bytes(args[1])
                    os.write(fd, data[: len(data) // 2])
                elif self.torn and name == "pwrite":
                    fd, data, offset = args[0], bytes(args[1]), args[2]
                    os.pwrite(fd, data[: len(data) // 2], offset)
                raise PowerCut(name)
            return real(*args, **kwargs)

        return step


@pytest.fixture
def crashing_os() -> Callable[..., CrashingOs]:
    """Factory: ``crashing_os(crash_at, torn=False)`` builds a :class:`CrashingOs`."""
    return CrashingOs


@pytest.fixture
def power_cut() -> type[PowerCut]:
    return PowerCut


@pytest.fixture
def no_fsync(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Skip the real fsync: in one process it changes nothing observable, and it makes the
    many-step power-cut tests slow on real disks. The calls are still made and recorded (the
    power-cut tests count them as steps)."""
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", calls.append)
    return calls


@pytest.fixture
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A scratch directory in memory (``/dev/shm``) when there is one, else under tmp_path.

    These tests rewrite small files thousands of times; on a disk-backed /tmp each metadata
    operation can take milliseconds, in memory microseconds. Nothing here depends on the
    filesystem type.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        directory = Path(tempfile.mkdtemp(prefix="pymender-test-", dir=shm))
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    else:
        yield tmp_path_factory.mktemp("scratch")
