"""Every variable a task uses is part of its signature, and no machine setting reaches the updater.

BitBake reruns a task only when its signature (base hash) changes; a variable that a task reads
without BitBake knowing (a getVar on a computed name, for example) leaves the old result in
place when it changes. So: change each PYMENDER_* variable (and the oe-core ones the layer
reads) in turn and check that exactly the tasks that use it get a new signature. And the
pymender package is the same for every machine of one CPU architecture (the machine's
configuration is in pymender-config), so no machine or storage setting may change the
signature of any of its tasks, and none may change pymender-native's at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

pytest.importorskip("bb")
from layer.bbparse import IMAGE, LAYER, STANDINS, UPDATER, configuration, local_conf, recipe, task_hashes

CONFIG = LAYER / "recipes-pymender" / "pymender-config" / "pymender-config_1.0.bb"
GRUBENV = LAYER / "recipes-bsp" / "pymender-grubenv" / "pymender-grubenv_1.0.bb"
UBOOTENV = LAYER / "recipes-bsp" / "pymender-ubootenv" / "pymender-ubootenv_1.0.bb"
GROWFS = LAYER / "recipes-pymender" / "pymender-growfs-data" / "pymender-growfs-data_1.0.bb"
BASE_FILES = (STANDINS / "recipes" / "base-files_3.0.14.bb",
              LAYER / "recipes-core" / "base-files" / "base-files_%.bbappend")
UBOOT = STANDINS / "recipes" / "u-boot_2024.01.bb"

#: The tasks of core-image-minimal (qemux86-64) that depend on the rootfs size.
ROOTFS_SIZE_TASKS = {"do_rootfs", "do_image_tar", "do_image_ext4", "do_image_sdimg", "do_image_mender",
                     "do_image_bootstrap_artifact"}
#: The two Artifacts of an image: the update, and the bootstrap Artifact on the data partition.
ARTIFACTS = {"do_image_mender", "do_image_bootstrap_artifact"}

#: (variable, new value, recipe, the tasks whose signature must change, settings for both runs)
CASES: list[tuple[str, str, object, set[str], tuple[str, ...]]] = [
    ("PYMENDER_ARTIFACT_NAME", "release-2", IMAGE, ARTIFACTS, ()),
    ("PYMENDER_DEVICE_TYPES_COMPATIBLE", "board-a board-b", IMAGE, ARTIFACTS, ()),
    ("PYMENDER_ARTIFACT_SIGNING_KEY", "/keys/sign.pem", IMAGE, ARTIFACTS, ()),
    ("PYMENDER_ARTIFACT_SCRIPTS_DIR", "/scripts", IMAGE, {"do_image_mender"}, ()),
    ("PYMENDER_ARTIFACT_PROVIDES", "data.version:3", IMAGE, ARTIFACTS, ()),
    ("PYMENDER_ARTIFACT_PROVIDES_GROUP", "fleet", IMAGE, ARTIFACTS, ()),
    ("PYMENDER_ARTIFACT_DEPENDS", "rootfs-image.version:1", IMAGE, {"do_image_mender"}, ()),
    ("PYMENDER_ARTIFACT_DEPENDS_GROUPS", "beta", IMAGE, {"do_image_mender"}, ()),
    ("PYMENDER_ARTIFACT_NAME_DEPENDS", "release-0", IMAGE, {"do_image_mender"}, ()),
    ("PYMENDER_ARTIFACT_EXTRA_ARGS", "--compression lzma", IMAGE, {"do_image_mender"}, ()),
    ("PYMENDER_ARTIFACT_NAME_BOOTSTRAP", "factory-1", IMAGE, {"do_image_bootstrap_artifact"}, ()),
    ("PYMENDER_ARTIFACT_PROVIDES_BOOTSTRAP", "data.schema:4", IMAGE, {"do_image_bootstrap_artifact"}, ()),
    # Without it, the bootstrap Artifact's task is gone and the disk image stages no file.
    ("PYMENDER_BOOTSTRAP_ARTIFACT", "0", IMAGE, {"do_image_bootstrap_artifact", "do_image_sdimg"}, ()),
    ("PYMENDER_MENDER_UPDATE", "1", IMAGE, {"do_rootfs"}, ()),
    # The partition sizes decide the rootfs size (IMAGE_ROOTFS_SIZE), which oe-core's do_rootfs
    # and every image task (set_image_size) use; the size check of the disk image and the
    # Artifact use them too.
    *[(name, value, IMAGE, ROOTFS_SIZE_TASKS, ())
      for name, value in (("PYMENDER_STORAGE_TOTAL_SIZE_MB", "2048"), ("PYMENDER_BOOT_PART_SIZE_MB", "32"),
                          ("PYMENDER_DATA_PART_SIZE_MB", "256"), ("PYMENDER_PARTITION_ALIGNMENT", "4194304"),
                          ("PYMENDER_RESERVED_SPACE_BOOTLOADER_DATA", "8388608"))],
    ("IMAGE_ROOTFS_EXTRA_SPACE", "8192", IMAGE, ROOTFS_SIZE_TASKS, ()),
    ("PYMENDER_DISK_ID", "0x1234abcd", IMAGE, {"do_image_sdimg"}, ()),
    ("PYMENDER_IMAGE_BMAP", "0", IMAGE, {"do_image_sdimg"}, ()),
    ("PYMENDER_IMAGE_BOOTLOADER_FILE", "u-boot.imx", IMAGE, {"do_image_sdimg"}, ()),
    ("PYMENDER_IMAGE_BOOTLOADER_BOOTSECTOR_OFFSET", "64", IMAGE, {"do_image_sdimg"},
     ('PYMENDER_IMAGE_BOOTLOADER_FILE = "u-boot.imx"',)),
    ("PYMENDER_MBR_BOOTLOADER_FILE", "boot.img", IMAGE, {"do_image_sdimg"}, ()),
    ("PYMENDER_MBR_BOOTLOADER_LENGTH", "400", IMAGE, {"do_image_sdimg"},
     ('PYMENDER_MBR_BOOTLOADER_FILE = "boot.img"',)),
    ("IMAGE_BOOT_FILES", "board.dtb", IMAGE, {"do_image_sdimg"}, ()),
    ("PYMENDER_BOOT_PART_MOUNT_LOCATION", "/boot/firmware", IMAGE, {"do_rootfs", "do_image_sdimg"}, ()),
    # pymender-config: the machine's configuration and device type
    ("PYMENDER_STORAGE_DEVICE", "/dev/sda", CONFIG, {"do_compile"}, ()),
    ("PYMENDER_BOOTLOADER", "uboot", CONFIG, {"do_compile"}, ()),
    ("PYMENDER_DEVICE_TYPE", "board", CONFIG, {"do_compile"}, ()),
    ("PYMENDER_ARTIFACT_VERIFY_KEY", "/keys/verify.pem", CONFIG, {"do_compile", "do_install"}, ()),
    # base-files: the fstab lines and mount points
    ("PYMENDER_STORAGE_DEVICE", "/dev/sda", BASE_FILES, {"do_pymender_fstab"}, ()),
    ("PYMENDER_BOOT_PART_FSTAB_OPTS", "defaults,sync", BASE_FILES, {"do_pymender_fstab"}, ()),
    ("PYMENDER_DATA_PART_FSTAB_OPTS", "defaults", BASE_FILES, {"do_pymender_fstab"}, ()),
    ("PYMENDER_GROWFS_DATA", "0", BASE_FILES, {"do_pymender_fstab"}, ()),
    ("PYMENDER_BOOT_PART_MOUNT_LOCATION", "/boot/firmware", BASE_FILES, {"do_pymender_fstab", "do_install"}, ()),
    # the boot loaders' scripts
    *[(name, value, GRUBENV, {"do_pymender_defines"}, ())
      for name, value in (("PYMENDER_KERNEL_ARGS", "rw quiet"), ("PYMENDER_KERNEL_IMAGE", "/boot/Image"),
                          ("PYMENDER_INITRD_IMAGE", "/boot/initrd"), ("PYMENDER_KERNEL_ROOT_BASE", "/dev/sda"))],
    *[(name, value, UBOOTENV, {"do_pymender_defines"}, ('PYMENDER_BOOTLOADER = "uboot"',))
      for name, value in (("PYMENDER_KERNEL_ARGS", "rw quiet"), ("PYMENDER_KERNEL_DEVICETREE", "/boot/x.dtb"),
                          ("PYMENDER_BOOT_PART_MOUNT_LOCATION", "/boot/firmware"))],
    ("PYMENDER_UBOOT_ENV_SIZE", "0x8000", UBOOTENV, {"do_pymender_defines", "do_compile"},
     ('PYMENDER_BOOTLOADER = "uboot"',)),
    ("PYMENDER_UBOOT_ENV_SIZE", "0x8000", UBOOT, {"do_pymender_check_uboot_env"},
     ('PYMENDER_BOOTLOADER = "uboot"', 'UBOOT_MACHINE = "qemu_arm64_defconfig"')),
    ("PYMENDER_ROOTFS_FSTYPE", "btrfs", UBOOT, {"do_fetch", "do_unpack", "do_configure"},
     ('PYMENDER_BOOTLOADER = "uboot"', 'UBOOT_MACHINE = "qemu_arm64_defconfig"')),
    # growing /data: the unit names the machine's data partition
    ("PYMENDER_STORAGE_DEVICE", "/dev/mmcblk1", GROWFS, {"do_compile"}, ()),
]

#: Tasks that only run other tasks, or whose inputs are not the recipe's own.
CHAINING = {"do_build", "do_image", "do_image_complete"}


def hashes(tmp_path: Path, target: object, lines: Iterable[str]) -> dict[str, str]:
    d = configuration(tmp_path, local_conf(*lines))
    path, appends = (target if isinstance(target, tuple) else (target, None))
    return task_hashes(recipe(d, path, [appends] if appends else [])[""])


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert set(before) >= set(after) - {"do_pymender_check_uboot_env"}
    return {task for task in before if before[task] != after.get(task)} - CHAINING


@pytest.mark.parametrize(("variable", "value", "target", "tasks", "context"), CASES,
                         ids=[f"{case[0]}-{Path(str(case[2][0] if isinstance(case[2], tuple) else case[2])).stem}"
                              for case in CASES])
def test_a_variable_changes_exactly_the_tasks_that_use_it(
        tmp_path: Path, variable: str, value: str, target: object, tasks: set[str], context: tuple[str, ...]) -> None:
    before = hashes(tmp_path, target, context)
    after = hashes(tmp_path, target, (*context, f'{variable} = "{value}"'))
    assert changed(before, after) == tasks


#: Settings that differ from one machine, board or product to the next.
MACHINE_SETTINGS = [
    'MACHINE = "qemuarm64"', 'PYMENDER_STORAGE_DEVICE = "/dev/sda"', 'PYMENDER_BOOTLOADER = "uboot"',
    'PYMENDER_DEVICE_TYPE = "board"', 'PYMENDER_ARTIFACT_VERIFY_KEY = "/keys/verify.pem"',
    'PYMENDER_STORAGE_TOTAL_SIZE_MB = "8192"', 'PYMENDER_KERNEL_ARGS = "quiet"',
    'PYMENDER_BOOT_PART_MOUNT_LOCATION = "/boot/firmware"', 'PYMENDER_ROOTFS_FSTYPE = "squashfs"',
]


@pytest.mark.parametrize("setting", MACHINE_SETTINGS)
def test_no_machine_setting_changes_pymender_native(tmp_path: Path, setting: str) -> None:
    before = recipe(configuration(tmp_path, local_conf()), UPDATER)
    after = recipe(configuration(tmp_path, local_conf(setting)), UPDATER)
    for variant in ("native", "nativesdk"):
        assert task_hashes(before[variant]) == task_hashes(after[variant]), variant


@pytest.mark.parametrize("setting", [s for s in MACHINE_SETTINGS if "MACHINE" not in s]
                         + ['MACHINE = "genericx86-64"'])
def test_pymender_is_the_same_for_every_machine_of_one_cpu(tmp_path: Path, setting: str) -> None:
    """qemux86-64 and genericx86-64 share the core2-64 package feed: one pymender serves both."""
    before = recipe(configuration(tmp_path, local_conf()), UPDATER)[""]
    after = recipe(configuration(tmp_path, local_conf(setting)), UPDATER)[""]
    assert before.getVar("PACKAGE_ARCH") == after.getVar("PACKAGE_ARCH") == "core2-64"
    assert task_hashes(before) == task_hashes(after)


def test_machine_specific_recipes_are_machine_arch(tmp_path: Path) -> None:
    d = configuration(tmp_path, local_conf())
    for path in (CONFIG, GRUBENV, UBOOTENV, GROWFS):
        assert recipe(d, path)[""].getVar("PACKAGE_ARCH") == "qemux86_64", path.name
    files = recipe(d, UPDATER)[""]
    assert not [f for f in files.getVar("FILES:pymender").split() if "/etc/pymender" in f or "/data" in f]
