"""Host side: provisioning disk images (``.sdimg`` / ``.uefiimg``) with their block maps.

The public entry points are :func:`build_image` (with :class:`ImageSpec`),
:func:`build_filesystem` (with :class:`FilesystemSpec`), :func:`plan_layout` (with
:class:`SizeRequest`) and :func:`read_image`; ``pymender-image`` is a thin front end.
"""

from pymender.image.build import BuildResult, ImageSpec, build_image, check_rootfs_fits, check_spec
from pymender.image.fsimage import (
    FilesystemResult,
    FilesystemSpec,
    build_filesystem,
    make_partition_filesystem,
    partition_size,
)
from pymender.image.layout import (
    DEFAULT_ALIGNMENT,
    DiskLayout,
    ImageKind,
    PartitionPlan,
    PartitionRole,
    SizeRequest,
    alignment_problems,
    plan_layout,
    rootfs_partition_size,
)
from pymender.image.raw import (
    BootloaderFile,
    RawPlacement,
    parse_bootloader,
    place_bootloaders,
    read_mbr_boot_code,
)
from pymender.image.show import ShownImage, read_image

__all__ = [
    "DEFAULT_ALIGNMENT",
    "BootloaderFile",
    "BuildResult",
    "DiskLayout",
    "FilesystemResult",
    "FilesystemSpec",
    "ImageKind",
    "ImageSpec",
    "PartitionPlan",
    "PartitionRole",
    "RawPlacement",
    "ShownImage",
    "SizeRequest",
    "alignment_problems",
    "build_filesystem",
    "build_image",
    "check_rootfs_fits",
    "check_spec",
    "make_partition_filesystem",
    "parse_bootloader",
    "partition_size",
    "place_bootloaders",
    "plan_layout",
    "read_image",
    "read_mbr_boot_code",
    "rootfs_partition_size",
]
