from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pymender.image.sparse import CHUNK, copy_sparse, data_ranges

MIB = 1024 * 1024


def allocated_ranges(path: Path) -> list[tuple[int, int]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(data_ranges(fd, os.fstat(fd).st_size))
    finally:
        os.close(fd)


def test_data_ranges_skip_holes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    with open(path, "wb") as file:
        file.write(b"a" * 4096)
        file.seek(8 * MIB)
        file.write(b"b" * 4096)
        file.truncate(16 * MIB)
    ranges = allocated_ranges(path)
    assert ranges[0][0] == 0
    assert ranges[-1][1] <= 16 * MIB
    # Where the filesystem tracks holes, the 8 MiB gap and the tail are not data.
    covered = sum(end - start for start, end in ranges)
    assert covered <= 16 * MIB
    assert all(start < end for start, end in ranges)


def test_data_ranges_without_seek_data_support_is_one_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10000)

    def no_seek_data(fd: int, pos: int, how: int) -> int:
        raise OSError(errno.EINVAL, "no")

    monkeypatch.setattr(os, "lseek", no_seek_data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert list(data_ranges(fd, 10000)) == [(0, 10000)]
    finally:
        os.close(fd)


def test_copy_skips_zero_chunks_and_copies_the_rest(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    payload = os.urandom(CHUNK + 1000)
    with open(src, "wb") as file:
        file.write(bytes(CHUNK))  # written zeros: must become a hole
        file.write(payload)  # one full chunk and a partial one
        file.seek(4 * CHUNK)  # a real hole
        file.write(b"tail")
    size = src.stat().st_size
    with open(dst, "wb") as file:
        file.truncate(size + 3 * MIB)
    s = os.open(src, os.O_RDONLY)
    d = os.open(dst, os.O_WRONLY)
    try:
        written = copy_sparse(s, d, MIB, size)
    finally:
        os.close(s)
        os.close(d)
    # Data extents end on filesystem blocks, so the partial chunk may carry up to a block of
    # the zeros that follow it; the zero chunk and the hole are never written.
    assert len(payload) + 4 <= written <= len(payload) + 4 + 4096
    data = dst.read_bytes()
    assert data[: MIB + CHUNK] == bytes(MIB + CHUNK)
    assert data[MIB + CHUNK : MIB + CHUNK + len(payload)] == payload
    assert data[MIB + 4 * CHUNK : MIB + 4 * CHUNK + 4] == b"tail"
    # The zero chunk was not allocated in the destination.
    first_data = allocated_ranges(dst)[0][0]
    assert first_data >= MIB + CHUNK - 4096


def test_copy_of_a_shrinking_source_fails(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(b"x" * 1000)
    dst.write_bytes(b"")
    s = os.open(src, os.O_RDONLY)
    d = os.open(dst, os.O_WRONLY)
    try:
        with pytest.raises(OSError, match="shrank"):
            copy_sparse(s, d, 0, 5000)
    finally:
        os.close(s)
        os.close(d)
