"""``pymender-image``: build, inspect and size provisioning disk images.

Only argument parsing and printing live here; :mod:`pymender.image` does the work, so the Yocto
class and the test-image builder get exactly what a user gets.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from pymender import __version__
from pymender.cli.common import Parser, run_cli
from pymender.image.build import ImageSpec, build_image, check_rootfs_fits
from pymender.image.ids import DEFAULT_DISK_ID
from pymender.image.layout import (
    DEFAULT_ALIGNMENT,
    DEFAULT_BOOT_MB,
    DEFAULT_DATA_MB,
    DEFAULT_TOTAL_MB,
    MIB,
    DiskLayout,
    ImageKind,
    SizeRequest,
    plan_layout,
)
from pymender.image.show import read_image, render_text

PROG: Final = "pymender-image"

_EPILOG_BUILD = """\
layout: partition 1 boot (FAT; EFI System type on MBR and GPT), 2 rootfs A (the given image),
3 rootfs B (left empty), 4 data (ext4). Partition 1 starts one alignment into the disk, the
partitions follow without gaps, and each rootfs partition gets
  round_down((total - boot - data - 2 * alignment - reserved) / 2, alignment)
where boot and data are rounded up to the alignment. The image file is exactly
--total-size-mb MiB and sparse.

example:
  pymender-image build --layout uefiimg --rootfs core-image.ext4 --boot-dir efi/ \\
      --data-dir data/ --total-size-mb 2048 --bmap -o core-image.uefiimg
"""


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _add_size_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sizes (as meta-mender's MENDER_* variables)")
    group.add_argument(
        "--total-size-mb",
        type=_int,
        default=DEFAULT_TOTAL_MB,
        metavar="MB",
        help=f"whole storage device and image size in MiB (default {DEFAULT_TOTAL_MB})",
    )
    group.add_argument(
        "--boot-size-mb",
        type=_int,
        default=DEFAULT_BOOT_MB,
        metavar="MB",
        help=f"boot partition size in MiB, rounded up to the alignment (default {DEFAULT_BOOT_MB})",
    )
    group.add_argument(
        "--data-size-mb",
        type=_int,
        default=DEFAULT_DATA_MB,
        metavar="MB",
        help=f"data partition size in MiB, rounded up to the alignment (default {DEFAULT_DATA_MB})",
    )
    group.add_argument(
        "--alignment",
        type=_int,
        default=DEFAULT_ALIGNMENT,
        metavar="BYTES",
        help=f"partition alignment in bytes, a multiple of 1024 (default {DEFAULT_ALIGNMENT})",
    )
    group.add_argument(
        "--reserved-bootloader-bytes",
        type=_int,
        default=0,
        metavar="BYTES",
        help="space kept before partition 1 for bootloader data such as U-Boot environments, "
        "a multiple of the alignment (default 0)",
    )


def _sizes(args: argparse.Namespace) -> SizeRequest:
    return SizeRequest(
        total_mb=args.total_size_mb,
        boot_mb=args.boot_size_mb,
        data_mb=args.data_size_mb,
        alignment=args.alignment,
        reserved_bytes=args.reserved_bootloader_bytes,
    )


def _add_layout_options(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        "--layout",
        choices=[kind.value for kind in ImageKind],
        required=required,
        default=None if required else ImageKind.SDIMG.value,
        help="sdimg: MBR partition table; uefiimg: GPT" + ("" if required else " (default sdimg)"),
    )
    parser.add_argument(
        "--disk-id",
        default=DEFAULT_DISK_ID,
        metavar="ID",
        help="seed of every id in the image: '0x' plus up to 8 hex digits sets the MBR disk "
        "signature, a GUID sets the GPT disk GUID, any other text is only hashed; PARTUUIDs "
        f"and filesystem ids are derived from it (default {DEFAULT_DISK_ID!r})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Build, inspect and size provisioning disk images (.sdimg / .uefiimg) "
        "with partitions boot, rootfs A, rootfs B and data.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    build = commands.add_parser(
        "build",
        help="build a sparse disk image (and its .bmap)",
        description="Build a sparse disk image around a rootfs image, with no root rights "
        "and no loop devices.",
        epilog=_EPILOG_BUILD,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_layout_options(build, required=True)
    build.add_argument("--rootfs", type=Path, required=True, metavar="FILE",
                       help="filesystem image copied into rootfs A (e.g. core-image.ext4)")
    boot = build.add_mutually_exclusive_group(required=True)
    boot.add_argument("--boot-dir", type=Path, metavar="DIR",
                      help="files copied into a new FAT boot filesystem")
    boot.add_argument("--boot-image", type=Path, metavar="FILE",
                      help="prebuilt boot filesystem image copied as it is")
    data = build.add_mutually_exclusive_group()
    data.add_argument("--data-dir", type=Path, metavar="DIR",
                      help="files copied into the new ext4 data filesystem "
                      "(default: an empty ext4 filesystem)")
    data.add_argument("--data-image", type=Path, metavar="FILE",
                      help="prebuilt data filesystem image copied as it is")
    _add_size_options(build)
    build.add_argument("-o", "--output", type=Path, required=True, metavar="IMAGE",
                       help="image to write (replaced only once it is complete)")
    build.add_argument("--bmap", action="store_true",
                       help="also write IMAGE.bmap (bmaptool's format) so flashing copies only "
                       "data")
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")

    show = commands.add_parser(
        "show",
        help="print the partition table of an image",
        description="Print the partition table of a disk image (MBR or GPT): starts, sizes, "
        "types, PARTUUIDs and the filesystem found in each partition.",
    )
    show.add_argument("image", type=Path, metavar="IMAGE", help="disk image or block device")
    show.add_argument("--json", action="store_true", help="print JSON for scripts")

    size = commands.add_parser(
        "rootfs-size",
        help="print the rootfs partition size the sizes give",
        description="Print the size of each rootfs partition, derived from the total, boot and "
        "data sizes exactly as 'build' does (in KiB by default, like meta-mender's "
        "MENDER_CALC_ROOTFS_SIZE).",
    )
    _add_size_options(size)
    unit = size.add_mutually_exclusive_group()
    unit.add_argument("--bytes", action="store_true", help="print bytes instead of KiB")
    unit.add_argument("--json", action="store_true",
                      help="print the whole layout (starts, sizes, PARTUUIDs) as JSON")
    _add_layout_options(size, required=False)
    size.add_argument("--rootfs", type=Path, metavar="FILE",
                      help="also check that this rootfs image fits (error if it does not)")
    return parser


def _layout_lines(layout: DiskLayout) -> list[str]:
    lines = []
    for p in layout.partitions:
        lines.append(
            f"  {p.number}  {p.role.value:<9} start {p.start:>12}  size {p.size:>12} "
            f"({p.size // MIB} MiB)  {p.partuuid}"
        )
    return lines


def _cmd_build(args: argparse.Namespace) -> int:
    spec = ImageSpec(
        kind=ImageKind(args.layout),
        rootfs=args.rootfs,
        output=args.output,
        sizes=_sizes(args),
        boot_dir=args.boot_dir,
        boot_image=args.boot_image,
        data_dir=args.data_dir,
        data_image=args.data_image,
        disk_id=args.disk_id,
        bmap=args.bmap,
    )
    result = build_image(spec)
    if args.json:
        data = result.layout.to_dict()
        data["output"] = str(result.output)
        data["bytes_written"] = result.bytes_written
        data["bmap"] = str(result.bmap.path) if result.bmap else None
        print(json.dumps(data, indent=2))
    elif not args.quiet:
        layout = result.layout
        print(
            f"wrote {result.output}: {layout.kind.value}, {layout.total_size // MIB} MiB, "
            f"disk id {layout.disk_id}, {result.bytes_written} bytes of data"
        )
        for line in _layout_lines(layout):
            print(line)
        if result.bmap:
            print(
                f"wrote {result.bmap.path}: {result.bmap.mapped_blocks} of "
                f"{result.bmap.blocks} blocks mapped"
            )
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    image = read_image(args.image)
    if args.json:
        print(json.dumps(image.to_dict(), indent=2))
    else:
        print(render_text(image))
    return 0


def _cmd_rootfs_size(args: argparse.Namespace) -> int:
    sizes = _sizes(args)
    layout = plan_layout(ImageKind(args.layout), sizes, args.disk_id)
    if args.rootfs is not None:
        check_rootfs_fits(layout, args.rootfs)
    if args.json:
        print(json.dumps(layout.to_dict(), indent=2))
    elif args.bytes:
        print(layout.rootfs_size)
    else:
        print(layout.rootfs_size // 1024)
    return 0


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    handlers = {"build": _cmd_build, "show": _cmd_show, "rootfs-size": _cmd_rootfs_size}
    return handlers[args.command](args)


def run() -> None:
    sys.exit(run_cli(PROG, main))
