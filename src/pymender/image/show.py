"""Reading back a disk image's partition table for ``pymender-image show``.

It reads only the tables and the first 68 KiB of each partition (where the filesystems it knows
keep their superblocks), so it is instant on any image size and works on any MBR or GPT image,
not only on those pymender-image built.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pymender.errors import InputError
from pymender.image import gpt, mbr
from pymender.image.filesystems import PROBE_SIZE, probe_filesystem

SECTOR = 512


@dataclass(frozen=True)
class ShownPartition:
    number: int
    start: int
    size: int
    type_id: str
    """``0xef``-style for MBR, the type GUID for GPT."""
    type_name: str
    partuuid: str
    name: str
    bootable: bool
    filesystem: str
    label: str
    fs_id: str

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True)
class ShownImage:
    path: str
    size: int
    table: str
    disk_id: str
    partitions: tuple[ShownPartition, ...]
    problems: tuple[str, ...] = ()
    boot_code: bool = False
    """Sector 0 holds boot code (its first 440 bytes are not all zero)."""
    raw_data: tuple[tuple[int, int], ...] = ()
    """``(start, end)`` byte ranges, whole sectors, of data between the partition table and
    partition 1 (raw bootloader files); ranges less than :data:`RAW_GAP` apart are one."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["partitions"] = [dict(asdict(p), end=p.end) for p in self.partitions]
        data["problems"] = list(self.problems)
        data["raw_data"] = [{"start": start, "end": end} for start, end in self.raw_data]
        return data


def read_image(path: Path) -> ShownImage:
    """Describe the partition table of the image (or block device) at ``path``."""
    if path.is_dir():
        raise InputError(f"image {path} is a directory")
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise InputError(f"image {path} does not exist") from None
    except PermissionError:
        raise InputError(f"image {path} cannot be read (permission denied)") from None
    try:
        size = os.lseek(fd, 0, os.SEEK_END)

        def read_at(offset: int, length: int) -> bytes:
            return os.pread(fd, length, offset) if 0 <= offset < size else b""

        return _describe(str(path), size, read_at)
    finally:
        os.close(fd)


def _probe(read_at: gpt.ReadAt, start: int, size: int) -> tuple[str, str, str]:
    info = probe_filesystem(read_at(start, min(PROBE_SIZE, size)))
    return info.kind, info.label, info.fs_id


RAW_GAP = 64 * 1024
"""Data before partition 1 is reported in ranges; zeros shorter than this inside one (padding in
a bootloader file) do not split it."""
_SCAN_CHUNK = 1024 * 1024


def _raw_data(read_at: gpt.ReadAt, start: int, end: int) -> tuple[tuple[int, int], ...]:
    """The sector ranges between ``start`` and ``end`` that hold anything but zeros."""
    ranges: list[tuple[int, int]] = []
    for pos in range(start, end, _SCAN_CHUNK):
        chunk = read_at(pos, min(_SCAN_CHUNK, end - pos))
        if chunk == bytes(len(chunk)):
            continue
        for at in range(0, len(chunk), SECTOR):
            piece = chunk[at : at + SECTOR]
            if piece == bytes(len(piece)):
                continue
            first = pos + at
            if ranges and first - ranges[-1][1] < RAW_GAP:
                ranges[-1] = (ranges[-1][0], first + SECTOR)
            else:
                ranges.append((first, first + SECTOR))
    return tuple(ranges)


def _describe(path: str, size: int, read_at: gpt.ReadAt) -> ShownImage:
    sector0 = read_at(0, SECTOR)
    table = mbr.decode_mbr(sector0)
    if table is None:
        raise InputError(f"{path} has no MBR or GPT partition table")
    if table.is_protective:
        found = gpt.decode_gpt(read_at, size // SECTOR)
        if found is None:
            raise InputError(f"{path} has a protective MBR but no valid GPT (primary or backup)")
        shown = _describe_gpt(path, size, found, read_at)
        table_end = found.first_usable * SECTOR
    else:
        shown = _describe_mbr(path, size, table, read_at)
        table_end = SECTOR
    first = min((p.start for p in shown.partitions), default=table_end)
    return replace(
        shown,
        boot_code=any(sector0[: mbr.BOOT_CODE_SIZE]),
        raw_data=_raw_data(read_at, table_end, min(first, size)),
    )


def _describe_mbr(path: str, size: int, table: mbr.MbrTable, read_at: gpt.ReadAt) -> ShownImage:
    partitions = []
    for slot, entry in enumerate(table.entries, start=1):
        if entry.is_empty:
            continue
        start, length = entry.start_lba * SECTOR, entry.num_sectors * SECTOR
        kind, label, fs_id = _probe(read_at, start, length)
        partitions.append(
            ShownPartition(
                number=slot,
                start=start,
                size=length,
                type_id=f"0x{entry.type_id:02x}",
                type_name=mbr.TYPE_NAMES.get(entry.type_id, "unknown"),
                partuuid=f"{table.disk_signature:08x}-{slot:02x}",
                name="",
                bootable=entry.bootable,
                filesystem=kind,
                label=label,
                fs_id=fs_id,
            )
        )
    problems = tuple(
        f"partition {p.number} ends at byte {p.end}, past the end of the image ({size})"
        for p in partitions
        if p.end > size
    )
    return ShownImage(
        path, size, "mbr", f"0x{table.disk_signature:08x}", tuple(partitions), problems
    )


def _describe_gpt(path: str, size: int, table: gpt.GptTable, read_at: gpt.ReadAt) -> ShownImage:
    partitions = []
    problems = list(table.problems)
    for number, entry in table.entries:
        start = entry.first_lba * SECTOR
        length = (entry.last_lba - entry.first_lba + 1) * SECTOR
        if start + length > size:
            problems.append(f"partition {number} ends past the end of the image")
        kind, label, fs_id = _probe(read_at, start, length)
        partitions.append(
            ShownPartition(
                number=number,
                start=start,
                size=length,
                type_id=str(entry.type_guid),
                type_name=gpt.TYPE_NAMES.get(entry.type_guid, "unknown"),
                partuuid=str(entry.unique_guid),
                name=entry.name,
                bootable=bool(entry.attributes & 0x4),
                filesystem=kind,
                label=label,
                fs_id=fs_id,
            )
        )
    return ShownImage(
        path, size, "gpt", str(table.disk_guid), tuple(partitions), tuple(problems)
    )


def _human(size: int) -> str:
    for unit, step in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= step:
            value = size / step
            return f"{value:.0f} {unit}" if value.is_integer() else f"{value:.1f} {unit}"
    return f"{size} B"


def render_text(image: ShownImage) -> str:
    """The table as a person reads it: one line per partition."""
    lines = [
        f"{image.path}: {image.table.upper()}, {_human(image.size)} ({image.size} bytes), "
        f"disk id {image.disk_id}",
        f"{'#':>2}  {'start':>12}  {'size':>12}  {'size':>9}  {'type':<18}  "
        f"{'fs':<6}  {'label':<11}  partuuid",
    ]
    for p in image.partitions:
        type_text = p.type_name + (" *" if p.bootable and image.table == "mbr" else "")
        lines.append(
            f"{p.number:>2}  {p.start:>12}  {p.size:>12}  {_human(p.size):>9}  "
            f"{type_text:<18}  {p.filesystem:<6}  {p.label or '-':<11}  {p.partuuid}"
        )
    if not image.partitions:
        lines.append("(no partitions)")
    if image.boot_code:
        lines.append("sector 0 holds boot code")
    if image.raw_data:
        spans = ", ".join(
            f"{start // SECTOR}-{end // SECTOR - 1} ({_human(end - start)})"
            for start, end in image.raw_data
        )
        lines.append(f"data before partition 1 in sectors {spans}")
    lines += [f"warning: {problem}" for problem in image.problems]
    return "\n".join(lines)
