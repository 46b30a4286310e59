from __future__ import annotations

import io
import tarfile

import pytest

from artifact_factory import tar_bytes
from pymender.artifact.tarstream import (
    END_OF_ARCHIVE,
    TarReader,
    padding,
    single_block_header,
    tar_header,
)
from pymender.errors import ArtifactFormatError, ArtifactTruncatedError, UnsafeArtifactError


def _names(data: bytes, **kwargs: bool) -> list[tuple[str, bytes]]:
    reader = TarReader(io.BytesIO(data), "test tar", **kwargs)
    out = []
    for member in reader.members():
        out.append((member.name, reader.read(member.size) if member.size else b""))
    return out


def test_header_has_go_fields() -> None:
    block = tar_header("version", 31)
    assert len(block) == 512
    assert block[100:108] == b"0000600\0"
    assert block[108:116] == b"0000000\0"  # uid
    assert block[124:136] == b"00000000037\0"
    assert block[136:148] == b"00000000000\0"
    assert block[148:156] == b"010605\0 "  # the checksum upstream writes for this header
    assert block[257:265] == b"ustar\x0000"
    assert block[329:345] == b"0000000\0" * 2


def test_headers_round_trip_through_tarfile() -> None:
    data = b"hello"
    tar = tar_header("data/0000.tar", len(data), mode=0o644, mtime=1700000000) + data + padding(5)
    with tarfile.open(fileobj=io.BytesIO(tar + END_OF_ARCHIVE)) as parsed:
        info = parsed.getmembers()[0]
    assert (info.name, info.size, info.mode, info.mtime) == ("data/0000.tar", 5, 0o644, 1700000000)


def test_long_name_uses_pax_and_reads_back() -> None:
    name = "x" * 150
    tar = tar_header(name, 3) + b"abc" + padding(3) + END_OF_ARCHIVE
    assert _names(tar) == [(name, b"abc")]


def test_huge_size_single_block_uses_base256() -> None:
    block = single_block_header("data/0000.tar", 9 * 2**30)
    assert len(block) == 512
    info = tarfile.TarInfo.frombuf(block, "utf-8", "strict")
    assert info.size == 9 * 2**30


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_reads_every_flavour(fmt: int) -> None:
    # USTAR can hold a long path only through its prefix field; the others have own records
    long_name = "d" * 80 + "/" + "b" * 90 if fmt == tarfile.USTAR_FORMAT else "b" * 120
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for name, content in [("a", b"1"), (long_name, b"22")]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    assert _names(buffer.getvalue()) == [("a", b"1"), (long_name, b"22")]


@pytest.mark.parametrize(
    "kind",
    [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE],
)
def test_refuses_links_and_devices(kind: bytes) -> None:
    info = tarfile.TarInfo("evil")
    info.type = kind
    info.linkname = "/etc/passwd"
    with pytest.raises(UnsafeArtifactError):
        _names(tar_bytes([info]))


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "/etc/passwd"])
def test_refuses_traversal(name: str) -> None:
    with pytest.raises(UnsafeArtifactError):
        _names(tar_bytes([(name, b"x")]))


def test_directories_only_where_allowed() -> None:
    info = tarfile.TarInfo("scripts")
    info.type = tarfile.DIRTYPE
    data = tar_bytes([info, ("scripts/x", b"1")])
    with pytest.raises(UnsafeArtifactError):
        _names(data)
    assert _names(data, allow_dirs=True) == [("scripts", b""), ("scripts/x", b"1")]


def test_oversized_pax_header_refused() -> None:
    header = bytearray(tar_header("PaxHeaders.0/x", 10 * 1024 * 1024))
    header[156:157] = b"x"
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    with pytest.raises(UnsafeArtifactError):
        _names(bytes(header) + bytes(1024))


def test_corrupt_header_checksum() -> None:
    data = bytearray(tar_bytes([("a", b"1")]))
    data[10] ^= 0x01
    with pytest.raises(ArtifactFormatError):
        _names(bytes(data))


def test_nonzero_padding_refused() -> None:
    data = bytearray(tar_bytes([("a", b"1")]))
    data[512 + 100] = 1
    with pytest.raises(ArtifactFormatError):
        _names(bytes(data))


@pytest.mark.parametrize("cut", [100, 512, 513, 1024])
def test_truncation(cut: int) -> None:
    data = tar_bytes([("a", b"x" * 600)])
    with pytest.raises(ArtifactTruncatedError):
        _names(data[:cut])


def test_garbage_after_end_refused() -> None:
    data = tar_bytes([("a", b"1")]) + b"garbage"
    with pytest.raises(ArtifactFormatError):
        _names(data)


def test_huge_zero_trailer_refused() -> None:
    data = tar_bytes([("a", b"1")]) + bytes(2 * 1024 * 1024)
    with pytest.raises(UnsafeArtifactError):
        _names(data)
