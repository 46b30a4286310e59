from __future__ import annotations

import io
import lzma
import os
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import read_bounded, require_tool
from pymender.artifact import compression, xzblocks
from pymender.artifact.xzblocks import ParallelXzReader, encode_varint, index_and_footer, stream_header
from pymender.errors import ArtifactError, ArtifactFormatError, ArtifactTruncatedError

LZMA = compression.codec_by_name("lzma")
SMALL_BLOCK = 64 * 1024
# compressible but not trivial: what a filesystem image looks like to the codec
TEXT = b"".join(b"line %d of the pymender test data\n" % i for i in range(4000))
SEED = os.urandom(40_000)


def sample(size: int) -> bytes:
    unit = SEED + TEXT + bytes(50_000)
    return (unit * (size // len(unit) + 1))[:size]


def ours(data: bytes, monkeypatch: pytest.MonkeyPatch | None = None, block: int = SMALL_BLOCK) -> bytes:
    """pymender's writer, with small blocks so that tests have many of them cheaply."""
    mp = monkeypatch or pytest.MonkeyPatch()
    mp.setattr(compression, "XZ_BLOCK", block)
    try:
        out: list[compression.Chunk] = []
        comp = compression.compressor(LZMA, out.append, threads=2)
        for start in range(0, len(data), 100_003):
            comp.write(data[start : start + 100_003])
        comp.finish()
        return b"".join(out)
    finally:
        if monkeypatch is None:
            mp.undo()


def reader(blob: bytes, threads: int = 2) -> ParallelXzReader:
    def sequential(source: xzblocks.Readable) -> xzblocks.Reader:
        return compression._StreamDecompressor(
            source, lambda: lzma.LZMADecompressor(lzma.FORMAT_AUTO, memlimit=compression.XZ_MEMLIMIT),
            "t", (lzma.LZMAError,))

    return ParallelXzReader(io.BytesIO(blob), "t", threads=threads, memlimit=compression.XZ_MEMLIMIT,
                            fallback=sequential)


def read_all(source: ParallelXzReader, chunk: int = 100_000) -> bytes:
    return read_bounded(source, chunk)


def decode(blob: bytes, threads: int = 2) -> tuple[bytes, bool]:
    """The decoded bytes and whether the sequential decoder took over."""
    source = reader(blob, threads)
    return read_all(source), source.handed_over


# --- A hand-made stream builder, for streams no writer would make ------------------------------

FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 0, "dict_size": 1 << 20}]
LZMA2_FLAGS = encode_varint(0x21) + encode_varint(1) + bytes([16])  # dictionary 1 MiB


def header(compressed: int | None, uncompressed: int | None, filter_flags: bytes = LZMA2_FLAGS,
           flags_extra: int = 0, filters: int = 1) -> bytes:
    flags = (filters - 1) | flags_extra
    body = b""
    if compressed is not None:
        flags |= 0x40
        body += encode_varint(compressed)
    if uncompressed is not None:
        flags |= 0x80
        body += encode_varint(uncompressed)
    body = bytes([flags]) + body + filter_flags
    size = 1 + len(body)
    size += -size % 4
    head = bytes([size // 4]) + body + b"\0" * (size - 1 - len(body))
    return head + struct.pack("<I", zlib.crc32(head))


def block(data: bytes, *, sizes: tuple[int | None, int | None] | None = None, padding: bytes | None = None,
          **header_options: object) -> tuple[bytes, tuple[int, int]]:
    """One CRC32-checked block of ``data``, and its index record; sizes/padding may lie."""
    comp = lzma.compress(data, format=lzma.FORMAT_RAW, filters=FILTERS)
    compressed, uncompressed = sizes if sizes is not None else (len(comp), len(data))
    head = header(compressed, uncompressed, **header_options)  # type: ignore[arg-type]
    pad = padding if padding is not None else b"\0" * (-len(comp) % 4)
    record = (len(head) + len(comp) + 4, len(data))
    return head + comp + pad + struct.pack("<I", zlib.crc32(data)), record


def stream(*blocks: tuple[bytes, tuple[int, int]], records: list[tuple[int, int]] | None = None) -> bytes:
    body = b"".join(b for b, _ in blocks)
    return stream_header(1) + body + index_and_footer(records if records is not None else [r for _, r in blocks], 1)


def refused(blob: bytes, match: str | None = None) -> ArtifactError:
    with pytest.raises((ArtifactFormatError, ArtifactTruncatedError), match=match) as info:
        read_all(reader(blob))
    return info.value


# --- Round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1000, SMALL_BLOCK - 1, SMALL_BLOCK, 3 * SMALL_BLOCK,
                                  3 * SMALL_BLOCK + 5, 40 * SMALL_BLOCK + 123])
def test_round_trip_of_pymender_streams(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    data = sample(size)
    blob = ours(data, monkeypatch)
    for threads in (1, 2, 3):
        assert decode(blob, threads) == (data, False)


def test_writer_puts_both_sizes_in_every_block_header(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blob = ours(sample(5 * SMALL_BLOCK), monkeypatch)
    xz = require_tool("xz")
    (tmp_path / "t.xz").write_bytes(blob)  # xz --list reads only files
    listing = subprocess.run([xz, "--robot", "-lvv", str(tmp_path / "t.xz")], capture_output=True,
                             check=True).stdout
    blocks = [line.split(b"\t") for line in listing.splitlines() if line.startswith(b"block")]
    assert len(blocks) == 5
    # robot block columns: ... 11: header size, 12: flags ("cu": both sizes in the header)
    assert all(row[12] == b"cu" for row in blocks)
    assert subprocess.run([xz, "-dc"], input=blob, capture_output=True, check=True).stdout == sample(5 * SMALL_BLOCK)


@pytest.mark.parametrize("check", ["crc32", "crc64", "sha256", "none"])
def test_xz_threaded_streams_are_decoded_in_parallel(check: str) -> None:
    data = sample(700_000)
    blob = subprocess.run([require_tool("xz"), "-T2", "-0", "--block-size=100000", f"--check={check}", "-c"],
                          input=data, capture_output=True, check=True).stdout
    assert decode(blob) == (data, False)


def test_plain_xz_streams_go_to_the_sequential_decoder() -> None:
    data = sample(300_000)
    blob = subprocess.run([require_tool("xz"), "-T1", "-0", "-c"], input=data, capture_output=True,
                          check=True).stdout
    assert decode(blob) == (data, True)


def test_concatenated_streams_and_stream_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = sample(200_000), sample(150_000)[::-1]
    blob = ours(one, monkeypatch) + bytes(8) + ours(two, monkeypatch) + bytes(4) + ours(b"", monkeypatch)
    assert decode(blob) == (one + two, False)
    # a later stream without sizes: the sequential decoder reads it and the rest
    plain = subprocess.run([require_tool("xz"), "-T1", "-0", "-c"], input=two, capture_output=True,
                           check=True).stdout
    assert decode(ours(one, monkeypatch) + bytes(4) + plain + ours(one, monkeypatch)) == (one + two + one, True)


@pytest.mark.parametrize("padding", [1, 3, 5])
def test_stream_padding_must_be_a_multiple_of_four(padding: int, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = ours(sample(1000), monkeypatch)
    refused(blob + bytes(padding), "multiple of four")
    refused(blob + bytes(padding) + blob, "multiple of four")


def test_trailing_garbage_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    refused(ours(sample(1000), monkeypatch) + b"garbage!", "after an xz stream")


def test_not_xz_at_all_is_refused_by_the_sequential_decoder() -> None:
    refused(b"this is not compressed data at all" * 10)
    refused(b"", "ends in the middle")


def test_legacy_lzma_alone_still_reads_through_the_sequential_decoder() -> None:
    data = sample(10_000)
    assert decode(lzma.compress(data, format=lzma.FORMAT_ALONE)) == (data, True)


# --- Corruption ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_stream() -> bytes:
    # three blocks of very compressible data: every byte of the stream can be damaged in turn
    data = b"".join(b"block %d of a small stream " % (i // 400) for i in range(1000))
    mp = pytest.MonkeyPatch()
    try:
        blob = ours(data, mp, block=10_000)
    finally:
        mp.undo()
    assert decode(blob) == (data, False)
    return blob


def test_every_flipped_byte_is_refused(small_stream: bytes) -> None:
    assert len(small_stream) < 500
    for offset in range(len(small_stream)):
        damaged = bytearray(small_stream)
        damaged[offset] ^= 0x01 if offset % 2 else 0x80
        refused(bytes(damaged))


def test_every_truncation_is_refused(small_stream: bytes) -> None:
    for end in range(len(small_stream)):
        error = refused(small_stream[:end])
        if end > 12 + 16:  # past the first block header: the parallel reader's own checks
            assert isinstance(error, ArtifactTruncatedError), end


def test_good_blocks_come_before_the_error_of_a_bad_one() -> None:
    first, second = sample(50_000), sample(30_000)
    bad_block, record = block(second)
    bad_block = bad_block[:-1] + bytes([bad_block[-1] ^ 1])  # wrong CRC32 of the data
    source = reader(stream(block(first), (bad_block, record)))
    assert source.read(len(first)) == first
    with pytest.raises(ArtifactFormatError, match="block 2"):
        source.read(10)
    with pytest.raises(ArtifactFormatError, match="block 2"):
        source.read(10)  # and it stays refused


@pytest.mark.parametrize("sizes", [(0, +1), (0, -1), (+4, 0), (-1, 0), (+1, 0)])
def test_lying_sizes_are_refused(sizes: tuple[int, int]) -> None:
    data = sample(20_000)
    real = len(lzma.compress(data, format=lzma.FORMAT_RAW, filters=FILTERS))
    lie = block(data, sizes=(real + sizes[0], len(data) + sizes[1]))
    # as a later block (the parallel reader's own) and as the first (checked before handing over)
    refused(stream(block(b"x"), lie))
    refused(stream(lie))


def test_a_small_size_cannot_hide_a_bomb() -> None:
    bomb_data = bytes(8 << 20)
    real = len(lzma.compress(bomb_data, format=lzma.FORMAT_RAW, filters=FILTERS))
    bomb = block(bomb_data, sizes=(real, 100))
    refused(stream(block(b"x"), bomb), "block 2")  # by liblzma, or at size + 1 bytes at most


def test_nonzero_block_padding_is_refused() -> None:
    data = b"abcde"
    comp = lzma.compress(data, format=lzma.FORMAT_RAW, filters=FILTERS)
    assert len(comp) % 4
    padding = b"\0" * (-len(comp) % 4 - 1) + b"\1"
    refused(stream(block(b"x"), block(data, padding=padding)))


def test_reserved_block_flags_are_refused() -> None:
    refused(stream(block(b"x"), block(b"y", flags_extra=0x04)), "reserved flags")


def test_unsupported_filters_are_refused() -> None:
    lzma1 = encode_varint(0x4000000000000001) + encode_varint(5) + bytes(5)
    unknown_first = encode_varint(0x30) + encode_varint(0) + LZMA2_FLAGS
    refused(stream(block(b"x"), block(b"y", filter_flags=lzma1)), "unsupported filter chain")
    refused(stream(block(b"x"), block(b"y", filter_flags=unknown_first, filters=2)), "unsupported filter chain")
    refused(stream(block(b"y", filter_flags=lzma1)))  # first block: the sequential decoder refuses it


def test_a_dictionary_above_the_memory_limit_is_refused() -> None:
    huge = encode_varint(0x21) + encode_varint(1) + bytes([40])  # 4 GiB
    refused(stream(block(b"x"), block(b"y", filter_flags=huge)), "dictionary")
    refused(stream(block(b"y", filter_flags=huge)), "[Mm]emory")


def test_delta_before_lzma2_is_decoded() -> None:
    data = bytes(range(256)) * 200
    filters = [{"id": lzma.FILTER_DELTA, "dist": 4}, {"id": lzma.FILTER_LZMA2, "preset": 0, "dict_size": 1 << 20}]
    comp = lzma.compress(data, format=lzma.FORMAT_RAW, filters=filters)
    flags = encode_varint(0x03) + encode_varint(1) + bytes([3]) + LZMA2_FLAGS
    head = header(len(comp), len(data), filter_flags=flags, filters=2)
    body = head + comp + b"\0" * (-len(comp) % 4) + struct.pack("<I", zlib.crc32(data))
    record = (len(head) + len(comp) + 4, len(data))
    assert decode(stream(block(b"x"), (body, record))) == (b"x" + data, False)


def test_later_blocks_without_sizes_or_too_large_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    refused(stream(block(b"x"), block(b"y", sizes=(None, None))), "no sizes")
    monkeypatch.setattr(xzblocks, "MAX_BLOCK", 1000)
    refused(stream(block(b"x"), block(sample(5000))), "larger than")


def test_a_first_block_too_large_goes_to_the_sequential_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xzblocks, "MAX_BLOCK", 1000)
    data = sample(5000)
    assert decode(stream(block(data), block(b"x"))) == (data + b"x", True)


@pytest.mark.parametrize("records, match", [
    ([(0, 0)], "lists 1 blocks, the stream has 2"),
    (None, "does not match"),
])
def test_index_must_match_the_blocks(records: list[tuple[int, int]] | None, match: str) -> None:
    blocks = [block(b"x"), block(b"yy")]
    wrong = records if records is not None else [blocks[0][1], (blocks[1][1][0], 3)]
    refused(stream(*blocks, records=wrong), match)


def footer(index_size: int, flags: bytes = b"\0\1", magic: bytes = b"YZ") -> bytes:
    body = struct.pack("<I", index_size // 4 - 1) + flags
    return struct.pack("<I", zlib.crc32(body)) + body + magic


@pytest.mark.parametrize("tamper, match", [
    (lambda size: footer(size + 4), "wrong index size"),
    (lambda size: footer(size, flags=b"\0\4"), "flags differ"),
    (lambda size: footer(size, magic=b"ZY"), "magic"),
])
def test_footer_is_checked(tamper: Callable[[int], bytes], match: str) -> None:
    good = stream(block(b"x"))
    index_size = len(index_and_footer([(0, 0)], 1)) - 12
    refused(good[:-12] + tamper(index_size), match)


# --- Bounds and threads ----------------------------------------------------------------------


def test_reads_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    data = sample(5 * SMALL_BLOCK)
    source = reader(ours(data, monkeypatch))
    out = bytearray()
    for size in (1, 7, 0, 65_536, 1 << 20, 3):
        part = source.read(size)
        assert len(part) <= size
        out += part
    buffer = bytearray(1000)
    count = source.readinto(memoryview(buffer)[:100])
    assert count <= 100
    out += buffer[:count]
    out += read_all(source, 4096)
    assert bytes(out) == data


def test_a_bomb_costs_only_what_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = ours(bytes(16 << 20), monkeypatch, block=2 << 20)
    source = reader(bomb)
    assert len(source.read(10)) == 10
    # at most threads + 1 blocks were cut out of the stream: the rest is still unread
    assert len(source._queue) <= 2  # and one decoded: threads + 1 in all, not all eight


def test_worker_threads_end(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = ours(sample(5 * SMALL_BLOCK), monkeypatch)

    def workers() -> int:
        return sum(t.name == "pymender-xz" for t in threading.enumerate())

    before = workers()
    assert read_all(reader(blob, 3)) == sample(5 * SMALL_BLOCK)
    source = reader(blob, 3)
    source.read(10)  # abandoned half-way
    del source
    deadline = time.monotonic() + 5
    while workers() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert workers() == before


def test_decompressing_reader_uses_threads_only_with_several_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = ours(sample(3 * SMALL_BLOCK), monkeypatch)
    monkeypatch.setattr(compression, "cores", lambda: 1)
    single = compression.decompressing_reader(io.BytesIO(blob), LZMA, "t")
    assert not isinstance(single, ParallelXzReader)
    monkeypatch.setattr(compression, "cores", lambda: 2)
    parallel = compression.decompressing_reader(io.BytesIO(blob), LZMA, "t")
    assert isinstance(parallel, ParallelXzReader)
    assert read_all(parallel) == read_all(single) == sample(3 * SMALL_BLOCK)  # type: ignore[arg-type]
