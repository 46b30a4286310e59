"""The mutation corpus: damaged and hostile Artifacts must all be refused, with the right error.

Each case changes one thing in an otherwise valid Artifact (re-computing the manifest where the
point is to get past it), then reads the whole Artifact as a device would.
"""

from __future__ import annotations

import io
import itertools
import tarfile

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
from pymender.artifact.reader import ArtifactReader
from pymender.errors import (
    ArtifactError,
    ArtifactFormatError,
    ArtifactTruncatedError,
    ChecksumError,
    UnsafeArtifactError,
)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("mut")
    image = make_image(tmp / "rootfs.ext4", size=40_000)
    script = tmp / "ArtifactInstall_Enter_10"
    script.write_text("#!/bin/sh\nexit 0\n")
    return {c: write_rootfs(tmp, image=image, compression=c, scripts=[script]).read_bytes()
            for c in ("none", "gzip", "lzma", "zstd")}


def _outcome(data: bytes) -> tuple[dict, dict[str, bytes]]:
    header, files = read_all(data)
    return header.to_dict(), files  # type: ignore[attr-defined]


@pytest.mark.parametrize("compression", ["none", "gzip", "lzma", "zstd"])
def test_bit_flips_are_refused_or_harmless(artifacts: dict[str, bytes], compression: str) -> None:
    original = artifacts[compression]
    expected = _outcome(original)
    positions = sorted(set(range(0, len(original), max(1, len(original) // 400))) |
                       {i * 512 + o for i in range(len(original) // 512) for o in (0, 124, 148, 156)})
    refused = 0
    for position in positions:
        mutated = bytearray(original)
        mutated[position] ^= 0x10
        try:
            outcome = _outcome(bytes(mutated))
        except ArtifactError:
            refused += 1
            continue
        # A flip the format does not protect (such as a gzip header's time stamp) may pass,
        # but then it changed nothing a device would act on.
        assert outcome == expected, f"flip at {position} changed the result without an error"
    assert refused >= 0.9 * len(positions)


def _boundaries(data: bytes) -> list[int]:
    """Offsets where each outer member's header starts and where its content ends."""
    cuts = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for info in tar.getmembers():
            cuts += [info.offset, info.offset_data, info.offset_data + info.size // 2,
                     info.offset_data + info.size]
    return cuts + [len(data) - 1024]


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_truncation_at_every_member_boundary(artifacts: dict[str, bytes], compression: str) -> None:
    data = artifacts[compression]
    for cut in _boundaries(data):
        with pytest.raises(ArtifactTruncatedError):
            read_all(data[:cut])


def test_truncation_inside_the_end_marker_is_harmless(artifacts: dict[str, bytes]) -> None:
    data = artifacts["gzip"]
    assert _outcome(data[:-512]) == _outcome(data)


def test_reordered_members(artifacts: dict[str, bytes]) -> None:
    members = split_members(artifacts["gzip"])
    for i, j in itertools.combinations(range(len(members)), 2):
        swapped = list(members)
        swapped[i], swapped[j] = swapped[j], swapped[i]
        with pytest.raises(ArtifactFormatError):
            read_all(join_members(swapped))


def test_duplicated_members(artifacts: dict[str, bytes]) -> None:
    members = split_members(artifacts["gzip"])
    for i in range(len(members)):
        doubled = members[: i + 1] + [members[i]] + members[i + 1 :]
        with pytest.raises(ArtifactFormatError):
            read_all(join_members(doubled))


@pytest.mark.parametrize("name", ["extra", "manifest-extra", "data/0000.tar.bz2"])
def test_unknown_outer_member(artifacts: dict[str, bytes], name: str) -> None:
    members = split_members(artifacts["gzip"])
    for position in (2, 3, len(members)):
        mutated = members[:position] + [Member(name, b"x")] + members[position:]
        with pytest.raises(ArtifactFormatError):
            read_all(join_members(mutated))


@pytest.mark.parametrize("name", ["../version", "/version", "data/../../x"])
def test_traversal_in_outer_tar(artifacts: dict[str, bytes], name: str) -> None:
    members = split_members(artifacts["gzip"])
    members.insert(2, Member(name, b"x"))
    with pytest.raises(UnsafeArtifactError):
        read_all(join_members(members))


def _replace_payload_tar(artifacts: dict[str, bytes], entries: list) -> bytes:
    members = split_members(artifacts["gzip"])
    data = member(members, "data/0000.tar.gz")
    data.data = gz(tar_bytes(entries))
    return join_members(members)


@pytest.mark.parametrize("name", ["../rootfs.ext4", "/rootfs.ext4", "sub/rootfs.ext4", "bad name"])
def test_traversal_and_bad_names_in_payload(artifacts: dict[str, bytes], name: str) -> None:
    with pytest.raises(UnsafeArtifactError):
        read_all(_replace_payload_tar(artifacts, [(name, b"x")]))


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE])
def test_links_in_payload(artifacts: dict[str, bytes], kind: bytes) -> None:
    info = tarfile.TarInfo("rootfs.ext4")
    info.type = kind
    info.linkname = "/dev/sda"
    with pytest.raises(UnsafeArtifactError):
        read_all(_replace_payload_tar(artifacts, [info]))


def _replace_header(artifacts: dict[str, bytes], transform) -> bytes:  # type: ignore[no-untyped-def]
    members = split_members(artifacts["gzip"])
    header = member(members, "header.tar.gz")
    entries = [(m.name, m.data) for m in split_members(ungz(header.data))]
    header.data = gz(tar_bytes(transform(entries)))
    fix_manifest(members)
    return join_members(members)


@pytest.mark.parametrize(
    "transform, error",
    [
        (lambda e: e + [("headers/0000/../../../etc/x", b"x")], UnsafeArtifactError),
        (lambda e: e + [("scripts/../../x", b"x")], UnsafeArtifactError),
        (lambda e: e + [("scripts/sub/x", b"x")], UnsafeArtifactError),
        (lambda e: e + [("headers/0000/evil", b"x")], ArtifactFormatError),
        (lambda e: e + [("headers/0001/type-info", b"{}")], ArtifactFormatError),
        (lambda e: e + [("somewhere", b"x")], ArtifactFormatError),
        (lambda e: e[1:] + e[:1], ArtifactFormatError),  # header-info not first
        (lambda e: [x for x in e if not x[0].endswith("type-info")], ArtifactFormatError),
        (lambda e: e + [e[-2]], ArtifactFormatError),  # type-info twice
        (lambda e: [("header-info", b"{" * 10)] + e[1:], ArtifactFormatError),
        (lambda e: [("header-info", b'{"a":"' + b"x" * (2 << 20) + b'"}')] + e[1:], UnsafeArtifactError),
        (lambda e: e + [("headers/0000/meta-data2", bytes(20 << 20))], UnsafeArtifactError),
    ],
)
def test_hostile_headers(artifacts: dict[str, bytes], transform, error: type[Exception]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        read_all(_replace_header(artifacts, transform))


def test_header_link_refused(artifacts: dict[str, bytes]) -> None:
    info = tarfile.TarInfo("scripts/ArtifactInstall_Enter_11")
    info.type = tarfile.SYMTYPE
    info.linkname = "/bin/sh"
    with pytest.raises(UnsafeArtifactError):
        read_all(_replace_header(artifacts, lambda e: e[:1] + [info] + e[1:]))


def test_oversized_small_members(artifacts: dict[str, bytes]) -> None:
    for name in ("version", "manifest"):
        members = split_members(artifacts["gzip"])
        member(members, name).data = b" " * (2 << 20)
        with pytest.raises(UnsafeArtifactError):
            read_all(join_members(members))


def test_decompression_bomb_after_payload(artifacts: dict[str, bytes]) -> None:
    members = split_members(artifacts["gzip"])
    data = member(members, "data/0000.tar.gz")
    data.data = gz(ungz(data.data) + bytes(200 << 20))  # 200 MiB of zeros in ~200 KB
    assert len(data.data) < 1 << 20
    with pytest.raises(UnsafeArtifactError):
        read_all(join_members(members))


def test_bad_checksum_in_manifest(artifacts: dict[str, bytes]) -> None:
    for target in ("header.tar.gz", "data/0000/rootfs.ext4", "version"):
        members = split_members(artifacts["gzip"])
        manifest = member(members, "manifest")
        lines = manifest.data.decode().splitlines()
        manifest.data = ("\n".join(("0" * 64 + "  " + target) if line.endswith("  " + target) else line
                                   for line in lines) + "\n").encode()
        with pytest.raises(ChecksumError):
            read_all(join_members(members))


def test_manifest_entry_missing(artifacts: dict[str, bytes]) -> None:
    for target in ("header.tar.gz", "data/0000/rootfs.ext4", "version"):
        members = split_members(artifacts["gzip"])
        fix_manifest(members, drop=(target,))
        with pytest.raises(ChecksumError):
            read_all(join_members(members))


def test_every_case_is_an_artifact_error_for_the_device() -> None:
    # The classes above are what a device maps to "invalid Artifact": keep them in one family.
    for cls in (ArtifactFormatError, ArtifactTruncatedError, ChecksumError, UnsafeArtifactError):
        assert issubclass(cls, ArtifactError)
    assert ArtifactReader  # imported for the type checker's sake
