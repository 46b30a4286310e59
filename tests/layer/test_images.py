"""Which images pymender changes, what it changes in them, and nothing beyond them.

pymender-full is inherited by the whole build, but it must only turn real system images into
pymender images: an initramfs (whatever way its recipe names its types), a container image or
an image the user opts out stays exactly as it was, to the last task signature. In a pymender
image /data and the boot partition's mount point are empty directories (the partitions are
mounted there; their content goes into the partitions), and the mount points exist even in a
read-only rootfs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytest.importorskip("bb")
from layer.bbparse import (
    FATAL_ERRORS,
    IMAGE,
    LAYER,
    STANDINS,
    capture_warnings,
    configuration,
    local_conf,
    recipe,
    run_shell,
    task_hashes,
)

INITRAMFS = STANDINS / "recipes" / "core-image-minimal-initramfs.bb"
BSP_INITRAMFS = STANDINS / "recipes" / "bsp-initramfs-image.bb"
BASE_FILES = STANDINS / "recipes" / "base-files_3.0.14.bb"
BASE_FILES_APPEND = LAYER / "recipes-core" / "base-files" / "base-files_%.bbappend"
#: What pymender-full sets in the images it applies to.
IMAGE_VARIABLES = ("IMAGE_FSTYPES", "IMAGE_INSTALL", "IMAGE_ROOTFS_SIZE", "IMAGE_ROOTFS_MAXSIZE",
                   "ROOTFS_POSTPROCESS_COMMAND", "EXTRA_IMAGEDEPENDS", "PACKAGE_INSTALL")


def snapshot(data: object) -> dict[str, object]:
    return {name: data.getVar(name) for name in IMAGE_VARIABLES}  # type: ignore[attr-defined]


def applies(tmp_path: Path, path: Path, *lines: str) -> bool:
    image = recipe(configuration(tmp_path, local_conf(*lines)), path)[""]
    return "mender" in image.getVar("IMAGE_FSTYPES").split()


def test_a_system_image_becomes_a_pymender_image(tmp_path: Path) -> None:
    image = recipe(configuration(tmp_path, local_conf('PYMENDER_IMAGE_TYPES = "sdimg uefiimg dataimg"')), IMAGE)[""]
    assert image.getVar("IMAGE_FSTYPES").split()[-4:] == ["mender", "sdimg", "uefiimg", "dataimg"]
    assert {"pymender", "pymender-config", "kernel-image", "pymender-growfs-data"} <= set(
        image.getVar("IMAGE_INSTALL").split())
    assert "pymender_rootfs_postprocess" in image.getVar("ROOTFS_POSTPROCESS_COMMAND").split()
    assert {"do_image_mender", "do_image_sdimg", "do_image_uefiimg", "do_image_dataimg"} <= set(task_hashes(image))


@pytest.mark.parametrize("path", [INITRAMFS, BSP_INITRAMFS], ids=lambda p: p.stem)
def test_initramfs_images_stay_as_they_are(tmp_path: Path, path: Path) -> None:
    without = recipe(configuration(tmp_path, local_conf(opt_in=False, artifact_name=None)), path)[""]
    with_layer = recipe(configuration(tmp_path, local_conf()), path)[""]
    assert snapshot(with_layer) == snapshot(without)
    assert task_hashes(with_layer) == task_hashes(without)


@pytest.mark.parametrize("lines", [
    ('IMAGE_FSTYPES:pn-core-image-minimal = "container"',),
    ('IMAGE_FSTYPES:pn-core-image-minimal = "cpio.zst cpio.gz.u-boot"',),
    ('INITRAMFS_IMAGE = "core-image-minimal"',),
    ('PYMENDER_IMAGE_ENABLE:pn-core-image-minimal = "0"',),
], ids=["container", "cpio-only", "the-initramfs-image", "opted-out"])
def test_images_pymender_leaves_alone(tmp_path: Path, lines: tuple[str, ...]) -> None:
    assert not applies(tmp_path, IMAGE, *lines)


def test_an_image_can_opt_in_whatever_its_types(tmp_path: Path) -> None:
    assert applies(tmp_path, BSP_INITRAMFS, 'PYMENDER_IMAGE_ENABLE:pn-bsp-initramfs-image = "1"')


def test_a_wrong_enable_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FATAL_ERRORS, match='PYMENDER_IMAGE_ENABLE must be "1", "0"'), capture_warnings():
        recipe(configuration(tmp_path, local_conf('PYMENDER_IMAGE_ENABLE = "yes"')), IMAGE)


def test_the_upper_size_bound_is_left_to_the_user(tmp_path: Path) -> None:
    d = configuration(tmp_path, local_conf('IMAGE_ROOTFS_MAXSIZE = "500000"'))
    for path in (IMAGE, INITRAMFS):
        assert recipe(d, path)[""].getVar("IMAGE_ROOTFS_MAXSIZE") == "500000"
    assert recipe(configuration(tmp_path, local_conf()), IMAGE)[""].getVar("IMAGE_ROOTFS_MAXSIZE") is None


def make_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("bootloader", ["grub", "uboot"])
def test_rootfs_keeps_mount_points_and_gives_their_content_to_the_partitions(tmp_path: Path, bootloader: str) -> None:
    image = recipe(configuration(tmp_path, local_conf(f'PYMENDER_BOOTLOADER = "{bootloader}"')), IMAGE)[""]
    mount = image.getVar("PYMENDER_BOOT_PART_MOUNT_LOCATION").lstrip("/")
    rootfs = Path(image.getVar("IMAGE_ROOTFS"))
    make_tree(rootfs, {
        "data/pymender/device_type": "device_type=qemux86-64\n",
        f"{mount}/EFI/BOOT/extra.efi": "from a package",
        "usr/share/pymender/artifact-scripts/ArtifactInstall_Enter_10_app": "#!/bin/sh\n",
        "etc/mender/scripts/Idle_Enter_10_led": "#!/bin/sh\n",
        "etc/hostname": "board\n",
    })
    (rootfs / "boot").mkdir(exist_ok=True)
    run_shell(image, "pymender_rootfs_postprocess")
    assert tree(Path(image.getVar("PYMENDER_DATA_CONTENT"))) == {"pymender/device_type": "device_type=qemux86-64\n"}
    assert tree(Path(image.getVar("PYMENDER_BOOT_CONTENT"))) == {"EFI/BOOT/extra.efi": "from a package"}
    assert list(tree(Path(image.getVar("PYMENDER_IMAGE_ARTIFACT_SCRIPTS")))) == ["ArtifactInstall_Enter_10_app"]
    assert (rootfs / "data").is_dir() and not any((rootfs / "data").iterdir())
    assert (rootfs / mount).is_dir() and not any((rootfs / mount).iterdir())
    assert not (rootfs / "usr/share/pymender").exists()
    assert (rootfs / "etc/mender/scripts/version").read_text() == "3\n"
    assert (rootfs / "etc/hostname").read_text() == "board\n"
    # A second run (do_rootfs again) starts from what the packages install, not from the last run.
    make_tree(rootfs, {"data/new": "x"})
    run_shell(image, "pymender_rootfs_postprocess")
    assert tree(Path(image.getVar("PYMENDER_DATA_CONTENT"))) == {"new": "x"}


def test_a_rootfs_without_rootfs_scripts_gets_no_version_file(tmp_path: Path) -> None:
    image = recipe(configuration(tmp_path, local_conf()), IMAGE)[""]
    rootfs = Path(image.getVar("IMAGE_ROOTFS"))
    make_tree(rootfs, {"etc/hostname": "board\n"})
    run_shell(image, "pymender_rootfs_postprocess")
    assert not (rootfs / "etc/mender").exists()


def base_files(tmp_path: Path, *lines: str) -> tuple[object, Path]:
    data = recipe(configuration(tmp_path, local_conf(*lines)), BASE_FILES, [BASE_FILES_APPEND])[""]
    work = Path(data.getVar("WORKDIR"))
    source = Path(data.getVar("S"))
    source.mkdir(parents=True, exist_ok=True)
    (source / "fstab").write_text((STANDINS / "recipes" / "base-files" / "fstab").read_text())
    (Path(data.getVar("PYMENDER_UNPACKDIR")) / "pymender-fstab").mkdir(parents=True, exist_ok=True)
    (Path(data.getVar("PYMENDER_UNPACKDIR")) / "pymender-fstab" / "pymender-fstab.in").write_text(
        (LAYER / "recipes-core" / "base-files" / "files" / "pymender-fstab.in").read_text())
    from layer.bbparse import run_python

    run_python(data, "do_pymender_fstab")
    run_shell(data, "do_install")
    return data, work / "image"


@pytest.mark.parametrize(("bootloader", "mount"), [("grub", "boot/efi"), ("uboot", "uboot")])
def test_mount_points_are_in_the_rootfs_and_fstab_does_not_stop_the_boot(
        tmp_path: Path, bootloader: str, mount: str) -> None:
    data, image = base_files(tmp_path, f'PYMENDER_BOOTLOADER = "{bootloader}"')
    assert (image / "data").is_dir() and (image / mount).is_dir()
    packaged = data.getVar("FILES:base-files").split()  # type: ignore[attr-defined]
    assert "/data" in packaged and f"/{mount}" in packaged
    lines = [line.split() for line in (image / "etc/fstab").read_text().splitlines()
             if line.startswith("/dev/vda")]
    assert lines == [
        ["/dev/vda1", f"/{mount}", "vfat", "defaults,nofail", "0", "0"],
        ["/dev/vda4", "/data", "ext4", "defaults,nofail,x-systemd.growfs", "0", "2"],
    ]


def test_fstab_options_are_settable(tmp_path: Path) -> None:
    _, image = base_files(tmp_path, 'PYMENDER_BOOT_PART_FSTAB_OPTS = "defaults,sync"', 'PYMENDER_GROWFS_DATA = "0"')
    fstab = (image / "etc/fstab").read_text()
    assert "\tdefaults,sync\t" in fstab and "\tdefaults,nofail\t0\t2" in fstab


def test_base_files_without_opt_in_installs_what_it_did(tmp_path: Path) -> None:
    data = recipe(configuration(tmp_path, local_conf(opt_in=False, artifact_name=None)), BASE_FILES,
                  [BASE_FILES_APPEND])[""]
    source = Path(data.getVar("S"))
    source.mkdir(parents=True)
    (source / "fstab").write_text("/dev/root / auto defaults 1 1\n")
    run_shell(data, "do_install")
    image = Path(data.getVar("D"))
    assert (image / "etc/fstab").read_text() == "/dev/root / auto defaults 1 1\n"
    assert not (image / "data").exists()
    assert data.getVar("do_pymender_fstab") is None


def test_the_dataimg_is_the_disk_images_data_partition(tmp_path: Path) -> None:
    """With dataimg built too, the disk image's partition 4 is that file, byte for byte."""
    import json
    import sys

    from helpers import require_tool
    from layer.layerrun import LayerRun

    for tool in ("mkfs.ext4", "mkfs.vfat", "mcopy"):
        require_tool(tool)
    bindir = Path(sys.executable).parent
    layer = LayerRun(tmp_path, local_conf('PYMENDER_IMAGE_TYPES = "sdimg dataimg"', 'PYMENDER_IMAGE_BMAP = "0"'),
                     path=[bindir])
    image = layer.recipe("image")
    assert "do_image_dataimg" in image.getVarFlag("do_image_sdimg", "deps")
    rootfs = Path(image.getVar("IMAGE_ROOTFS"))
    make_tree(rootfs, {"data/pymender/device_type": "device_type=qemux86-64\n", "etc/hostname": "board\n"})
    deploy = Path(image.getVar("DEPLOY_DIR_IMAGE"))
    make_tree(deploy, {"grub-efi-bootx64.efi": "efi", "pymender-grubenv/EFI/BOOT/grub.cfg": "cfg"})
    imgdeploy = Path(image.getVar("IMGDEPLOYDIR"))
    imgdeploy.mkdir(parents=True)
    (imgdeploy / f"{image.getVar('IMAGE_NAME')}.ext4").write_bytes(b"\1" * 4096)
    image.setVar("BB_CURRENTTASK", "image_sdimg")
    assert "do_image_bootstrap_artifact" in image.getVarFlag("do_image_dataimg", "deps")
    layer.run(image, "pymender_rootfs_postprocess", "do_image_bootstrap_artifact", "do_image_dataimg",
              "pymender_stage_boot_files", "do_image_sdimg")
    disk = imgdeploy / f"{image.getVar('IMAGE_NAME')}.sdimg"
    dataimg = imgdeploy / f"{image.getVar('IMAGE_NAME')}.dataimg"
    shown = subprocess.run([str(bindir / "pymender-image"), "show", "--json", str(disk)], check=True,
                           capture_output=True, text=True).stdout
    data = json.loads(shown)["partitions"][3]
    with disk.open("rb") as whole:
        whole.seek(data["start"])
        assert whole.read(data["size"]) == dataimg.read_bytes()
    listing = subprocess.run(["debugfs", "-R", "cat /pymender/device_type", str(dataimg)], check=True,
                             capture_output=True, text=True).stdout
    assert listing == "device_type=qemux86-64\n"
    bootstrap = subprocess.run(["debugfs", "-R", "cat /pymender/bootstrap.mender", str(dataimg)], check=True,
                               capture_output=True).stdout
    assert bootstrap == (imgdeploy / f"{image.getVar('IMAGE_NAME')}.bootstrap-artifact").read_bytes()


def test_the_bootstrap_artifact_names_the_image_and_its_rootfs(tmp_path: Path) -> None:
    """As meta-mender's mender-bootstrap-artifact: the image's name, rootfs-image.version and
    the rootfs image's checksum, clearing rootfs-image.*; on the data partition, mode 0400."""
    import hashlib
    import json
    import sys

    from helpers import require_tool
    from layer.layerrun import LayerRun

    for tool in ("mkfs.ext4", "debugfs", "mender-artifact"):
        require_tool(tool)
    bindir = Path(sys.executable).parent
    layer = LayerRun(tmp_path, local_conf('PYMENDER_IMAGE_TYPES = "dataimg"',
                                          'PYMENDER_DEVICE_TYPES_COMPATIBLE = "a b"',
                                          'PYMENDER_ARTIFACT_PROVIDES_BOOTSTRAP = "data.schema:4"'),
                     path=[bindir])
    image = layer.recipe("image")
    imgdeploy = Path(image.getVar("IMGDEPLOYDIR"))
    imgdeploy.mkdir(parents=True)
    rootfs = imgdeploy / f"{image.getVar('IMAGE_NAME')}.ext4"
    rootfs.write_bytes(b"\1" * 8192)
    layer.run(image, "pymender_rootfs_postprocess", "do_image_bootstrap_artifact", "do_image_dataimg")
    bootstrap = imgdeploy / f"{image.getVar('IMAGE_NAME')}.bootstrap-artifact"
    read = json.loads(subprocess.run([str(bindir / "pymender-artifact"), "read", "--json", str(bootstrap)],
                                     check=True, capture_output=True, text=True).stdout)
    assert read["name"] == "release-1" and read["compatible_devices"] == ["a", "b"]
    payload = read["payloads"][0]
    assert payload["type"] is None and payload["clears_provides"] == ["rootfs-image.*"]
    assert payload["provides"] == {"rootfs-image.version": "release-1", "data.schema": "4",
                                   "rootfs-image.checksum": hashlib.sha256(rootfs.read_bytes()).hexdigest()}
    # Upstream mender-artifact reads it too.
    upstream = subprocess.run(["mender-artifact", "read", str(bootstrap)], check=True, capture_output=True,
                              text=True).stdout
    assert "Name: release-1" in upstream and "rootfs-image.checksum" in upstream
    stat = subprocess.run(["debugfs", "-R", "stat /pymender/bootstrap.mender",
                           str(imgdeploy / f"{image.getVar('IMAGE_NAME')}.dataimg")], check=True,
                          capture_output=True, text=True).stdout
    assert "Mode:  0400" in stat


def test_without_the_bootstrap_artifact(tmp_path: Path) -> None:
    image = recipe(configuration(tmp_path, local_conf('PYMENDER_BOOTSTRAP_ARTIFACT = "0"',
                                                      'PYMENDER_IMAGE_TYPES = "sdimg dataimg"')), IMAGE)[""]
    assert "do_image_bootstrap_artifact" not in task_hashes(image)
    with pytest.raises(FATAL_ERRORS, match='PYMENDER_BOOTSTRAP_ARTIFACT must be "1" or "0", not "yes"'), \
            capture_warnings():
        configuration(tmp_path, local_conf('PYMENDER_BOOTSTRAP_ARTIFACT = "yes"'))


def test_mender_update_only_when_asked(tmp_path: Path) -> None:
    def packages(*lines: str) -> list[str]:
        image = recipe(configuration(tmp_path, local_conf(*lines)), IMAGE)[""]
        return image.getVar("IMAGE_INSTALL").split()

    assert "pymender-mender-update" not in packages()
    assert "pymender-mender-update" in packages('PYMENDER_MENDER_UPDATE = "1"')


@pytest.mark.parametrize(("fstype", "grub_module", "mode"), [
    ("ext4", "ext2", "rw"), ("ext3", "ext2", "rw"), ("btrfs", "btrfs", "rw"),
    ("squashfs", "squash4", "ro"), ("squashfs-xz", "squash4", "ro")])
def test_other_rootfs_filesystems_go_into_the_partitions(tmp_path: Path, fstype: str, grub_module: str,
                                                         mode: str) -> None:
    d = configuration(tmp_path, local_conf(f'PYMENDER_ROOTFS_FSTYPE = "{fstype}"'))
    image = recipe(d, IMAGE)[""]
    task = "do_image_" + fstype.replace("-", "_")
    for consumer in ("do_image_sdimg", "do_image_mender"):
        assert task in image.getVarFlag(consumer, "deps")
    assert f".{fstype}\"" in image.getVar("pymender_artifact_image")
    assert image.getVar("PYMENDER_KERNEL_ARGS").split()[0] == mode
    grub = recipe(d, STANDINS / "recipes" / "grub-efi_2.12.bb",
                  [LAYER / "recipes-bsp" / "grub" / "grub-efi_%.bbappend"])[""]
    assert grub_module in grub.getVar("GRUB_BUILDIN").split()


def test_an_unknown_rootfs_filesystem_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FATAL_ERRORS, match='PYMENDER_ROOTFS_FSTYPE: "xfs" is not one of ext4'), capture_warnings():
        configuration(tmp_path, local_conf('PYMENDER_ROOTFS_FSTYPE = "xfs"'))
