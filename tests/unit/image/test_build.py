from __future__ import annotations

import os
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from helpers import require_tool
from pymender.errors import ImageLayoutError, InputError, OutputError, UsageError
from pymender.image import gpt, mbr
from pymender.image.build import ImageSpec, build_image, check_spec
from pymender.image.layout import ImageKind, PartitionRole, SizeRequest, alignment_problems
from pymender.image.raw import BootloaderFile
from pymender.image.show import read_image
from pymender.image.sparse import data_ranges

MIB = 1024 * 1024
SMALL = SizeRequest(total_mb=64, boot_mb=4, data_mb=8, alignment=MIB)


@pytest.fixture(autouse=True)
def _tools() -> None:
    for tool in ("mkfs.vfat", "mcopy", "mkfs.ext4"):
        require_tool(tool)


def spec(tmp_path: Path, rootfs: Path, boot_dir: Path | None, **changes: object) -> ImageSpec:
    base = ImageSpec(
        kind=ImageKind.SDIMG,
        rootfs=rootfs,
        output=tmp_path / "out.img",
        sizes=SMALL,
        boot_dir=boot_dir,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def nonzero(size: int, seed: int) -> bytes:
    """Bytes that are never zero, so every one of them must be written."""
    return bytes((i * 7 + seed) % 251 + 1 for i in range(size))


def partition_bytes(image: Path, start: int, size: int) -> bytes:
    with open(image, "rb") as file:
        file.seek(start)
        return file.read(size)


@pytest.mark.parametrize("kind", list(ImageKind))
def test_build_places_every_part(
    tmp_path: Path, rootfs: Path, boot_dir: Path, data_dir: Path, kind: ImageKind
) -> None:
    result = build_image(spec(tmp_path, rootfs, boot_dir, kind=kind, data_dir=data_dir))
    out = result.output
    assert out.stat().st_size == 64 * MIB
    layout = result.layout
    # Layout per the formula: (64 - 4 - 8 - 2) / 2 = 25 MiB per rootfs.
    assert [(p.start, p.size) for p in layout.partitions] == [
        (1 * MIB, 4 * MIB),
        (5 * MIB, 25 * MIB),
        (30 * MIB, 25 * MIB),
        (55 * MIB, 8 * MIB),
    ]
    a = layout.partition(PartitionRole.ROOTFS_A)
    content = rootfs.read_bytes()
    assert partition_bytes(out, a.start, len(content)) == content
    assert partition_bytes(out, a.start + len(content), a.size - len(content)) == bytes(
        a.size - len(content)
    )
    b = layout.partition(PartitionRole.ROOTFS_B)
    assert partition_bytes(out, b.start, b.size) == bytes(b.size)
    shown = read_image(out)
    assert shown.table == kind.table
    assert [(p.start, p.size) for p in shown.partitions] == [
        (p.start, p.size) for p in layout.partitions
    ]
    assert [p.filesystem for p in shown.partitions] == ["vfat", "ext4", "empty", "ext4"][:1] + [
        "unknown",
        "empty",
        "ext4",
    ]
    assert shown.partitions[0].label == "BOOT"
    assert shown.partitions[3].label == "data"
    assert shown.problems == ()
    assert alignment_problems([(p.start, p.size) for p in shown.partitions], SMALL) == []


def filesystem_image(tool: str, tree: Path, out: Path) -> Path:
    """A squashfs or btrfs image of ``tree``, made by the real tool."""
    if tool == "mksquashfs":
        argv = [require_tool(tool), str(tree), str(out), "-quiet", "-noappend"]
    else:
        argv = [require_tool(tool), "-q", "-M", "-L", "rootfs", "-r", str(tree), "--shrink", str(out)]
    subprocess.run(argv, check=True, capture_output=True)
    return out


@pytest.mark.parametrize(("tool", "kind"), [("mksquashfs", "squashfs"), ("mkfs.btrfs", "btrfs")])
def test_any_rootfs_filesystem_is_copied_as_it_is(
    tmp_path: Path, boot_dir: Path, data_dir: Path, tool: str, kind: str
) -> None:
    image = filesystem_image(tool, data_dir, tmp_path / f"rootfs.{kind}")
    content = image.read_bytes()
    result = build_image(spec(tmp_path, image, boot_dir))
    a = result.layout.partition(PartitionRole.ROOTFS_A)
    assert partition_bytes(result.output, a.start, len(content)) == content
    assert partition_bytes(result.output, a.start + len(content), a.size - len(content)) == bytes(
        a.size - len(content)
    )
    shown = read_image(result.output).partitions[1]
    assert (shown.filesystem, shown.label) == (kind, "" if kind == "squashfs" else "rootfs")


def test_sdimg_types_and_boot_flag(tmp_path: Path, rootfs: Path, boot_dir: Path) -> None:
    out = build_image(spec(tmp_path, rootfs, boot_dir, disk_id="0xc0ffee01")).output
    table = mbr.decode_mbr(partition_bytes(out, 0, 512))
    assert table is not None and table.disk_signature == 0xC0FFEE01
    assert [(e.type_id, e.bootable) for e in table.entries] == [
        (0xEF, True),
        (0x83, False),
        (0x83, False),
        (0x83, False),
    ]


def test_uefiimg_types_and_backup(tmp_path: Path, rootfs: Path, boot_dir: Path) -> None:
    result = build_image(spec(tmp_path, rootfs, boot_dir, kind=ImageKind.UEFIIMG))
    fd = os.open(result.output, os.O_RDONLY)
    try:
        table = gpt.decode_gpt(lambda o, n: os.pread(fd, n, o), result.layout.total_sectors)
    finally:
        os.close(fd)
    assert table is not None and table.problems == ()
    assert table.disk_guid == result.layout.ids.disk_guid
    assert [e.type_guid for _, e in table.entries] == [gpt.ESP_TYPE] + [gpt.LINUX_FS_TYPE] * 3
    assert [e.name for _, e in table.entries] == ["boot", "rootfs-a", "rootfs-b", "data"]
    assert [str(e.unique_guid) for _, e in table.entries] == [
        p.partuuid for p in result.layout.partitions
    ]


def test_image_is_sparse_and_bytes_written_counts_only_data(
    tmp_path: Path, rootfs: Path, boot_dir: Path
) -> None:
    result = build_image(spec(tmp_path, rootfs, boot_dir))
    allocated = result.output.stat().st_blocks * 512
    # 3 MiB of rootfs data, a small FAT and an empty ext4: far below the 64 MiB size.
    assert 3 * MIB <= result.bytes_written < 8 * MIB
    assert allocated < 12 * MIB
    # The zero-filled MiB at the end of the rootfs and its hole became holes too.
    fd = os.open(result.output, os.O_RDONLY)
    try:
        ranges = list(data_ranges(fd, 64 * MIB))
    finally:
        os.close(fd)
    a = result.layout.partition(PartitionRole.ROOTFS_A).start
    for start, end in ranges:
        assert not (start < a + 4 * MIB and end > a + 2 * MIB + 4096), "hole was filled"
        assert not (start < a + 6 * MIB and end > a + 5 * MIB + 4096), "zeros were written"


def test_same_inputs_give_same_bytes_and_disk_id_changes_them(
    tmp_path: Path, rootfs: Path, boot_dir: Path, data_dir: Path
) -> None:
    for path in data_dir.rglob("*"):
        if path.is_file():
            path.read_bytes()  # settle access times (mke2fs 1.47.0 copies them)
    base = spec(tmp_path, rootfs, boot_dir, kind=ImageKind.UEFIIMG, data_dir=data_dir)
    one = build_image(replace(base, output=tmp_path / "one")).output.read_bytes()
    two = build_image(replace(base, output=tmp_path / "two")).output.read_bytes()
    assert one == two
    other = build_image(replace(base, output=tmp_path / "three", disk_id="board-2"))
    assert other.output.read_bytes() != one


def test_prebuilt_boot_and_data_images_are_copied(tmp_path: Path, rootfs: Path) -> None:
    boot = tmp_path / "boot.vfat"
    boot.write_bytes(b"B" * 1000)
    data = tmp_path / "data.img"
    data.write_bytes(b"D" * 5000)
    result = build_image(
        ImageSpec(ImageKind.SDIMG, rootfs, tmp_path / "o", SMALL, boot_image=boot, data_image=data)
    )
    layout = result.layout
    assert partition_bytes(result.output, layout.partitions[0].start, 1001) == b"B" * 1000 + b"\0"
    assert partition_bytes(result.output, layout.partitions[3].start, 5000) == b"D" * 5000


def test_bmap_written_and_stale_bmap_removed(tmp_path: Path, rootfs: Path, boot_dir: Path) -> None:
    result = build_image(spec(tmp_path, rootfs, boot_dir, bmap=True))
    assert result.bmap is not None
    bmap = tmp_path / "out.img.bmap"
    assert result.bmap.path == bmap and bmap.is_file()
    assert result.bmap.blocks == 64 * MIB // 4096
    assert 0 < result.bmap.mapped_blocks < result.bmap.blocks
    build_image(spec(tmp_path, rootfs, boot_dir, bmap=False))
    assert not bmap.exists()


def test_default_alignment_on_a_sparse_gigabyte(tmp_path: Path, rootfs: Path, boot_dir: Path) -> None:
    result = build_image(
        spec(tmp_path, rootfs, boot_dir, sizes=SizeRequest(), kind=ImageKind.UEFIIMG)
    )
    assert result.output.stat().st_size == 1024 * MIB
    assert [(p.start // MIB, p.size // MIB) for p in result.layout.partitions] == [
        (8, 16),
        (24, 432),
        (456, 432),
        (888, 128),
    ]
    assert result.output.stat().st_blocks * 512 < 32 * MIB


@pytest.mark.parametrize(("kind", "sector"), [(ImageKind.SDIMG, 2), (ImageKind.UEFIIMG, 34)])
def test_bootloader_files_are_written_counted_and_mapped(
    tmp_path: Path, rootfs: Path, boot_dir: Path, kind: ImageKind, sector: int
) -> None:
    spl = tmp_path / "spl.bin"
    spl.write_bytes(nonzero(5000, 11))
    uboot = tmp_path / "u-boot.img"
    uboot.write_bytes(nonzero(300 * 1024, 13))
    plain = build_image(spec(tmp_path, rootfs, boot_dir, kind=kind, output=tmp_path / "plain"))
    result = build_image(
        spec(
            tmp_path, rootfs, boot_dir, kind=kind, bmap=True,
            bootloaders=(BootloaderFile(uboot, 1024), BootloaderFile(spl, sector)),
        )
    )
    image = result.output.read_bytes()
    assert image[sector * 512 : sector * 512 + 5000] == spl.read_bytes()
    assert image[1024 * 512 : 1024 * 512 + 300 * 1024] == uboot.read_bytes()
    # Nothing else changed: the tables, the partitions and the gaps are those of a plain build.
    others = bytearray(image)
    others[sector * 512 : sector * 512 + 5000] = bytes(5000)
    others[1024 * 512 : 1024 * 512 + 300 * 1024] = bytes(300 * 1024)
    assert others == plain.output.read_bytes()
    assert result.bytes_written == plain.bytes_written + 5000 + 300 * 1024
    assert [(b.path, b.offset, b.size) for b in result.bootloaders] == [
        (spl, sector * 512, 5000),
        (uboot, 1024 * 512, 300 * 1024),
    ]
    assert result.bmap is not None
    ranges = re.findall(r"> (\d+)(?:-(\d+))? </Range>", result.bmap.path.read_text())
    mapped = {block for first, last in ranges for block in range(int(first), int(last or first) + 1)}
    for raw in result.bootloaders:
        assert set(range(raw.offset // 4096, (raw.end - 1) // 4096 + 1)) <= mapped


@pytest.mark.parametrize("kind", list(ImageKind))
@pytest.mark.parametrize("length", [440, 100])
def test_mbr_boot_code_keeps_signature_and_table(
    tmp_path: Path, rootfs: Path, boot_dir: Path, kind: ImageKind, length: int
) -> None:
    boot_img = tmp_path / "boot.img"
    boot_img.write_bytes(nonzero(512, 17))  # its own "signature" and "table" must not get in
    plain = build_image(spec(tmp_path, rootfs, boot_dir, kind=kind, output=tmp_path / "plain"))
    result = build_image(
        spec(tmp_path, rootfs, boot_dir, kind=kind, mbr_boot_code=boot_img,
             mbr_boot_code_length=length)
    )
    image = result.output.read_bytes()
    expected = plain.output.read_bytes()
    assert image[:length] == boot_img.read_bytes()[:length]
    assert image[length:] == expected[length:]
    assert result.bytes_written == plain.bytes_written
    shown = read_image(result.output)
    assert (shown.disk_id, shown.partitions) == (
        read_image(plain.output).disk_id,
        read_image(plain.output).partitions,
    )


# --- Bad input: refused before anything is written ----------------------------------------


def assert_nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "out.img").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.img")]


def test_rootfs_too_large_names_total_and_minimum(tmp_path: Path, boot_dir: Path) -> None:
    big = tmp_path / "big.ext4"
    with open(big, "wb") as file:
        file.truncate(26 * MIB)
    with pytest.raises(ImageLayoutError) as caught:
        build_image(spec(tmp_path, big, boot_dir))
    line = caught.value.one_line()
    assert "each rootfs partition holds 26214400 bytes (25 MiB)" in line
    assert "(raise --total-size-mb to at least 66; PYMENDER_STORAGE_TOTAL_SIZE_MB in the Yocto layer)" in line
    assert_nothing_written(tmp_path)
    # ...and the minimum it names is enough.
    check_spec(spec(tmp_path, big, boot_dir, sizes=replace(SMALL, total_mb=66)))


@pytest.mark.parametrize(
    ("changes", "error", "fragment"),
    [
        ({"rootfs": Path("missing.ext4")}, InputError, "rootfs image missing.ext4 does not exist"),
        ({"boot_dir": Path("nowhere")}, InputError, "boot directory nowhere does not exist"),
        ({"data_dir": Path("nowhere")}, InputError, "data directory nowhere does not exist"),
        ({"boot_dir": None}, UsageError, "give one of --boot-dir or --boot-image"),
        ({"boot_image": Path("x")}, UsageError, "not both"),
        ({"sizes": replace(SMALL, alignment=1000)}, ImageLayoutError, "not a positive multiple"),
        ({"sizes": replace(SMALL, total_mb=12)}, ImageLayoutError, "sizes do not add up"),
        ({"output": Path("/nonexistent/dir/out.img")}, OutputError, "does not exist"),
        ({"output": Path("/dev/null")}, OutputError, "is not a regular file"),
        ({"disk_id": ""}, UsageError, "disk id"),
        ({"bootloaders": (BootloaderFile(Path("nowhere.bin"), 2),)}, InputError,
         "bootloader file nowhere.bin does not exist"),
        ({"bootloaders": (BootloaderFile(Path(__file__), 0),)}, ImageLayoutError,
         "inside the MBR (sector 0)"),
        ({"bootloaders": (BootloaderFile(Path(__file__), 2040),)}, ImageLayoutError,
         "past the start of partition 1 at byte 1048576"),
        ({"bootloaders": (BootloaderFile(Path(__file__), 2), BootloaderFile(Path(__file__), 3))},
         ImageLayoutError, "overlap"),
        ({"mbr_boot_code": Path("nowhere.img")}, InputError, "MBR boot code nowhere.img does not exist"),
        ({"mbr_boot_code": Path(__file__), "mbr_boot_code_length": 446}, UsageError,
         "--mbr-boot-code-length 446 is not between 1 and 440"),
    ],
)
def test_bad_input_is_refused(
    tmp_path: Path,
    rootfs: Path,
    boot_dir: Path,
    changes: dict[str, object],
    error: type[Exception],
    fragment: str,
) -> None:
    with pytest.raises(error) as caught:
        build_image(replace(spec(tmp_path, rootfs, boot_dir), **changes))  # type: ignore[arg-type]
    assert fragment in str(caught.value)
    assert_nothing_written(tmp_path)


def test_empty_rootfs_and_directory_as_rootfs_are_refused(tmp_path: Path, boot_dir: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="is empty"):
        build_image(spec(tmp_path, empty, boot_dir))
    with pytest.raises(InputError, match="not a regular file"):
        build_image(spec(tmp_path, boot_dir, boot_dir))


def test_prebuilt_images_too_large_name_their_size(tmp_path: Path, rootfs: Path) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as file:
        file.truncate(9 * MIB)
    with pytest.raises(ImageLayoutError) as caught:
        build_image(spec(tmp_path, rootfs, None, boot_image=big))
    assert "boot partition holds 4194304 (raise --boot-size-mb" in caught.value.one_line()
    with pytest.raises(ImageLayoutError) as caught:
        build_image(spec(tmp_path, rootfs, tmp_path, data_image=big))
    assert "data partition holds 8388608 (raise --data-size-mb" in caught.value.one_line()
    assert_nothing_written(tmp_path)


def test_output_inside_a_source_directory_is_refused(
    tmp_path: Path, rootfs: Path, boot_dir: Path, data_dir: Path
) -> None:
    for directory, what in ((boot_dir, "boot directory"), (data_dir, "data directory")):
        output = directory / "out.img"
        with pytest.raises(UsageError) as caught:
            build_image(spec(tmp_path, rootfs, boot_dir, data_dir=data_dir, output=output))
        assert caught.value.one_line().startswith(f"output {output} is inside the {what} {directory}")
        assert not output.exists()


def test_output_that_is_an_input_is_refused(tmp_path: Path, rootfs: Path, boot_dir: Path) -> None:
    with pytest.raises(UsageError, match="also an input"):
        build_image(spec(tmp_path, rootfs, boot_dir, output=rootfs))
    spl = tmp_path / "spl.bin"
    spl.write_bytes(b"SPL")
    with pytest.raises(UsageError, match="also an input"):
        build_image(spec(tmp_path, rootfs, boot_dir, output=spl, bootloaders=(BootloaderFile(spl, 2),)))
    assert spl.read_bytes() == b"SPL"


def test_failed_build_keeps_the_old_output(
    tmp_path: Path, rootfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.img"
    out.write_bytes(b"previous image")
    big = tmp_path / "bigboot"
    big.mkdir()
    (big / "kernel").write_bytes(b"\x01" * (5 * MIB))
    with pytest.raises(ImageLayoutError, match="boot files"):
        build_image(spec(tmp_path, rootfs, big))
    assert out.read_bytes() == b"previous image"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.img")]
