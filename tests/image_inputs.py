"""Small inputs for disk image tests: a rootfs image, boot and data trees (fixtures shared by
the image library's tests and the image command's tests, through their conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MIB = 1024 * 1024


def patterned(size: int, seed: int = 1) -> bytes:
    """Non-zero, position-dependent bytes, so a misplaced copy cannot go unnoticed."""
    block = bytes((i * 7 + seed) % 251 + 1 for i in range(4096))
    out = bytearray()
    for index in range(size // 4096):
        out += index.to_bytes(4, "little") + block[4:]
    return bytes(out)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A 6 MiB 'rootfs image': data, a 2 MiB hole, data, and a zero-filled (not sparse) MiB."""
    path = tmp_path / "rootfs.img"
    with open(path, "wb") as file:
        file.write(patterned(2 * MIB, 3))
        file.seek(4 * MIB)
        file.write(patterned(1 * MIB, 5))
        file.write(bytes(MIB))
    assert path.stat().st_size == 6 * MIB
    return path


@pytest.fixture
def boot_dir(tmp_path: Path) -> Path:
    root = tmp_path / "boot"
    (root / "EFI" / "BOOT").mkdir(parents=True)
    (root / "EFI" / "BOOT" / "BOOTX64.EFI").write_bytes(b"MZ" + patterned(8192, 9))
    (root / "grub.cfg").write_text("set timeout=0\n")
    fixed = 1_600_000_000
    for path in [root, *root.rglob("*")]:
        os.utime(path, (fixed, fixed))
    return root


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "pymender").mkdir(parents=True)
    (root / "pymender" / "device_type").write_text("device_type=qemux86-64\n")
    fixed = 1_600_000_000
    for path in [root, *root.rglob("*")]:
        os.utime(path, (fixed, fixed))
    return root
