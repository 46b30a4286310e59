"""Host side: provisioning disk images (``.sdimg`` / ``.uefiimg``) with their block maps.

The public entry points are :func:`build_image` (with :class:`ImageSpec`), :func:`plan_layout`
(with :class:`SizeRequest`) and :func:`read_image`; ``pymender-image`` is a thin front end.
"""

from pymender.image.build import BuildResult, ImageSpec, build_image, check_rootfs_fits, check_spec
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
    "ImageKind",
    "ImageSpec",
    "PartitionPlan",
    "PartitionRole",
    "RawPlacement",
    "ShownImage",
    "SizeRequest",
    "alignment_problems",
    "build_image",
    "check_rootfs_fits",
    "check_spec",
    "parse_bootloader",
    "place_bootloaders",
    "plan_layout",
    "read_image",
    "read_mbr_boot_code",
    "rootfs_partition_size",
]
