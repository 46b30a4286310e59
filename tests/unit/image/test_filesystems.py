from __future__ import annotations

import calendar
import os
import shutil
import struct
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import require_tool
from pymender.errors import ImageLayoutError, InputError, ToolError, UsageError
from pymender.image.filesystems import (
    DEFAULT_EPOCH,
    FAT_EARLIEST,
    PROBE_SIZE,
    FilesystemInfo,
    make_ext4,
    make_fat,
    probe_filesystem,
    source_date_epoch,
)

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


def squashfs_superblock() -> bytes:
    head = bytearray(PROBE_SIZE)
    head[0:4] = b"hsqs"
    struct.pack_into("<HH", head, 28, 4, 0)  # version 4.0
    return bytes(head)


def btrfs_superblock(label: bytes) -> bytes:
    head = bytearray(PROBE_SIZE)
    sb = 0x10000
    head[sb + 0x20 : sb + 0x30] = FS_UUID.bytes
    head[sb + 0x40 : sb + 0x48] = b"_BHRfS_M"
    head[sb + 0x12B : sb + 0x12B + len(label)] = label
    return bytes(head)


@pytest.mark.parametrize(
    ("head", "kind", "label", "fs_id"),
    [
        (squashfs_superblock(), "squashfs", "", ""),
        (btrfs_superblock(b"rootfs"), "btrfs", "rootfs", str(FS_UUID)),
        (btrfs_superblock(b""), "btrfs", "", str(FS_UUID)),
        # A btrfs magic past the end of what was read (a partition smaller than 68 KiB).
        (btrfs_superblock(b"x")[:0x10000 + 0x44], "unknown", "", ""),
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


def test_probe_recognises_images_of_the_real_tools(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "os-release").write_text("ID=probe\n")
    squashfs = tmp_path / "root.squashfs"
    subprocess.run([require_tool("mksquashfs"), str(tree), str(squashfs), "-quiet", "-noappend"],
                   check=True, capture_output=True)
    assert probe_filesystem(squashfs.read_bytes()[:PROBE_SIZE]) == FilesystemInfo("squashfs")
    btrfs = tmp_path / "root.btrfs"
    subprocess.run([require_tool("mkfs.btrfs"), "-q", "-M", "-L", "rootfs", "-U", str(FS_UUID),
                    "-r", str(tree), "--shrink", str(btrfs)], check=True, capture_output=True)
    assert probe_filesystem(btrfs.read_bytes()[:PROBE_SIZE]) == FilesystemInfo(
        "btrfs", "rootfs", str(FS_UUID)
    )


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


# --- Reproducible FAT: names, contents and SOURCE_DATE_EPOCH, nothing else -----------------


def fat_datetime(date: int, clock: int) -> int:
    """Seconds since 1970 of a FAT date and time field pair, read as UTC."""
    parts = ((date >> 9) + 1980, (date >> 5) & 15, date & 31, clock >> 11, (clock >> 5) & 63)
    return calendar.timegm((*parts, (clock & 31) * 2, 0, 0, 0))


def fat_entries(image: bytes) -> list[tuple[str, int, bytes]]:
    """``(path, attributes, 32-byte entry)`` of every short entry of a FAT12/16 image, in order.

    Enough of FAT for these tests: the fixed root directory, and subdirectories followed
    through their cluster chains. Long-name entries (attribute 0x0F) are left out.
    """
    bps, spc, reserved, fats, root_entries, _, _, fat_sectors = struct.unpack_from(
        "<HBHBHHBH", image, 11
    )
    bits = 12 if image[0x36:0x3B] == b"FAT12" else 16
    fat = image[reserved * bps : (reserved + fat_sectors) * bps]
    root = (reserved + fats * fat_sectors) * bps
    data = root + root_entries * 32
    cluster_size = spc * bps

    def chain(cluster: int) -> bytes:
        out = b""
        while 2 <= cluster < (0xFF8 if bits == 12 else 0xFFF8):
            start = data + (cluster - 2) * cluster_size
            out += image[start : start + cluster_size]
            if bits == 16:
                cluster = struct.unpack_from("<H", fat, 2 * cluster)[0]
            else:
                pair = struct.unpack_from("<H", fat, cluster * 3 // 2)[0]
                cluster = pair >> 4 if cluster & 1 else pair & 0xFFF
        return out

    found: list[tuple[str, int, bytes]] = []

    def walk(table: bytes, prefix: str) -> None:
        for at in range(0, len(table), 32):
            entry = table[at : at + 32]
            if entry[0] == 0:
                return
            if entry[0] == 0xE5 or entry[11] == 0x0F:
                continue
            base, ext = entry[:8].decode("cp850").rstrip(), entry[8:11].decode("cp850").rstrip()
            name = f"{base}.{ext}" if ext else base
            found.append((prefix + name, entry[11], entry))
            if entry[11] & 0x18 == 0x10 and name not in (".", ".."):
                walk(chain(struct.unpack_from("<H", entry, 26)[0]), f"{prefix}{name}/")

    walk(image[root:data], "/")
    return found


def entry_times(entry: bytes) -> tuple[int, int, int]:
    """(creation, last access, last write) of a directory entry, as seconds since 1970 UTC."""
    create_time, create_date, access_date, _, write_time, write_date = struct.unpack_from(
        "<HHHHHH", entry, 14
    )
    return (
        fat_datetime(create_date, create_time),
        fat_datetime(access_date, 0),
        fat_datetime(write_date, write_time),
    )


def boot_tree(root: Path, order: list[str], mtime: int) -> Path:
    """Boot files created in ``order`` (readdir order follows it on many filesystems)."""
    (root / "EFI" / "BOOT").mkdir(parents=True)
    for name in order:
        (root / "EFI" / "BOOT" / name).write_bytes(name.encode() * 100)
    (root / "grub.cfg").write_text("set timeout=0\n")
    (root / "grüße.txt").write_text("non-ASCII names are decoded as UTF-8\n")
    for path in [root, *root.rglob("*")]:
        os.utime(path, (mtime, mtime))
    return root


def test_fat_depends_only_on_names_contents_and_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tool("mkfs.vfat")
    require_tool("mcopy")
    epoch = 1_700_000_000  # 2023-11-14 22:13:20 UTC: even, since FAT counts in 2 s steps
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(epoch))
    names = ["BOOTX64.EFI", "grubx64.efi", "mmx64.efi", "a-long-file-name.conf"]
    first = boot_tree(tmp_path / "one", names, 1_600_000_001)
    second = boot_tree(tmp_path / "two", names[::-1], 1_234_567_890)
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    make_fat(tmp_path / "a", 8 * MIB, first, volume_id=1)
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    monkeypatch.setenv("LC_ALL", "C")
    make_fat(tmp_path / "b", 8 * MIB, second, volume_id=1)
    image = (tmp_path / "a").read_bytes()
    assert image == (tmp_path / "b").read_bytes()
    entries = fat_entries(image)
    assert [path for path, _, _ in entries] == [
        "/BOOT",  # the volume label
        "/EFI",
        "/EFI/.",
        "/EFI/..",
        "/EFI/BOOT",
        "/EFI/BOOT/.",
        "/EFI/BOOT/..",
        # Name order (code points: capitals first), whatever order the files were made in.
        "/EFI/BOOT/BOOTX64.EFI",
        "/EFI/BOOT/A-LONG~1.CON",
        "/EFI/BOOT/GRUBX64.EFI",
        "/EFI/BOOT/MMX64.EFI",
        "/GRUB.CFG",
        "/GRÜßE.TXT",  # grüße.txt, read as UTF-8 (not as bytes) even under LC_ALL=C
    ]
    for path, _, entry in entries:
        assert entry_times(entry) == (epoch, epoch - epoch % 86400, epoch), path


def test_fat_times_outside_what_fat_can_hold_are_clamped(
    tmp_path: Path, boot_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tool("mkfs.vfat")
    require_tool("mcopy")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "100000000")  # 1973: before FAT's 1980
    make_fat(tmp_path / "f", 8 * MIB, boot_dir, volume_id=1)
    times = {entry_times(entry) for _, _, entry in fat_entries((tmp_path / "f").read_bytes())}
    assert times == {(FAT_EARLIEST, FAT_EARLIEST, FAT_EARLIEST)}


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda root: os.mkfifo(root / "fifo"), "is neither a regular file nor a directory"),
        (lambda root: (root / "dangling").symlink_to("nowhere"), "is a link to nothing"),
        (lambda root: (root / "sub").symlink_to(".."), "links back to a directory that holds it"),
    ],
)
def test_boot_trees_fat_cannot_hold_are_refused(
    tmp_path: Path, boot_dir: Path, make: Callable[[Path], None], fragment: str
) -> None:
    require_tool("mkfs.vfat")
    require_tool("mcopy")
    make(boot_dir / "EFI")
    with pytest.raises(InputError) as caught:
        make_fat(tmp_path / "f", 8 * MIB, boot_dir, volume_id=1)
    assert fragment in caught.value.one_line()
    assert [p.name for p in tmp_path.iterdir() if ".stage." in p.name] == []


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
