"""The boot or data filesystem as a file of its own, exactly as ``build`` would make it.

A build system can make a partition's filesystem once and hand it to ``build`` as
``--boot-image``/``--data-image`` (or ship the data filesystem alone, as meta-mender's
``dataimg``). Both paths go through :func:`make_partition_filesystem`, so the file is byte for
byte what ``build`` writes into the partition: the partition's size from the layout, and the
label and ids ``build`` derives from the disk id. Neither depends on the partition table, so
one file serves an ``sdimg`` and a ``uefiimg`` alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pymender.errors import UsageError
from pymender.image.filesystems import PROBE_SIZE, make_ext4, make_fat, probe_filesystem
from pymender.image.ids import DEFAULT_DISK_ID, DiskIds, derive_ids
from pymender.image.inputs import check_dir, check_not_inside, check_output, work_dir
from pymender.image.layout import PartitionRole, SizeRequest, rootfs_partition_size

FILESYSTEM_ROLES = (PartitionRole.BOOT, PartitionRole.DATA)
"""The partitions whose filesystem pymender-image makes (the rootfs image is the user's)."""


@dataclass(frozen=True)
class FilesystemSpec:
    """What ``build_filesystem`` needs; the CLI fills it from its options."""

    role: PartitionRole
    output: Path
    sizes: SizeRequest = field(default_factory=SizeRequest)
    source_dir: Path | None = None
    """The files to put into it; ``None`` makes an empty filesystem."""
    disk_id: str = DEFAULT_DISK_ID


@dataclass(frozen=True)
class FilesystemResult:
    role: PartitionRole
    output: Path
    size: int
    filesystem: str
    """``vfat`` or ``ext4``."""
    label: str
    fs_id: str
    """The FAT volume serial (``ABCD-1234``) or the ext4 UUID."""


def partition_size(role: PartitionRole, sizes: SizeRequest) -> int:
    """The size of the boot or data partition that ``sizes`` give; refuses sizes ``build`` would."""
    rootfs_partition_size(sizes)  # the same checks of the sizes as a build makes
    return sizes.boot_bytes if role is PartitionRole.BOOT else sizes.data_bytes


def make_partition_filesystem(
    path: Path, role: PartitionRole, size: int, ids: DiskIds, source_dir: Path | None, work: Path
) -> None:
    """Make the filesystem of the boot (FAT) or data (ext4) partition at ``path``."""
    if role is PartitionRole.BOOT:
        make_fat(path, size, source_dir, volume_id=ids.boot_volume_id)
    elif role is PartitionRole.DATA:
        make_ext4(path, size, source_dir, fs_uuid=ids.data_fs_uuid, work_dir=work)
    else:
        raise ValueError(f"pymender-image makes no filesystem for the {role.value} partition")


def check_filesystem_spec(spec: FilesystemSpec) -> int:
    """Validate every input; returns the filesystem's size in bytes. Nothing is written."""
    if spec.role not in FILESYSTEM_ROLES:
        raise UsageError(
            f"pymender-image makes no filesystem for the {spec.role.value} partition",
            hint="choose --partition boot or data; the rootfs image comes from the build system",
        )
    size = partition_size(spec.role, spec.sizes)
    derive_ids(spec.disk_id)
    what = f"{spec.role.value} directory"
    if spec.source_dir is not None:
        check_dir(spec.source_dir, what)
    check_output(spec.output, "write the filesystem to a file")
    if spec.source_dir is not None:
        check_not_inside(spec.output, spec.source_dir, what)
    return size


def build_filesystem(spec: FilesystemSpec) -> FilesystemResult:
    """Write the filesystem; like an image, it replaces ``spec.output`` only once complete."""
    size = check_filesystem_spec(spec)
    with work_dir(spec.output) as tmp:
        work = Path(tmp)
        partial = work / "filesystem"
        ids = derive_ids(spec.disk_id)
        make_partition_filesystem(partial, spec.role, size, ids, spec.source_dir, work)
        with open(partial, "rb") as file:
            info = probe_filesystem(file.read(PROBE_SIZE))
        os.replace(partial, spec.output)
    return FilesystemResult(spec.role, spec.output, size, info.kind, info.label, info.fs_id)
