from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from artifact_factory import (
    Member,
    fix_manifest,
    gz,
    join_members,
    make_image,
    member,
    read_all,
    split_members,
    tar_bytes,
    ungz,
    write_rootfs,
)
from pymender.artifact.reader import ArtifactReader, ReadOptions
from pymender.artifact.signing import load_verifier
from pymender.errors import (
    ArtifactFormatError,
    ArtifactUnsupportedError,
    ChecksumError,
    MissingSignatureError,
    SignatureError,
)


def test_header_comes_before_payload_bytes(workdir: Path) -> None:
    image = make_image(workdir / "rootfs.ext4", size=4_000_000)
    data = write_rootfs(workdir, image=image, compression="none").read_bytes()
    reader = ArtifactReader(io.BytesIO(data))
    header = reader.read_header()
    assert header.artifact_name == "release-1"
    assert reader.bytes_read < 10_000
    files = reader.payload_files()
    first = next(files)
    assert first.size == 4_000_000 and first.name == "rootfs.ext4"
    assert reader.bytes_read < 20_000


def test_payload_checksum_checked_at_last_byte(workdir: Path) -> None:
    image = workdir / "rootfs.ext4"
    image.write_bytes(os.urandom(1_000_000))
    raw = bytearray(write_rootfs(workdir, image=image, compression="none").read_bytes())
    # flip one byte in the middle of the payload (the data member starts after the header)
    position = raw.find(image.read_bytes()[500_000:500_064])
    assert position > 0
    raw[position] ^= 0xFF
    reader = ArtifactReader(io.BytesIO(bytes(raw)))
    payload = next(reader.payload_files())
    got = payload.read(999_999)
    assert len(got) == 999_999  # everything but the last byte is handed out ...
    with pytest.raises(ChecksumError, match="data/0000/rootfs.ext4"):
        payload.read(10)  # ... and the read that ends the file refuses it


def test_signatures(workdir: Path, keys: dict) -> None:
    signed = write_rootfs(workdir, key=keys["rsa-pkcs1"].private, out="signed.mender")
    unsigned = write_rootfs(workdir, out="unsigned.mender")
    header, _ = read_all(signed, [keys["rsa-pkcs1"].public])
    assert header.signed and header.signature_verified  # type: ignore[attr-defined]
    header, _ = read_all(signed)
    assert header.signed and not header.signature_verified  # type: ignore[attr-defined]
    with pytest.raises(MissingSignatureError):
        read_all(unsigned, [keys["rsa-pkcs1"].public])
    with pytest.raises(SignatureError):
        read_all(signed, [keys["rsa-pkcs8"].public.parent / "ec-sec1.pub.pem"])
    report = ArtifactReader(io.BytesIO(signed.read_bytes()),
                            ReadOptions([load_verifier(keys["ec-sec1"].public)], require_signature=False))
    header = report.validate()
    assert header.signed and not header.signature_verified and header.signature_error


def test_signature_checked_before_header_is_trusted(workdir: Path, keys: dict) -> None:
    signed = write_rootfs(workdir, key=keys["ec-sec1"].private).read_bytes()
    members = split_members(signed)
    header = member(members, "header.tar.gz")
    header.data = gz(ungz(header.data).replace(b"qemux86-64", b"evildevice"))
    fix_manifest(members)  # a consistent manifest, but no longer the signed one
    with pytest.raises(SignatureError):
        read_all(join_members(members), [keys["ec-sec1"].public])


def test_empty_type_from_upstream_39_is_accepted(workdir: Path) -> None:
    members = split_members(write_rootfs(workdir).read_bytes())
    header = member(members, "header.tar.gz")
    entries = [(m.name, m.data) for m in split_members(ungz(header.data))]
    entries = [(n, d.replace(b'"type":"rootfs-image"', b'"type":""') if n.endswith("type-info") else d)
               for n, d in entries]
    assert b'"type":""' in entries[1][1]
    header.data = gz(tar_bytes(entries))
    fix_manifest(members)
    parsed, _ = read_all(join_members(members))
    assert parsed.payloads[0].type == "rootfs-image"  # type: ignore[attr-defined]


@pytest.mark.parametrize("version, error", [(b'{"format":"mender","version":1}', ArtifactUnsupportedError),
                                            (b'{"format":"mender","version":4}', ArtifactUnsupportedError),
                                            (b'{"format":"other","version":3}', ArtifactFormatError),
                                            (b'{"format":"mender","version":3,"x":1}', ArtifactFormatError)])
def test_version_record(workdir: Path, version: bytes, error: type[Exception]) -> None:
    members = split_members(write_rootfs(workdir).read_bytes())
    member(members, "version").data = version
    fix_manifest(members)
    with pytest.raises(error):
        read_all(join_members(members))


def test_extra_data_file_not_in_manifest(workdir: Path) -> None:
    members = split_members(write_rootfs(workdir, compression="none").read_bytes())
    data = member(members, "data/0000.tar")
    inner = [(m.name, m.data) for m in split_members(data.data)] + [("extra.bin", b"x")]
    data.data = tar_bytes(inner)
    with pytest.raises(ChecksumError, match="extra.bin"):
        read_all(join_members(members))


def test_missing_data_member(workdir: Path) -> None:
    members = [m for m in split_members(write_rootfs(workdir).read_bytes()) if not m.name.startswith("data/")]
    with pytest.raises(ChecksumError, match="missing"):
        read_all(join_members(members))


def test_header_without_data_file_in_manifest_still_reads_type_info(workdir: Path) -> None:
    members = split_members(write_rootfs(workdir).read_bytes())
    members.insert(4, Member("data/0001.tar.gz", gz(tar_bytes([]))))
    with pytest.raises(ArtifactFormatError, match="no payload"):
        read_all(join_members(members))


class _OnlyRead:
    """A stream that can do nothing but read, in small uneven pieces (like a pipe or a socket)."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._position = 0
        self.largest_request = 0

    def read(self, size: int = -1) -> bytes:
        self.largest_request = max(self.largest_request, size)
        size = min(size if size >= 0 else 1 << 30, 4097)
        chunk = bytes(self._data[self._position : self._position + size])
        self._position += len(chunk)
        return chunk


@pytest.mark.parametrize("compression", ["none", "gzip", "lzma", "zstd"])
def test_reads_from_a_forward_only_stream_in_bounded_requests(workdir: Path, compression: str) -> None:
    image = make_image(workdir / "rootfs.ext4", size=3_000_000)
    stream = _OnlyRead(write_rootfs(workdir, image=image, compression=compression).read_bytes())
    reader = ArtifactReader(stream)
    reader.read_header()
    total = 0
    for payload in reader.payload_files():
        while chunk := payload.read(1 << 16):
            total += len(chunk)
    assert total == 3_000_000
    assert stream.largest_request <= 1 << 20  # never asks for a whole payload at once


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
@pytest.mark.parametrize("where", ["first", "last"])
def test_large_payload_hashed_in_background_still_checked_at_last_byte(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, compression: str, where: str) -> None:
    from pymender.artifact import hashing

    monkeypatch.setattr(hashing, "cores", lambda: 2)  # take the worker-thread path
    size = 6 * 1024 * 1024
    image = workdir / "rootfs.ext4"
    image.write_bytes(os.urandom(size))
    artifact = write_rootfs(workdir, image=image, compression="none")
    raw = bytearray(artifact.read_bytes())
    offset = raw.find(image.read_bytes()[:64]) + (10 if where == "first" else size - 10)
    raw[offset] ^= 0x01
    if compression != "none":  # recompress the damaged payload so only its checksum is wrong
        members = split_members(bytes(raw))
        from pymender.artifact import compression as codecs

        data = member(members, "data/0000.tar")
        data.name = f"data/0000.tar{codecs.codec_by_name(compression).suffix}"
        data.data = codecs.compress_bytes(codecs.codec_by_name(compression), data.data)
        raw = bytearray(join_members(members))
    reader = ArtifactReader(io.BytesIO(bytes(raw)))
    payload = next(reader.payload_files())
    buffer = bytearray(1 << 20)
    got = 0
    with pytest.raises(ChecksumError):
        while True:
            count = payload.readinto(buffer)
            if not count:
                break
            got += count
    assert got < size  # the read that would complete the file raised instead


@pytest.mark.parametrize("compression", ["none", "zstd", "gzip"])
def test_validate_hashes_on_a_thread_and_still_refuses_a_damaged_payload(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, compression: str) -> None:
    from pymender.artifact import hashing

    monkeypatch.setattr(hashing, "cores", lambda: 2)  # take the worker-thread path
    monkeypatch.setattr(hashing, "BUFFER_SIZE", 64 * 1024)  # many rotations of the buffers
    size = 5 * 1024 * 1024 + 123
    image = workdir / "rootfs.ext4"
    image.write_bytes(os.urandom(size))
    good = write_rootfs(workdir, image=image, compression=compression).read_bytes()
    header = ArtifactReader(io.BytesIO(good)).validate()
    assert header.payloads[0].files == ["rootfs.ext4"]

    from pymender.artifact import compression as codecs

    members = split_members(good)
    codec = codecs.codec_by_name(compression)
    data = member(members, f"data/0000.tar{codec.suffix}")
    source = codecs.decompressing_reader(io.BytesIO(data.data), codec, "data")
    plain = bytearray()
    while chunk := source.read(1 << 20):
        plain += chunk
    plain[512 + size // 2] ^= 0x40  # one bit in the middle of the image
    data.data = codecs.compress_bytes(codec, bytes(plain))
    with pytest.raises(ChecksumError):
        ArtifactReader(io.BytesIO(join_members(members))).validate()

