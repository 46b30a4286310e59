"""What a disk image holds outside its partitions: raw bootloader files and MBR boot code.

Many boards' boot ROMs read their first loader (SPL, U-Boot) from fixed sectors of the raw
disk, between the partition table and partition 1; PC BIOSes run the boot code in the first
440 bytes of sector 0. Both are checked here before anything is written: a raw file must not
touch the partition table nor reach partition 1, and no two may overlap; boot code never
reaches the disk signature and the partition table, which stay pymender-image's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pymender.errors import ImageLayoutError, InputError, UsageError
from pymender.image.inputs import file_size
from pymender.image.layout import (
    GPT_RESERVED_SECTORS,
    RESERVED_SIZE,
    SECTOR,
    DiskLayout,
    ImageKind,
    raise_hint,
    round_up,
)
from pymender.image.mbr import BOOT_CODE_SIZE

MBR_RESERVED_SECTORS = 1
"""Sector 0 holds the MBR: a raw file may start at sector 1."""


@dataclass(frozen=True)
class BootloaderFile:
    """A file to write, byte for byte, at 512-byte sector ``sector`` of the disk."""

    path: Path
    sector: int

    @property
    def offset(self) -> int:
        return self.sector * SECTOR


@dataclass(frozen=True)
class RawPlacement:
    """A checked bootloader file: ``size`` bytes of ``path`` go to byte ``offset`` of the disk."""

    path: Path
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def sectors(self) -> str:
        """The sectors it covers, for messages: ``2-1233``."""
        return f"{self.offset // SECTOR}-{(self.end - 1) // SECTOR}"


def parse_bootloader(text: str) -> BootloaderFile:
    """``FILE:SECTOR`` as given to ``--bootloader``; split on the last colon, so paths may hold one."""
    path, colon, sector_text = text.rpartition(":")
    hint = "give the file and the 512-byte sector to write it at, e.g. u-boot-with-spl.bin:2"
    if not colon or not path:
        raise UsageError(f"--bootloader {text!r} is not FILE:SECTOR", hint=hint)
    try:
        sector = int(sector_text, 0)
    except ValueError:
        raise UsageError(
            f"--bootloader {text!r}: {sector_text!r} is not a sector number", hint=hint
        ) from None
    if sector < 0:
        raise UsageError(f"--bootloader {text!r}: the sector cannot be negative", hint=hint)
    return BootloaderFile(Path(path), sector)


def first_free_sector(kind: ImageKind) -> int:
    """The first sector after the partition table: the MBR's sector 0, or the GPT's 0-33."""
    return MBR_RESERVED_SECTORS if kind is ImageKind.SDIMG else GPT_RESERVED_SECTORS


def _place(layout: DiskLayout, bootloader: BootloaderFile) -> RawPlacement:
    size = file_size(bootloader.path, "bootloader file")
    if size == 0:
        raise InputError(f"bootloader file {bootloader.path} is empty")
    placed = RawPlacement(bootloader.path, bootloader.offset, size)
    first = first_free_sector(layout.kind)
    if bootloader.sector < first:
        table = "MBR (sector 0)" if layout.kind is ImageKind.SDIMG else f"GPT (sectors 0-{first - 1})"
        raise ImageLayoutError(
            f"bootloader file {bootloader.path} would start at sector {bootloader.sector}, inside "
            f"the {table}",
            hint=f"place it at sector {first} or later"
            + ("; boot code for sector 0 goes in with --mbr-boot-code"
               if layout.kind is ImageKind.SDIMG
               else "; a board that reads it from an earlier sector needs --layout sdimg"),
        )
    limit = layout.partitions[0].start
    if placed.end > limit:
        align = layout.request.alignment
        raise ImageLayoutError(
            f"bootloader file {bootloader.path} (sectors {placed.sectors}) ends at byte "
            f"{placed.end}, past the start of partition 1 at byte {limit}",
            hint=raise_hint(RESERVED_SIZE, round_up(placed.end - align, align)),
        )
    return placed


def place_bootloaders(layout: DiskLayout, bootloaders: Sequence[BootloaderFile]) -> list[RawPlacement]:
    """Check every bootloader file against ``layout`` and each other; sorted by offset."""
    placed = sorted((_place(layout, b) for b in bootloaders), key=lambda p: p.offset)
    for before, after in zip(placed, placed[1:], strict=False):
        if after.offset < before.end:
            raise ImageLayoutError(
                f"bootloader files {before.path} (sectors {before.sectors}) and {after.path} "
                f"(sectors {after.sectors}) overlap",
                hint="move one of them to another sector with its --bootloader FILE:SECTOR",
            )
    return placed


def read_mbr_boot_code(path: Path, length: int = BOOT_CODE_SIZE) -> bytes:
    """The first ``length`` bytes of ``path``, for the boot code area of sector 0."""
    if not 1 <= length <= BOOT_CODE_SIZE:
        raise UsageError(
            f"--mbr-boot-code-length {length} is not between 1 and {BOOT_CODE_SIZE}",
            hint=f"bytes {BOOT_CODE_SIZE}-511 of sector 0 hold the disk signature and the "
            "partition table, which pymender-image writes itself",
        )
    size = file_size(path, "MBR boot code")
    if size < length:
        raise UsageError(
            f"MBR boot code {path} is {size} bytes, shorter than the {length} bytes to write",
            hint="give the boot code file itself (e.g. GRUB's boot.img) or lower "
            "--mbr-boot-code-length",
        )
    try:
        with open(path, "rb") as file:
            code = file.read(length)
    except PermissionError:
        raise InputError(f"MBR boot code {path} cannot be read (permission denied)") from None
    if len(code) != length:
        raise InputError(f"MBR boot code {path} shrank while it was read")
    return code
