"""The ``manifest`` (and ``manifest-augment``): SHA-256 checksums of every file of an Artifact.

Each line is ``<64 lowercase hex>  <path>\\n``. The writer keeps insertion order: data files,
then the header member, then ``version``, as upstream does. The reader is as strict as upstream's
where strictness protects the device (lowercase hex, no duplicates, every line ends in a newline)
and keeps track of which entries the rest of the Artifact has consumed.
"""

from __future__ import annotations

import re

from pymender.errors import ArtifactFormatError, ChecksumError, UnsafeArtifactError

from .record import Record

MAX_MANIFEST = 1024 * 1024
_LINE = re.compile(r"([0-9a-f]{64})  (\S+)")
_DATA_PATH = re.compile(r"data/(\d{4})/([\w\-.,]+)")


def format_manifest(entries: list[tuple[str, str]]) -> bytes:
    """The manifest bytes for ``(path, sha256hex)`` pairs, in the given order."""
    return "".join(f"{digest}  {path}\n" for path, digest in entries).encode()


class Manifest(Record):
    """Checksums by path, and which of them the reader has matched against real data."""

    _fields = ("entries", "consumed")

    def __init__(self, entries: dict[str, str] | None = None, consumed: set[str] | None = None) -> None:
        self.entries: dict[str, str] = {} if entries is None else entries
        self.consumed: set[str] = set() if consumed is None else consumed

    @classmethod
    def parse(cls, raw: bytes, member: str, into: Manifest | None = None) -> Manifest:
        manifest = into or cls()
        if len(raw) > MAX_MANIFEST:
            raise UnsafeArtifactError(f"{member} is larger than {MAX_MANIFEST} bytes")
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise ArtifactFormatError(f"{member} is not ASCII text") from None
        if text and not text.endswith("\n"):
            raise ArtifactFormatError(f"{member} does not end with a newline")
        for number, line in enumerate(text.split("\n"), 1):
            line = line.strip()
            if not line:
                continue
            match = _LINE.fullmatch(line)
            if not match:
                raise ArtifactFormatError(f"{member} line {number} is malformed: {line[:80]!r}")
            digest, path = match.groups()
            if path.startswith("/") or ".." in path.split("/"):
                raise UnsafeArtifactError(f"{member} names an unsafe path {path!r}")
            if path in manifest.entries:
                raise ArtifactFormatError(f"{member} lists {path!r} twice")
            if path.startswith("data/") and not _DATA_PATH.fullmatch(path):
                raise ArtifactFormatError(f"{member} has a malformed data path {path!r}")
            manifest.entries[path] = digest
        return manifest

    def check(self, path: str, actual: str) -> None:
        """Match the SHA-256 ``actual`` of ``path`` against its entry, once."""
        expected = self.entries.get(path)
        if expected is None:
            raise ChecksumError(f"{path} is not listed in the manifest")
        if path in self.consumed:
            raise ArtifactFormatError(f"{path} appears twice in the Artifact")
        if expected != actual:
            raise ChecksumError(
                f"checksum mismatch for {path}: manifest says {expected}, data has {actual}",
                hint="the Artifact is corrupt or was tampered with",
            )
        self.consumed.add(path)

    def expect(self, path: str) -> str:
        """The expected checksum of ``path``; the file must be listed."""
        expected = self.entries.get(path)
        if expected is None:
            raise ChecksumError(f"{path} is not listed in the manifest")
        return expected

    def data_files(self, index: int) -> list[str]:
        """Basenames of the data files the manifest lists for payload ``index``, in order."""
        prefix = f"data/{index:04d}/"
        return [path[len(prefix):] for path in self.entries if path.startswith(prefix)]

    def unconsumed(self) -> list[str]:
        return [path for path in self.entries if path not in self.consumed]
