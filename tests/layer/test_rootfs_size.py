"""The rootfs image oe-core makes for a pymender image fills a rootfs partition, not more.

oe-core sizes an ext4 rootfs image as IMAGE_ROOTFS_SIZE (or the content times
IMAGE_OVERHEAD_FACTOR, when larger) plus IMAGE_ROOTFS_EXTRA_SPACE, an arithmetic expression to
which core-image-minimal appends " + 4096" when systemd is a distro feature (image.bbclass's
get_rootfs_size; the stand-ins reproduce both). The kas configurations turn systemd on, so a
layer that sets IMAGE_ROOTFS_SIZE to the partition size makes a filesystem 4 MiB too large,
and the size check stops the disk image and the Artifact.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("bb")
from layer.bbparse import (
    FATAL_ERRORS,
    IMAGE,
    STANDINS,
    capture_warnings,
    configuration,
    kas_local_conf,
    layer_function,
    local_conf,
    recipe,
)

KAS_MACHINES = ["qemux86-64.yml", "qemuarm64.yml"]


def oe_core_rootfs_kib(image: object, rootfs: Path) -> int:
    """The size oe-core gives the rootfs image of ``image`` whose rootfs directory is ``rootfs``."""
    image.setVar("IMAGE_ROOTFS", str(rootfs))  # type: ignore[attr-defined]
    return int(layer_function("get_rootfs_size")(image))


@pytest.mark.parametrize("machine", KAS_MACHINES)
@pytest.mark.parametrize("release", ["scarthgap", "wrynose"])
def test_kas_rootfs_image_fills_the_partition_exactly(tmp_path: Path, machine: str, release: str) -> None:
    d = configuration(tmp_path, kas_local_conf(machine, f'OE_RELEASE = "{release}"'))
    image = recipe(d, IMAGE)[""]
    assert image.getVar("IMAGE_ROOTFS_EXTRA_SPACE").replace(" ", "") == "0+4096"
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    assert oe_core_rootfs_kib(image, rootfs) == int(image.getVar("PYMENDER_CALC_ROOTFS_SIZE"))


@pytest.mark.parametrize("extra", ["0", "10240", "1024 + 4096 * 2"])
def test_any_extra_space_is_taken_off(tmp_path: Path, extra: str) -> None:
    d = configuration(tmp_path, local_conf(f'IMAGE_ROOTFS_EXTRA_SPACE = "{extra}"'))
    image = recipe(d, IMAGE)[""]
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    partition = int(image.getVar("PYMENDER_CALC_ROOTFS_SIZE"))
    assert oe_core_rootfs_kib(image, rootfs) == partition
    # core-image-minimal's own " + 4096" comes on top of what local.conf sets
    assert image.getVar("IMAGE_ROOTFS_EXTRA_SPACE").replace(" ", "") == f"{extra}+4096".replace(" ", "")
    assert int(image.getVar("IMAGE_ROOTFS_SIZE")) == partition - eval(extra) - 4096


def test_sizes_follow_the_partition_variables(tmp_path: Path) -> None:
    d = configuration(tmp_path, local_conf('PYMENDER_STORAGE_TOTAL_SIZE_MB = "4096"',
                                           'PYMENDER_DATA_PART_SIZE_MB = "512"'))
    image = recipe(d, IMAGE)[""]
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    # (4096 - 16 - 512 - 16) / 2 MiB
    assert oe_core_rootfs_kib(image, rootfs) == int(image.getVar("PYMENDER_CALC_ROOTFS_SIZE")) == 1818624


def test_an_image_that_does_not_apply_keeps_its_own_size(tmp_path: Path) -> None:
    d = configuration(tmp_path, local_conf())
    initramfs = recipe(d, STANDINS / "recipes" / "bsp-initramfs-image.bb")[""]
    assert initramfs.getVar("IMAGE_ROOTFS_SIZE") == "16384"
    opted_out = configuration(tmp_path, local_conf('PYMENDER_IMAGE_ENABLE:pn-core-image-minimal = "0"'))
    assert recipe(opted_out, IMAGE)[""].getVar("IMAGE_ROOTFS_SIZE") == "8192"


def size_problem(image: object, image_bytes: int, content_kib: int) -> str:
    return str(layer_function("pymender_rootfs_size_problem")(image, image_bytes, content_kib))


def test_size_check_passes_the_image_oe_core_makes(tmp_path: Path) -> None:
    d = configuration(tmp_path, kas_local_conf("qemux86-64.yml"))
    image = recipe(d, IMAGE)[""]
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    assert size_problem(image, oe_core_rootfs_kib(image, rootfs) * 1024, 50000) == ""


def test_size_check_names_the_cause(tmp_path: Path) -> None:
    d = configuration(tmp_path, local_conf())
    image = recipe(d, IMAGE)[""]
    partition = int(image.getVar("PYMENDER_CALC_ROOTFS_SIZE"))
    too_much_content = size_problem(image, (partition + 8192) * 1024, partition + 4096)
    assert "its content needs" in too_much_content
    assert "raise PYMENDER_STORAGE_TOTAL_SIZE_MB to at least 1040" in too_much_content
    image.setVar("IMAGE_ROOTFS_SIZE", str(partition + 4096))
    requested = size_problem(image, (partition + 8192) * 1024, 1000)
    assert "IMAGE_ROOTFS_SIZE" in requested and "leave IMAGE_ROOTFS_SIZE to pymender" in requested


def test_too_little_room_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FATAL_ERRORS, match="no room for the rootfs partitions"), capture_warnings():
        d = configuration(tmp_path, local_conf('PYMENDER_STORAGE_TOTAL_SIZE_MB = "160"'))
        recipe(d, IMAGE)
