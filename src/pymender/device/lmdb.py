"""A read-only reader of LMDB data files, with the standard library alone.

Mender keeps its state in an LMDB environment (``mender-store``); pymender reads it once, when a
device moves from Mender's client to pymender (:mod:`pymender.device.mender_store`). The file is
read as bytes and never written, locked or mapped for writing, so the reader cannot change what
Mender left. Only what Mender's store uses is read: the main (unnamed) database, a B+tree of
branch and leaf pages whose values may sit on overflow pages. Anything else (named databases,
duplicate keys) is refused, as is every inconsistency the reader meets: it never guesses.

The format (LMDB 0.9, the ``lmdb.h``/``mdb.c`` of OpenLDAP; the file layout is the memory layout
of the C structures, native byte order):

- Pages of ``psize`` bytes. Every page starts with a header: page number (``size_t``), two
  16-bit fields (padding, flags), then either ``lower``/``upper`` (16 bits each: where the free
  space of the page starts and ends) or, for overflow pages, the number of pages (32 bits).
  After the header of a branch or leaf page, an array of 16-bit offsets of its nodes.
- Pages 0 and 1 are the two meta pages. The current one is the valid one with the larger
  transaction id. A meta page holds, after the header: magic ``0xBEEFC0DE``, version (1), the
  map address and size, two database records (free-page DB, main DB), the last page number and
  the transaction id. The free-page DB record's first field holds the page size.
- A database record: padding (32 bits; the page size, in the free DB's), flags (16), depth (16),
  then five ``size_t``: branch, leaf and overflow page counts, entries, root page number
  (all ones when the database is empty).
- A node: 32 bits (leaf: the size of the value; branch: the low 32 bits of the child's page
  number), 16 bits of flags (branch: the next 16 bits of the page number), 16 bits of key size,
  then the key and, on a leaf, the value, or for a value with the ``BIGDATA`` flag the page
  number of the first of its overflow pages, whose data follows their page header.

This reader knows the 64-bit little-endian layout (x86-64, arm64 and the other 64-bit
little-endian machines Mender runs on). A file of another layout (32-bit or big-endian
machines) is refused with a message saying so.
"""

from __future__ import annotations

import struct
from pathlib import Path

from pymender.errors import StateError

MAGIC = 0xBEEFC0DE
DATA_VERSION = 1
#: Size of a page header in the 64-bit layout (page number 8, padding 2, flags 2, lower/upper 4).
PAGE_HEADER = 16
#: Size of a node header (data size or page number 4, flags 2, key size 2).
NODE_HEADER = 8
#: Page flags.
P_BRANCH = 0x01
P_LEAF = 0x02
P_OVERFLOW = 0x04
P_META = 0x08
P_LEAF2 = 0x20
#: Node flags.
F_BIGDATA = 0x01
F_SUBDATA = 0x02
F_DUPDATA = 0x04
#: Database flags the reader cannot follow (sorted duplicates and their fixed-size variant).
_DUPSORT = 0x04
_DUPFIXED = 0x10
#: No root page (an empty database).
_NO_PAGE = 0xFFFFFFFFFFFFFFFF
#: Deepest tree accepted (LMDB's own limit is 32 levels of cursor stack).
MAX_DEPTH = 32
#: Largest file read. Mender's store holds a handful of small keys; anything this size is not
#: a store to import from.
MAX_FILE = 64 << 20

_META = struct.Struct("<IIQQ")          # magic, version, address, map size
_DB = struct.Struct("<IHHQQQQQ")        # pad, flags, depth, branch, leaf, overflow, entries, root
_META_TAIL = struct.Struct("<QQ")       # last page, transaction id
_PAGE = struct.Struct("<QHHHH")         # page number, pad, flags, lower, upper
_NODE = struct.Struct("<IHH")           # data size (or page number low bits), flags, key size


class LmdbError(StateError):
    """An LMDB file cannot be read: not LMDB, another layout, damaged."""


def read_main_db(path: Path) -> dict[bytes, bytes]:
    """Every key and value of the main database of the LMDB data file ``path``.

    Raises :class:`LmdbError` (one line naming the file and the reason) for a file that cannot
    be read or is not a consistent LMDB file of the supported layout.
    """
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE + 1)
    except OSError as err:
        raise LmdbError(f"cannot read {path}: {err.strerror or err}") from None
    return _Reader(path, data).main_db()


class _Reader:
    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        self.data = data
        if len(data) > MAX_FILE:
            self.fail(f"larger than {MAX_FILE >> 20} MiB")
        self.psize = 0

    def fail(self, reason: str) -> None:
        raise LmdbError(f"{self.path} is not a readable LMDB store: {reason}")

    # --- meta pages --------------------------------------------------------------------------

    def main_db(self) -> dict[bytes, bytes]:
        first = self._meta(0)
        if first is None:
            self._refuse_other_layout()
            self.fail("no LMDB meta page at its start")
        assert first is not None
        self.psize = first[0]
        second = self._meta(self.psize)
        if second is not None and second[0] != self.psize:
            self.fail("its two meta pages disagree on the page size")
        found = [first] if second is None else [first, second]
        _, flags, depth, root, _ = max(found, key=lambda meta: meta[4])
        if flags & (_DUPSORT | _DUPFIXED):
            self.fail("its main database holds duplicate keys, which Mender's store never does")
        result: dict[bytes, bytes] = {}
        if root != _NO_PAGE:
            self._walk(root, depth, 1, result, set())
        return result

    def _meta(self, offset: int) -> tuple[int, int, int, int, int] | None:
        """(page size, main DB flags, main DB depth, main DB root, txn id) of the meta page at
        ``offset``, or None when there is no valid one there."""
        end = offset + PAGE_HEADER + _META.size + 2 * _DB.size + _META_TAIL.size
        if len(self.data) < end:
            return None
        _, _, flags, _, _ = _PAGE.unpack_from(self.data, offset)
        magic, version, _, _ = _META.unpack_from(self.data, offset + PAGE_HEADER)
        if magic != MAGIC or not flags & P_META:
            return None
        if version != DATA_VERSION:
            self.fail(f"LMDB data format version {version}; this reader knows version {DATA_VERSION}")
        free = _DB.unpack_from(self.data, offset + PAGE_HEADER + _META.size)
        main = _DB.unpack_from(self.data, offset + PAGE_HEADER + _META.size + _DB.size)
        _, txnid = _META_TAIL.unpack_from(self.data, offset + PAGE_HEADER + _META.size + 2 * _DB.size)
        psize = free[0]
        if psize < 512 or psize > 65536 or psize & (psize - 1):
            self.fail(f"page size {psize} in its meta page")
        if len(self.data) < 2 * psize:
            self.fail("shorter than its two meta pages")
        return psize, main[1], main[2], main[7], txnid

    def _refuse_other_layout(self) -> None:
        """A clear message for the layouts of other machines (32-bit, big-endian)."""
        for header, order, what in ((12, "<", "32-bit"), (16, ">", "big-endian 64-bit"),
                                    (12, ">", "big-endian 32-bit")):
            if len(self.data) >= header + 4 and struct.unpack_from(order + "I", self.data, header)[0] == MAGIC:
                self.fail(f"it was written on a {what} machine; pymender reads the 64-bit "
                          "little-endian layout only")

    # --- the tree ----------------------------------------------------------------------------

    def _page(self, number: int) -> tuple[int, int, int, int]:
        """(offset, flags, lower, upper) of page ``number``, checked."""
        if number < 2 or number >= len(self.data) // self.psize:
            self.fail(f"page {number} is outside the file")
        offset = number * self.psize
        stored, _, flags, lower, upper = _PAGE.unpack_from(self.data, offset)
        if stored != number:
            self.fail(f"page {number} says it is page {stored}")
        return offset, flags, lower, upper

    def _nodes(self, number: int, offset: int, lower: int, upper: int) -> list[int]:
        """The offsets (from the page start) of the nodes of a branch or leaf page."""
        if lower < PAGE_HEADER or lower > upper or upper > self.psize or (lower - PAGE_HEADER) % 2:
            self.fail(f"page {number} has a broken header")
        count = (lower - PAGE_HEADER) // 2
        pointers = struct.unpack_from(f"<{count}H", self.data, offset + PAGE_HEADER)
        for pointer in pointers:
            if pointer < upper or pointer + NODE_HEADER > self.psize:
                self.fail(f"page {number} points outside its nodes")
        return list(pointers)

    def _walk(self, number: int, depth: int, level: int, out: dict[bytes, bytes], seen: set[int]) -> None:
        if level > min(depth, MAX_DEPTH):
            self.fail(f"its tree is deeper than the {depth} levels its meta page says")
        if number in seen:
            self.fail(f"page {number} is reached twice")
        seen.add(number)
        offset, flags, lower, upper = self._page(number)
        if flags & P_LEAF2:
            self.fail(f"page {number} holds fixed-size duplicates, which Mender's store never does")
        nodes = self._nodes(number, offset, lower, upper)
        if flags & P_BRANCH:
            for pointer in nodes:
                low, high, _ = _NODE.unpack_from(self.data, offset + pointer)
                self._walk(low | high << 32, depth, level + 1, out, seen)
        elif flags & P_LEAF:
            if level != depth:
                self.fail(f"leaf page {number} is at level {level} of a tree {depth} levels deep")
            for pointer in nodes:
                key, value = self._leaf_node(number, offset + pointer)
                if key in out:
                    self.fail(f"key {key!r} is stored twice")
                out[key] = value
        else:
            self.fail(f"page {number} is neither a branch nor a leaf page (flags {flags:#x})")

    def _leaf_node(self, number: int, at: int) -> tuple[bytes, bytes]:
        size, flags, key_size = _NODE.unpack_from(self.data, at)
        key_end = at + NODE_HEADER + key_size
        page_end = number * self.psize + self.psize
        if key_end > page_end:
            self.fail(f"a key on page {number} runs past the page")
        key = self.data[at + NODE_HEADER:key_end]
        if flags & (F_SUBDATA | F_DUPDATA):
            self.fail(f"key {key!r} holds a named database or duplicates, which Mender's store never does")
        if not flags & F_BIGDATA:
            if key_end + size > page_end:
                self.fail(f"the value of {key!r} runs past its page")
            return key, self.data[key_end:key_end + size]
        if key_end + 8 > page_end:
            self.fail(f"the value of {key!r} runs past its page")
        (first,) = struct.unpack_from("<Q", self.data, key_end)
        offset, flags, _, _ = self._page(first)
        (pages,) = struct.unpack_from("<I", self.data, offset + 12)
        if not flags & P_OVERFLOW or pages < 1:
            self.fail(f"the value of {key!r} does not start an overflow page")
        if offset + PAGE_HEADER + size > min(offset + pages * self.psize, len(self.data)):
            self.fail(f"the value of {key!r} runs past its {pages} overflow page(s)")
        return key, self.data[offset + PAGE_HEADER:offset + PAGE_HEADER + size]


__all__ = ["LmdbError", "read_main_db"]
