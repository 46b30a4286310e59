"""meta-pymender's pymender-qemu: the QEMU command that boots a build's disk image.

runqemu cannot boot a whole disk with its boot loader; the layer's script can, from what the
build deployed (the OVMF or U-Boot firmware, the native QEMU). The end-to-end tests start their
machines with the same board, firmware and disk options (tests/e2e/qemu.py), so this checks
the rest: finding the machine, the firmware and QEMU, and saying what is missing.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from helpers import load_script
from layer.bbparse import LAYER

SCRIPT = LAYER / "scripts" / "pymender-qemu"


def script() -> types.ModuleType:
    return load_script(SCRIPT, "pymender_qemu")


def deploy_dir(tmp_path: Path, machine: str, *firmware: str, qemuboot: str | None = None) -> Path:
    deploy = tmp_path / "deploy" / "images" / machine
    deploy.mkdir(parents=True)
    image = deploy / f"core-image-minimal-{machine}.rootfs.sdimg"
    image.write_bytes(b"\0" * 512)
    for name in firmware:
        (deploy / name).write_bytes(b"firmware " + name.encode())
    if qemuboot is not None:
        (deploy / f"core-image-minimal-{machine}.rootfs.qemuboot.conf").write_text(qemuboot)
    return image


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = script().main(list(args))
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


def test_x86_64_boots_ovmf_from_the_build_with_the_disk_as_vda(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    image = deploy_dir(tmp_path, "qemux86-64", "ovmf.code.qcow2", "ovmf.vars.qcow2")
    code, out, _ = run(capsys, "--print", str(image))
    assert code == 0
    argv = out.split()
    assert argv[argv.index("-M") + 1] == "q35"
    code_file = image.parent / "ovmf.code.qcow2"
    variables = image.with_name(image.name + ".ovmf-vars.qcow2")
    assert f"if=pflash,format=qcow2,unit=0,readonly=on,file={code_file}" in argv
    assert f"if=pflash,format=qcow2,unit=1,file={variables}" in argv
    assert variables.read_bytes() == b"firmware ovmf.vars.qcow2"  # the firmware's own copy
    assert f"if=none,id=disk0,format=raw,file={image}" in argv
    assert "virtio-blk-pci,drive=disk0,bootindex=0" in argv  # /dev/vda, PYMENDER_STORAGE_DEVICE


def test_arm64_boots_the_builds_u_boot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = deploy_dir(tmp_path, "qemuarm64", "u-boot.bin")
    code, out, _ = run(capsys, "--print", "--snapshot", str(image), "--", "-s")
    argv = out.split()
    assert code == 0
    assert argv[argv.index("-M") + 1:argv.index("-M") + 6] == ["virt", "-cpu", "cortex-a57", "-bios",
                                                                str(image.parent / "u-boot.bin")]
    assert argv[-2:] == ["-snapshot", "-s"]


def test_the_builds_own_qemu_and_machine_from_qemuboot_conf(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    conf = "[config_bsp]\nmachine = qemuarm64\nstaging_bindir_native = ../../sysroot/usr/bin\n"
    image = deploy_dir(tmp_path, "qemuarm64", "u-boot.bin", qemuboot=conf)
    renamed = image.rename(image.with_name("my-disk.sdimg"))
    conf_path = image.with_name(image.name.replace(".sdimg", ".qemuboot.conf"))
    conf_path.rename(renamed.with_name("my-disk.qemuboot.conf"))
    qemu = tmp_path / "deploy" / "sysroot" / "usr" / "bin" / "qemu-system-aarch64"
    qemu.parent.mkdir(parents=True)
    qemu.write_text("#!/bin/sh\n")
    code, out, _ = run(capsys, "--print", str(renamed))
    assert code == 0 and out.split()[0] == str(qemu)


@pytest.mark.parametrize(("machine", "missing"), [("qemux86-64", "ovmf recipe"), ("qemuarm64", "u-boot recipe")])
def test_missing_firmware_says_what_to_build(tmp_path: Path, capsys: pytest.CaptureFixture[str], machine: str,
                                            missing: str) -> None:
    image = deploy_dir(tmp_path, machine)
    code, _, err = run(capsys, "--print", str(image))
    assert code == 2 and missing in err and err.startswith("pymender-qemu: the firmware")


def test_an_unknown_machine_asks_for_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "disk.sdimg"
    image.write_bytes(b"\0")
    code, _, err = run(capsys, "--print", str(image))
    assert code == 2 and "give --machine" in err
