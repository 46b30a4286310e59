"""The streaming Artifact reader.

It reads the outer tar once, front to back, from any byte stream, never seeks, never writes a
temporary file and never holds a payload in memory. The order of events is the order of trust:

1. ``version`` and ``manifest`` (the version's checksum is checked at once);
2. ``manifest.sig``, verified before anything the manifest covers is used;
3. the header, parsed and then trusted only once its checksum matches the manifest: only then
   does :meth:`ArtifactReader.read_header` return it, so a caller can refuse the Artifact before
   a single payload byte is consumed;
4. each payload file as a stream (:meth:`ArtifactReader.payload_files`) whose SHA-256 is checked
   against the manifest when its last byte is read: a mismatch raises from that final ``read``;
5. :meth:`ArtifactReader.finish`: every manifest entry was present, the archive ended cleanly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pymender.errors import (
    ArtifactFormatError,
    ArtifactTruncatedError,
    ArtifactUnsupportedError,
    ChecksumError,
    MissingSignatureError,
    SignatureError,
    UnsafeArtifactError,
)

from . import compression, hashing
from .manifest import Manifest
from .model import (
    ArtifactHeader,
    HeaderInfo,
    PayloadHeader,
    Script,
    TypeInfo,
    check_payload_file_name,
    load_json,
    parse_meta_data,
)
from .record import Record
from .streams import Readable
from .tarstream import TarMember, TarReader

if TYPE_CHECKING:
    from .signing import Verifier

MAX_SMALL_MEMBER = 1024 * 1024  # version, manifest, manifest.sig
MAX_HEADER_MEMBER = 64 * 1024 * 1024  # compressed header tar
MAX_HEADER_CONTENT = 64 * 1024 * 1024  # all files of the header tar, decompressed
MAX_HEADER_FILE = 16 * 1024 * 1024  # one file in the header tar (scripts are the largest)


class _Counter:
    """Counts the bytes read from the source (for progress reports)."""

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:
        readinto = getattr(self._raw, "readinto", None)
        if readinto is None:
            data = self._raw.read(len(buffer))
            count = len(data)
            buffer[:count] = data
        else:
            count = readinto(buffer) or 0
        self.count += count
        return count


class _Hashing:
    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.hash.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


class PayloadFile:
    """One file of a payload, readable once; its checksum is verified at its last byte."""

    def __init__(self, index: int, member: TarMember, tar: TarReader, manifest: Manifest,
                 path: str) -> None:
        self.index = index
        self.name = member.name
        self.size = member.size
        self.mode = member.mode
        self.mtime = member.mtime
        self.path = path
        self.expected_sha256 = manifest.expect(path)
        self._tar = tar
        self._native_readinto = tar.native_readinto
        self._manifest = manifest
        # large files are hashed on a worker thread (see hashing), overlapping the reading
        self._hash: Any = hashing.new_sha256(member.size)
        self._left = member.size
        self.sha256: str | None = None
        if member.size == 0:
            self._done()

    def _done(self) -> None:
        self.sha256 = self._hash.hexdigest()
        self._manifest.check(self.path, self.sha256)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes; the read that returns the last byte also checks the checksum."""
        if self._left <= 0:
            return b""
        data = self._tar.read(self._left if size < 0 else min(size, self._left))
        self._hash.update(data)
        self._left -= len(data)
        if self._left == 0:
            self._done()
        return data

    def readinto(self, buffer: Any) -> int:
        """Like :meth:`read`, straight into ``buffer``: no intermediate copy for uncompressed
        and zstd payloads. The bytes are hashed from ``buffer`` before this returns."""
        if self._left <= 0:
            return 0
        view = memoryview(buffer)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        if len(view) > self._left:
            view = view[: self._left]
        if self._native_readinto:
            count = self._tar.readinto(view)
            self._hash.update(view[:count])
        else:  # gzip, xz: hash the decompressor's own bytes object, then copy it once
            data = self._tar.read(len(view))
            count = len(data)
            self._hash.update(data)
            view[:count] = data
        self._left -= count
        if self._left == 0:
            self._done()
        return count

    def drain(self) -> None:
        """Read (and so check) the rest of the file, copying nothing.

        With a hashing thread and a stream that fills buffers itself (an uncompressed or zstd
        payload), the file is read straight into the hash's own rotating buffers, and the hash
        of one chunk overlaps the reading of the next.
        """
        if self._left <= 0:
            return
        hasher = self._hash
        if isinstance(hasher, hashing.BackgroundSha256) and self._native_readinto:
            while self._left > 0:
                buffer = hasher.buffer()
                count = self._tar.readinto(memoryview(buffer)[: min(len(buffer), self._left)])
                hasher.submit(buffer, count)
                self._left -= count
            self._done()
            return
        if not self._native_readinto:  # gzip, xz: hash the decompressor's bytes; no copy at all
            while self.read(1 << 20):
                pass
            return
        buffer = bytearray(min(self._left, 1 << 20))
        while self.readinto(buffer):
            pass

    @property
    def complete(self) -> bool:
        return self.sha256 is not None


class ReadOptions(Record):
    """How strictly to treat signatures.

    ``verifiers``: public keys. With keys and ``require_signature`` (the default), an unsigned
    Artifact or a bad signature is refused; without ``require_signature`` the outcome is only
    recorded in the header (``pymender-artifact read -k`` reports, it does not refuse).
    """

    _fields = ("verifiers", "require_signature")

    def __init__(self, verifiers: list[Verifier] | None = None, require_signature: bool = True) -> None:
        self.verifiers: list[Verifier] = [] if verifiers is None else verifiers
        self.require_signature = require_signature


class ArtifactReader:
    def __init__(self, stream: Readable, options: ReadOptions | None = None) -> None:
        self._source = _Counter(stream)
        self._options = options or ReadOptions()
        self._outer = TarReader(self._source, "the Artifact")
        self._members = self._outer.members()
        self._pending: TarMember | None = None
        self._manifest = Manifest()
        self.header: ArtifactHeader | None = None
        self._data_started = False
        self._finished = False
        #: The header's JSON documents as parsed, unvalidated beyond their schema (what Mender
        #: hands an Update Module verbatim): ``"header-info"``, ``"NNNN/type-info"``.
        self.verbatim: dict[str, Any] = {}

    @property
    def bytes_read(self) -> int:
        return self._source.count

    # --- outer members ------------------------------------------------------------------------

    def _next(self) -> TarMember | None:
        if self._pending is not None:
            member, self._pending = self._pending, None
            return member
        for member in self._members:
            if member.is_dir:
                raise ArtifactFormatError(f"unexpected directory {member.name!r} in the Artifact")
            return member
        return None

    def _push_back(self, member: TarMember) -> None:
        self._pending = member

    def _small(self, member: TarMember) -> bytes:
        if member.size > MAX_SMALL_MEMBER:
            raise UnsafeArtifactError(f"{member.name} is {member.size} bytes; that is too large")
        data = self._outer.read(member.size)
        while len(data) < member.size:
            data += self._outer.read(member.size - len(data))
        return data

    def _expect(self, wanted: str) -> TarMember:
        member = self._next()
        if member is None:
            raise ArtifactTruncatedError(f"the Artifact ends before its {wanted}",
                                         hint="the file is incomplete; download or copy it again")
        return member

    # --- header ------------------------------------------------------------------------------

    def read_header(self) -> ArtifactHeader:
        """Read and check everything before the payloads, and return the trusted header."""
        if self.header is not None:
            return self.header
        first = self._expect("version")
        if first.name != "version":
            raise ArtifactFormatError(
                f"the Artifact starts with {first.name!r}, not 'version'",
                hint="is this a Mender Artifact (.mender)?")
        version_raw = self._small(first)
        version = self._parse_version(version_raw)

        member = self._expect("manifest")
        if member.name != "manifest":
            raise ArtifactFormatError(f"expected 'manifest' after 'version', found {member.name!r}")
        manifest_raw = self._small(member)
        Manifest.parse(manifest_raw, "manifest", self._manifest)
        self._manifest.check("version", hashlib.sha256(version_raw).hexdigest())

        member = self._expect("header")
        signature: bytes | None = None
        if member.name == "manifest.sig":
            signature = self._small(member)
            member = self._expect("header")
        signed, verified, sig_error = self._check_signature(manifest_raw, signature)

        augmented = False
        if member.name == "manifest-augment":
            if version < 3:
                raise ArtifactFormatError("manifest-augment in a version 2 Artifact")
            Manifest.parse(self._small(member), "manifest-augment", self._manifest)
            augmented = True
            member = self._expect("header")

        codec = compression.split_member_name(member.name, "header.tar")
        if codec is None:
            raise ArtifactFormatError(
                f"expected the header ('header.tar[.gz|.xz|.zst]'), found {member.name!r}")
        header_info, payloads, scripts = self._read_header_tar(member, codec, version, augment=False)

        if augmented:
            member = self._expect("augmented header")
            if compression.split_member_name(member.name, "header-augment.tar") != codec:
                raise ArtifactFormatError(
                    f"expected 'header-augment.tar{codec.suffix}' after the header, found {member.name!r}")
            _, augment_payloads, _ = self._read_header_tar(member, codec, version, augment=True)
            for augment in augment_payloads:
                if augment.index >= len(payloads):
                    raise ArtifactFormatError("the augmented header names a payload the header lacks")
                base = payloads[augment.index]
                base.type_info = base.type_info.merged_with(augment.type_info)
                base.type = augment.type or base.type
                if augment.meta_data:
                    base.meta_data = {**(base.meta_data or {}), **augment.meta_data}

        for payload in payloads:
            payload.files = self._manifest.data_files(payload.index)
        self.header = ArtifactHeader(
            format_version=version,
            info=header_info,
            payloads=payloads,
            scripts=scripts,
            signed=signed,
            signature_verified=verified,
            signature_error=sig_error,
            augmented=augmented,
        )
        return self.header

    def _parse_version(self, raw: bytes) -> int:
        obj = load_json(raw, "version")
        if not isinstance(obj, dict) or set(obj) - {"format", "version"}:
            raise ArtifactFormatError("the 'version' member is not a Mender Artifact version record")
        if obj.get("format") != "mender":
            raise ArtifactFormatError(f"unknown Artifact format {obj.get('format')!r}",
                                      hint="is this a Mender Artifact (.mender)?")
        version = obj.get("version")
        if version == 1:
            raise ArtifactUnsupportedError("Artifact format version 1 is no longer supported")
        if version not in (2, 3):
            raise ArtifactUnsupportedError(f"unsupported Artifact format version {version!r}",
                                           hint="versions 2 and 3 are supported")
        return int(version)

    def _check_signature(self, manifest: bytes, signature: bytes | None) -> tuple[bool, bool, str | None]:
        verifiers = self._options.verifiers
        if signature is None:
            if verifiers and self._options.require_signature:
                raise MissingSignatureError(
                    "the Artifact is not signed, but a verification key is configured",
                    hint="sign it with: pymender-artifact sign -k PRIVATE_KEY ARTIFACT")
            return False, False, None
        if not verifiers:
            return True, False, None
        try:
            from .signing import verify_any  # only with keys: reading needs no cryptography

            verify_any(verifiers, manifest, signature)
        except SignatureError as err:
            if self._options.require_signature:
                raise
            return True, False, str(err)
        return True, True, None

    def _read_header_tar(self, member: TarMember, codec: compression.Codec, version: int,
                         *, augment: bool) -> tuple[HeaderInfo, list[PayloadHeader], list[Script]]:
        if member.size > MAX_HEADER_MEMBER:
            raise UnsafeArtifactError(f"{member.name} is {member.size} bytes; that is too large")
        raw = _Hashing(self._outer)
        tar = TarReader(compression.decompressing_reader(raw, codec, member.name), member.name,
                        allow_dirs=True)
        info: HeaderInfo | None = None
        type_infos: dict[int, TypeInfo] = {}
        meta: dict[int, dict[str, Any] | None] = {}
        scripts: list[Script] = []
        total = 0
        for entry in tar.members():
            if info is None:
                if entry.name != "header-info" or entry.is_dir:
                    raise ArtifactFormatError(
                        f"{member.name} must start with 'header-info', not {entry.name!r}")
            if entry.is_dir:
                continue
            if entry.size > MAX_HEADER_FILE:
                raise UnsafeArtifactError(f"{entry.name} in {member.name} is too large ({entry.size} bytes)")
            total += entry.size
            if total > MAX_HEADER_CONTENT:
                raise UnsafeArtifactError(f"{member.name} holds more than {MAX_HEADER_CONTENT} bytes")
            content = _read_all(tar, entry.size)
            if info is None:
                info = HeaderInfo.from_json(content, version, f"{member.name}: header-info")
                if not augment:
                    self.verbatim["header-info"] = load_json(content, "header-info")
                continue
            parts = entry.name.split("/")
            if parts[0] == "scripts" and not augment:
                if len(parts) != 2:
                    raise UnsafeArtifactError(f"script path {entry.name!r} in {member.name} is not flat")
                scripts.append(Script(parts[1], content, entry.mode & 0o7777))
                continue
            if len(parts) < 3 or parts[0] != "headers" or not (len(parts[1]) == 4 and parts[1].isdigit()):
                raise ArtifactFormatError(f"unexpected file {entry.name!r} in {member.name}")
            index = int(parts[1])
            if index >= len(info.payload_types):
                raise ArtifactFormatError(f"{entry.name} in {member.name} names a payload that does not exist")
            rest = "/".join(parts[2:])
            where = f"{member.name}: {entry.name}"
            if rest == "type-info":
                if index in type_infos:
                    raise ArtifactFormatError(f"{where} appears twice")
                type_infos[index] = TypeInfo.from_json(content, where)
                if not augment:
                    self.verbatim[f"{index:04d}/type-info"] = load_json(content, where)
            elif rest == "meta-data":
                meta[index] = parse_meta_data(content, where)
            elif rest == "files" and version == 2:
                _check_v2_files(content, where)
            elif rest == "files":
                raise ArtifactFormatError(f"{where}: a 'files' entry belongs to version 2 Artifacts")
            elif parts[2] in ("signatures", "checksums", "scripts"):
                continue  # legacy entries upstream also ignores
            else:
                raise ArtifactFormatError(f"unsupported file {entry.name!r} in {member.name}")
        if info is None:
            raise ArtifactFormatError(f"{member.name} is empty")
        raw.drain()
        actual = raw.hash.hexdigest()
        self._manifest.check(member.name, actual)
        payloads: list[PayloadHeader] = []
        for index, declared in enumerate(info.payload_types):
            type_info = type_infos.get(index)
            if type_info is None:
                if version >= 3 and not augment:
                    raise ArtifactFormatError(f"{member.name} has no type-info for payload {index}")
                type_info = TypeInfo(type=declared)
            payloads.append(PayloadHeader(index=index, type=declared or (type_info.type or None),
                                          type_info=type_info, meta_data=meta.get(index)))
        return info, payloads, scripts

    # --- payloads -----------------------------------------------------------------------------

    def payload_files(self) -> Iterator[PayloadFile]:
        """Each payload file, in Artifact order. Read one fully (or not) before the next."""
        header = self.read_header()
        if self._data_started:
            raise RuntimeError("payload_files() can be iterated once")
        self._data_started = True
        expected_index = 0
        while True:
            member = self._next()
            if member is None:
                break
            codec = compression.split_member_name(member.name, f"data/{expected_index:04d}.tar")
            if codec is None:
                raise ArtifactFormatError(
                    f"unexpected member {member.name!r}; expected data/{expected_index:04d}.tar[.gz|.xz|.zst]")
            if expected_index >= len(header.payloads):
                raise ArtifactFormatError(f"{member.name} has no payload in the header")
            inner = TarReader(compression.decompressing_reader(self._outer, codec, member.name),
                              member.name)
            for entry in inner.members():
                if "/" in entry.name:
                    raise UnsafeArtifactError(f"payload file {entry.name!r} in {member.name} has a directory")
                check_payload_file_name(entry.name)
                current = PayloadFile(expected_index, entry, inner, self._manifest,
                                      f"data/{expected_index:04d}/{entry.name}")
                yield current
                current.drain()
            expected_index += 1
        self.finish()

    def finish(self) -> None:
        """Check that the Artifact ended cleanly and every manifest entry was seen."""
        if self._finished:
            return
        if self._next() is not None:
            raise ArtifactFormatError("unexpected member after the payloads")
        missing = self._manifest.unconsumed()
        if missing:
            raise ChecksumError(
                "files listed in the manifest are missing from the Artifact: " + ", ".join(missing[:5]),
                hint="the file is incomplete or was tampered with")
        self._finished = True

    def validate(self) -> ArtifactHeader:
        """Read the whole Artifact, checking every checksum; return its header."""
        header = self.read_header()
        for payload in self.payload_files():
            payload.drain()
        return header


def _read_all(tar: TarReader, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left:
        chunk = tar.read(left)
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _check_v2_files(content: bytes, where: str) -> None:
    obj = load_json(content, where)
    if not isinstance(obj, dict) or not isinstance(obj.get("files"), list):
        raise ArtifactFormatError(f"{where} must be an object with a 'files' list")
    for name in obj["files"]:
        if not isinstance(name, str):
            raise ArtifactFormatError(f"{where} lists a file name that is not a string")
        check_payload_file_name(name)


def read_artifact_header(stream: Readable, options: ReadOptions | None = None) -> ArtifactHeader:
    return ArtifactReader(stream, options).read_header()
