"""The GUID partition table of a ``.uefiimg``: primary and backup copies with their CRC-32s.

The primary header sits in sector 1 followed by a 128-entry table; the backup table and header
fill the last 33 sectors of the disk. Both copies are written, so firmware and ``sgdisk
--verify`` find a consistent disk without a repair step.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass

SECTOR = 512
SIGNATURE = b"EFI PART"
REVISION = 0x00010000
HEADER_SIZE = 92
ENTRY_COUNT = 128
ENTRY_SIZE = 128
ENTRIES_SECTORS = ENTRY_COUNT * ENTRY_SIZE // SECTOR
FIRST_USABLE = 2 + ENTRIES_SECTORS

ESP_TYPE = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
LINUX_FS_TYPE = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4")

TYPE_NAMES = {
    ESP_TYPE: "EFI System",
    LINUX_FS_TYPE: "Linux filesystem",
    uuid.UUID("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"): "Linux swap",
    uuid.UUID("21686148-6449-6e6f-744e-656564454649"): "BIOS boot",
    uuid.UUID("ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"): "Microsoft basic data",
    uuid.UUID("e6d6d379-f507-44c2-a23c-238f2a3df928"): "Linux LVM",
    uuid.UUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"): "Linux root (x86-64)",
}

_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
_ENTRY = struct.Struct("<16s16sQQQ72s")


@dataclass(frozen=True)
class GptEntry:
    """One partition. ``first_lba`` and ``last_lba`` are inclusive, in 512-byte sectors."""

    type_guid: uuid.UUID
    unique_guid: uuid.UUID
    first_lba: int
    last_lba: int
    name: str = ""
    attributes: int = 0


@dataclass(frozen=True)
class GptTable:
    disk_guid: uuid.UUID
    entries: tuple[tuple[int, GptEntry], ...]
    """(partition number, entry) for every used slot."""
    header_lba: int
    backup_lba: int
    first_usable: int
    last_usable: int
    problems: tuple[str, ...] = ()
    """Damage found while reading (a bad CRC, a missing backup); empty for a healthy table."""


def _encode_entries(entries: list[GptEntry]) -> bytes:
    if len(entries) > ENTRY_COUNT:
        raise ValueError(f"a GPT holds at most {ENTRY_COUNT} entries")
    table = bytearray(ENTRY_COUNT * ENTRY_SIZE)
    for slot, entry in enumerate(entries):
        name = entry.name.encode("utf-16-le")
        if len(name) > 72:
            raise ValueError(f"GPT partition name {entry.name!r} is longer than 36 characters")
        _ENTRY.pack_into(
            table,
            slot * ENTRY_SIZE,
            entry.type_guid.bytes_le,
            entry.unique_guid.bytes_le,
            entry.first_lba,
            entry.last_lba,
            entry.attributes,
            name,
        )
    return bytes(table)


def _encode_header(
    disk_guid: uuid.UUID,
    my_lba: int,
    alternate_lba: int,
    last_usable: int,
    entries_lba: int,
    entries_crc: int,
) -> bytes:
    fields = [
        SIGNATURE,
        REVISION,
        HEADER_SIZE,
        0,
        0,
        my_lba,
        alternate_lba,
        FIRST_USABLE,
        last_usable,
        disk_guid.bytes_le,
        entries_lba,
        ENTRY_COUNT,
        ENTRY_SIZE,
        entries_crc,
    ]
    crc = zlib.crc32(_HEADER.pack(*fields))
    fields[3] = crc
    return _HEADER.pack(*fields).ljust(SECTOR, b"\0")


def encode_gpt(
    disk_guid: uuid.UUID, total_sectors: int, entries: list[GptEntry]
) -> tuple[bytes, bytes]:
    """The primary (sectors 1..33) and backup (last 33 sectors) copies, ready to write."""
    last_lba = total_sectors - 1
    last_usable = last_lba - 1 - ENTRIES_SECTORS
    for entry in entries:
        if not FIRST_USABLE <= entry.first_lba <= entry.last_lba <= last_usable:
            raise ValueError(
                f"partition {entry.first_lba}..{entry.last_lba} is outside the usable sectors "
                f"{FIRST_USABLE}..{last_usable}"
            )
    table = _encode_entries(entries)
    entries_crc = zlib.crc32(table)
    backup_entries_lba = last_lba - ENTRIES_SECTORS
    primary = _encode_header(disk_guid, 1, last_lba, last_usable, 2, entries_crc) + table
    backup = table + _encode_header(
        disk_guid, last_lba, 1, last_usable, backup_entries_lba, entries_crc
    )
    return primary, backup


def backup_offset(total_sectors: int) -> int:
    """Byte offset at which the backup copy returned by :func:`encode_gpt` is written."""
    return (total_sectors - 1 - ENTRIES_SECTORS) * SECTOR


ReadAt = Callable[[int, int], bytes]


@dataclass(frozen=True)
class _Header:
    disk_guid: uuid.UUID
    my_lba: int
    alternate_lba: int
    first_usable: int
    last_usable: int
    entries_lba: int
    entry_count: int
    entry_size: int
    entries_crc: int


def _read_header(read_at: ReadAt, lba: int) -> _Header | str:
    """The header at ``lba``, or a sentence saying why there is no valid one."""
    raw = read_at(lba * SECTOR, SECTOR)
    if len(raw) < HEADER_SIZE or raw[:8] != SIGNATURE:
        return f"no GPT header at sector {lba}"
    (_, _, size, crc, _, my_lba, alternate, first, last, guid, entries_lba, count, entry_size,
     entries_crc) = _HEADER.unpack_from(raw)
    if not HEADER_SIZE <= size <= SECTOR:
        return f"GPT header at sector {lba} has an invalid size {size}"
    blank = bytearray(raw[:size])
    blank[16:20] = bytes(4)
    if zlib.crc32(blank) != crc:
        return f"GPT header at sector {lba} has a bad CRC"
    if entry_size < _ENTRY.size or entry_size % 8 or not 0 < count <= 4096:
        return f"GPT header at sector {lba} has an unsupported entry size or count"
    return _Header(
        uuid.UUID(bytes_le=guid), my_lba, alternate, first, last, entries_lba, count, entry_size,
        entries_crc,
    )


def _read_entries(read_at: ReadAt, header: _Header) -> tuple[tuple[int, GptEntry], ...] | str:
    raw = read_at(header.entries_lba * SECTOR, header.entry_count * header.entry_size)
    if len(raw) != header.entry_count * header.entry_size or zlib.crc32(raw) != header.entries_crc:
        return f"GPT entries at sector {header.entries_lba} have a bad CRC"
    entries = []
    for slot in range(header.entry_count):
        type_le, unique_le, first, last, attrs, name = _ENTRY.unpack_from(
            raw, slot * header.entry_size
        )
        if type_le == bytes(16):
            continue
        text = name.decode("utf-16-le", "replace").split("\0", 1)[0]
        entry = GptEntry(
            uuid.UUID(bytes_le=type_le), uuid.UUID(bytes_le=unique_le), first, last, text, attrs
        )
        entries.append((slot + 1, entry))
    return tuple(entries)


def decode_gpt(read_at: ReadAt, total_sectors: int) -> GptTable | None:
    """Read the GPT, preferring the primary copy and falling back to the backup.

    ``read_at(offset, length)`` reads the image. ``None`` when neither copy is valid; damage to
    one copy is reported in ``problems``.
    """
    problems: list[str] = []
    found: list[tuple[_Header, tuple[tuple[int, GptEntry], ...]]] = []
    for lba, where in ((1, "primary"), (total_sectors - 1, "backup")):
        header = _read_header(read_at, lba)
        if isinstance(header, str):
            problems.append(f"{where}: {header}")
            continue
        entries = _read_entries(read_at, header)
        if isinstance(entries, str):
            problems.append(f"{where}: {entries}")
            continue
        found.append((header, entries))
    if not found:
        return None
    header, entries = found[0]
    if len(found) == 2 and found[1][1] != entries:
        problems.append("primary and backup GPT list different partitions")
    return GptTable(
        disk_guid=header.disk_guid,
        entries=entries,
        header_lba=header.my_lba,
        backup_lba=header.alternate_lba,
        first_usable=header.first_usable,
        last_usable=header.last_usable,
        problems=tuple(problems),
    )
