"""What the Artifact reader's layers read from and hand on: the stream protocols.

The outer tar reads the Artifact from a :class:`Readable` (a file, a pipe, an HTTP source); each
compressed member is read through a :class:`DecompressedReader`, whose ``read(n)`` never returns
more than ``n`` bytes (a decompression bomb costs the caller only what it asks for). A reader
whose ``readinto`` fills the caller's buffer without an extra copy says so with
``native_readinto = True``; one that makes a new ``bytes`` object anyway (the zlib and lzma
decompressors) says False, and the payload reader then hashes those bytes as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

#: Compressed bytes asked of the underlying stream per read: about 1 MiB of output per
#: decompress call.
READ_CHUNK = 256 * 1024


class Readable(Protocol):
    """Anything the reader can read an Artifact, or a member of it, from."""

    def read(self, size: int = -1, /) -> bytes: ...


class DecompressedReader(Protocol):
    """The decompressed bytes of a member: ``read(n)`` returns at most ``n`` bytes."""

    def read(self, size: int = -1, /) -> bytes: ...
    def readinto(self, buffer: memoryview, /) -> int: ...


def readinto_from(read: Callable[[int], bytes], buffer: memoryview) -> int:
    """``readinto`` for a reader that only has ``read``: one read, copied into ``buffer``."""
    data = read(len(buffer))
    buffer[: len(data)] = data
    return len(data)


__all__ = ["READ_CHUNK", "DecompressedReader", "Readable", "readinto_from"]
