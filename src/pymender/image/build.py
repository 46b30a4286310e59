"""Assembling a provisioning disk image (``.sdimg`` / ``.uefiimg``) from its parts.

Everything that can be wrong with the request is checked first; then the image is written to a
temporary file next to the output and renamed into place only when it is complete, so a failed
build never leaves a half-written image under the output name. The image is sparse: it starts as
a hole of the full size, and only partition tables and filesystem data are written into it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from pymender.errors import ImageLayoutError, InputError, UsageError
from pymender.image import gpt, mbr
from pymender.image.bmap import BmapSummary, write_bmap
from pymender.image.fsimage import make_partition_filesystem
from pymender.image.ids import DEFAULT_DISK_ID
from pymender.image.inputs import check_dir, check_not_inside, check_output, file_size, work_dir
from pymender.image.layout import (
    BOOT_SIZE,
    DATA_SIZE,
    MIB,
    TOTAL_SIZE,
    DiskLayout,
    ImageKind,
    PartitionRole,
    SizeRequest,
    minimum_total_mb,
    plan_layout,
    raise_hint,
)
from pymender.image.raw import BootloaderFile, RawPlacement, place_bootloaders, read_mbr_boot_code
from pymender.image.sparse import copy_sparse, write_at

GPT_NAMES = {
    PartitionRole.BOOT: "boot",
    PartitionRole.ROOTFS_A: "rootfs-a",
    PartitionRole.ROOTFS_B: "rootfs-b",
    PartitionRole.DATA: "data",
}


@dataclass(frozen=True)
class ImageSpec:
    """Everything ``build_image`` needs; the CLI fills it from its options."""

    kind: ImageKind
    rootfs: Path
    output: Path
    sizes: SizeRequest = field(default_factory=SizeRequest)
    boot_dir: Path | None = None
    boot_image: Path | None = None
    data_dir: Path | None = None
    data_image: Path | None = None
    disk_id: str = DEFAULT_DISK_ID
    bmap: bool = False
    bootloaders: tuple[BootloaderFile, ...] = ()
    """Files written as they are at fixed sectors before partition 1 (SPL, U-Boot)."""
    mbr_boot_code: Path | None = None
    """A file whose first ``mbr_boot_code_length`` bytes become the boot code of sector 0."""
    mbr_boot_code_length: int = mbr.BOOT_CODE_SIZE


@dataclass(frozen=True)
class BuildResult:
    layout: DiskLayout
    output: Path
    bytes_written: int
    """Bytes actually written into the image (tables and non-zero data), holes excluded."""
    bmap: BmapSummary | None = None
    bootloaders: tuple[RawPlacement, ...] = ()


@dataclass(frozen=True)
class _Checked:
    """A request that passed every check: the layout, where the raw files go, the boot code."""

    layout: DiskLayout
    bootloaders: tuple[RawPlacement, ...]
    boot_code: bytes


def _one_of(first: Path | None, second: Path | None, names: str, required: bool) -> None:
    if first is not None and second is not None:
        raise UsageError(f"give either {names}, not both")
    if required and first is None and second is None:
        raise UsageError(f"give one of {names}")


def check_rootfs_fits(layout: DiskLayout, rootfs: Path) -> None:
    """Refuse a rootfs image that is empty or larger than a rootfs partition of ``layout``."""
    rootfs_size = file_size(rootfs, "rootfs image")
    if rootfs_size == 0:
        raise InputError(f"rootfs image {rootfs} is empty")
    if rootfs_size > layout.rootfs_size:
        raise ImageLayoutError(
            f"rootfs image {rootfs} is {rootfs_size} bytes "
            f"({-(-rootfs_size // MIB)} MiB) but each rootfs partition holds "
            f"{layout.rootfs_size} bytes ({layout.rootfs_size // MIB} MiB)",
            hint=raise_hint(TOTAL_SIZE, minimum_total_mb(layout.request, rootfs_size)),
        )


def check_spec(spec: ImageSpec) -> DiskLayout:
    """Validate every input and plan the layout; nothing is written."""
    return _check(spec).layout


def _check(spec: ImageSpec) -> _Checked:
    _one_of(spec.boot_dir, spec.boot_image, "--boot-dir or --boot-image", required=True)
    _one_of(spec.data_dir, spec.data_image, "--data-dir or --data-image", required=False)
    layout = plan_layout(spec.kind, spec.sizes, spec.disk_id)
    check_rootfs_fits(layout, spec.rootfs)
    _check_prebuilt_images(spec, layout)
    _check_directories_and_output(spec)
    bootloaders = tuple(place_bootloaders(layout, spec.bootloaders))
    boot_code = b""
    if spec.mbr_boot_code is not None:
        boot_code = read_mbr_boot_code(spec.mbr_boot_code, spec.mbr_boot_code_length)
    sources = [spec.rootfs, spec.boot_image, spec.data_image, spec.mbr_boot_code]
    for source in [*sources, *(b.path for b in bootloaders)]:
        if source is not None and spec.output.exists() and spec.output.samefile(source):
            raise UsageError(f"output {spec.output} is also an input")
    return _Checked(layout, bootloaders, boot_code)


def _check_prebuilt_images(spec: ImageSpec, layout: DiskLayout) -> None:
    for image, role, size_name, what in (
        (spec.boot_image, PartitionRole.BOOT, BOOT_SIZE, "boot image"),
        (spec.data_image, PartitionRole.DATA, DATA_SIZE, "data image"),
    ):
        if image is None:
            continue
        size = file_size(image, what)
        room = layout.partition(role).size
        if size > room:
            raise ImageLayoutError(
                f"{what} {image} is {size} bytes but the {role.value} partition holds {room}",
                hint=raise_hint(size_name),
            )


def _check_directories_and_output(spec: ImageSpec) -> None:
    directories = ((spec.boot_dir, "boot directory"), (spec.data_dir, "data directory"))
    for directory, what in directories:
        if directory is not None:
            check_dir(directory, what)
    check_output(
        spec.output, "write the image to a file, then flash it with 'bmaptool copy IMAGE DEVICE'"
    )
    for directory, what in directories:
        if directory is not None:
            check_not_inside(spec.output, directory, what)


def partition_tables(layout: DiskLayout, boot_code: bytes = b"") -> list[tuple[int, bytes]]:
    """The ``(offset, bytes)`` pieces of the partition table(s) of ``layout``.

    ``boot_code`` (at most 440 bytes) goes at the start of sector 0, the MBR of an sdimg or the
    protective MBR of a uefiimg.
    """
    if layout.kind is ImageKind.SDIMG:
        entries = [
            mbr.MbrEntry(
                mbr.TYPE_EFI_SYSTEM if p.role is PartitionRole.BOOT else mbr.TYPE_LINUX,
                p.start_sector,
                p.size_sectors,
                bootable=p.role is PartitionRole.BOOT,
            )
            for p in layout.partitions
        ]
        return [(0, mbr.with_boot_code(mbr.encode_mbr(entries, layout.ids.mbr_signature), boot_code))]
    gpt_entries = [
        gpt.GptEntry(
            gpt.ESP_TYPE if p.role is PartitionRole.BOOT else gpt.LINUX_FS_TYPE,
            layout.ids.partition_guids[p.number - 1],
            p.start_sector,
            p.start_sector + p.size_sectors - 1,
            GPT_NAMES[p.role],
        )
        for p in layout.partitions
    ]
    primary, backup = gpt.encode_gpt(layout.ids.disk_guid, layout.total_sectors, gpt_entries)
    return [
        (0, mbr.with_boot_code(mbr.protective_mbr(layout.total_sectors), boot_code)),
        (gpt.SECTOR, primary),
        (gpt.backup_offset(layout.total_sectors), backup),
    ]


def _copy_file(path: Path, fd: int, offset: int, length: int | None = None) -> int:
    """Copy ``length`` bytes of ``path`` (all of it by default) to ``offset``; bytes written."""
    src = os.open(path, os.O_RDONLY)
    try:
        return copy_sparse(src, fd, offset, os.fstat(src).st_size if length is None else length)
    finally:
        os.close(src)


@dataclass(frozen=True)
class _Parts:
    """The finished pieces of one image, in the files they are copied from."""

    boot: Path
    rootfs: Path
    data: Path


def _write_image(path: Path, checked: _Checked, parts: _Parts) -> int:
    """Write the sparse image to ``path``; returns the bytes written."""
    layout = checked.layout
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, layout.total_size)
        written = 0
        for offset, blob in partition_tables(layout, checked.boot_code):
            written += write_at(fd, blob, offset)
        for raw in checked.bootloaders:
            written += _copy_file(raw.path, fd, raw.offset, raw.size)
        written += _copy_file(parts.boot, fd, layout.partition(PartitionRole.BOOT).start)
        written += _copy_file(parts.rootfs, fd, layout.partition(PartitionRole.ROOTFS_A).start)
        written += _copy_file(parts.data, fd, layout.partition(PartitionRole.DATA).start)
    finally:
        os.close(fd)
    return written


def _make_filesystems(spec: ImageSpec, layout: DiskLayout, work: Path) -> _Parts:
    """The boot and data filesystems: the given images, or new ones made in ``work``."""
    made = {}
    for role, image, directory in (
        (PartitionRole.BOOT, spec.boot_image, spec.boot_dir),
        (PartitionRole.DATA, spec.data_image, spec.data_dir),
    ):
        if image is None:
            image = work / f"{role.value}.fs"
            size = layout.partition(role).size
            make_partition_filesystem(image, role, size, layout.ids, directory, work)
        made[role] = image
    return _Parts(made[PartitionRole.BOOT], spec.rootfs, made[PartitionRole.DATA])


def build_image(spec: ImageSpec) -> BuildResult:
    """Build the image described by ``spec``; see the module docstring for the guarantees."""
    checked = _check(spec)
    with work_dir(spec.output) as tmp:
        work = Path(tmp)
        parts = _make_filesystems(spec, checked.layout, work)
        partial = work / "image"
        written = _write_image(partial, checked, parts)
        bmap_path = spec.output.with_name(spec.output.name + ".bmap")
        summary = None
        if spec.bmap:
            summary = write_bmap(partial, work / "image.bmap")
        os.replace(partial, spec.output)
        if summary is not None:
            os.replace(summary.path, bmap_path)
            summary = replace(summary, path=bmap_path)
        elif bmap_path.exists():
            # bmaptool picks up IMAGE.bmap by itself: a stale one would flash the wrong blocks.
            bmap_path.unlink()
    return BuildResult(checked.layout, spec.output, written, summary, checked.bootloaders)
