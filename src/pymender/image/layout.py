"""The partition layout of a provisioning disk image, and the rootfs size formula.

Sizes follow the Yocto variables the layer mirrors from meta-mender: total, boot and data sizes
in MiB ("MB" in the variable names), the alignment in bytes. The two rootfs partitions get what
is left, by the same formula meta-mender uses, so an image built here and one built by
meta-mender for the same variables have identical partition starts and sizes:

    boot     = round_up(boot_mb MiB, alignment)
    data     = round_up(data_mb MiB, alignment)
    rootfs   = round_down((total - boot - data - 2 * alignment - reserved) / 2, alignment)

Partition 1 starts one alignment (plus the space reserved for bootloader data) into the disk,
the four partitions follow one another without gaps, and the image file is exactly ``total``
bytes long; the one alignment left at the end holds the GPT backup.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from pymender.errors import ImageLayoutError
from pymender.image.ids import DEFAULT_DISK_ID, DiskIds, derive_ids

MIB = 1024 * 1024
SECTOR = 512
DEFAULT_ALIGNMENT = 8 * MIB
DEFAULT_TOTAL_MB = 1024
DEFAULT_BOOT_MB = 16
DEFAULT_DATA_MB = 128

GPT_RESERVED_SECTORS = 34
"""Protective MBR, GPT header and a 128-entry table: nothing may start before this sector."""

MBR_MAX_SECTORS = 0xFFFFFFFF


class ImageKind(str, Enum):
    """The two image types: the same partitions behind an MBR or a GPT."""

    SDIMG = "sdimg"
    UEFIIMG = "uefiimg"

    @property
    def table(self) -> str:
        return "mbr" if self is ImageKind.SDIMG else "gpt"


class PartitionRole(str, Enum):
    BOOT = "boot"
    ROOTFS_A = "rootfs-a"
    ROOTFS_B = "rootfs-b"
    DATA = "data"


# The sizes a user may have to raise: (command line option, Yocto layer variable).
TOTAL_SIZE = ("--total-size-mb", "PYMENDER_STORAGE_TOTAL_SIZE_MB")
BOOT_SIZE = ("--boot-size-mb", "PYMENDER_BOOT_PART_SIZE_MB")
DATA_SIZE = ("--data-size-mb", "PYMENDER_DATA_PART_SIZE_MB")
RESERVED_SIZE = ("--reserved-bootloader-bytes", "PYMENDER_RESERVED_SPACE_BOOTLOADER_DATA")


def raise_hint(size: tuple[str, str], at_least: int | None = None) -> str:
    """``raise --x [to at least N]; PYMENDER_X in the Yocto layer``: names both spellings."""
    option, variable = size
    target = f" to at least {at_least}" if at_least is not None else ""
    return f"raise {option}{target}; {variable} in the Yocto layer"


def round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def round_down(value: int, step: int) -> int:
    return value // step * step


@dataclass(frozen=True)
class SizeRequest:
    """What the user asks for; everything else is derived from it."""

    total_mb: int = DEFAULT_TOTAL_MB
    boot_mb: int = DEFAULT_BOOT_MB
    data_mb: int = DEFAULT_DATA_MB
    alignment: int = DEFAULT_ALIGNMENT
    reserved_bytes: int = 0
    """Space for bootloader data (e.g. two U-Boot environment copies) before partition 1."""

    def validate(self) -> None:
        """Refuse values no layout can be built from, naming the one that is wrong."""
        for name, value in (
            ("--total-size-mb", self.total_mb),
            ("--boot-size-mb", self.boot_mb),
            ("--data-size-mb", self.data_mb),
        ):
            if value <= 0:
                raise ImageLayoutError(
                    f"{name} must be a positive number of MiB, not {value}",
                    hint="pymender-image always makes the boot, two rootfs and the data partition",
                )
        if self.alignment <= 0 or self.alignment % 1024:
            raise ImageLayoutError(
                f"alignment {self.alignment} bytes is not a positive multiple of 1024",
                hint="give --alignment in bytes, e.g. 8388608 for 8 MiB (the default)",
            )
        if self.reserved_bytes < 0 or self.reserved_bytes % self.alignment:
            raise ImageLayoutError(
                f"reserved bootloader space {self.reserved_bytes} bytes is not a multiple of the "
                f"alignment ({self.alignment} bytes)",
                hint="round --reserved-bootloader-bytes up to the alignment",
            )

    @property
    def total_bytes(self) -> int:
        return self.total_mb * MIB

    @property
    def boot_bytes(self) -> int:
        return round_up(self.boot_mb * MIB, self.alignment)

    @property
    def data_bytes(self) -> int:
        return round_up(self.data_mb * MIB, self.alignment)


def rootfs_partition_size(request: SizeRequest) -> int:
    """The size in bytes of each rootfs partition (meta-mender's ``MENDER_CALC_ROOTFS_SIZE``)."""
    request.validate()
    overhead = 2 * request.alignment + request.reserved_bytes
    left = request.total_bytes - request.boot_bytes - request.data_bytes - overhead
    size = round_down(left // 2, request.alignment)
    if size <= 0:
        needed = minimum_total_mb(request, request.alignment)
        raise ImageLayoutError(
            f"sizes do not add up: {request.total_mb} MiB total leave no room for the rootfs "
            f"partitions after boot ({request.boot_bytes // MIB} MiB), data "
            f"({request.data_bytes // MIB} MiB) and {overhead // MIB} MiB of alignment overhead",
            hint=f"{raise_hint(TOTAL_SIZE, needed)}; or lower the boot or data size",
        )
    return size


def minimum_total_mb(request: SizeRequest, rootfs_bytes: int) -> int:
    """The smallest total size in MiB whose rootfs partitions hold ``rootfs_bytes`` each."""
    rootfs = round_up(max(rootfs_bytes, 1), request.alignment)
    needed = (
        2 * rootfs
        + request.boot_bytes
        + request.data_bytes
        + 2 * request.alignment
        + request.reserved_bytes
    )
    return -(-needed // MIB)


@dataclass(frozen=True)
class PartitionPlan:
    """One partition: where it is and what it is for. Offsets and sizes are in bytes."""

    number: int
    role: PartitionRole
    start: int
    size: int
    partuuid: str

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def start_sector(self) -> int:
        return self.start // SECTOR

    @property
    def size_sectors(self) -> int:
        return self.size // SECTOR


@dataclass(frozen=True)
class DiskLayout:
    """The complete plan of one image: every later step only follows it."""

    kind: ImageKind
    request: SizeRequest
    ids: DiskIds
    partitions: tuple[PartitionPlan, ...]

    @property
    def total_size(self) -> int:
        return self.request.total_bytes

    @property
    def total_sectors(self) -> int:
        return self.total_size // SECTOR

    @property
    def rootfs_size(self) -> int:
        return self.partitions[1].size

    def partition(self, role: PartitionRole) -> PartitionPlan:
        return next(p for p in self.partitions if p.role is role)

    @property
    def disk_id(self) -> str:
        if self.kind is ImageKind.SDIMG:
            return f"0x{self.ids.mbr_signature:08x}"
        return str(self.ids.disk_guid)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, for the Yocto class and for scripts."""
        return {
            "layout": self.kind.value,
            "table": self.kind.table,
            "disk_id": self.disk_id,
            "total_size": self.total_size,
            "alignment": self.request.alignment,
            "reserved_bootloader_bytes": self.request.reserved_bytes,
            "rootfs_size": self.rootfs_size,
            "rootfs_size_kib": self.rootfs_size // 1024,
            "partitions": [
                {
                    "number": p.number,
                    "role": p.role.value,
                    "start": p.start,
                    "size": p.size,
                    "end": p.end,
                    "partuuid": p.partuuid,
                }
                for p in self.partitions
            ],
        }


def plan_layout(
    kind: ImageKind, request: SizeRequest, disk_id: str = DEFAULT_DISK_ID
) -> DiskLayout:
    """Place the four partitions; refuse a request whose sizes or alignment do not work."""
    rootfs = rootfs_partition_size(request)
    first = request.alignment + request.reserved_bytes
    if kind is ImageKind.UEFIIMG and first < GPT_RESERVED_SECTORS * SECTOR:
        raise ImageLayoutError(
            f"partition 1 would start at byte {first}, inside the GPT "
            f"(which needs the first {GPT_RESERVED_SECTORS * SECTOR} bytes)",
            hint="use an --alignment of at least 32768 bytes for a uefiimg",
        )
    if kind is ImageKind.SDIMG and request.total_bytes // SECTOR > MBR_MAX_SECTORS:
        raise ImageLayoutError(
            f"{request.total_mb} MiB is too large for an MBR partition table (2 TiB at most)",
            hint="use --layout uefiimg (GPT) or lower --total-size-mb",
        )
    ids = derive_ids(disk_id)
    sizes = (
        (PartitionRole.BOOT, request.boot_bytes),
        (PartitionRole.ROOTFS_A, rootfs),
        (PartitionRole.ROOTFS_B, rootfs),
        (PartitionRole.DATA, request.data_bytes),
    )
    partitions = []
    start = first
    for number, (role, size) in enumerate(sizes, start=1):
        partuuid = ids.mbr_partuuid(number) if kind is ImageKind.SDIMG else ids.gpt_partuuid(number)
        partitions.append(PartitionPlan(number, role, start, size, partuuid))
        start += size
    return DiskLayout(kind, request, ids, tuple(partitions))


def alignment_problems(
    extents: list[tuple[int, int]], request: SizeRequest
) -> list[str]:
    """Check ``(start, size)`` byte extents of partitions 1..4 against meta-mender's rules.

    The rules are those of meta-mender's own image test: partition 1 starts exactly one
    alignment (plus the reserved bootloader space) into the disk, every partition starts on the
    alignment, the partitions are contiguous, and boot and data are exactly their requested
    size rounded up to the alignment. Returns one sentence per broken rule; empty when all hold.
    """
    problems = []
    align = request.alignment
    if not extents:
        return ["the image has no partitions"]
    expected_first = align + request.reserved_bytes
    if extents[0][0] != expected_first:
        problems.append(f"partition 1 starts at {extents[0][0]}, not at {expected_first}")
    for number, (start, size) in enumerate(extents, start=1):
        if start % align:
            problems.append(f"partition {number} start {start} is not a multiple of {align}")
        if size % align:
            problems.append(f"partition {number} size {size} is not a multiple of {align}")
    for number in range(1, len(extents)):
        end = extents[number - 1][0] + extents[number - 1][1]
        if extents[number][0] != end:
            problems.append(
                f"partition {number + 1} starts at {extents[number][0]}, "
                f"not right after partition {number} (at {end})"
            )
    if extents[0][1] != request.boot_bytes:
        problems.append(f"boot partition is {extents[0][1]} bytes, not {request.boot_bytes}")
    if len(extents) >= 4 and extents[3][1] != request.data_bytes:
        problems.append(f"data partition is {extents[3][1]} bytes, not {request.data_bytes}")
    return problems
