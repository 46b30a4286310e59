"""The Artifact writer.

The manifest comes first in an Artifact but lists the checksums of everything after it, so the
writer reads its payload files twice: once to hash them, once to compress them straight into the
output. Nothing is staged in a temporary file and memory stays flat whatever the payload size.
The compressed data member's size is only known at its end, so its tar header is written as a
placeholder and filled in afterwards (the output must be a regular file; it is written as
``OUTPUT.tmp`` and renamed into place only when complete).

Members appear in upstream's order and with upstream's header fields, so ``mender-artifact``
reads our Artifacts, and the same inputs with the same ``SOURCE_DATE_EPOCH`` give the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pymender.errors import InputError, OutputError, UsageError

from . import compression
from .manifest import format_manifest
from .model import HeaderInfo, TypeInfo, check_payload_file_name, check_script_name, go_json
from .signing import Signer
from .tarstream import END_OF_ARCHIVE, padding, single_block_header, tar_header

VERSION_3 = b'{"format":"mender","version":3}'
VERSION_2 = b'{"format":"mender","version":2}'
CHUNK = 1 << 20

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
    # in by the writer from its hashing pass so the image is not read a third time
    checksum_provide: str | None = None


@dataclass
class ArtifactSpec:
    info: HeaderInfo
    payload: PayloadSpec
    scripts: list[Path] = field(default_factory=list)
    format_version: int = 3


def source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH must be a number of seconds, not {value!r}") from None


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb", buffering=0) as handle:
            buffer = bytearray(CHUNK)
            view = memoryview(buffer)
            while True:
                count = handle.readinto(buffer)
                if not count:
                    break
                digest.update(view[:count])
                if progress:
                    progress(count)
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}") from None
    return digest.hexdigest()


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
    """The output file, with a byte count and the ability to fill in a header afterwards."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.position = 0

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.position += len(data)


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

    # --- the whole Artifact -------------------------------------------------------------------

    def write(self, output: Path) -> None:
        """Write the Artifact to ``output`` (atomically: OUTPUT.tmp, then rename)."""
        stats = self._check_inputs()
        total = sum(s.size for s in stats) * 2
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            if self.progress:
                self.progress(done, total)

        checksums = [sha256_file(path, advance) for path in self.spec.payload.files]
        payload = self.spec.payload
        if payload.checksum_provide and checksums:
            payload.type_info.provides[payload.checksum_provide] = checksums[0]
        version = VERSION_3 if self.spec.format_version == 3 else VERSION_2
        header_name = f"header.tar{self.codec.suffix}"
        header = compression.compress_bytes(self.codec, self._header_tar())
        data_entries = [(f"data/0000/{path.name}", digest)
                        for path, digest in zip(self.spec.payload.files, checksums, strict=True)]
        manifest = format_manifest(data_entries + [(header_name, hashlib.sha256(header).hexdigest()),
                                                   ("version", hashlib.sha256(version).hexdigest())])
        signature = self.signer.sign(manifest) if self.signer else None

        temporary = output.with_name(output.name + ".tmp")
        try:
            handle = open(temporary, "wb")
        except OSError as err:
            raise OutputError(f"cannot write {temporary}: {err.strerror or err}") from None
        try:
            with handle:
                out = _Output(handle)
                self._member(out, "version", version)
                self._member(out, "manifest", manifest)
                if signature is not None:
                    self._member(out, "manifest.sig", signature)
                self._member(out, header_name, header, file_member=True)
                self._data_member(out, stats, advance)
                out.write(END_OF_ARCHIVE)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, output)
        except OSError as err:
            _remove(temporary)
            raise OutputError(f"cannot write {output}: {err.strerror or err}") from None
        except BaseException:
            _remove(temporary)
            raise

    def _member(self, out: _Output, name: str, data: bytes, *, file_member: bool = False) -> None:
        # Upstream writes in-memory members with mtime 0 and file members with the time of writing.
        mtime = self.now if file_member else 0
        out.write(tar_header(name, len(data), mode=0o600, mtime=mtime))
        out.write(data)
        out.write(padding(len(data)))

    def _data_member(self, out: _Output, stats: list[_Stat], advance: Callable[[int], None]) -> None:
        name = f"data/0000.tar{self.codec.suffix}"
        header_at = out.position
        out.write(b"\0" * 512)  # placeholder, filled in once the size is known
        start = out.position
        comp = compression.compressor(self.codec, out.write, threads=self.threads)
        try:
            for path, before in zip(self.spec.payload.files, stats, strict=True):
                comp.write(tar_header(path.name, before.size, mode=before.mode,
                                      mtime=self._mtime(before.mtime)))
                self._copy(path, before, comp, advance)
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
        end = out.position
        out.handle.seek(header_at)
        out.handle.write(single_block_header(name, size, mode=0o600, mtime=self.now))
        out.handle.seek(end)

    def _copy(self, path: Path, before: _Stat, comp: compression.Compressor,
              advance: Callable[[int], None]) -> None:
        copied = 0
        try:
            with open(path, "rb", buffering=0) as handle:
                while True:
                    data = handle.read(CHUNK)
                    if not data:
                        break
                    copied += len(data)
                    comp.write(data)
                    advance(len(data))
        except OSError as err:
            raise InputError(f"cannot read {path}: {err.strerror or err}") from None
        if copied != before.size or _stat(path).stamp != before.stamp:
            raise InputError(f"{path} changed while the Artifact was being written",
                             hint="write the Artifact from a file nothing else modifies")


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
