"""Decode an xz stream on several cores, block by block.

A multi-threaded xz writer (``xz -T``, pymender's own) cuts its input into independent blocks
and writes the compressed and uncompressed size of each into the block's header. A reader can
then cut every block out of the stream as it arrives, without decoding it, and decode several
at once: ``liblzma`` releases the GIL, so a small thread pool keeps every core busy while the
caller consumes the blocks in order.

Each block is checked by ``liblzma`` itself: it is wrapped in a tiny synthetic xz stream (a
stream header with the stream's check type, the block exactly as read, then an index with the
one record its header announces, and a footer). Decoding that stream to its end proves all the
sequential decoder proves of the block: header CRC32 and options, the filter chain, the memory
limit, the compressed and uncompressed sizes, zero padding and the integrity check (CRC32,
CRC64 or SHA-256; the standard library has no CRC64, so a ``FORMAT_RAW`` decoder plus checks
written here could not verify every check type). This module parses each block header first
(so its sizes can be trusted to say where the block ends) and checks what spans blocks: the
stream header, the real index against the blocks seen, the footer, stream padding and
concatenated streams.

Memory stays bounded: at most ``threads + 1`` blocks are in flight, and only blocks of up to
:data:`MAX_BLOCK` bytes are decoded this way. A stream whose first block does not announce
both sizes (upstream's Go writer, plain ``xz``), or announces a larger one, is handed, with
every stream after it, to the sequential decoder the caller supplies, together with the bytes
already read. Standard library only: this runs on the device.
"""

from __future__ import annotations

import hashlib
import lzma
import struct
import threading
import zlib
from collections import deque
from queue import SimpleQueue
from typing import TYPE_CHECKING

from pymender.errors import ArtifactFormatError, ArtifactTruncatedError, PymenderError

from .tarstream import Readable

if TYPE_CHECKING:
    from collections.abc import Callable

    from .compression import DecompressedReader

#: Most decoding threads: each holds a block or two in memory (2 MiB each from pymender).
MAX_THREADS = 4
#: Compressed bytes asked of the underlying stream per read.
READ_CHUNK = 256 * 1024
#: Largest block (uncompressed) decoded in memory; ``xz -T`` makes blocks of three
#: dictionaries, so this covers its presets up to 3 (12 MiB blocks); pymender writes 2 MiB.
MAX_BLOCK = 16 * 1024 * 1024
#: Largest compressed block accepted: incompressible data grows a little in LZMA2.
MAX_COMPRESSED = MAX_BLOCK + MAX_BLOCK // 16
#: A block is decoded into pieces of this size, what callers read at a time: a read then
#: usually hands out a decoder's own ``bytes`` object without copying it.
PIECE = 1 << 20

MAGIC = b"\xfd7zXZ\x00"
FOOTER_MAGIC = b"YZ"
HEADER_SIZE = 12  # stream header and stream footer alike
#: Size of the integrity check for each check id (the low four bits of the stream flags).
CHECK_SIZES = (0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64)
#: Check ids liblzma verifies: none, CRC32, CRC64, SHA-256.
KNOWN_CHECKS = frozenset((0x00, 0x01, 0x04, 0x0A))
LZMA2_ID = 0x21
#: Filters allowed before LZMA2: delta and the BCJ filters (x86 to RISC-V).
PRE_FILTERS = frozenset(range(0x03, 0x0C))


# --- The format's pieces ---------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """xz's variable-length integer: 7 bits a byte, least significant first."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes | bytearray, pos: int, end: int) -> tuple[int, int] | None:
    """(value, position after it) of the varint at ``pos``; None if malformed or past ``end``."""
    value = 0
    for shift in range(0, 63, 7):
        if pos >= end:
            return None
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and shift:
                return None  # not minimal: the format forbids trailing zero bytes
            return value, pos
    return None


def stream_header(check: int) -> bytes:
    flags = bytes([0x00, check])
    return MAGIC + flags + struct.pack("<I", zlib.crc32(flags))


def index_and_footer(records: list[tuple[int, int]], check: int) -> bytes:
    """An index listing ``records`` (unpadded, uncompressed sizes) and the stream footer."""
    index = bytearray(b"\x00") + encode_varint(len(records))
    for unpadded, uncompressed in records:
        index += encode_varint(unpadded) + encode_varint(uncompressed)
    index += b"\0" * (-len(index) % 4)
    index += struct.pack("<I", zlib.crc32(index))
    footer = struct.pack("<I", len(index) // 4 - 1) + bytes([0x00, check])
    return bytes(index) + struct.pack("<I", zlib.crc32(footer)) + footer + FOOTER_MAGIC


class BlockHeader:
    """What the reader needs of a block header (see :func:`parse_block_header`)."""

    __slots__ = ("size", "compressed", "uncompressed")

    def __init__(self, size: int, compressed: int | None, uncompressed: int | None) -> None:
        self.size = size
        self.compressed = compressed
        self.uncompressed = uncompressed

    @property
    def parallel(self) -> bool:
        """Whether the block can be cut out and decoded in memory: both sizes, not too large."""
        return (self.compressed is not None and self.uncompressed is not None
                and self.uncompressed <= MAX_BLOCK and self.compressed <= MAX_COMPRESSED)


def parse_block_header(header: bytes | bytearray, memlimit: int) -> BlockHeader | str:
    """Parse a whole block header (its first byte gives its size); a str says what is wrong.

    Checks the CRC32, the reserved bits, the padding and the filter chain (LZMA2 last, with a
    dictionary within ``memlimit``), so a header that passes can be trusted to say where its
    block ends.
    """
    size = len(header)
    end = size - 4
    if zlib.crc32(bytes(header[:end])) != struct.unpack_from("<I", header, end)[0]:
        return "header checksum does not match"
    flags = header[1]
    if flags & 0x3C:
        return "header has reserved flags set"
    pos = 2
    sizes: list[int | None] = [None, None]
    for slot, bit in enumerate((0x40, 0x80)):
        if flags & bit:
            parsed = decode_varint(header, pos, end)
            if parsed is None:
                return "header has a malformed size"
            sizes[slot], pos = parsed
    if sizes[0] == 0:
        return "header says the block is empty"
    filters = []
    for _ in range((flags & 0x03) + 1):
        parsed = decode_varint(header, pos, end)
        props = decode_varint(header, parsed[1], end) if parsed else None
        if parsed is None or props is None or props[1] + props[0] > end:
            return "header has a malformed filter list"
        filters.append((parsed[0], bytes(header[props[1] : props[1] + props[0]])))
        pos = props[1] + props[0]
    if any(header[pos:end]):
        return "header padding is not zero"
    last_id, last_props = filters[-1]
    if last_id != LZMA2_ID or len(last_props) != 1 or any(fid not in PRE_FILTERS for fid, _ in filters[:-1]):
        ids = ", ".join(f"0x{fid:x}" for fid, _ in filters)
        return f"uses an unsupported filter chain ({ids}): only LZMA2, optionally after BCJ or delta"
    dict_byte = last_props[0]
    if dict_byte > 40:
        return "header has an invalid LZMA2 dictionary size"
    dict_size = (2 | (dict_byte & 1)) << (dict_byte // 2 + 11) if dict_byte < 40 else 0xFFFFFFFF
    if dict_size > memlimit:
        return f"needs a {dict_size >> 20} MiB dictionary, more than the {memlimit >> 20} MiB allowed"
    return BlockHeader(size, sizes[0], sizes[1])


# --- The workers -----------------------------------------------------------------------------


class _Job:
    """One block to decode; ``done`` is held until a worker has filled in the outcome."""

    __slots__ = ("number", "parts", "uncompressed", "pieces", "error", "done")

    def __init__(self, number: int, parts: tuple[bytes, bytes, bytes], uncompressed: int) -> None:
        self.number = number  # from 1 within its stream, for messages
        self.parts: tuple[bytes, ...] = parts  # synthetic stream header, the block, index + footer
        self.uncompressed = uncompressed
        self.pieces: list[bytes] = []
        self.error: str | None = None
        self.done = threading.Lock()
        self.done.acquire()


def _decode(job: _Job, memlimit: int) -> None:
    """Decode one block; never more than one byte beyond what its header announced."""
    head, data, tail = job.parts
    job.parts = ()
    want = job.uncompressed
    try:
        dec = lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=memlimit)
        dec.decompress(head)
        total = 0
        while True:
            piece = dec.decompress(data, min(PIECE, want + 1 - total))
            data = b""
            total += len(piece)
            if total > want:
                job.error = "decodes to more bytes than its header says"
                return
            if piece:
                job.pieces.append(piece)
            if dec.needs_input or not piece:
                break
        if dec.decompress(tail, 1) or not dec.eof:
            job.error = "does not end where its header says"
        elif total != want:
            job.error = "decodes to fewer bytes than its header says"
    except lzma.LZMAError as err:
        job.error = f"cannot be decoded ({err})"
    except MemoryError:
        job.error = "is too large to decode in memory"


def _work(todo: SimpleQueue[_Job | None], memlimit: int) -> None:
    """A worker thread: decode queued blocks until told to stop."""
    while True:
        job = todo.get()
        if job is None:
            return
        try:
            _decode(job, memlimit)
        except Exception as err:  # reported to the reader, in stream order
            job.error = f"cannot be decoded ({err})"
        finally:
            job.done.release()


class _Failed:
    """The place in the output order where the stream turned out to be bad."""

    __slots__ = ("error",)

    def __init__(self, error: PymenderError) -> None:
        self.error = error


#: The place in the output order where the sequential decoder takes over.
_HAND_OVER = object()


class _Prefixed:
    """The bytes already read, then the rest of the stream: what the sequential decoder reads."""

    def __init__(self, head: bytes, raw: Readable) -> None:
        self._head = head
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._raw.read(size)
        if size is None or size < 0 or size >= len(self._head):
            head, self._head = self._head, b""
        else:
            head, self._head = self._head[:size], self._head[size:]
        return head


# --- The reader ------------------------------------------------------------------------------


class ParallelXzReader:
    """Bounded reads of the decompressed bytes of an xz member, decoded on ``threads`` threads.

    ``fallback`` makes the sequential decoder for what this reader does not decode itself (a
    member, or its rest from a stream boundary on). Errors come in stream order: the bytes of
    every block before a bad one are returned first, as from the sequential decoder.
    """

    #: ``read`` hands out the decoder's own bytes objects; ``readinto`` only adds a copy.
    native_readinto = False

    def __init__(self, raw: Readable, what: str, *, threads: int, memlimit: int,
                 fallback: Callable[[Readable], DecompressedReader]) -> None:
        self._raw = raw
        self._what = what
        self._threads = min(max(1, threads), MAX_THREADS)
        self._memlimit = memlimit
        self._make_fallback = fallback
        self._fallback: DecompressedReader | None = None
        self._buf = bytearray()
        self._off = 0  # bytes of _buf already consumed
        self._queue: deque[_Job | _Failed | object] = deque()
        self._todo: SimpleQueue[_Job | None] = SimpleQueue()
        self._workers = 0
        self._pieces: deque[bytes] = deque()
        self._piece = b""
        self._piece_pos = 0
        # where parsing stands: "stream" (next: stream padding, header or the end), "blocks",
        # "end", "fallback" or "failed"
        self._state = "stream"
        self._first_stream = True
        self._check = 0
        self._head = b""
        self._blocks = 0
        self._records = hashlib.sha256()
        self._error: PymenderError | None = None
        self._closed = False

    @property
    def handed_over(self) -> bool:
        """Whether the sequential decoder has taken over (from some stream on)."""
        return self._fallback is not None

    # --- Errors

    def _bad(self, what: str) -> ArtifactFormatError:
        return ArtifactFormatError(f"{self._what} is not valid compressed data: {what}")

    def _truncated(self) -> ArtifactTruncatedError:
        return ArtifactTruncatedError(f"{self._what} ends in the middle of its compressed data",
                                      hint="the file is incomplete or corrupt")

    # --- Input

    def _available(self, count: int) -> bool:
        """Whether ``count`` unconsumed bytes can be had (reads more; False at the end)."""
        while len(self._buf) - self._off < count:
            chunk = self._raw.read(max(READ_CHUNK, count - (len(self._buf) - self._off)))
            if not chunk:
                return False
            if self._off:
                del self._buf[: self._off]
                self._off = 0
            self._buf += chunk
        return True

    def _peek(self, count: int) -> bytes:
        if not self._available(count):
            raise self._truncated()
        with memoryview(self._buf) as view:
            return bytes(view[self._off : self._off + count])

    def _take(self, count: int) -> bytes:
        data = self._peek(count)
        self._off += count
        return data

    # --- Parsing

    def _fill(self) -> None:
        """Parse and queue blocks until ``threads + 1`` are in flight or the input ends."""
        while len(self._queue) <= self._threads and self._state in ("stream", "blocks"):
            try:
                if self._state == "stream":
                    self._start_stream()
                elif self._peek(1) == b"\x00":
                    self._read_index()
                else:
                    self._queue_block()
            except PymenderError as err:
                self._queue.append(_Failed(err))
                self._state = "failed"

    def _start_stream(self) -> None:
        if not self._first_stream and not self._skip_stream_padding():
            self._state = "end"
            return
        complete = self._available(HEADER_SIZE + 1)
        head = bytes(self._buf[self._off : self._off + HEADER_SIZE])
        if self._first_stream and not (complete and head.startswith(MAGIC)):
            return self._hand_over()  # not xz (legacy .lzma?) or too short: the sequential path decides
        if not MAGIC.startswith(head[:6]):
            raise self._bad("unexpected data after an xz stream")
        if not complete:
            raise self._truncated()
        flags = head[6:8]
        if zlib.crc32(flags) != struct.unpack_from("<I", head, 8)[0]:
            raise self._bad("xz stream header checksum does not match")
        if flags[0] or flags[1] & 0xF0:
            raise self._bad("xz stream header has reserved flags set")
        if flags[1] not in KNOWN_CHECKS:
            return self._hand_over()
        first = self._buf[self._off + HEADER_SIZE]
        if first:  # a block header, not the index of a stream without blocks
            start = self._off + HEADER_SIZE
            size = (first + 1) * 4
            if not self._available(HEADER_SIZE + size):
                return self._hand_over()
            header = parse_block_header(self._buf[start : start + size], self._memlimit)
            if isinstance(header, str) or not header.parallel:
                return self._hand_over()  # the sequential decoder decodes (or refuses) it
        self._off += HEADER_SIZE
        self._check = flags[1]
        self._head = head
        self._blocks = 0
        self._records = hashlib.sha256()
        self._first_stream = False
        self._state = "blocks"

    def _hand_over(self) -> None:
        """Let the sequential decoder read this stream and every one after it."""
        rest = bytes(self._buf[self._off :])
        self._buf = bytearray()
        self._off = 0
        self._fallback = self._make_fallback(_Prefixed(rest, self._raw))
        self._queue.append(_HAND_OVER)
        self._state = "fallback"

    def _skip_stream_padding(self) -> bool:
        """Consume the zero bytes between streams; False at the end of the input."""
        padding = 0
        while True:
            more = self._available(1)
            if more:
                view = self._buf[self._off :]
                zeros = len(view) - len(view.lstrip(b"\0"))
                padding += zeros
                self._off += zeros
                if zeros == len(view):
                    continue
            if padding % 4:
                raise self._bad("xz stream padding is not a multiple of four bytes")
            return more

    def _queue_block(self) -> None:
        size = (self._peek(1)[0] + 1) * 4
        header = parse_block_header(self._peek(size), self._memlimit)
        number = self._blocks + 1
        if isinstance(header, str):
            raise self._bad(f"xz block {number} {header}")
        if not header.parallel:
            raise self._bad(f"xz block {number} has no sizes in its header or is larger than "
                            f"{MAX_BLOCK >> 20} MiB, unlike the first block of its stream "
                            "(not supported)")
        assert header.compressed is not None and header.uncompressed is not None
        check_size = CHECK_SIZES[self._check]
        block = self._take(header.size + header.compressed + (-header.compressed % 4) + check_size)
        unpadded = header.size + header.compressed + check_size
        self._blocks = number
        self._records.update(encode_varint(unpadded) + encode_varint(header.uncompressed))
        tail = index_and_footer([(unpadded, header.uncompressed)], self._check)
        job = _Job(number, (self._head, block, tail), header.uncompressed)
        if self._workers < self._threads:
            self._workers += 1
            threading.Thread(target=_work, args=(self._todo, self._memlimit), daemon=True,
                             name="pymender-xz").start()
        self._queue.append(job)
        self._todo.put(job)

    def _read_index(self) -> None:
        """Check the index against the blocks seen, then the stream footer."""
        crc = 0

        def take(count: int) -> bytes:
            nonlocal crc
            data = self._take(count)
            crc = zlib.crc32(data, crc)
            return data

        def varint() -> int:
            value = 0
            for shift in range(0, 63, 7):
                byte = take(1)[0]
                value |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    if byte == 0 and shift:
                        break
                    return value
            raise self._bad("xz index has a malformed number")

        take(1)
        count = varint()
        if count != self._blocks:
            raise self._bad(f"xz index lists {count} blocks, the stream has {self._blocks}")
        size = 1 + len(encode_varint(count))
        records = hashlib.sha256()
        for _ in range(count):
            record = encode_varint(varint()) + encode_varint(varint())
            records.update(record)
            size += len(record)
        if records.digest() != self._records.digest():
            raise self._bad("xz index does not match the blocks of the stream")
        if any(take(-size % 4)):
            raise self._bad("xz index padding is not zero")
        size += -size % 4 + 4
        if struct.unpack("<I", self._take(4))[0] != crc:
            raise self._bad("xz index checksum does not match")
        footer = self._take(HEADER_SIZE)
        if footer[10:] != FOOTER_MAGIC:
            raise self._bad("xz stream footer lacks its magic bytes")
        if zlib.crc32(footer[4:10]) != struct.unpack_from("<I", footer)[0]:
            raise self._bad("xz stream footer checksum does not match")
        if footer[8:10] != self._head[6:8]:
            raise self._bad("xz stream footer flags differ from the header's")
        if (struct.unpack_from("<I", footer, 4)[0] + 1) * 4 != size:
            raise self._bad("xz stream footer gives the wrong index size")
        self._state = "stream"

    # --- Output

    def _next_piece(self) -> bool:
        """Make the next decoded piece current; False at the end or where the fallback starts."""
        while not self._pieces:
            self._fill()
            if not self._queue:
                return False
            job = self._queue[0]
            if job is _HAND_OVER:
                return False  # stays queued: every later read goes to the fallback
            self._queue.popleft()
            if isinstance(job, _Failed):
                self._fail(job.error)
            assert isinstance(job, _Job)
            job.done.acquire()
            if job.error is not None:
                self._fail(self._bad(f"xz block {job.number} {job.error}"))
            self._pieces.extend(job.pieces)
        self._piece = self._pieces.popleft()
        self._piece_pos = 0
        return True

    def _fail(self, error: PymenderError) -> None:
        self._error = error
        self.close()
        raise error

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` decompressed bytes (1 MiB when not given); b"" at the end."""
        if self._error is not None:
            raise self._error
        if size is None or size < 0:
            size = PIECE
        if size == 0:
            return b""
        piece, pos = self._piece, self._piece_pos
        if pos >= len(piece):
            if not self._next_piece():
                if self._fallback is not None:
                    return self._fallback.read(size)
                self.close()
                return b""
            piece, pos = self._piece, 0
        if pos == 0 and size >= len(piece):
            self._piece_pos = len(piece)
            return piece
        out = piece[pos : pos + size]
        self._piece_pos = pos + len(out)
        return out

    def readinto(self, buffer: memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """Let the worker threads end (they hold the job queue, not this reader)."""
        if not self._closed:
            self._closed = True
            for _ in range(self._workers):
                self._todo.put(None)

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()
