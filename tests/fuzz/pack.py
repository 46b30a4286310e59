"""Several files in one fuzz input, and back.

Each part is a 2-byte little-endian length and that many bytes. :func:`unpack` never fails: a
length running past the end takes what is left, and parts the input does not reach at all are
None (a missing file), so every mutation of a seed is still a meaningful set of files.
"""

from __future__ import annotations

import struct

_LENGTH = struct.Struct("<H")


def pack(parts: list[bytes | None]) -> bytes:
    out = bytearray()
    for part in parts:
        if part is None:
            break
        out += _LENGTH.pack(len(part)) + part
    return bytes(out)


def unpack(data: bytes, count: int) -> list[bytes | None]:
    parts: list[bytes | None] = []
    pos = 0
    for _ in range(count):
        if pos + _LENGTH.size > len(data):
            parts.append(None)
            continue
        (length,) = _LENGTH.unpack_from(data, pos)
        pos += _LENGTH.size
        parts.append(data[pos:pos + length])
        pos += length
    return parts


__all__ = ["pack", "unpack"]
