"""Compression codecs of Artifact members: none, gzip, xz (``lzma``) and zstd.

The codec of a member is chosen by its name's suffix (``.gz``, ``.xz``, ``.zst`` or none), as
upstream does. Decompression is bounded: a reader never returns more than it is asked for, so a
decompression bomb costs the caller only what it chooses to read. Compression streams and, where
the codec allows, uses several cores:

- gzip: one gzip member whose deflate stream is made of independently compressed 1 MiB blocks,
  each primed with the 32 KiB before it (as pigz does); any gzip reader reads it as one stream.
  ISA-L deflates the blocks when the ``isal`` module is installed, zlib otherwise.
- xz: one xz stream of independently compressed blocks (as ``xz -T`` does), CRC32 checks; each
  block header carries the block's compressed and uncompressed size, as ``xz -T`` writes them.
  Reading is liblzma's sequential decoder: every xz stream, whoever wrote it.
- zstd: libzstd's own worker threads.

The output depends only on the input, the codec and (for gzip) the deflate engine, never on the
number of threads.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from pymender.errors import (
    ArtifactFormatError,
    ArtifactTruncatedError,
    ArtifactUnsupportedError,
    DependencyMissingError,
    UsageError,
)
from pymender.sysio import cores

from .streams import READ_CHUNK, DecompressedReader, Readable, readinto_from

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

#: What compressors accept: the writer hands them views of its reused read buffers.
Chunk = bytes | memoryview
Sink = Callable[[Chunk], Any]

# xz decompression needs the dictionary in memory; upstream writes 64 MiB dictionaries.
XZ_MEMLIMIT = 256 * 1024 * 1024
ZSTD_MAX_WINDOW = 128 * 1024 * 1024
# libzstd's default job size makes two workers take about 83 MB; 2 MiB jobs take about 32 MB
# for 0.6 % more output.
ZSTD_JOB = 2 << 20


class Codec(NamedTuple):
    """A compression as an Artifact names it (immutable)."""

    name: str  # upstream's --compression id
    suffix: str  # member name suffix
    level: int | None = None


CODECS: dict[str, Codec] = {
    "none": Codec("none", ""),
    "gzip": Codec("gzip", ".gz"),
    "lzma": Codec("lzma", ".xz", 3),
    "zstd": Codec("zstd", ".zst", 3),
    # upstream 3.10+ spellings
    "zstd_fastest": Codec("zstd", ".zst", 1),
    "zstd_fast": Codec("zstd", ".zst", 3),
    "zstd_better": Codec("zstd", ".zst", 7),
    "zstd_best": Codec("zstd", ".zst", 11),
}
ALIASES = {"xz": "lzma", "gz": "gzip"}
_BY_SUFFIX = {".gz": CODECS["gzip"], ".xz": CODECS["lzma"], ".zst": CODECS["zstd"], "": CODECS["none"]}


def codec_by_name(name: str) -> Codec:
    key = ALIASES.get(name, name)
    if key not in CODECS:
        choices = ", ".join(sorted(set(CODECS) | set(ALIASES)))
        raise UsageError(f"unknown compression {name!r}", hint=f"choose one of: {choices}")
    codec = CODECS[key]
    if codec.name == "zstd":
        _zstandard()
    return codec


def split_member_name(member: str, base: str) -> Codec | None:
    """The codec of ``member`` if it is ``base`` plus a known suffix, else None."""
    if not member.startswith(base):
        return None
    return _BY_SUFFIX.get(member[len(base):])


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError:
        raise DependencyMissingError(
            "zstd compression needs the Python module 'zstandard', which is not installed",
            hint="install it (pip install zstandard, or the python3-zstandard package) "
            "or choose another compression",
        ) from None
    return zstandard


# --- Decompression -----------------------------------------------------------------------------


class _StreamDecompressor:
    """Bounded reads over a zlib- or lzma-like decompressor that may span several streams."""

    #: The decompressor makes a new ``bytes`` object anyway: ``read`` costs no extra copy.
    native_readinto = False

    def __init__(self, raw: Readable, new: Callable[[], Any], what: str,
                 errors: tuple[type[Exception], ...] = (zlib.error,)) -> None:
        self._raw = raw
        self._new = new
        self._what = what
        self._errors = errors + (EOFError,)
        self._dec = new()
        self._pending = b""  # input the decompressor has not seen yet
        self._started = False

    def _error(self, err: Exception) -> ArtifactFormatError:
        return ArtifactFormatError(f"{self._what} is not valid compressed data: {err}")

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 20
        if size == 0:
            return b""
        while True:
            dec = self._dec
            if dec.eof:
                rest = dec.unused_data + self._pending
                self._pending = b""
                if not rest:
                    rest = self._raw.read(READ_CHUNK)
                if not rest:
                    return b""
                # another concatenated stream (gzip members, xz streams)
                self._dec = dec = self._new()
                self._pending = rest
            tail = getattr(dec, "unconsumed_tail", b"")
            if tail:
                data = tail
            elif not getattr(dec, "needs_input", True):
                data = b""
            elif self._pending:
                data, self._pending = self._pending, b""
            else:
                data = self._raw.read(READ_CHUNK)
                if not data:
                    raise ArtifactTruncatedError(
                        f"{self._what} ends in the middle of its compressed data",
                        hint="the file is incomplete or corrupt",
                    )
            try:
                out = dec.decompress(data, size)
            except self._errors as err:
                raise self._error(err) from None
            if out:
                return bytes(out)

    def readinto(self, buffer: memoryview) -> int:
        return readinto_from(self.read, buffer)


class _ZstdReader:
    def __init__(self, raw: Readable, what: str) -> None:
        zstandard = _zstandard()
        self._what = what
        self._error_type = zstandard.ZstdError
        self._reader = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(
            raw, read_size=READ_CHUNK, read_across_frames=True, closefd=False
        )

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 20
        try:
            return bytes(self._reader.read(size))
        except self._error_type as err:
            raise ArtifactFormatError(f"{self._what} is not valid zstd data: {err}") from None

    def readinto(self, buffer: memoryview) -> int:
        """Decompress straight into ``buffer`` (no intermediate bytes object)."""
        try:
            return int(self._reader.readinto(buffer))
        except self._error_type as err:
            raise ArtifactFormatError(f"{self._what} is not valid zstd data: {err}") from None


class _Plain:
    def __init__(self, raw: Readable) -> None:
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size)

    def readinto(self, buffer: memoryview) -> int:
        readinto = getattr(self._raw, "readinto", None)
        if readinto is None:
            return readinto_from(self._raw.read, buffer)
        return int(readinto(buffer))


def decompressing_reader(raw: Readable, codec: Codec, what: str) -> DecompressedReader:
    """A reader of the decompressed bytes of ``raw``; ``read(n)`` never returns more than n."""
    if codec.name == "none":
        return _Plain(raw)
    if codec.name == "gzip":
        return _StreamDecompressor(raw, lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), what)
    if codec.name == "lzma":
        import lzma  # here: most Artifacts are not xz, and the import costs start-up time

        return _StreamDecompressor(
            raw, lambda: lzma.LZMADecompressor(lzma.FORMAT_AUTO, memlimit=XZ_MEMLIMIT), what, (lzma.LZMAError,))
    if codec.name == "zstd":
        return _ZstdReader(raw, what)
    raise ArtifactUnsupportedError(f"unsupported compression {codec.name}")


# --- Compression ---------------------------------------------------------------------------------


class Compressor(Protocol):
    def write(self, data: Chunk) -> None: ...
    def finish(self) -> None: ...


class _Passthrough:
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def write(self, data: Chunk) -> None:
        if data:
            self._sink(data)

    def finish(self) -> None:
        pass


class _BlockPipeline:
    """Cut the input into fixed blocks and compress them on a thread pool, in order.

    The compression functions release the GIL, so blocks really run in parallel. At most
    ``2 * threads`` blocks are in flight, which bounds memory whatever the input size.
    """

    def __init__(self, sink: Sink, block_size: int, threads: int) -> None:
        self._sink = sink
        self._block_size = block_size
        self._buffer = bytearray()
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        if threads > 1:
            # imported here: reading never needs it, and it costs start-up time
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(threads)
        self._inflight: deque[Future[bytes] | bytes] = deque()
        self._index = 0
        self._previous = b""

    #: Whether compress_block uses the block before it (gzip primes its window with it).
    uses_previous = False
    #: Blocks queued beyond those being compressed; bounds memory.
    queue_ahead = 1

    def compress_block(self, block: bytes, previous: bytes, index: int, last: bool) -> bytes:
        raise NotImplementedError

    def emit(self, compressed: bytes) -> None:
        self._sink(compressed)

    def _submit(self, block: bytes, last: bool) -> None:
        previous = self._previous
        if self.uses_previous:
            self._previous = block
        if self._pool is None:
            self.emit(self.compress_block(block, previous, self._index, last))
        else:
            self._inflight.append(self._pool.submit(self.compress_block, block, previous, self._index, last))
            while len(self._inflight) > self._threads + self.queue_ahead:
                self._drain_one()
        self._index += 1

    def _drain_one(self) -> None:
        item = self._inflight.popleft()
        self.emit(item if isinstance(item, bytes) else item.result())

    def write(self, data: Chunk) -> None:
        self._buffer += data
        size = self._block_size
        if len(self._buffer) > size:
            view = memoryview(self._buffer)
            offset = 0
            # keep at least one byte so the final block is always submitted by finish()
            while len(self._buffer) - offset > size:
                self._submit(bytes(view[offset : offset + size]), last=False)
                offset += size
            view.release()
            del self._buffer[:offset]

    def finish(self) -> None:
        self._submit(bytes(self._buffer), last=True)
        self._buffer = bytearray()
        while self._inflight:
            self._drain_one()
        if self._pool is not None:
            self._pool.shutdown()

    def abort(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


# Go's gzip writer leaves the modification time at its zero value: these ten bytes are the
# header upstream writes, so our header is the same.
GZIP_HEADER = bytes.fromhex("1f8b080000096e8800ff")
GZIP_BLOCK = 1 << 20
DEFLATE_WINDOW = 32 * 1024


GZIP_ENGINE_VARIABLE = "PYMENDER_GZIP_ENGINE"
# zlib's default level (6) is much slower than upstream's parallel deflate; zlib 3 writes about
# upstream's size, and ISA-L's level 2 about 2 % more at several times zlib's speed.
GZIP_LEVELS = {"zlib": 3, "isal": 2}


def deflate_engine() -> tuple[str, Any]:
    """The deflate implementation gzip members are written with: ``isal`` or ``zlib``.

    ISA-L (the ``isal`` module) deflates several times faster than zlib at a similar size; it is
    used when installed, unless ``PYMENDER_GZIP_ENGINE=zlib``. Both give standard gzip that every
    reader accepts, but not the same bytes: for Artifacts that are identical across machines,
    install the same engine everywhere or pin one with that variable.
    """
    wanted = os.environ.get(GZIP_ENGINE_VARIABLE, "").strip().lower()
    if wanted not in ("", "isal", "zlib"):
        raise UsageError(f"{GZIP_ENGINE_VARIABLE} must be isal or zlib, not {wanted!r}")
    if wanted != "zlib":
        try:
            from isal import isal_zlib

            return "isal", isal_zlib
        except ImportError:
            if wanted == "isal":
                raise DependencyMissingError(
                    f"{GZIP_ENGINE_VARIABLE}=isal, but the Python module 'isal' is not installed",
                    hint="pip install isal, or unset the variable to use zlib") from None
    return "zlib", zlib


class _ParallelGzip(_BlockPipeline):
    uses_previous = True
    queue_ahead = 2

    def __init__(self, sink: Sink, level: int | None, threads: int) -> None:
        super().__init__(sink, GZIP_BLOCK, threads)
        self.engine, self._deflate = deflate_engine()
        self._level = GZIP_LEVELS[self.engine] if level is None else level
        self._crc = 0
        self._length = 0
        sink(GZIP_HEADER)

    def write(self, data: Chunk) -> None:
        self._crc = zlib.crc32(data, self._crc)
        self._length += len(data)
        super().write(data)

    def compress_block(self, block: bytes, previous: bytes, index: int, last: bool) -> bytes:
        engine = self._deflate
        if previous:
            comp = engine.compressobj(self._level, engine.DEFLATED, -15, 8, engine.Z_DEFAULT_STRATEGY,
                                      previous[-DEFLATE_WINDOW:])
        else:
            comp = engine.compressobj(self._level, engine.DEFLATED, -15, 8)
        body = comp.compress(block)
        tail: bytes = comp.flush(engine.Z_FINISH if last else engine.Z_SYNC_FLUSH)
        return bytes(body) + tail

    def finish(self) -> None:
        super().finish()
        self._sink(struct.pack("<II", self._crc & 0xFFFFFFFF, self._length & 0xFFFFFFFF))


# 2 MiB blocks with a 2 MiB dictionary keep each encoder near 19 MB (two of them stay well
# under 100 MB of peak memory) for about 2 % more output than 4 MiB would give.
XZ_BLOCK = 2 << 20
XZ_PRESET = 3
XZ_DICT = 2 << 20
_XZ_CHECK_CRC32 = 0x01
_XZ_MAGIC = b"\xfd7zXZ\x00"


def _xz_dict_byte(dict_size: int) -> int:
    for byte in range(41):
        if (2 | (byte & 1)) << (byte // 2 + 11) >= dict_size:
            return byte
    raise ValueError("dictionary too large")


def _varint(value: int) -> bytes:
    """xz's variable-length integer: 7 bits a byte, least significant first."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _xz_stream_header(check: int) -> bytes:
    flags = bytes([0x00, check])
    return _XZ_MAGIC + flags + struct.pack("<I", zlib.crc32(flags))


def _xz_index_and_footer(records: list[tuple[int, int]], check: int) -> bytes:
    """An index listing ``records`` (unpadded, uncompressed sizes) and the stream footer."""
    index = bytearray(b"\x00") + _varint(len(records))
    for unpadded, uncompressed in records:
        index += _varint(unpadded) + _varint(uncompressed)
    index += b"\0" * (-len(index) % 4)
    index += struct.pack("<I", zlib.crc32(index))
    footer = struct.pack("<I", len(index) // 4 - 1) + bytes([0x00, check])
    return bytes(index) + struct.pack("<I", zlib.crc32(footer)) + footer + b"YZ"


class _ParallelXz(_BlockPipeline):
    """One .xz stream of independently compressed LZMA2 blocks (the layout of ``xz -T``)."""

    def __init__(self, sink: Sink, preset: int, threads: int) -> None:
        super().__init__(sink, XZ_BLOCK, threads)
        import lzma

        self._compress = lzma.compress
        self._raw_format = lzma.FORMAT_RAW
        self._filters = [{"id": lzma.FILTER_LZMA2, "preset": preset, "dict_size": XZ_DICT}]
        sink(_xz_stream_header(_XZ_CHECK_CRC32))
        self._filter_flags = _varint(lzma.FILTER_LZMA2) + _varint(1) + bytes([_xz_dict_byte(XZ_DICT)])
        self._records: list[tuple[int, int]] = []

    def _block_header(self, compressed: int, uncompressed: int) -> bytes:
        """A block header with both optional sizes (flags 0x40 | 0x80), as ``xz -T`` writes it:
        a reader can cut each block out of the stream unread."""
        body = bytes([0xC0]) + _varint(compressed) + _varint(uncompressed) + self._filter_flags
        size = 1 + len(body)
        size += -size % 4
        header = bytes([size // 4]) + body + b"\0" * (size - 1 - len(body))
        return header + struct.pack("<I", zlib.crc32(header))

    def compress_block(self, block: bytes, previous: bytes, index: int, last: bool) -> bytes:
        data = self._compress(block, format=self._raw_format, filters=self._filters)
        header = self._block_header(len(data), len(block))
        unpadded = len(header) + len(data) + 4
        return struct.pack("<QQ", unpadded, len(block)) + header + data + (
            b"\0" * (-len(data) % 4)) + struct.pack("<I", zlib.crc32(block))

    def emit(self, compressed: bytes) -> None:
        unpadded, uncompressed = struct.unpack_from("<QQ", compressed)
        if uncompressed == 0:
            return  # an empty last block is simply left out
        self._records.append((unpadded, uncompressed))
        self._sink(compressed[16:])

    def finish(self) -> None:
        super().finish()
        self._sink(_xz_index_and_footer(self._records, _XZ_CHECK_CRC32))


class _Zstd:
    def __init__(self, sink: Sink, level: int, threads: int) -> None:
        zstandard = _zstandard()
        self._sink = sink
        # libzstd's multi-threaded mode gives the same bytes for any number of workers >= 1,
        # so the output does not depend on the machine.
        params = zstandard.ZstdCompressionParameters.from_level(
            level, threads=max(1, threads), job_size=ZSTD_JOB, write_checksum=True
        )
        self._obj = zstandard.ZstdCompressor(compression_params=params).compressobj()

    def write(self, data: Chunk) -> None:
        out = self._obj.compress(data)
        if out:
            self._sink(out)

    def finish(self) -> None:
        self._sink(self._obj.flush())


def compressor(codec: Codec, sink: Sink, *, threads: int | None = None) -> Compressor:
    """A streaming compressor for ``codec`` that passes its output to ``sink``."""
    workers = cores() if threads is None else max(1, threads)
    if codec.name == "none":
        return _Passthrough(sink)
    if codec.name == "gzip":
        return _ParallelGzip(sink, codec.level, workers)
    if codec.name == "lzma":
        return _ParallelXz(sink, codec.level if codec.level is not None else XZ_PRESET, workers)
    if codec.name == "zstd":
        return _Zstd(sink, codec.level or 3, workers)
    raise ArtifactUnsupportedError(f"unsupported compression {codec.name}")


def compress_bytes(codec: Codec, data: bytes, *, threads: int = 1) -> bytes:
    """Compress a small in-memory buffer (the header tar) with ``codec``."""
    out: list[Chunk] = []
    comp = compressor(codec, out.append, threads=threads)
    comp.write(data)
    comp.finish()
    return b"".join(out)
