"""Growing /data to the end of the disk: the layer's pymender-grow-data on real block devices.

A disk image written to a larger disk leaves the rest of the disk unused; the layer's unit runs
pymender-grow-data before /data is mounted, and the filesystem then grows while mounted
(systemd-growfs). Here the script runs against a loop device holding a pymender-image disk
image with room behind it, on MBR and GPT, as root (it changes a partition table). The test
images boot with the same script and unit (tests/e2e test the whole boot).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import require_tool
from layer.bbparse import LAYER

SCRIPT = LAYER / "recipes-pymender" / "pymender-growfs-data" / "files" / "pymender-grow-data"
MIB = 1024 * 1024


def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], check=check, capture_output=True, text=True)


class Disk:
    """A loop device on a disk image, with its partitions known to the kernel and /dev nodes."""

    def __init__(self, image: Path) -> None:
        self.device = run("losetup", "--find", "--show", image).stdout.strip()
        self.name = Path(self.device).name
        run("partx", "--add", self.device, check=False)
        self.nodes: list[Path] = []
        for part in sorted(Path("/sys/class/block").glob(f"{self.name}p*")):
            node = Path("/dev") / part.name
            if not node.exists():
                major, minor = (part / "dev").read_text().strip().split(":")
                os.mknod(node, 0o600 | 0o060000, os.makedev(int(major), int(minor)))
                self.nodes.append(node)

    def partition(self, number: int) -> str:
        return f"{self.device}p{number}"

    def sectors(self, number: int) -> tuple[int, int]:
        """(start, size) of partition ``number`` as the kernel sees it."""
        sys = Path("/sys/class/block") / f"{self.name}p{number}"
        return int((sys / "start").read_text()), int((sys / "size").read_text())

    def close(self) -> None:
        run("partx", "--delete", self.device, check=False)
        run("losetup", "--detach", self.device, check=False)
        for node in self.nodes:
            node.unlink(missing_ok=True)


@pytest.fixture
def make_disk(tmp_path: Path) -> Iterator[object]:
    for tool in ("losetup", "partx", "sfdisk", "e2fsck", "mkfs.vfat", "mcopy"):
        require_tool(tool)
    if os.geteuid() != 0:
        pytest.skip("needs root: loop devices and partition tables")
    disks: list[Disk] = []

    def make(layout: str, grow_mb: int, alignment: int = MIB) -> Disk:
        work = tmp_path / layout
        (work / "boot").mkdir(parents=True)
        (work / "data" / "pymender").mkdir(parents=True)
        (work / "data" / "pymender" / "device_type").write_text("device_type=test\n")
        rootfs = work / "rootfs.img"
        rootfs.write_bytes(b"\0" * MIB)
        image = work / "disk.img"
        tool = Path(sys.executable).parent / "pymender-image"
        run(tool, "build", "--layout", layout, "--rootfs", rootfs, "--boot-dir", work / "boot",
            "--data-dir", work / "data", "--total-size-mb", "64", "--boot-size-mb", "4",
            "--data-size-mb", "8", "--alignment", str(alignment), "-q", "-o", image)
        with image.open("r+b") as disk:
            disk.truncate(disk.seek(0, 2) + grow_mb * MIB)
        try:
            disks.append(Disk(image))
        except (subprocess.CalledProcessError, OSError) as err:
            if os.environ.get("CI"):
                raise
            pytest.skip(f"no loop devices here: {err}")
        return disks[-1]

    yield make
    for disk in disks:
        disk.close()


def grow(disk: Disk, number: int = 4) -> str:
    return run("sh", SCRIPT, disk.partition(number), str(MIB)).stdout


@pytest.mark.parametrize("layout", ["sdimg", "uefiimg"])
def test_data_grows_to_the_end_of_the_disk_once(make_disk: object, layout: str) -> None:
    disk = make_disk(layout, 100)  # type: ignore[operator]
    start, size = disk.sectors(4)
    assert size == 8 * 2048
    assert "growing" in grow(disk)
    total = int((Path("/sys/class/block") / disk.name / "size").read_text())
    new_start, new_size = disk.sectors(4)
    reserved = 33 if layout == "uefiimg" else 0
    assert new_start == start
    assert total - reserved - (new_start + new_size) < 2048  # within the last MiB
    assert new_size > (8 + 100) * 2048 - 4096
    # The table on the disk says the same (and GPT's backup header moved to the new end).
    table = run("sfdisk", "--dump", disk.device).stdout
    assert f"size={new_size:>12}" in table
    assert run("sfdisk", "--verify", disk.device).returncode == 0
    # The filesystem is intact (it grows later, mounted).
    assert run("e2fsck", "-fn", disk.partition(4), check=False).returncode == 0
    # Every later boot: nothing to do.
    assert grow(disk) == ""
    assert disk.sectors(4) == (new_start, new_size)


@pytest.mark.parametrize("layout", ["sdimg", "uefiimg"])
def test_a_disk_of_the_images_size_is_left_alone(make_disk: object, layout: str) -> None:
    """The image ends one alignment before the end of the disk (room for a GPT's backup):
    that is no reason to write a partition table on a device's first boot."""
    disk = make_disk(layout, 0)  # type: ignore[operator]
    before = run("sfdisk", "--dump", disk.device).stdout
    assert grow(disk) == ""
    assert run("sfdisk", "--dump", disk.device).stdout == before


def test_the_default_alignment_is_the_images_own_end(make_disk: object) -> None:
    disk = make_disk("sdimg", 0, 8 * MIB)  # type: ignore[operator]
    before = run("sfdisk", "--dump", disk.device).stdout
    assert run("sh", SCRIPT, disk.partition(4)).stdout == ""
    assert run("sfdisk", "--dump", disk.device).stdout == before


def test_only_the_last_partition_grows(make_disk: object) -> None:
    disk = make_disk("sdimg", 100)  # type: ignore[operator]
    before = run("sfdisk", "--dump", disk.device).stdout
    assert "not the last one" in grow(disk, 3)
    assert run("sfdisk", "--dump", disk.device).stdout == before


def test_a_path_that_is_no_partition_changes_nothing(tmp_path: Path) -> None:
    require_tool("sfdisk")
    assert "nothing to grow" in run("sh", SCRIPT, tmp_path / "missing").stdout
