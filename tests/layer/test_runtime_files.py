"""The QEMU test images are what the layer's code builds.

scripts/build-test-image assembles each test image by running the layer's own tasks and image
functions (tests/layer/layerrun.py): the packages' do_install, the boot loader integration's
do_compile and do_deploy, the rootfs post-processing and the image types' functions
pymender_part_image and pymender_artifact_image. Here the same steps run on a miniature root
filesystem for both machines, and the result is checked part by part; the end-to-end tests boot
the real thing. Every runtime file of the layer is fetched by one of its recipes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from helpers import REPO, load_script, require_tool

pytest.importorskip("bb")
from layer import bbparse
from layer.bbparse import LAYER, configuration, local_conf, recipe

FILES_DIRS = sorted(LAYER.glob("recipes-*/*/files"))


def build_test_image() -> types.ModuleType:
    return load_script(REPO / "scripts" / "build_test_image.py", "build_test_image")


def src_uri_files(tmp_path: Path) -> set[Path]:
    """Every file:// of the layer's recipes, their bbappend includes and what pymender-full adds
    to the board's U-Boot recipe, resolved to its file."""
    found = set()
    datastores = []
    for fstype in ("ext4", "btrfs", "squashfs"):
        d = configuration(tmp_path / fstype, local_conf('PYMENDER_BOOTLOADER = "uboot"', 'UBOOT_MACHINE = "x"',
                                                         f'PYMENDER_ROOTFS_FSTYPE = "{fstype}"'))
        datastores += [recipe(d, p)[""] for p in bbparse.layer_files(".bb")]
        datastores.append(recipe(d, bbparse.STANDINS / "recipes" / "base-files_3.0.14.bb",
                                 [LAYER / "recipes-core" / "base-files" / "base-files_%.bbappend"])[""])
        datastores.append(recipe(d, bbparse.STANDINS / "recipes" / "u-boot_2024.01.bb")[""])
    for data in datastores:
        for uri in data.getVar("SRC_URI").split():
            name = uri[len("file://"):].split(";")[0]
            for directory in FILES_DIRS:
                if (directory / name).is_file():
                    found.add(directory / name)
    return found


def test_layer_installs_every_runtime_file(tmp_path: Path) -> None:
    every = {p for d in FILES_DIRS for p in d.iterdir() if p.is_file()}
    assert every and src_uri_files(tmp_path) == every


MINIATURE = {
    "etc/fstab": "# the distribution's own lines\n/dev/root / auto defaults 1 1\n",
    "etc/hostname": "board\n",
    "boot/vmlinuz": "kernel\n",
    "boot/initrd.img": "initramfs\n",
    "usr/lib/systemd/system/.keep": "",
    "usr/lib/python3/dist-packages/.keep": "",
    # What a pymender-state-scripts recipe's package installs: an Artifact script to stage.
    "usr/share/pymender/artifact-scripts/ArtifactInstall_Enter_10_hello": "#!/bin/sh\necho hello\n",
}


@pytest.fixture
def assemble(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """``assemble(arch)``: build-test-image's layer steps on a miniature rootfs; the outputs."""
    for tool in ("mkfs.ext4", "mkfs.vfat", "mcopy", "openssl", "systemctl"):
        require_tool(tool)
    script = build_test_image()
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")

    def run(arch: str, out: Path, touch_time: float | None = None) -> dict[str, Path]:
        target = script.MACHINES[arch]
        for tool in target.tools:
            require_tool(tool)
        rootfs = out / "work" / "rootfs"
        for name, text in MINIATURE.items():
            (rootfs / name).parent.mkdir(parents=True, exist_ok=True)
            (rootfs / name).write_text(text)
        keys = out / "keys"
        script.make_keys(keys)
        work = out / "work"
        layer = script.LayerRun(work / "bitbake", script.layer_conf(target, 352, keys),
                                path=[Path(sys.executable).parent, script.tools_dir(work)])
        deploy = Path(layer.recipe("image").getVar("DEPLOY_DIR_IMAGE"))
        script.install_layer_packages(target, layer, rootfs, deploy)
        if touch_time is not None:  # the deployed boot files made at another time
            for path in deploy.rglob("*"):
                os.utime(path, (touch_time, touch_time), follow_symlinks=False)
        disk, artifact = script.assemble(target, layer, rootfs, out)
        return {"disk": disk, "artifact": artifact, "rootfs": rootfs, "keys": keys}

    return run


def show(disk: Path) -> dict[str, object]:
    result = subprocess.run([str(Path(sys.executable).parent / "pymender-image"), "show", "--json", str(disk)],
                            capture_output=True, text=True, check=True)
    info: dict[str, object] = json.loads(result.stdout)
    return info


def fat_files(disk: Path, offset: int) -> list[str]:
    listing = subprocess.run(["mdir", "-/", "-b", "-i", f"{disk}@@{offset}", "::/"], capture_output=True,
                             text=True, check=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout
    return sorted(line.strip().removeprefix("::/") for line in listing.splitlines() if line.strip())


@pytest.mark.parametrize(("arch", "boot_files"), [
    ("x86_64", ["EFI/BOOT/bootx64.efi", "EFI/BOOT/grub.cfg", "grub-mender-grubenv/mender_grubenv1/env"]),
    ("arm64", ["boot.scr", "uboot-redund.env", "uboot.env"]),
])
def test_test_image_is_built_by_the_layers_tasks(assemble: object, tmp_path: Path, arch: str,
                                                 boot_files: list[str]) -> None:
    made = assemble(arch, tmp_path / arch)  # type: ignore[operator]
    rootfs = made["rootfs"]
    # The packages the layer's recipes installed.
    fstab = (rootfs / "etc/fstab").read_text()
    assert fstab.startswith(MINIATURE["etc/fstab"]) and "\t/data\text4\tdefaults,nofail,x-systemd.growfs\t" in fstab
    config = json.loads((rootfs / "etc/pymender/pymender.conf").read_text())
    assert config["RootfsPartA"] == "/dev/vda2" and config["Bootloader"] == ("grub" if arch == "x86_64" else "uboot")
    verify_key = (rootfs / "etc/pymender/artifact-verify-key.pem").read_bytes()
    assert verify_key == (made["keys"] / "artifact-signing.pem").read_bytes()
    assert os.readlink(rootfs / "var/lib/pymender") == "/data/pymender"
    assert (rootfs / "usr/lib/systemd/system/pymender.service").is_file()
    assert (rootfs / "etc/systemd/system/data.mount.wants/pymender-grow-data.service").is_symlink()
    assert (rootfs / "data").is_dir() and not any((rootfs / "data").iterdir())
    if arch == "arm64":
        assert (rootfs / "etc/fw_env.config").read_text().split()[0] == "/uboot/uboot.env"

    # The disk image of pymender_part_image: the partitions, the boot files from the deploy
    # directory, the data partition with the device type.
    info = show(made["disk"])
    partitions = info["partitions"]
    assert [p["filesystem"] for p in partitions] == ["vfat", "ext4", "empty", "ext4"]  # type: ignore[index]
    files = fat_files(made["disk"], partitions[0]["start"])  # type: ignore[index]
    assert set(boot_files) <= set(files)
    # The data partition's bootstrap Artifact names the factory release (the disk's rootfs).
    data = tmp_path / "data.ext4"
    with made["disk"].open("rb") as disk, data.open("wb") as out:
        disk.seek(partitions[3]["start"])  # type: ignore[index]
        out.write(disk.read(partitions[3]["size"]))  # type: ignore[index]
    bootstrap = tmp_path / "bootstrap.mender"
    subprocess.run(["debugfs", "-R", f"dump /pymender/bootstrap.mender {bootstrap}", str(data)], check=True,
                   capture_output=True)
    read = subprocess.run([str(Path(sys.executable).parent / "pymender-artifact"), "read", "--json", str(bootstrap)],
                          capture_output=True, text=True, check=True)
    assert json.loads(read.stdout)["name"] == build_test_image().FACTORY_RELEASE

    # The Artifact of pymender_artifact_image: signed, named, for this machine.
    read = subprocess.run([str(Path(sys.executable).parent / "pymender-artifact"), "read", "--json",
                           "-k", str(made["keys"] / "artifact-signing.pem"), str(made["artifact"])],
                          capture_output=True, text=True, check=True)
    artifact = json.loads(read.stdout)
    text = json.dumps(artifact)
    assert "release-2" in text and ("qemux86-64" if arch == "x86_64" else "qemuarm64") in text
    assert "ArtifactInstall_Enter_10_hello" in text  # the staged state script, not in the rootfs
    assert not (rootfs / "usr/share/pymender/artifact-scripts").exists()
    # PYMENDER_UPDATE_MODULES: the layer's Update Modules, as their recipe installs them
    assert sorted(os.listdir(rootfs / "usr/share/pymender/modules/v3")) == ["deb", "directory", "script",
                                                                            "single-file"]



def test_disk_image_bytes_do_not_depend_on_when_the_boot_files_were_made(assemble: object, tmp_path: Path) -> None:
    first = assemble("x86_64", tmp_path / "one")  # type: ignore[operator]
    second = assemble("x86_64", tmp_path / "two", touch_time=2_000_000_000)  # type: ignore[operator]
    boot = show(first["disk"])["partitions"][0]  # type: ignore[index]
    with first["disk"].open("rb") as one, second["disk"].open("rb") as two:
        one.seek(boot["start"])
        two.seek(boot["start"])
        assert one.read(boot["size"]) == two.read(boot["size"])
