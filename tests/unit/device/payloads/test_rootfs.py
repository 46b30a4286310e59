"""Writing a rootfs-image payload to the inactive partition."""

from __future__ import annotations

import hashlib
import io
import os
import sys
import threading
from pathlib import Path

import pytest

from artifact_factory import write_rootfs
from pymender.artifact.reader import ArtifactReader
from pymender.device.payloads import rootfs
from pymender.device.payloads.rootfs import BLKGETSIZE64, check_fits, partition_size
from pymender.device.payloads.rootfs import write_rootfs as write_payload
from pymender.errors import (
    ArtifactTruncatedError,
    ChecksumError,
    DeviceError,
    IncompatibleArtifactError,
)

BLOCK = 64 * 1024


def _partition(tmp: Path, size: int, fill: bytes = b"\xee") -> Path:
    path = tmp / "part.img"
    path.write_bytes(fill * size)
    return path


def test_blkgetsize64_request_number() -> None:
    assert BLKGETSIZE64 == (0x80081272 if sys.maxsize > 2**32 else 0x80041272)


def test_writes_exactly_the_payload_and_leaves_the_rest(tmp_path: Path) -> None:
    data = os.urandom(3 * BLOCK + 123)
    part = _partition(tmp_path, 5 * BLOCK)
    seen: list[int] = []
    stats = write_payload(io.BytesIO(data), len(data), part, block_size=BLOCK, progress=seen.append)
    content = part.read_bytes()
    assert content[: len(data)] == data and content[len(data):] == b"\xee" * (5 * BLOCK - len(data))
    assert len(content) == 5 * BLOCK  # never truncated or grown
    assert (stats.blocks_written, stats.blocks_skipped, stats.bytes_written) == (4, 0, len(data))
    assert seen == [BLOCK, 2 * BLOCK, 3 * BLOCK, len(data)]


def test_identical_blocks_are_skipped(tmp_path: Path) -> None:
    data = os.urandom(4 * BLOCK)
    part = _partition(tmp_path, 4 * BLOCK)
    part.write_bytes(data[: 2 * BLOCK] + bytes(BLOCK) + data[3 * BLOCK:])
    stats = write_payload(io.BytesIO(data), len(data), part, block_size=BLOCK, skip_identical=True)
    assert part.read_bytes() == data
    assert (stats.blocks_written, stats.blocks_skipped) == (1, 3)


def test_too_large_payload_is_refused_before_writing(tmp_path: Path) -> None:
    part = _partition(tmp_path, BLOCK)
    before = part.read_bytes()
    with pytest.raises(IncompatibleArtifactError, match=rf"\({BLOCK + 1} bytes\) does not fit .* \({BLOCK} bytes\)"):
        write_payload(io.BytesIO(bytes(BLOCK + 1)), BLOCK + 1, part, block_size=BLOCK)
    assert part.read_bytes() == before
    check_fits(BLOCK, part)


def test_short_stream_is_a_truncation(tmp_path: Path) -> None:
    part = _partition(tmp_path, 2 * BLOCK)
    with pytest.raises(ArtifactTruncatedError, match="ended after 100 of 200 bytes"):
        write_payload(io.BytesIO(bytes(100)), 200, part, block_size=BLOCK)


def test_missing_or_odd_targets(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="cannot examine"):
        partition_size(tmp_path / "missing")
    with pytest.raises(DeviceError, match="neither a block device nor a regular file"):
        partition_size(tmp_path)
    with pytest.raises(ValueError):
        write_payload(io.BytesIO(b""), 0, _partition(tmp_path, BLOCK), block_size=1000)


def test_checksum_mismatch_raises_before_the_last_block_is_written(tmp_path: Path) -> None:
    image = tmp_path / "rootfs.ext4"
    payload = os.urandom(3 * BLOCK + 10)
    image.write_bytes(payload)
    artifact = write_rootfs(tmp_path, "bad", compression="none", image=image)
    raw = bytearray(artifact.read_bytes())
    where = raw.find(payload[-64:])
    raw[where + 60] ^= 0xFF  # one flipped bit in the last block of the image
    part = _partition(tmp_path, 4 * BLOCK)
    reader = ArtifactReader(io.BytesIO(bytes(raw)))
    reader.read_header()
    stream = next(reader.payload_files())
    with pytest.raises(ChecksumError):
        write_payload(stream, stream.size, part, block_size=BLOCK)
    content = part.read_bytes()
    assert content[: 3 * BLOCK] == payload[: 3 * BLOCK]
    assert content[3 * BLOCK:] == b"\xee" * BLOCK  # the block holding the bad byte never arrived


def test_payload_from_an_artifact(tmp_path: Path) -> None:
    image = tmp_path / "rootfs.ext4"
    image.write_bytes(os.urandom(200_000))
    artifact = write_rootfs(tmp_path, "good", compression="gzip", image=image)
    part = _partition(tmp_path, 300_000)
    reader = ArtifactReader(io.BytesIO(artifact.read_bytes()))
    reader.read_header()
    for stream in reader.payload_files():
        write_payload(stream, stream.size, part)
    written = part.read_bytes()[:200_000]
    assert hashlib.sha256(written).digest() == hashlib.sha256(image.read_bytes()).digest()


def test_flushes_in_the_background_one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush starts once SYNC_CHUNK bytes are written, and while it runs no other one is
    started or queued: the writer goes on without waiting for it.

    The first flush is held until the writer has written its last block (after each block it
    decides whether to start a flush), so the test sees the same order of events every time.
    """
    monkeypatch.setattr(rootfs, "SYNC_CHUNK", 2 * BLOCK)
    data = os.urandom(8 * BLOCK)
    decided: list[int] = []
    all_decided = threading.Event()
    start_flush = rootfs._BlockWriter._start_flush

    def deciding(writer: rootfs._BlockWriter, end: int) -> None:
        start_flush(writer, end)
        decided.append(end)
        if end == len(data):
            all_decided.set()

    flushed: list[int] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        flushed.append(fd)
        assert all_decided.wait(60)  # the bound only keeps a bug from hanging the test
        real(fd)

    monkeypatch.setattr(rootfs._BlockWriter, "_start_flush", deciding)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    part = _partition(tmp_path, 8 * BLOCK)
    write_payload(io.BytesIO(data), len(data), part, block_size=BLOCK)
    assert part.read_bytes() == data
    # The first flush at 2 blocks; from 4 on, a flush is due after every block, and each time
    # the writer finds the first one still running and goes on.
    assert decided == [2 * BLOCK, 4 * BLOCK, 5 * BLOCK, 6 * BLOCK, 7 * BLOCK, 8 * BLOCK]
    assert len(flushed) == 1  # none was started or queued beside it


def test_a_failed_background_flush_fails_the_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootfs, "SYNC_CHUNK", BLOCK)

    def fdatasync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    data = os.urandom(4 * BLOCK)
    with pytest.raises(DeviceError, match="cannot flush the inactive partition .*Input/output error"):
        write_payload(io.BytesIO(data), len(data), _partition(tmp_path, 4 * BLOCK), block_size=BLOCK)


def test_a_failed_write_fails_the_install_and_stops_the_threads(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.pwrite

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        calls.append(offset)
        if offset == 2 * BLOCK:
            raise OSError(28, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(rootfs, "SYNC_CHUNK", BLOCK)  # a flusher thread runs as well
    data = os.urandom(8 * BLOCK)
    with pytest.raises(DeviceError, match="cannot write to the inactive partition .*No space left"):
        write_payload(io.BytesIO(data), len(data), _partition(tmp_path, 8 * BLOCK), block_size=BLOCK)
    assert calls[:3] == [0, BLOCK, 2 * BLOCK]  # in order, and it stopped soon after the failure
    assert len(calls) <= 2 + rootfs.BUFFERS
    assert not [t for t in threading.enumerate() if t.name in ("pymender-write", "pymender-flush")]


def test_writeback_is_started_chunk_by_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootfs, "WRITEBACK_CHUNK", 2 * BLOCK)
    started: list[tuple[int, int]] = []

    def start(fd: int, offset: int, length: int) -> None:
        started.append((offset, length))

    monkeypatch.setattr(rootfs, "_writeback_starter", lambda: start)
    data = os.urandom(6 * BLOCK)
    part = _partition(tmp_path, 6 * BLOCK)
    write_payload(io.BytesIO(data), len(data), part, block_size=BLOCK)
    assert started == [(0, 2 * BLOCK), (2 * BLOCK, 2 * BLOCK), (4 * BLOCK, 2 * BLOCK)]
    assert part.read_bytes() == data


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux only")
def test_writeback_uses_sync_file_range_on_linux(tmp_path: Path) -> None:
    start = rootfs._writeback_starter()
    with open(tmp_path / "file", "wb") as file:
        file.write(os.urandom(3 * BLOCK))
        file.flush()
        assert start(file.fileno(), 0, 3 * BLOCK) == 0  # the C call's result: 0 is success
