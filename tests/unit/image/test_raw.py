"""Raw bootloader files and MBR boot code: where they may go, and the one-line refusals."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pymender.errors import ImageLayoutError, InputError, PymenderError, UsageError
from pymender.image.layout import ImageKind, SizeRequest, plan_layout
from pymender.image.raw import BootloaderFile, parse_bootloader, place_bootloaders, read_mbr_boot_code

MIB = 1024 * 1024
# Partition 1 starts one alignment (1 MiB) into the disk: sector 2048.
SIZES = SizeRequest(total_mb=64, boot_mb=4, data_mb=8, alignment=MIB)


def blob(tmp_path: Path, name: str, size: int) -> Path:
    path = tmp_path / name
    path.write_bytes(b"\xa5" * size)
    return path


@pytest.mark.parametrize(
    ("text", "path", "sector"),
    [
        ("u-boot.bin:2", "u-boot.bin", 2),
        ("/deploy/dir:with:colons/spl.bin:64", "/deploy/dir:with:colons/spl.bin", 64),
        ("spl.img:0x40", "spl.img", 64),
        ("spl.img:0", "spl.img", 0),  # parsed; the layout check refuses it
    ],
)
def test_parse_splits_on_the_last_colon(text: str, path: str, sector: int) -> None:
    assert parse_bootloader(text) == BootloaderFile(Path(path), sector)
    assert parse_bootloader(text).offset == sector * 512


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("u-boot.bin", "is not FILE:SECTOR"),
        (":2", "is not FILE:SECTOR"),
        ("u-boot.bin:", "'' is not a sector number"),
        ("u-boot.bin:two", "'two' is not a sector number"),
        ("C:/u-boot.bin", "'/u-boot.bin' is not a sector number"),
        ("u-boot.bin:-1", "the sector cannot be negative"),
    ],
)
def test_parse_refuses_what_is_not_file_and_sector(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_bootloader(text)
    line = caught.value.one_line()
    assert fragment in line
    assert "e.g. u-boot-with-spl.bin:2" in line


@pytest.mark.parametrize(
    ("kind", "first"),
    [(ImageKind.SDIMG, 1), (ImageKind.UEFIIMG, 34)],
)
def test_first_sector_after_the_table_and_last_before_partition_one(
    tmp_path: Path, kind: ImageKind, first: int
) -> None:
    layout = plan_layout(kind, SIZES)
    head = blob(tmp_path, "head", 512)
    tail = blob(tmp_path, "tail", 1000)  # sectors 2046-2047: ends exactly at partition 1
    placed = place_bootloaders(
        layout, [BootloaderFile(tail, 2046), BootloaderFile(head, first)]
    )
    assert [(p.path, p.offset, p.size, p.end) for p in placed] == [
        (head, first * 512, 512, (first + 1) * 512),
        (tail, 2046 * 512, 1000, 2046 * 512 + 1000),
    ]
    assert placed[1].sectors == "2046-2047"


@pytest.mark.parametrize(
    ("kind", "sector", "fragment", "hint"),
    [
        (ImageKind.SDIMG, 0, "would start at sector 0, inside the MBR (sector 0)",
         "place it at sector 1 or later"),
        (ImageKind.UEFIIMG, 33, "would start at sector 33, inside the GPT (sectors 0-33)",
         "place it at sector 34 or later; a board that reads it from an earlier sector needs "
         "--layout sdimg"),
        (ImageKind.UEFIIMG, 2, "would start at sector 2, inside the GPT", "sector 34 or later"),
    ],
)
def test_a_file_inside_the_partition_table_is_refused(
    tmp_path: Path, kind: ImageKind, sector: int, fragment: str, hint: str
) -> None:
    spl = blob(tmp_path, "spl", 100)
    with pytest.raises(ImageLayoutError) as caught:
        place_bootloaders(plan_layout(kind, SIZES), [BootloaderFile(spl, sector)])
    line = caught.value.one_line()
    assert f"bootloader file {spl} {fragment}" in line
    assert hint in line


def test_a_file_reaching_partition_one_names_the_reserved_space_to_ask_for(tmp_path: Path) -> None:
    uboot = blob(tmp_path, "u-boot.bin", MIB)  # from sector 2: one KiB too long
    layout = plan_layout(ImageKind.SDIMG, SIZES)
    with pytest.raises(ImageLayoutError) as caught:
        place_bootloaders(layout, [BootloaderFile(uboot, 2)])
    assert caught.value.one_line() == (
        f"bootloader file {uboot} (sectors 2-2049) ends at byte {MIB + 1024}, past the start "
        f"of partition 1 at byte {MIB} (raise --reserved-bootloader-bytes to at least {MIB}; "
        "PYMENDER_RESERVED_SPACE_BOOTLOADER_DATA in the Yocto layer)"
    )
    # ...and what it names is enough.
    bigger = plan_layout(ImageKind.SDIMG, replace(SIZES, reserved_bytes=MIB))
    assert place_bootloaders(bigger, [BootloaderFile(uboot, 2)])[0].end == MIB + 1024


def test_overlapping_files_are_refused_whatever_their_order(tmp_path: Path) -> None:
    spl = blob(tmp_path, "spl", 2 * 512 + 1)  # sectors 2-4
    uboot = blob(tmp_path, "u-boot", 512)
    layout = plan_layout(ImageKind.SDIMG, SIZES)
    with pytest.raises(ImageLayoutError) as caught:
        place_bootloaders(layout, [BootloaderFile(uboot, 4), BootloaderFile(spl, 2)])
    assert caught.value.one_line() == (
        f"bootloader files {spl} (sectors 2-4) and {uboot} (sectors 4-4) overlap "
        "(move one of them to another sector with its --bootloader FILE:SECTOR)"
    )
    # Touching is not overlapping.
    assert len(place_bootloaders(layout, [BootloaderFile(uboot, 5), BootloaderFile(spl, 2)])) == 2


def test_missing_empty_and_non_regular_files_are_refused(tmp_path: Path) -> None:
    layout = plan_layout(ImageKind.SDIMG, SIZES)
    empty = blob(tmp_path, "empty", 0)
    for path, error, fragment in (
        (tmp_path / "missing", InputError, "does not exist"),
        (empty, InputError, "is empty"),
        (tmp_path, InputError, "is not a regular file"),
    ):
        with pytest.raises(error) as caught:
            place_bootloaders(layout, [BootloaderFile(path, 2)])
        assert caught.value.one_line() == f"bootloader file {path} {fragment}"


def test_boot_code_is_the_first_bytes_of_the_file(tmp_path: Path) -> None:
    code = tmp_path / "boot.img"
    code.write_bytes(bytes(range(256)) * 2)  # 512 bytes, like GRUB's boot.img
    assert read_mbr_boot_code(code) == (bytes(range(256)) * 2)[:440]
    assert read_mbr_boot_code(code, 100) == bytes(range(100))
    assert read_mbr_boot_code(code, 1) == b"\0"


@pytest.mark.parametrize(
    ("size", "length", "error", "line"),
    [
        (512, 441, UsageError, "--mbr-boot-code-length 441 is not between 1 and 440 (bytes "
         "440-511 of sector 0 hold the disk signature and the partition table, which "
         "pymender-image writes itself)"),
        (512, 446, UsageError, "--mbr-boot-code-length 446 is not between 1 and 440"),
        (512, 0, UsageError, "--mbr-boot-code-length 0 is not between 1 and 440"),
        (300, 440, UsageError, "MBR boot code {path} is 300 bytes, shorter than the 440 bytes to "
         "write (give the boot code file itself (e.g. GRUB's boot.img) or lower "
         "--mbr-boot-code-length)"),
        (0, 440, UsageError, "MBR boot code {path} is 0 bytes, shorter than the 440 bytes"),
        (None, 440, InputError, "MBR boot code {path} does not exist"),
    ],
)
def test_boot_code_refusals(
    tmp_path: Path, size: int | None, length: int, error: type[PymenderError], line: str
) -> None:
    path = tmp_path / "boot.img"
    if size is not None:
        path.write_bytes(b"\x90" * size)
    with pytest.raises(error) as caught:
        read_mbr_boot_code(path, length)
    assert caught.value.one_line().startswith(line.format(path=path))
