"""Reading back a disk image's partition table for ``pymender-image show``.

It reads only the tables and the first 68 KiB of each partition (where the filesystems it knows
keep their superblocks), so it is instant on any image size and works on any MBR or GPT image,
not only on those pymender-image built.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["partitions"] = [dict(asdict(p), end=p.end) for p in self.partitions]
        data["problems"] = list(self.problems)
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


def _describe(path: str, size: int, read_at: gpt.ReadAt) -> ShownImage:
    table = mbr.decode_mbr(read_at(0, SECTOR))
    if table is None:
        raise InputError(f"{path} has no MBR or GPT partition table")
    if table.is_protective:
        found = gpt.decode_gpt(read_at, size // SECTOR)
        if found is None:
            raise InputError(f"{path} has a protective MBR but no valid GPT (primary or backup)")
        return _describe_gpt(path, size, found, read_at)
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
    lines += [f"warning: {problem}" for problem in image.problems]
    return "\n".join(lines)
