from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pymender.artifact import writeback


def test_write_behind_asks_for_write_back_every_step() -> None:
    calls: list[tuple[int, int, int]] = []
    behind = writeback.WriteBehind(7, lambda fd, offset, length: calls.append((fd, offset, length)))
    step = writeback.STEP
    for position in range(step // 4, 3 * step + 1, step // 4):  # quarter-steps up to 3 steps
        behind.wrote(position)
    assert calls == [(7, 0, 0), (7, step, 0), (7, 2 * step, 0)]


def test_write_behind_uses_sync_file_range_on_linux(workdir: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("sync_file_range is Linux only")
    with open(workdir / "f", "wb") as handle:
        handle.write(b"x" * 4096)
        handle.flush()
        start = writeback.sync_file_range_starter()
        assert start is not None
        assert start(handle.fileno(), 0, 0) == 0
