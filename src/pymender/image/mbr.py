"""The classic MBR partition table: encode it for an ``.sdimg``, decode it for ``show``.

Written here (a few dozen lines) rather than by ``sfdisk`` so images are built without root,
without loop devices and without an external program whose output format could change.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SECTOR = 512
ENTRY_OFFSET = 446
SIGNATURE_OFFSET = 440
BOOT_CODE_SIZE = SIGNATURE_OFFSET
"""The boot code area: the bytes before the disk signature."""
BOOT_MAGIC = b"\x55\xaa"

TYPE_EMPTY = 0x00
TYPE_EFI_SYSTEM = 0xEF
TYPE_LINUX = 0x83
TYPE_GPT_PROTECTIVE = 0xEE

TYPE_NAMES = {
    0x01: "FAT12",
    0x04: "FAT16 <32M",
    0x05: "Extended",
    0x06: "FAT16",
    0x07: "HPFS/NTFS/exFAT",
    0x0B: "W95 FAT32",
    0x0C: "W95 FAT32 (LBA)",
    0x0E: "W95 FAT16 (LBA)",
    0x0F: "W95 Ext'd (LBA)",
    0x82: "Linux swap",
    TYPE_LINUX: "Linux",
    0x85: "Linux extended",
    0x8E: "Linux LVM",
    0xDA: "Non-FS data",
    TYPE_GPT_PROTECTIVE: "GPT protective",
    TYPE_EFI_SYSTEM: "EFI System",
}

_ENTRY = struct.Struct("<B3sB3sII")
_HEADS = 255
_SECTORS_PER_TRACK = 63


@dataclass(frozen=True)
class MbrEntry:
    """One primary partition entry. ``start_lba`` and ``num_sectors`` are in 512-byte sectors."""

    type_id: int
    start_lba: int
    num_sectors: int
    bootable: bool = False

    @property
    def is_empty(self) -> bool:
        return self.type_id == TYPE_EMPTY or self.num_sectors == 0


@dataclass(frozen=True)
class MbrTable:
    disk_signature: int
    entries: tuple[MbrEntry, ...]
    """All four slots, empty ones included, so slot index + 1 is the partition number."""

    @property
    def is_protective(self) -> bool:
        """True when this MBR only guards a GPT."""
        return any(e.type_id == TYPE_GPT_PROTECTIVE for e in self.entries)


def chs(lba: int) -> bytes:
    """Cylinder-head-sector address of ``lba`` as the 3 packed bytes; the maximum past 8 GiB."""
    cylinder = lba // (_HEADS * _SECTORS_PER_TRACK)
    if cylinder > 1023:
        return b"\xfe\xff\xff"
    head = (lba // _SECTORS_PER_TRACK) % _HEADS
    sector = lba % _SECTORS_PER_TRACK + 1
    return bytes((head, sector | ((cylinder >> 2) & 0xC0), cylinder & 0xFF))


def encode_mbr(entries: list[MbrEntry], disk_signature: int) -> bytes:
    """The 512-byte sector 0 with up to four primary partitions and no boot code."""
    if len(entries) > 4:
        raise ValueError("an MBR holds at most four primary partitions")
    sector = bytearray(SECTOR)
    struct.pack_into("<I", sector, SIGNATURE_OFFSET, disk_signature)
    for slot, entry in enumerate(entries):
        if entry.is_empty:
            continue
        last = entry.start_lba + entry.num_sectors - 1
        _ENTRY.pack_into(
            sector,
            ENTRY_OFFSET + 16 * slot,
            0x80 if entry.bootable else 0x00,
            chs(entry.start_lba),
            entry.type_id,
            chs(last),
            entry.start_lba,
            entry.num_sectors,
        )
    sector[510:512] = BOOT_MAGIC
    return bytes(sector)


def with_boot_code(sector: bytes, code: bytes) -> bytes:
    """``sector`` (an MBR) with its first ``len(code)`` bytes replaced by boot code.

    The disk signature and the partition table after the boot code area stay as they are.
    """
    if len(code) > BOOT_CODE_SIZE:
        raise ValueError(f"MBR boot code is at most {BOOT_CODE_SIZE} bytes, not {len(code)}")
    return code + sector[len(code) :]



def protective_mbr(total_sectors: int) -> bytes:
    """The MBR of a GPT disk: one 0xEE partition covering the disk (capped at 2 TiB)."""
    sector = bytearray(SECTOR)
    _ENTRY.pack_into(
        sector,
        ENTRY_OFFSET,
        0x00,
        b"\x00\x02\x00",
        TYPE_GPT_PROTECTIVE,
        b"\xff\xff\xff",
        1,
        min(total_sectors - 1, 0xFFFFFFFF),
    )
    sector[510:512] = BOOT_MAGIC
    return bytes(sector)


def decode_mbr(sector: bytes) -> MbrTable | None:
    """Parse sector 0; ``None`` when it carries no MBR boot signature."""
    if len(sector) < SECTOR or sector[510:512] != BOOT_MAGIC:
        return None
    (disk_signature,) = struct.unpack_from("<I", sector, SIGNATURE_OFFSET)
    entries = []
    for slot in range(4):
        status, _, type_id, _, start, count = _ENTRY.unpack_from(sector, ENTRY_OFFSET + 16 * slot)
        entries.append(MbrEntry(type_id, start, count, bootable=status == 0x80))
    return MbrTable(disk_signature, tuple(entries))
