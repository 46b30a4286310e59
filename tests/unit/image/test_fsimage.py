"""``pymender-image filesystem``: the boot or data filesystem on its own, as build makes it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from helpers import require_tool
from pymender.errors import ImageLayoutError, InputError, OutputError, PymenderError, UsageError
from pymender.image.build import ImageSpec, build_image
from pymender.image.fsimage import FilesystemSpec, build_filesystem, partition_size
from pymender.image.ids import derive_ids
from pymender.image.layout import ImageKind, PartitionRole, SizeRequest

MIB = 1024 * 1024
# Boot 3 MiB and data 7 MiB round up to 4 and 8 MiB with a 2 MiB alignment.
SIZES = SizeRequest(total_mb=80, boot_mb=3, data_mb=7, alignment=2 * MIB)


@pytest.fixture(autouse=True)
def _tools() -> None:
    for tool in ("mkfs.vfat", "mcopy", "mkfs.ext4"):
        require_tool(tool)


def settle_access_times(tree: Path) -> None:
    """mke2fs 1.47.0 copies access times, and a first read may change them (relatime)."""
    for path in tree.rglob("*"):
        if path.is_file():
            path.read_bytes()


@pytest.mark.parametrize("kind", list(ImageKind))
def test_build_from_a_directory_equals_build_from_the_filesystem_file(
    tmp_path: Path, rootfs: Path, boot_dir: Path, data_dir: Path, kind: ImageKind
) -> None:
    settle_access_times(data_dir)
    boot_fs = build_filesystem(
        FilesystemSpec(PartitionRole.BOOT, tmp_path / "boot.vfat", SIZES, boot_dir, "board-7")
    )
    data_fs = build_filesystem(
        FilesystemSpec(PartitionRole.DATA, tmp_path / "data.ext4", SIZES, data_dir, "board-7")
    )
    base = ImageSpec(kind, rootfs, tmp_path / "dirs.img", SIZES, disk_id="board-7")
    from_dirs = build_image(replace(base, boot_dir=boot_dir, data_dir=data_dir))
    from_files = build_image(
        replace(base, output=tmp_path / "files.img", boot_image=boot_fs.output,
                data_image=data_fs.output)
    )
    assert from_dirs.output.read_bytes() == from_files.output.read_bytes()
    # Each file is exactly its partition: size, label and id as build derives them.
    layout = from_dirs.layout
    assert boot_fs.size == layout.partition(PartitionRole.BOOT).size == 4 * MIB
    assert data_fs.size == layout.partition(PartitionRole.DATA).size == 8 * MIB
    assert boot_fs.output.stat().st_size == 4 * MIB
    assert data_fs.output.stat().st_size == 8 * MIB
    ids = derive_ids("board-7")
    serial = ids.boot_volume_id
    assert (boot_fs.filesystem, boot_fs.label, boot_fs.fs_id) == (
        "vfat", "BOOT", f"{serial >> 16:04X}-{serial & 0xFFFF:04X}"
    )
    assert (data_fs.filesystem, data_fs.label, data_fs.fs_id) == ("ext4", "data", str(ids.data_fs_uuid))


def test_empty_filesystems_equal_builds_without_directories(tmp_path: Path, rootfs: Path) -> None:
    data_fs = build_filesystem(FilesystemSpec(PartitionRole.DATA, tmp_path / "data.ext4", SIZES))
    boot_fs = build_filesystem(FilesystemSpec(PartitionRole.BOOT, tmp_path / "boot.vfat", SIZES))
    empty_boot = tmp_path / "empty"
    empty_boot.mkdir()
    base = ImageSpec(ImageKind.SDIMG, rootfs, tmp_path / "a.img", SIZES, boot_dir=empty_boot)
    plain = build_image(base).output.read_bytes()
    from_file = build_image(replace(base, output=tmp_path / "b.img", data_image=data_fs.output))
    assert from_file.output.read_bytes() == plain
    from_both = build_image(
        replace(base, output=tmp_path / "c.img", boot_dir=None, boot_image=boot_fs.output,
                data_image=data_fs.output)
    )
    assert from_both.output.read_bytes() == plain


def test_an_existing_output_is_replaced_only_when_complete(tmp_path: Path) -> None:
    out = tmp_path / "data.ext4"
    out.write_bytes(b"previous")
    big = tmp_path / "big"
    big.mkdir()
    (big / "blob").write_bytes(b"\x01" * (9 * MIB))
    with pytest.raises(ImageLayoutError) as caught:
        build_filesystem(FilesystemSpec(PartitionRole.DATA, out, SIZES, big))
    assert "(raise --data-size-mb; PYMENDER_DATA_PART_SIZE_MB in the Yocto layer)" in (
        caught.value.one_line()
    )
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big", "data.ext4"]  # no scratch left


def test_partition_size_follows_the_layout_rules() -> None:
    assert partition_size(PartitionRole.BOOT, SIZES) == 4 * MIB
    assert partition_size(PartitionRole.DATA, SizeRequest()) == 128 * MIB
    with pytest.raises(ImageLayoutError, match="sizes do not add up"):
        partition_size(PartitionRole.DATA, replace(SIZES, total_mb=16))


@pytest.mark.parametrize(
    ("changes", "error", "fragment"),
    [
        ({"role": PartitionRole.ROOTFS_A}, UsageError,
         "pymender-image makes no filesystem for the rootfs-a partition (choose --partition boot "
         "or data; the rootfs image comes from the build system)"),
        ({"source_dir": Path("nowhere")}, InputError, "data directory nowhere does not exist"),
        ({"output": Path("/nonexistent/dir/data.ext4")}, OutputError, "does not exist"),
        ({"output": Path("/dev/null")}, OutputError,
         "output /dev/null exists and is not a regular file (write the filesystem to a file)"),
        ({"sizes": replace(SIZES, alignment=1000)}, ImageLayoutError, "not a positive multiple"),
        ({"disk_id": "0x0"}, UsageError, "disk id 0x0 is not allowed"),
    ],
)
def test_bad_requests_are_refused_before_writing(
    tmp_path: Path,
    data_dir: Path,
    changes: dict[str, object],
    error: type[PymenderError],
    fragment: str,
) -> None:
    spec = FilesystemSpec(PartitionRole.DATA, tmp_path / "out.ext4", SIZES, data_dir)
    with pytest.raises(error) as caught:
        build_filesystem(replace(spec, **changes))  # type: ignore[arg-type]
    assert fragment in caught.value.one_line()
    assert not (tmp_path / "out.ext4").exists()


@pytest.mark.parametrize("role", [PartitionRole.BOOT, PartitionRole.DATA])
def test_an_output_inside_its_own_directory_is_refused(
    tmp_path: Path, boot_dir: Path, role: PartitionRole
) -> None:
    with pytest.raises(UsageError) as caught:
        build_filesystem(FilesystemSpec(role, boot_dir / "EFI" / "fs.img", SIZES, boot_dir))
    assert caught.value.one_line() == (
        f"output {boot_dir}/EFI/fs.img is inside the {role.value} directory {boot_dir} "
        "(write it outside the directory whose files go into it)"
    )
    assert not (boot_dir / "EFI" / "fs.img").exists()
