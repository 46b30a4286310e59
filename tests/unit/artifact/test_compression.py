from __future__ import annotations

import builtins
import gzip
import io
import lzma
import os
import subprocess
import zlib
from pathlib import Path

import pytest

from helpers import read_bounded, require_tool
from pymender.artifact import compression
from pymender.errors import (
    ArtifactFormatError,
    ArtifactTruncatedError,
    DependencyMissingError,
    UsageError,
)

DATA = (os.urandom(300_000) + bytes(2_500_000) + b"pymender " * 100_000) * 2
CODECS = ["gzip", "lzma", "zstd"]


def _compress(name: str, data: bytes, threads: int = 2) -> bytes:
    out: list[bytes] = []
    comp = compression.compressor(compression.codec_by_name(name), out.append, threads=threads)
    for start in range(0, len(data), 123_457):  # odd write sizes cross block boundaries
        comp.write(data[start : start + 123_457])
    comp.finish()
    return b"".join(out)


def _decompress(name: str, blob: bytes, chunk: int = 65_536) -> bytes:
    reader = compression.decompressing_reader(io.BytesIO(blob), compression.codec_by_name(name), "t")
    return read_bounded(reader, chunk)


@pytest.mark.parametrize("name", CODECS)
def test_round_trip(name: str) -> None:
    assert _decompress(name, _compress(name, DATA, 2)) == DATA


@pytest.mark.parametrize("name", CODECS)
def test_output_does_not_depend_on_threads(name: str) -> None:
    assert _compress(name, DATA, 1) == _compress(name, DATA, 2) == _compress(name, DATA, 3)


def test_gzip_is_one_standard_member() -> None:
    blob = _compress("gzip", DATA, 2)
    assert blob[:10] == compression.GZIP_HEADER
    assert gzip.decompress(blob) == DATA
    # exactly one member: a raw inflater consumes everything up to the 8-byte trailer
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflater.decompress(blob[10:])
    assert inflater.eof and len(inflater.unused_data) == 8


def test_xz_is_standard_multi_block_stream() -> None:
    blob = _compress("lzma", DATA, 2)
    assert lzma.decompress(blob, format=lzma.FORMAT_XZ) == DATA
    assert len(blob) < len(DATA) // 2


def test_xz_writer_puts_both_sizes_in_every_block_header(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(compression, "XZ_BLOCK", 64 * 1024)  # many blocks, cheaply
    data = DATA[: 5 * 64 * 1024]
    blob = _compress("lzma", data, 2)
    xz = require_tool("xz")
    (tmp_path / "t.xz").write_bytes(blob)  # xz --list reads only files
    listing = subprocess.run([xz, "--robot", "-lvv", str(tmp_path / "t.xz")], capture_output=True,
                             check=True).stdout
    blocks = [line.split(b"\t") for line in listing.splitlines() if line.startswith(b"block")]
    assert len(blocks) == 5
    # robot block columns: ... 11: header size, 12: flags ("cu": both sizes in the header)
    assert all(row[12] == b"cu" for row in blocks)
    assert subprocess.run([xz, "-dc"], input=blob, capture_output=True, check=True).stdout == data
    assert _decompress("lzma", blob) == data


def test_concatenated_xz_streams_and_plain_xz_are_read() -> None:
    plain = lzma.compress(b"written by plain xz", preset=6)  # one block, no sizes in its header
    assert _decompress("lzma", _compress("lzma", b"ours") + plain) == b"ourswritten by plain xz"


def test_empty_input() -> None:
    for name in CODECS:
        assert _decompress(name, _compress(name, b"", 2)) == b""


def test_concatenated_gzip_members_are_read() -> None:
    blob = gzip.compress(b"abc") + gzip.compress(b"def")
    assert _decompress("gzip", blob) == b"abcdef"


@pytest.mark.parametrize("name", ["gzip", "lzma"])
def test_bomb_is_bounded(name: str) -> None:
    bomb = _compress(name, bytes(64 * 1024 * 1024), 2)
    assert len(bomb) < 400_000  # 64 MiB in a few hundred KB
    reader = compression.decompressing_reader(io.BytesIO(bomb), compression.codec_by_name(name), "t")
    assert len(reader.read(10)) <= 10


@pytest.mark.parametrize("name", ["gzip", "lzma"])
def test_truncated_stream(name: str) -> None:
    blob = _compress(name, DATA, 2)
    with pytest.raises(ArtifactTruncatedError):
        _decompress(name, blob[: len(blob) // 2])


@pytest.mark.parametrize("name", CODECS)
def test_garbage_is_format_error(name: str) -> None:
    with pytest.raises(ArtifactFormatError):
        _decompress(name, b"this is not compressed data at all" * 10)


def test_unknown_codec_is_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown compression"):
        compression.codec_by_name("brotli")


def test_aliases_and_suffixes() -> None:
    assert compression.codec_by_name("xz").suffix == ".xz"
    assert compression.codec_by_name("zstd_best").level == 11
    assert compression.split_member_name("header.tar.zst", "header.tar").name == "zstd"
    assert compression.split_member_name("header.tar", "header.tar").name == "none"
    assert compression.split_member_name("header.tar.bz2", "header.tar") is None


def _hide_module(monkeypatch: pytest.MonkeyPatch, hidden: str) -> None:
    """Make ``import hidden`` fail as it does where the module is not installed."""
    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object) -> object:
        if name == hidden:
            raise ImportError(f"no {hidden}")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_missing_zstandard_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_module(monkeypatch, "zstandard")
    with pytest.raises(DependencyMissingError, match="zstandard"):
        compression.codec_by_name("zstd")


def test_gzip_engines_both_give_standard_gzip(monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = {}
    for engine in ("zlib", "isal"):
        monkeypatch.setenv(compression.GZIP_ENGINE_VARIABLE, engine)
        assert compression.deflate_engine()[0] == engine
        outputs[engine] = _compress("gzip", DATA, 2)
        assert gzip.decompress(outputs[engine]) == DATA
    assert outputs["zlib"] != outputs["isal"]  # why the engine is part of reproducibility


def test_gzip_engine_variable_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(compression.GZIP_ENGINE_VARIABLE, "pigz")
    with pytest.raises(UsageError, match="isal or zlib"):
        compression.deflate_engine()
    _hide_module(monkeypatch, "isal")
    monkeypatch.setenv(compression.GZIP_ENGINE_VARIABLE, "isal")
    with pytest.raises(DependencyMissingError, match="isal"):
        compression.deflate_engine()
    monkeypatch.delenv(compression.GZIP_ENGINE_VARIABLE)
    assert compression.deflate_engine()[0] == "zlib"  # falls back when not asked for
