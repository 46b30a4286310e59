"""A forward-only tar reader and a tar header writer, both strict about what an Artifact may hold.

The reader never seeks: it consumes a byte stream front to back, so it works on pipes and HTTP
bodies. It accepts the USTAR, PAX and GNU flavours that upstream's reader accepts, and refuses
what has no place in an Artifact (links, devices, absolute or ``..`` names, oversized extended
headers) with :class:`UnsafeArtifactError` before any content of such a member is read.

The writer produces headers the way Go's ``archive/tar`` writes them (USTAR when representable,
checksum as six octal digits, NUL and space), so our Artifacts look like upstream's byte for byte
where the contents allow.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import NamedTuple

from pymender.errors import ArtifactFormatError, ArtifactTruncatedError, UnsafeArtifactError

from .streams import Readable

BLOCK = 512
# Extended headers (PAX records, GNU long names) are tiny in practice; anything larger is hostile.
MAX_EXTENDED_HEADER = 64 * 1024
# Zero blocks or garbage tolerated after the end-of-archive marker (record padding).
MAX_TRAILER = 1024 * 1024
USTAR_MAX_SIZE = 8**11 - 1

_REGULAR = (b"0", b"\0", b"7")
_DIRECTORY = b"5"


class TarMember(NamedTuple):
    """One member's header, as the reader hands it out (immutable)."""

    name: str
    size: int
    mode: int
    mtime: int
    is_dir: bool


def read_exact(stream: Readable, size: int, what: str) -> bytes:
    """Read exactly ``size`` bytes or raise :class:`ArtifactTruncatedError` naming ``what``."""
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise ArtifactTruncatedError(
                f"the Artifact ends inside {what}",
                hint="the file is incomplete; download or copy it again",
            )
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _parse_number(field: bytes, what: str) -> int:
    if field and field[0] & 0x80:  # GNU base-256
        value = field[0] & 0x7F
        for byte in field[1:]:
            value = (value << 8) | byte
        if field[0] & 0x40:
            raise ArtifactFormatError(f"negative {what} in a tar header")
        return value
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise ArtifactFormatError(f"invalid {what} in a tar header: {field!r}") from None


def _checksum_ok(block: bytes) -> bool:
    stored = block[148:156]
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    try:
        expected = _parse_number(stored, "checksum")
    except ArtifactFormatError:
        return False
    signed = sum((b - 256 if b > 127 else b) for b in block[:148] + b" " * 8 + block[156:])
    return expected in (unsigned, signed)


def _safe_name(name: str, where: str) -> str:
    if not name or "\0" in name:
        raise UnsafeArtifactError(f"empty or invalid member name in {where}")
    if name.startswith("/"):
        raise UnsafeArtifactError(f"absolute path {name!r} in {where}")
    parts = name.split("/")
    if ".." in parts:
        raise UnsafeArtifactError(f"path traversal {name!r} in {where}")
    normal = posixpath.normpath(name)
    if normal in (".", ""):
        raise UnsafeArtifactError(f"invalid member name {name!r} in {where}")
    return normal


def _parse_pax(data: bytes, where: str) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos:] .strip(b"\0") == b"":
            break
        space = data.find(b" ", pos)
        if space < 0:
            raise ArtifactFormatError(f"malformed PAX record in {where}")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ArtifactFormatError(f"malformed PAX record length in {where}") from None
        if length <= space - pos or pos + length > len(data):
            raise ArtifactFormatError(f"malformed PAX record in {where}")
        record = data[space + 1 : pos + length]
        if not record.endswith(b"\n") or b"=" not in record:
            raise ArtifactFormatError(f"malformed PAX record in {where}")
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        pos += length
    return records


class TarReader:
    """Iterate over the members of a tar stream, front to back, one at a time.

    ``members()`` yields each regular file (and, if allowed, directory) header; the caller reads
    its content with :meth:`read` before asking for the next member. Whatever the caller leaves
    unread is skipped.
    """

    def __init__(self, stream: Readable, where: str, *, allow_dirs: bool = False) -> None:
        self._stream = stream
        self._where = where
        self._allow_dirs = allow_dirs
        self._remaining = 0
        self._padding = 0
        self.ended = False

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes of the current member's content (b"" at its end)."""
        if self._remaining <= 0:
            return b""
        want = self._remaining if size < 0 else min(size, self._remaining)
        chunk = self._stream.read(want)
        if not chunk:
            raise ArtifactTruncatedError(
                f"the Artifact ends inside a member of {self._where}",
                hint="the file is incomplete; download or copy it again",
            )
        self._remaining -= len(chunk)
        return chunk

    @property
    def native_readinto(self) -> bool:
        """Whether :meth:`readinto` saves a copy over :meth:`read` (the stream fills the buffer
        itself) rather than copying out of a ``bytes`` object the stream made anyway."""
        return bool(getattr(self._stream, "native_readinto", hasattr(self._stream, "readinto")))

    def readinto(self, buffer: memoryview) -> int:
        """Like :meth:`read` into ``buffer`` (a byte memoryview); no copy when the stream has
        ``readinto`` itself (a file, a decompressing reader), which large payloads rely on."""
        if self._remaining <= 0:
            return 0
        view = buffer[: self._remaining] if len(buffer) > self._remaining else buffer
        readinto = getattr(self._stream, "readinto", None)
        if readinto is not None:
            count = int(readinto(view) or 0)
        else:
            chunk = self._stream.read(len(view))
            count = len(chunk)
            view[:count] = chunk
        if not count:
            raise ArtifactTruncatedError(
                f"the Artifact ends inside a member of {self._where}",
                hint="the file is incomplete; download or copy it again",
            )
        self._remaining -= count
        return count

    def _skip_rest(self) -> None:
        while self._remaining > 0:
            self.read(min(self._remaining, 1 << 20))
        if self._padding:
            if read_exact(self._stream, self._padding, self._where).strip(b"\0"):
                raise ArtifactFormatError(f"non-zero padding after a member of {self._where}")
            self._padding = 0

    def _block(self) -> bytes | None:
        block = self._stream.read(BLOCK)
        if not block:
            return None
        if len(block) < BLOCK:
            block += read_exact(self._stream, BLOCK - len(block), self._where)
        return block

    def _finish(self) -> None:
        """Consume the end-of-archive marker and bounded record padding."""
        self.ended = True
        drained = 0
        while True:
            chunk = self._stream.read(BLOCK * 8)
            if not chunk:
                return
            if chunk.strip(b"\0"):
                raise ArtifactFormatError(f"data after the end of {self._where}")
            drained += len(chunk)
            if drained > MAX_TRAILER:
                raise UnsafeArtifactError(f"too much padding after the end of {self._where}")

    def members(self) -> Iterator[TarMember]:
        pax: dict[str, str] = {}
        long_name: str | None = None
        while True:
            self._skip_rest()
            block = self._block()
            if block is None:
                # Every writer of Artifacts ends its tars with zero blocks: a stream that stops
                # between members has been cut short.
                raise ArtifactTruncatedError(
                    f"{self._where} ends without its end-of-archive marker",
                    hint="the file is incomplete; download or copy it again")
            if block == b"\0" * BLOCK:
                self._finish()
                return
            if not _checksum_ok(block):
                raise ArtifactFormatError(f"corrupt tar header in {self._where}")
            typeflag = block[156:157]
            size = _parse_number(block[124:136], "size")
            name = block[0:100].split(b"\0", 1)[0]
            if block[257:263] == b"ustar\0":
                prefix = block[345:500].split(b"\0", 1)[0]
                if prefix:
                    name = prefix + b"/" + name
            if typeflag in (b"x", b"g", b"L"):
                if size > MAX_EXTENDED_HEADER:
                    raise UnsafeArtifactError(f"oversized extended tar header in {self._where}")
                data = read_exact(self._stream, size, self._where)
                pad = -size % BLOCK
                if pad and read_exact(self._stream, pad, self._where).strip(b"\0"):
                    raise ArtifactFormatError(f"non-zero padding in {self._where}")
                if typeflag == b"x":
                    pax = _parse_pax(data, self._where)
                elif typeflag == b"L":
                    long_name = data.split(b"\0", 1)[0].decode("utf-8", "replace")
                continue  # a global header ('g') carries nothing we use
            text_name = name.decode("utf-8", "replace")
            if long_name is not None:
                text_name = long_name
            if "path" in pax:
                text_name = pax["path"]
            if "size" in pax:
                try:
                    size = int(pax["size"])
                except ValueError:
                    raise ArtifactFormatError(f"invalid PAX size in {self._where}") from None
            pax, long_name = {}, None
            is_dir = typeflag == _DIRECTORY
            if typeflag not in _REGULAR and not is_dir:
                kind = {b"1": "hard link", b"2": "symbolic link", b"3": "device", b"4": "device",
                        b"6": "FIFO"}.get(typeflag, f"type {typeflag!r}")
                raise UnsafeArtifactError(f"{kind} {text_name!r} in {self._where}; only regular files are allowed")
            if is_dir and not self._allow_dirs:
                raise UnsafeArtifactError(f"directory entry {text_name!r} in {self._where}")
            clean = _safe_name(text_name.rstrip("/") if is_dir else text_name, self._where)
            if is_dir:
                size = 0
            self._remaining = size
            self._padding = -size % BLOCK
            yield TarMember(
                name=clean,
                size=size,
                mode=_parse_number(block[100:108], "mode"),
                mtime=_parse_number(block[136:148], "mtime"),
                is_dir=is_dir,
            )


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _ustar(name: str, size: int, mode: int, mtime: int, uid: int, gid: int,
           uname: str, gname: str) -> bytes:
    """A USTAR header block with every field as Go writes it (device numbers included)."""
    encoded = name.encode()
    block = bytearray(BLOCK)
    block[0 : len(encoded)] = encoded
    block[100:108] = _octal(mode, 8)
    block[108:116] = _octal(uid, 8)
    block[116:124] = _octal(gid, 8)
    block[124:136] = _octal(size, 12)
    block[136:148] = _octal(mtime, 12)
    block[148:156] = b" " * 8
    block[156:157] = b"0"
    block[257:265] = b"ustar\x0000"
    block[265 : 265 + len(uname)] = uname.encode()[:32]
    block[297 : 297 + len(gname)] = gname.encode()[:32]
    block[329:337] = _octal(0, 8)
    block[337:345] = _octal(0, 8)
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def tar_header(name: str, size: int, *, mode: int = 0o600, mtime: int = 0,
               uid: int = 0, gid: int = 0, uname: str = "", gname: str = "") -> bytes:
    """The header block(s) of one regular file, as Go's ``archive/tar`` would write them.

    USTAR when the name and size fit; otherwise a PAX extended header precedes the entry, as Go
    does for members of 8 GiB and more or names longer than 100 bytes.
    """
    if size <= USTAR_MAX_SIZE and len(name.encode()) <= 100 and 0 <= mtime < 8**11:
        return _ustar(name, size, mode, mtime, uid, gid, uname, gname)
    import tarfile  # only here: the device's read path never needs it

    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = mtime
    info.uid, info.gid = uid, gid
    info.uname, info.gname = uname, gname
    info.type = tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def single_block_header(name: str, size: int, **fields: int | str) -> bytes:
    """Exactly one header block, for a member whose size is filled in after its content.

    USTAR like :func:`tar_header` when the size fits; beyond 8 GiB the GNU base-256 size
    encoding keeps the header one block long (Go, Python and GNU tar all read it).
    """
    if len(name.encode()) > 100:
        raise ValueError(f"member name too long for a single header block: {name}")
    if size <= USTAR_MAX_SIZE:
        return tar_header(name, size, **fields)  # type: ignore[arg-type]
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = int(fields.get("mode", 0o600))
    info.mtime = int(fields.get("mtime", 0))
    info.uid, info.gid = int(fields.get("uid", 0)), int(fields.get("gid", 0))
    info.uname, info.gname = str(fields.get("uname", "")), str(fields.get("gname", ""))
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


END_OF_ARCHIVE = b"\0" * (2 * BLOCK)
