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
from pymender.errors import UsageError
from pymender.image.build import ImageSpec, build_image, check_rootfs_fits
from pymender.image.fsimage import FILESYSTEM_ROLES, FilesystemSpec, build_filesystem
from pymender.image.ids import DEFAULT_DISK_ID
from pymender.image.layout import (
    DEFAULT_ALIGNMENT,
    DEFAULT_BOOT_MB,
    DEFAULT_DATA_MB,
    DEFAULT_TOTAL_MB,
    MIB,
    SECTOR,
    DiskLayout,
    ImageKind,
    PartitionRole,
    SizeRequest,
    plan_layout,
)
from pymender.image.mbr import BOOT_CODE_SIZE
from pymender.image.raw import parse_bootloader
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


def _add_raw_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("outside the partitions (boards whose ROM or BIOS reads the raw disk)")
    group.add_argument(
        "--bootloader",
        action="append",
        default=[],
        metavar="FILE:SECTOR",
        help="write FILE as it is from 512-byte sector SECTOR of the disk, before partition 1 "
        "(e.g. SPL or U-Boot at sector 2; the last ':' separates the sector, so FILE may hold "
        "one); repeat for several files. A file must start after the partition table (sector 1 "
        "on sdimg, 34 on uefiimg), end before partition 1 (raise --reserved-bootloader-bytes "
        "for more room) and not overlap another",
    )
    group.add_argument(
        "--mbr-boot-code",
        type=Path,
        metavar="FILE",
        help="write the first --mbr-boot-code-length bytes of FILE (e.g. GRUB's boot.img) into "
        "the boot code area of sector 0, the MBR of an sdimg or the protective MBR of a "
        "uefiimg, so a PC BIOS boots the disk; the disk signature (bytes 440-443, the base of "
        "an sdimg's PARTUUIDs) and the partition table stay pymender-image's",
    )
    group.add_argument(
        "--mbr-boot-code-length",
        type=_int,
        metavar="N",
        help=f"how many bytes of --mbr-boot-code to write, 1 to {BOOT_CODE_SIZE} (default "
        f"{BOOT_CODE_SIZE}: the whole boot code area); FILE must hold at least N bytes",
    )


def _add_layout_options(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        "--layout",
        choices=[kind.value for kind in ImageKind],
        required=required,
        default=None if required else ImageKind.SDIMG.value,
        help="sdimg: MBR partition table; uefiimg: GPT" + ("" if required else " (default sdimg)"),
    )
    _add_disk_id_option(parser)


def _add_disk_id_option(parser: argparse.ArgumentParser, help_text: str | None = None) -> None:
    parser.add_argument(
        "--disk-id",
        default=DEFAULT_DISK_ID,
        metavar="ID",
        help=help_text
        or "seed of every id in the image: '0x' plus up to 8 hex digits sets the MBR disk "
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
    _add_raw_options(build)
    build.add_argument("-o", "--output", type=Path, required=True, metavar="IMAGE",
                       help="image to write (replaced only once it is complete)")
    build.add_argument("--bmap", action="store_true",
                       help="also write IMAGE.bmap (bmaptool's format) so flashing copies only "
                       "data")
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")

    _add_filesystem_parser(commands)

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


_EPILOG_FILESYSTEM = """\
The filesystem is as large as the partition the size options give (the boot or data size,
rounded up to the alignment); its label (BOOT or data) and id are those build derives from
--disk-id. Neither depends on the partition table: one file serves sdimg and uefiimg alike.

example:
  pymender-image filesystem --partition data --dir data/ --data-size-mb 128 -o data.ext4
  pymender-image build --layout sdimg --rootfs core-image.ext4 --boot-dir boot/ \\
      --data-image data.ext4 --data-size-mb 128 -o core-image.sdimg
"""


def _add_filesystem_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = commands.add_parser(
        "filesystem",
        help="make the boot or data filesystem as a file of its own",
        description="Make the filesystem that 'build' would put into the boot (FAT) or data "
        "(ext4) partition, byte for byte, as a file of its own: give it to 'build' with "
        "--boot-image or --data-image, or ship the data filesystem alone.",
        epilog=_EPILOG_FILESYSTEM,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--partition", required=True, choices=[r.value for r in FILESYSTEM_ROLES],
                        help="boot: a FAT filesystem labelled BOOT; data: ext4 labelled data")
    parser.add_argument("--dir", type=Path, metavar="DIR",
                        help="files to put into it, as build's --boot-dir or --data-dir "
                        "(default: an empty filesystem)")
    _add_size_options(parser)
    _add_disk_id_option(
        parser,
        "the --disk-id of the image the filesystem is for; the FAT volume serial or the ext4 "
        f"UUID derives from it as in build (default {DEFAULT_DISK_ID!r})",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                        help="file to write (replaced only once it is complete)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")


def _layout_lines(layout: DiskLayout) -> list[str]:
    lines = []
    for p in layout.partitions:
        lines.append(
            f"  {p.number}  {p.role.value:<9} start {p.start:>12}  size {p.size:>12} "
            f"({p.size // MIB} MiB)  {p.partuuid}"
        )
    return lines


def _boot_code_length(args: argparse.Namespace) -> int:
    if args.mbr_boot_code_length is None:
        return BOOT_CODE_SIZE
    if args.mbr_boot_code is None:
        raise UsageError(
            "--mbr-boot-code-length needs --mbr-boot-code",
            hint="give the boot code file too, or leave the length out",
        )
    return int(args.mbr_boot_code_length)


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
        bootloaders=tuple(parse_bootloader(text) for text in args.bootloader),
        mbr_boot_code=args.mbr_boot_code,
        mbr_boot_code_length=_boot_code_length(args),
    )
    result = build_image(spec)
    if args.json:
        data = result.layout.to_dict()
        data["output"] = str(result.output)
        data["bytes_written"] = result.bytes_written
        data["bmap"] = str(result.bmap.path) if result.bmap else None
        data["mbr_boot_code"] = (
            {"path": str(spec.mbr_boot_code), "length": spec.mbr_boot_code_length}
            if spec.mbr_boot_code else None
        )
        data["bootloaders"] = [
            {"path": str(raw.path), "sector": raw.offset // SECTOR, "offset": raw.offset,
             "size": raw.size, "end": raw.end}
            for raw in result.bootloaders
        ]
        print(json.dumps(data, indent=2))
    elif not args.quiet:
        layout = result.layout
        print(
            f"wrote {result.output}: {layout.kind.value}, {layout.total_size // MIB} MiB, "
            f"disk id {layout.disk_id}, {result.bytes_written} bytes of data"
        )
        if spec.mbr_boot_code:
            print(f"  MBR boot code {spec.mbr_boot_code}: its first {spec.mbr_boot_code_length} bytes")
        for raw in result.bootloaders:
            print(f"  bootloader {raw.path}: sectors {raw.sectors} ({raw.size} bytes)")
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


def _cmd_filesystem(args: argparse.Namespace) -> int:
    result = build_filesystem(
        FilesystemSpec(
            role=PartitionRole(args.partition),
            output=args.output,
            sizes=_sizes(args),
            source_dir=args.dir,
            disk_id=args.disk_id,
        )
    )
    if args.json:
        print(json.dumps({
            "output": str(result.output),
            "partition": result.role.value,
            "filesystem": result.filesystem,
            "label": result.label,
            "fs_id": result.fs_id,
            "size": result.size,
        }, indent=2))
    elif not args.quiet:
        print(
            f"wrote {result.output}: {result.role.value} filesystem, {result.filesystem} "
            f"labelled {result.label}, id {result.fs_id}, {result.size // MIB} MiB "
            f"({result.size} bytes)"
        )
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
    handlers = {
        "build": _cmd_build,
        "filesystem": _cmd_filesystem,
        "show": _cmd_show,
        "rootfs-size": _cmd_rootfs_size,
    }
    return handlers[args.command](args)


def run() -> None:
    sys.exit(run_cli(PROG, main))
