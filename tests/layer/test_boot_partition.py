"""Real boards: their boot files on the boot partition, raw boot loaders, any U-Boot recipe.

A board's BSP lists its boot partition files (firmware, device trees, its U-Boot) in
IMAGE_BOOT_FILES and deploys them; pymender's boot partition carries them with pymender's own
files. Its SPL/U-Boot may have to be written to the raw disk before partition 1. Its U-Boot
may come from a vendor recipe (u-boot-imx, ...) rather than oe-core's u-boot, and its
environment size is the board's: both get pymender's configuration and checks. GRUB needs the
kernel's EFI stub on every architecture.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

pytest.importorskip("bb")
from layer.bbparse import (
    FATAL_ERRORS,
    IMAGE,
    STANDINS,
    capture_warnings,
    configuration,
    layer_function,
    local_conf,
    recipe,
    run_python,
    task_hashes,
)

UBOOT = STANDINS / "recipes" / "u-boot_2024.01.bb"
UBOOT_IMX = STANDINS / "recipes" / "u-boot-imx_2024.04.bb"


def boot_file_list(deploy: Path, boot_files: str) -> list[tuple[str, str]]:
    return list(layer_function("pymender_boot_file_list")(str(deploy), boot_files))


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"content of {name}\n")


def test_image_boot_files_syntax(tmp_path: Path) -> None:
    touch(tmp_path, "bcm2711-rpi-4-b.dtb", "u-boot.bin", "bootfiles/start4.elf", "bootfiles/fixup4.dat",
          "overlays/uart0.dtbo")
    assert boot_file_list(tmp_path, "bcm2711-rpi-4-b.dtb u-boot.bin;kernel8.img bootfiles/* overlays/*;overlays/") == [
        ("bcm2711-rpi-4-b.dtb", "bcm2711-rpi-4-b.dtb"),
        ("u-boot.bin", "kernel8.img"),
        ("bootfiles/fixup4.dat", "fixup4.dat"),
        ("bootfiles/start4.elf", "start4.elf"),
        ("overlays/uart0.dtbo", "overlays/uart0.dtbo"),
    ]
    assert boot_file_list(tmp_path, "") == []


@pytest.mark.parametrize(("entry", "message"), [("u-boot.bin;", "malformed entry"), (";name", "malformed entry"),
                                                ("firmware/*", "matches nothing")])
def test_bad_image_boot_files_are_refused(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(FATAL_ERRORS, match=message), capture_warnings():
        boot_file_list(tmp_path, entry)


def stage(tmp_path: Path, *lines: str) -> tuple[object, Path, list[str]]:
    """Run the disk image's boot file staging with a deploy directory holding a GRUB
    integration (or a U-Boot one) and a BSP's files."""
    image = recipe(configuration(tmp_path, local_conf(*lines)), IMAGE)[""]
    deploy = Path(image.getVar("DEPLOY_DIR_IMAGE"))
    touch(deploy, "grub-efi-bootx64.efi", "pymender-grubenv/EFI/BOOT/grub.cfg",
          "pymender-grubenv/grub-mender-grubenv/mender_grubenv1/env",
          "pymender-ubootenv/boot.scr", "pymender-ubootenv/uboot.env", "pymender-ubootenv/uboot-redund.env",
          "board.dtb", "boot.scr", "firmware/start.elf", "firmware/config.txt")
    touch(Path(image.getVar("PYMENDER_BOOT_CONTENT")), "EFI/BOOT/grub.cfg", "from-a-package.txt")
    image.setVar("BB_CURRENTTASK", "image_sdimg")
    with capture_warnings() as messages:
        run_python(image, "pymender_stage_boot_files")
    return image, Path(image.getVar("PYMENDER_BOOT_FILES_DIR")), messages.warnings


def contents(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_boot_partition_merges_packages_board_files_and_pymender(tmp_path: Path) -> None:
    _, boot, warnings = stage(tmp_path, 'IMAGE_BOOT_FILES = "board.dtb firmware/*;firmware/"')
    assert contents(boot) == {
        "EFI/BOOT/bootx64.efi": "content of grub-efi-bootx64.efi\n",
        "EFI/BOOT/grub.cfg": "content of pymender-grubenv/EFI/BOOT/grub.cfg\n",
        "board.dtb": "content of board.dtb\n",
        "firmware/config.txt": "content of firmware/config.txt\n",
        "firmware/start.elf": "content of firmware/start.elf\n",
        "from-a-package.txt": "content of from-a-package.txt\n",
        "grub-mender-grubenv/mender_grubenv1/env":
            "content of pymender-grubenv/grub-mender-grubenv/mender_grubenv1/env\n",
    }
    assert len(warnings) == 1 and "EFI/BOOT/grub.cfg" in warnings[0] and "pymender's grub integration" in warnings[0]


def test_pymender_boot_script_takes_the_place_of_the_boards_own(tmp_path: Path) -> None:
    """A BSP's IMAGE_BOOT_FILES often names its own boot.scr (meta-raspberrypi's boots the boot
    partition's kernel): pymender's replaces it, and it need not even be deployed."""
    _, boot, warnings = stage(tmp_path, 'PYMENDER_BOOTLOADER = "uboot"',
                              'IMAGE_BOOT_FILES = "boot.scr board.dtb not-deployed.scr;boot.scr"')
    assert contents(boot)["boot.scr"] == "content of pymender-ubootenv/boot.scr\n"
    assert {"uboot.env", "uboot-redund.env", "board.dtb", "from-a-package.txt"} <= set(contents(boot))
    assert warnings == []


def image_args(tmp_path: Path, *lines: str) -> list[str]:
    image = recipe(configuration(tmp_path, local_conf(*lines)), IMAGE)[""]
    return shlex.split(image.getVar("PYMENDER_IMAGE_ARGS"))


def test_raw_boot_loader_and_mbr_boot_code_options(tmp_path: Path) -> None:
    args = image_args(tmp_path, 'PYMENDER_IMAGE_BOOTLOADER_FILE = "imx-boot"',
                      'PYMENDER_IMAGE_BOOTLOADER_BOOTSECTOR_OFFSET = "66"',
                      'PYMENDER_MBR_BOOTLOADER_FILE = "/opt/grub/boot.img"',
                      'PYMENDER_RESERVED_SPACE_BOOTLOADER_DATA = "8388608"')
    deploy = tmp_path / "tmp" / "deploy" / "images" / "qemux86-64"
    assert args[args.index("--bootloader") + 1] == f"{deploy}/imx-boot:66"
    assert args[args.index("--mbr-boot-code") + 1:args.index("--mbr-boot-code") + 4] == [
        "/opt/grub/boot.img", "--mbr-boot-code-length", "440"]
    assert args[args.index("--reserved-bootloader-bytes") + 1] == "8388608"
    assert "--bootloader" not in image_args(tmp_path)


def test_the_raw_boot_loader_is_deployed_before_the_disk_image(tmp_path: Path) -> None:
    image = recipe(configuration(tmp_path, local_conf('PYMENDER_BOOTLOADER = "uboot"',
                                                      'PYMENDER_IMAGE_BOOTLOADER_FILE = "u-boot-sunxi-with-spl.bin"',
                                                      'PYMENDER_IMAGE_BOOTLOADER_BOOTSECTOR_OFFSET = "16"')), IMAGE)[""]
    assert "u-boot:do_deploy" in image.getVarFlag("do_image_sdimg", "depends").split()


def test_boot_files_are_deployed_before_the_disk_image(tmp_path: Path) -> None:
    """A BSP names the tasks that deploy its IMAGE_BOOT_FILES for wic; pymender's disk images
    wait for the same tasks."""
    image = recipe(configuration(tmp_path, local_conf('do_image_wic[depends] += "rpi-bootfiles:do_deploy"')),
                   IMAGE)[""]
    depends = image.getVarFlag("do_image_sdimg", "depends").split()
    assert "rpi-bootfiles:do_deploy" in depends
    assert "wic-tools:do_populate_sysroot" not in depends  # wic's own tools are not needed


def uboot_setup(tmp_path: Path, path: Path, *lines: str) -> object:
    return recipe(configuration(tmp_path, local_conf(*lines, 'UBOOT_MACHINE = "board_defconfig"')), path)[""]


def test_oe_cores_u_boot_gets_the_fragment(tmp_path: Path) -> None:
    uboot = uboot_setup(tmp_path, UBOOT, 'PYMENDER_BOOTLOADER = "uboot"')
    assert "file://pymender-boot-script.cfg" in uboot.getVar("SRC_URI").split()
    assert "do_pymender_check_uboot_env" in task_hashes(uboot)


def test_any_virtual_bootloader_provider_gets_the_fragment(tmp_path: Path) -> None:
    lines = ('PYMENDER_BOOTLOADER = "uboot"', 'PREFERRED_PROVIDER_virtual/bootloader = "u-boot-imx"')
    imx = uboot_setup(tmp_path, UBOOT_IMX, *lines)
    assert "file://pymender-boot-script.cfg" in imx.getVar("SRC_URI").split()
    assert "do_pymender_check_uboot_env" in task_hashes(imx)
    assert "pymender" not in uboot_setup(tmp_path, UBOOT, *lines).getVar("SRC_URI")


@pytest.mark.parametrize(("fstype", "fragment"), [("squashfs-xz", "pymender-rootfs-squashfs.cfg"),
                                                  ("btrfs", "pymender-rootfs-btrfs.cfg")])
def test_u_boot_reads_the_rootfs_filesystem(tmp_path: Path, fstype: str, fragment: str) -> None:
    uboot = uboot_setup(tmp_path, UBOOT, 'PYMENDER_BOOTLOADER = "uboot"', f'PYMENDER_ROOTFS_FSTYPE = "{fstype}"')
    assert f"file://{fragment}" in uboot.getVar("SRC_URI").split()
    for uri in uboot.getVar("SRC_URI").split():
        if uri.startswith("file://"):
            assert any((Path(p) / uri[len("file://"):]).is_file() for p in uboot.getVar("FILESPATH").split(":")), uri


def test_u_boot_is_left_alone_with_grub_or_without_opt_in(tmp_path: Path) -> None:
    plain = uboot_setup(tmp_path, UBOOT)
    assert "pymender" not in plain.getVar("SRC_URI")
    without = recipe(configuration(tmp_path, local_conf('UBOOT_MACHINE = "board_defconfig"', opt_in=False,
                                                        artifact_name=None)), UBOOT)[""]
    assert task_hashes(without) == task_hashes(recipe(configuration(
        tmp_path, local_conf('UBOOT_MACHINE = "board_defconfig"')), UBOOT)[""])


def check_env(tmp_path: Path, configs: dict[str, str], *lines: str) -> None:
    uboot = uboot_setup(tmp_path, UBOOT, 'PYMENDER_BOOTLOADER = "uboot"', *lines)
    build = Path(uboot.getVar("B"))
    for name, text in configs.items():
        (build / name).parent.mkdir(parents=True, exist_ok=True)
        (build / name).write_text(text)
    with capture_warnings():
        run_python(uboot, "do_pymender_check_uboot_env")


def test_env_size_fits_the_board(tmp_path: Path) -> None:
    check_env(tmp_path, {".config": "CONFIG_ENV_SIZE=0x4000\n"})
    check_env(tmp_path, {"sd/.config": "CONFIG_ENV_SIZE=0x20000\n", "emmc/.config": "CONFIG_ENV_SIZE=16384\n"})


@pytest.mark.parametrize(("configs", "lines", "message"), [
    ({".config": "CONFIG_ENV_SIZE=0x2000\n"}, (), r"PYMENDER_UBOOT_ENV_SIZE \(0x4000\) is larger than the board's "
                                                 r"CONFIG_ENV_SIZE \(0x2000"),
    ({"a/.config": "CONFIG_ENV_SIZE=0x4000\n", "b/.config": "CONFIG_ENV_SIZE=0x1000\n"}, (), "0x1000"),
    ({".config": "CONFIG_ENV_SIZE=0x4000\n"}, ('PYMENDER_UBOOT_ENV_SIZE = "0x8000"',), "set PYMENDER_UBOOT_ENV_SIZE"),
    ({".config": "# CONFIG_ENV_SIZE is not set\n"}, (), "has no CONFIG_ENV_SIZE"),
    ({".config": "CONFIG_ENV_SIZE=0x800000\n"}, (), "over 4 MiB"),
    ({}, (), "no U-Boot .config"),
], ids=["smaller", "one-of-two-smaller", "raised-too-far", "missing", "huge", "no-config"])
def test_env_size_mismatch_stops_the_build(tmp_path: Path, configs: dict[str, str], lines: tuple[str, ...],
                                           message: str) -> None:
    with pytest.raises(FATAL_ERRORS, match=message):
        check_env(tmp_path, configs, *lines)


@pytest.mark.parametrize(("machine", "efi_binary"), [("qemux86-64", "bootx64.efi"), ("qemuarm64", "bootaa64.efi")])
def test_grub_gets_an_efi_kernel_on_every_architecture(tmp_path: Path, machine: str, efi_binary: str) -> None:
    grub = configuration(tmp_path, local_conf(f'MACHINE = "{machine}"', 'PYMENDER_BOOTLOADER = "grub"'))
    assert "efi" in grub.getVar("MACHINE_FEATURES").split()
    image = recipe(grub, IMAGE)[""]
    assert image.getVar("EFI_BOOT_IMAGE") == efi_binary
    uboot = configuration(tmp_path, local_conf(f'MACHINE = "{machine}"', 'PYMENDER_BOOTLOADER = "uboot"'))
    assert "efi" not in uboot.getVar("MACHINE_FEATURES").split()


@pytest.mark.parametrize(("machine", "bootloader", "firmware"), [
    ("qemux86-64", "grub", "ovmf"), ("qemuarm64", "uboot", "u-boot"), ("genericx86-64", "grub", None)])
def test_qemu_machines_build_the_firmware_the_disk_image_boots_with(
        tmp_path: Path, machine: str, bootloader: str, firmware: str | None) -> None:
    image = recipe(configuration(tmp_path, local_conf(f'MACHINE = "{machine}"',
                                                      f'PYMENDER_BOOTLOADER = "{bootloader}"')), IMAGE)[""]
    depends = image.getVarFlag("do_image_complete", "depends").split()
    if firmware:
        assert f"{firmware}:do_populate_sysroot" in depends
    else:
        assert not [dep for dep in depends if "ovmf" in dep or "u-boot" in dep]
