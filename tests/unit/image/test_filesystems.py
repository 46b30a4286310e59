from __future__ import annotations

import shutil
import struct
import uuid
from pathlib import Path

import pytest

from helpers import require_tool
from pymender.errors import ImageLayoutError, ToolError, UsageError
from pymender.image.filesystems import DEFAULT_EPOCH, make_ext4, make_fat, probe_filesystem, source_date_epoch

MIB = 1024 * 1024
FS_UUID = uuid.UUID("0b9c7a70-3b53-4f0e-a1d5-2a2e7a8b1c11")


def ext_superblock(compat: int, incompat: int, label: bytes) -> bytes:
    head = bytearray(4096)
    sb = 1024
    head[sb + 0x38 : sb + 0x3A] = b"\x53\xef"
    struct.pack_into("<II", head, sb + 0x5C, compat, incompat)
    head[sb + 0x68 : sb + 0x78] = FS_UUID.bytes
    head[sb + 0x78 : sb + 0x78 + len(label)] = label
    return bytes(head)


def fat_boot_sector(fat32: bool) -> bytes:
    head = bytearray(4096)
    head[510:512] = b"\x55\xaa"
    if fat32:
        head[0x52:0x5A] = b"FAT32   "
        struct.pack_into("<I", head, 0x43, 0x1234ABCD)
        head[0x47:0x52] = b"BOOT       "
    else:
        head[0x36:0x3E] = b"FAT16   "
        struct.pack_into("<I", head, 0x27, 0xCAFEF00D)
        head[0x2B:0x36] = b"NO NAME    "
    return bytes(head)


@pytest.mark.parametrize(
    ("head", "kind", "label", "fs_id"),
    [
        (ext_superblock(0x4, 0x40 | 0x2, b"rootfs"), "ext4", "rootfs", str(FS_UUID)),
        (ext_superblock(0x4, 0x2, b"old"), "ext3", "old", str(FS_UUID)),
        (ext_superblock(0x0, 0x2, b""), "ext2", "", str(FS_UUID)),
        (fat_boot_sector(fat32=True), "vfat", "BOOT", "1234-ABCD"),
        (fat_boot_sector(fat32=False), "vfat", "", "CAFE-F00D"),
        (bytes(4096), "empty", "", ""),
        (b"\x01" + bytes(4095), "unknown", "", ""),
    ],
)
def test_probe(head: bytes, kind: str, label: str, fs_id: str) -> None:
    info = probe_filesystem(head)
    assert (info.kind, info.label, info.fs_id) == (kind, label, fs_id)


def test_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert source_date_epoch() == DEFAULT_EPOCH
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert source_date_epoch() == 1700000000
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # mke2fs would take 0 for "now"
    assert source_date_epoch() == DEFAULT_EPOCH
    for bad in ("garbage", "-5"):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", bad)
        with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH"):
            source_date_epoch()


def test_fat_holds_the_files_with_label_and_volume_id(tmp_path: Path, boot_dir: Path) -> None:
    require_tool("mkfs.vfat")
    mtype = require_tool("mtype")
    image = tmp_path / "boot.vfat"
    make_fat(image, 8 * MIB, boot_dir, volume_id=0x1234ABCD)
    assert image.stat().st_size == 8 * MIB
    info = probe_filesystem(image.read_bytes()[:4096])
    assert (info.kind, info.label, info.fs_id) == ("vfat", "BOOT", "1234-ABCD")
    import subprocess

    out = subprocess.run(
        [mtype, "-i", str(image), "::/EFI/BOOT/BOOTX64.EFI"],
        capture_output=True,
        check=True,
        env={"MTOOLS_SKIP_CHECK": "1", "MTOOLSRC": "/dev/null"},
    ).stdout
    assert out == (boot_dir / "EFI" / "BOOT" / "BOOTX64.EFI").read_bytes()


def test_fat_is_reproducible(tmp_path: Path, boot_dir: Path) -> None:
    require_tool("mkfs.vfat")
    require_tool("mcopy")
    make_fat(tmp_path / "a", 8 * MIB, boot_dir, volume_id=1)
    make_fat(tmp_path / "b", 8 * MIB, boot_dir, volume_id=1)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_boot_files_that_do_not_fit_name_the_boot_size(tmp_path: Path) -> None:
    require_tool("mkfs.vfat")
    require_tool("mcopy")
    big = tmp_path / "big"
    big.mkdir()
    (big / "kernel").write_bytes(b"\x01" * (3 * MIB))
    with pytest.raises(ImageLayoutError) as caught:
        make_fat(tmp_path / "boot.vfat", 2 * MIB, big, volume_id=1)
    assert "--boot-size-mb" in caught.value.one_line()
    assert "do not fit in the 2 MiB boot partition" in caught.value.one_line()


def test_ext4_is_reproducible_and_uses_the_fixed_uuid(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tool("mkfs.ext4")
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    # mke2fs 1.47.0 copies each source file's access time, and the first read of a file whose
    # atime is not newer than its ctime updates it (relatime): read once so both builds agree.
    for path in data_dir.rglob("*"):
        if path.is_file():
            path.read_bytes()
    for name in "ab":
        work = tmp_path / f"w{name}"
        work.mkdir()
        make_ext4(tmp_path / name, 8 * MIB, data_dir, fs_uuid=FS_UUID, work_dir=work)
    first = (tmp_path / "a").read_bytes()
    assert first == (tmp_path / "b").read_bytes()
    info = probe_filesystem(first[:4096])
    assert (info.kind, info.label, info.fs_id) == ("ext4", "data", str(FS_UUID))


def test_ext4_without_a_directory_is_empty_but_valid(tmp_path: Path) -> None:
    require_tool("mkfs.ext4")
    make_ext4(tmp_path / "d", 8 * MIB, None, fs_uuid=FS_UUID, work_dir=tmp_path)
    assert probe_filesystem((tmp_path / "d").read_bytes()[:4096]).kind == "ext4"


def test_data_files_that_do_not_fit_name_the_data_size(tmp_path: Path) -> None:
    require_tool("mkfs.ext4")
    big = tmp_path / "big"
    big.mkdir()
    (big / "blob").write_bytes(b"\x01" * (6 * MIB))
    with pytest.raises(ImageLayoutError) as caught:
        make_ext4(tmp_path / "d", 4 * MIB, big, fs_uuid=FS_UUID, work_dir=tmp_path)
    assert "--data-size-mb" in caught.value.one_line()


def test_missing_program_names_its_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(ToolError) as caught:
        make_fat(tmp_path / "f", MIB, None, volume_id=1)
    assert caught.value.one_line() == "mkfs.vfat is not installed (install the dosfstools package)"


def test_failing_program_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    require_tool("mkfs.vfat")
    with pytest.raises(ToolError) as caught:
        # Too small for any FAT: mkfs.vfat refuses.
        make_fat(tmp_path / "f", 4096, None, volume_id=1)
    line = caught.value.one_line()
    assert line.startswith("mkfs.vfat failed: ")
    assert "\n" not in line
