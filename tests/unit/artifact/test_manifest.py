from __future__ import annotations

import pytest

from pymender.artifact.manifest import Manifest, format_manifest
from pymender.errors import ArtifactFormatError, ChecksumError, UnsafeArtifactError

A = "a" * 64
B = "b" * 64


def test_format_is_upstreams() -> None:
    assert format_manifest([("data/0000/rootfs.ext4", A), ("version", B)]) == (
        f"{A}  data/0000/rootfs.ext4\n{B}  version\n".encode())


def test_parse_and_consume() -> None:
    manifest = Manifest.parse(format_manifest([("data/0000/x", A), ("version", B)]), "manifest")
    assert manifest.data_files(0) == ["x"]
    manifest.check("version", B)
    assert manifest.unconsumed() == ["data/0000/x"]
    with pytest.raises(ArtifactFormatError, match="twice"):
        manifest.check("version", B)
    with pytest.raises(ChecksumError, match="mismatch"):
        manifest.check("data/0000/x", B)
    with pytest.raises(ChecksumError, match="not listed"):
        manifest.check("data/0000/y", A)


@pytest.mark.parametrize(
    "raw, error",
    [
        (f"{A.upper()}  version\n", ArtifactFormatError),
        (f"{A}  version", ArtifactFormatError),  # no final newline
        (f"{A} version\n", ArtifactFormatError),
        (f"{A}  version\n{B}  version\n", ArtifactFormatError),
        (f"{A}  data/0/x\n", ArtifactFormatError),
        (f"{A}  data/0000/../../x\n", UnsafeArtifactError),
        (f"{A}  /etc/passwd\n", UnsafeArtifactError),
        ("\xff\n", ArtifactFormatError),
    ],
)
def test_malformed(raw: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        Manifest.parse(raw.encode("latin-1"), "manifest")


def test_oversized() -> None:
    with pytest.raises(UnsafeArtifactError):
        Manifest.parse(f"{A}  version\n".encode() * 20000, "manifest")
