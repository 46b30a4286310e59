"""The Artifact writer.

The manifest comes first in an Artifact but lists the checksums of everything after it, and the
header (which the manifest covers) carries the image's checksum as a provide. The writer still
reads each payload file only once: it reserves room for the leading members (``version``,
``manifest``, ``manifest.sig``, the header), streams the data member after it while a worker
thread hashes the very buffers that are being compressed, and then writes the leading members
into the room it left. Their size is known beforehand except for a byte or two of the compressed
header, which depends on the checksum; in the rare case that changes the header's 512-byte
blocks, the data member is moved to fit. Nothing is staged in a temporary file and memory stays
flat whatever the payload size. The output must be a regular file; it is written as
``OUTPUT.tmp`` and renamed into place only when complete, after an ``fsync`` whose work the
kernel has mostly done already (see :class:`pymender.sysio.WriteBehind`).

Members appear in upstream's order and with upstream's header fields, so ``mender-artifact``
reads our Artifacts, and the same inputs with the same ``SOURCE_DATE_EPOCH`` give the same bytes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pymender.errors import InputError, OutputError, UsageError
from pymender.sysio import WriteBehind, pwrite_all, source_date_epoch

from . import compression, hashing
from .manifest import format_manifest
from .model import HeaderInfo, TypeInfo, check_payload_file_name, check_script_name, go_json
from .signing import Signer
from .tarstream import END_OF_ARCHIVE, padding, single_block_header, tar_header

VERSION_3 = b'{"format":"mender","version":3}'
VERSION_2 = b'{"format":"mender","version":2}'
CHUNK = 1 << 20
#: What the checksums are reckoned with while the real ones are not known yet: any SHA-256 in
#: hex has the same length and about the same compressed size.
STAND_IN_SHA256 = hashlib.sha256(b"").hexdigest()

Progress = Callable[[int, int], None]


@dataclass
class PayloadSpec:
    """One payload: its type, the files it carries and its type-info."""

    type: str | None
    type_info: TypeInfo
    files: list[Path] = field(default_factory=list)
    meta_data: dict[str, Any] | None = None
    # rootfs-image payloads always carry an (empty) meta-data file; module images only with -m
    empty_meta_data: bool = False
    # provides key that receives the SHA-256 of the first file (rootfs-image.checksum), filled
    # in by the writer from the hash it computes while writing, so the image is read only once
    checksum_provide: str | None = None


@dataclass
class ArtifactSpec:
    info: HeaderInfo
    payload: PayloadSpec
    scripts: list[Path] = field(default_factory=list)
    format_version: int = 3


@dataclass(frozen=True)
class _Stat:
    size: int
    mtime: int
    mode: int
    stamp: tuple[int, int]


def _stat(path: Path) -> _Stat:
    try:
        st = path.stat()
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}") from None
    if not path.is_file():
        raise InputError(f"{path} is not a regular file")
    return _Stat(st.st_size, int(st.st_mtime), st.st_mode & 0o7777, (st.st_size, st.st_mtime_ns))


class _Output:
    """The output file, with a byte count; asks the kernel to write it back as it grows."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.position = 0
        self._behind = WriteBehind(handle.fileno())

    def write(self, data: bytes | memoryview) -> None:
        self.handle.write(data)
        self.position += len(data)
        self._behind.wrote(self.position)


class ArtifactWriter:
    def __init__(self, spec: ArtifactSpec, *, codec: compression.Codec, signer: Signer | None = None,
                 threads: int | None = None, progress: Progress | None = None) -> None:
        self.spec = spec
        self.codec = codec
        self.signer = signer
        self.threads = threads
        self.progress = progress
        epoch = source_date_epoch()
        self.epoch = epoch
        self.now = int(time.time()) if epoch is None else epoch
        if spec.format_version not in (2, 3):
            raise UsageError(f"Artifact format version {spec.format_version} is not supported",
                             hint="use 3 (or 2 for old clients)")
        if spec.format_version == 2 and spec.payload.type != "rootfs-image":
            raise UsageError("only rootfs-image Artifacts can be written in format version 2")

    def _mtime(self, mtime: int) -> int:
        return mtime if self.epoch is None else min(mtime, self.epoch)

    # --- pieces -------------------------------------------------------------------------------

    def _header_tar(self) -> bytes:
        spec = self.spec
        parts: list[bytes] = []

        def add(name: str, data: bytes, mode: int = 0o600, mtime: int = 0) -> None:
            parts.append(tar_header(name, len(data), mode=mode, mtime=mtime))
            parts.append(data)
            parts.append(padding(len(data)))

        add("header-info", spec.info.to_json(spec.format_version))
        for script in sorted(spec.scripts, key=lambda p: p.name):
            check_script_name(script.name)
            st = _stat(script)
            try:
                data = script.read_bytes()
            except OSError as err:
                raise InputError(f"cannot read script {script}: {err.strerror or err}") from None
            add(f"scripts/{script.name}", data, mode=st.mode, mtime=self._mtime(st.mtime))
        payload = spec.payload
        if spec.format_version == 2:
            add("headers/0000/files", go_json({"files": [f.name for f in payload.files]}))
        add("headers/0000/type-info", payload.type_info.to_json())
        if payload.meta_data is not None:
            add("headers/0000/meta-data", go_json(payload.meta_data, sort_keys=True))
        elif payload.empty_meta_data:
            add("headers/0000/meta-data", b"")
        parts.append(END_OF_ARCHIVE)
        return b"".join(parts)

    def _check_inputs(self) -> list[_Stat]:
        names = set()
        stats = []
        for path in self.spec.payload.files:
            check_payload_file_name(path.name)
            if path.name in names:
                raise UsageError(f"two payload files are named {path.name!r}")
            names.add(path.name)
            stats.append(_stat(path))
        for script in self.spec.scripts:
            check_script_name(script.name)
        if len({s.name for s in self.spec.scripts}) != len(self.spec.scripts):
            raise UsageError("two state scripts have the same name")
        return stats

    # --- the members before the data ----------------------------------------------------------

    def _leading_members(self, version: bytes, checksums: list[str]) -> bytes:
        """``version``, ``manifest``, ``manifest.sig`` and the header: all that precedes the data."""
        payload = self.spec.payload
        if payload.checksum_provide and checksums:
            payload.type_info.provides[payload.checksum_provide] = checksums[0]
        header_name = f"header.tar{self.codec.suffix}"
        header = compression.compress_bytes(self.codec, self._header_tar())
        data_entries = [(f"data/0000/{path.name}", digest)
                        for path, digest in zip(payload.files, checksums, strict=True)]
        manifest = format_manifest(data_entries + [(header_name, hashlib.sha256(header).hexdigest()),
                                                   ("version", hashlib.sha256(version).hexdigest())])
        parts = [self._member("version", version), self._member("manifest", manifest)]
        if self.signer is not None:
            parts.append(self._member("manifest.sig", self.signer.sign(manifest)))
        parts.append(self._member(header_name, header, file_member=True))
        return b"".join(parts)

    def _reserve(self, estimate: int) -> int:
        """Bytes left for the leading members, given their size with stand-in checksums.

        The estimate itself: it is almost always exact. (A method of its own so that tests can
        misjudge it on purpose and exercise the moving of the data member.)
        """
        return estimate

    # --- the whole Artifact -------------------------------------------------------------------

    def write(self, output: Path) -> None:
        """Write the Artifact to ``output`` (atomically: OUTPUT.tmp, then rename)."""
        stats = self._check_inputs()
        total = sum(s.size for s in stats)
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            if self.progress:
                self.progress(done, total)

        version = VERSION_3 if self.spec.format_version == 3 else VERSION_2
        reserved = self._reserve(len(self._leading_members(
            version, [STAND_IN_SHA256] * len(self.spec.payload.files))))

        temporary = output.with_name(output.name + ".tmp")
        try:
            handle = open(temporary, "w+b")  # read too: the data member may have to move
        except OSError as err:
            raise OutputError(f"cannot write {temporary}: {err.strerror or err}") from None
        try:
            with handle:
                out = _Output(handle)
                out.write(bytes(reserved))
                checksums = self._data_member(out, stats, advance)
                out.write(END_OF_ARCHIVE)
                leading = self._leading_members(version, checksums)
                handle.flush()
                if len(leading) != reserved:
                    _move(handle.fileno(), reserved, len(leading), out.position)
                pwrite_all(handle.fileno(), leading, 0)
                os.fsync(handle.fileno())
            os.replace(temporary, output)
        except OSError as err:
            _remove(temporary)
            raise OutputError(f"cannot write {output}: {err.strerror or err}") from None
        except BaseException:
            _remove(temporary)
            raise

    def _member(self, name: str, data: bytes, *, file_member: bool = False) -> bytes:
        # Upstream writes in-memory members with mtime 0 and file members with the time of writing.
        mtime = self.now if file_member else 0
        return tar_header(name, len(data), mode=0o600, mtime=mtime) + data + padding(len(data))

    def _data_member(self, out: _Output, stats: list[_Stat], advance: Callable[[int], None]) -> list[str]:
        """Write the data member; return the SHA-256 of each payload file."""
        name = f"data/0000.tar{self.codec.suffix}"
        header_at = out.position
        out.write(b"\0" * 512)  # placeholder, filled in once the size is known
        start = out.position
        comp = compression.compressor(self.codec, out.write, threads=self.threads)
        checksums = []
        try:
            for path, before in zip(self.spec.payload.files, stats, strict=True):
                comp.write(tar_header(path.name, before.size, mode=before.mode,
                                      mtime=self._mtime(before.mtime)))
                checksums.append(self._copy(path, before, comp, advance))
                comp.write(padding(before.size))
            comp.write(END_OF_ARCHIVE)
            comp.finish()
        except BaseException:
            abort = getattr(comp, "abort", None)
            if abort:
                abort()
            raise
        size = out.position - start
        out.write(padding(size))
        out.handle.flush()
        pwrite_all(out.handle.fileno(), single_block_header(name, size, mode=0o600, mtime=self.now),
                    header_at)
        return checksums

    def _copy(self, path: Path, before: _Stat, comp: compression.Compressor,
              advance: Callable[[int], None]) -> str:
        """Compress one payload file and return its SHA-256, hashed from the same buffers."""
        hasher = hashing.new_sha256(before.size)
        background = hasher if isinstance(hasher, hashing.BackgroundSha256) else None
        scratch = bytearray(0 if background else CHUNK)
        copied = 0
        try:
            with open(path, "rb", buffering=0) as handle:
                while True:
                    buffer = background.buffer() if background else scratch
                    count = handle.readinto(buffer)
                    if not count:
                        if background:
                            background.give_back(buffer)
                        break
                    copied += count
                    with memoryview(buffer)[:count] as view:
                        if background:
                            background.submit(buffer, count)  # hashed on the worker meanwhile
                        else:
                            hasher.update(view)
                        comp.write(view)
                    advance(count)
            digest = hasher.hexdigest()
        except OSError as err:
            raise InputError(f"cannot read {path}: {err.strerror or err}") from None
        finally:
            if background:
                background.close()
        if copied != before.size or _stat(path).stamp != before.stamp:
            raise InputError(f"{path} changed while the Artifact was being written",
                             hint="write the Artifact from a file nothing else modifies")
        return digest


def _move(fd: int, start: int, new_start: int, end: int) -> None:
    """Move the bytes ``[start, end)`` of the file to ``new_start``; the regions may overlap."""
    length = end - start
    offsets = list(range(0, length, CHUNK))
    if new_start > start:
        offsets.reverse()  # moving up: the last chunk first, so nothing is overwritten unread
    for offset in offsets:
        size = min(CHUNK, length - offset)
        data = os.pread(fd, size, start + offset)
        if len(data) != size:
            raise OSError(errno.EIO, "short read while moving the data member")
        pwrite_all(fd, data, new_start + offset)
    os.ftruncate(fd, new_start + length)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def write_artifact(spec: ArtifactSpec, output: Path, *, compression_name: str = "gzip",
                   signer: Signer | None = None, threads: int | None = None,
                   progress: Progress | None = None) -> None:
    """Write ``spec`` as an Artifact at ``output``."""
    codec = compression.codec_by_name(compression_name)
    if spec.format_version == 2 and codec.name == "zstd":
        raise UsageError("zstd needs Artifact format version 3")
    ArtifactWriter(spec, codec=codec, signer=signer, threads=threads, progress=progress).write(output)
