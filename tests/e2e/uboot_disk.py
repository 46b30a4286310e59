"""Small U-Boot disks and a launcher, to run the layer's real boot script in the real U-Boot.

The disk is a ``pymender-image`` sdimg: partition 1 (FAT) holds ``boot.scr`` (the layer's
defines and script, made with ``mkimage``) and the two environment files; the rootfs partitions
hold a tiny ext4 filesystem, with or without a kernel. :class:`UBootMachine` boots it with
Debian's U-Boot for QEMU's arm64 virt machine (``-bios``) and no Linux at all: the script picks a
partition, writes the environment, and either fails to load a kernel (then U-Boot stops at its
prompt, or resets, which ends QEMU because of ``-no-reboot``) or starts :data:`TEST_KERNEL`, which
prints its command line and powers the machine off.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pexpect

from helpers import REPO

FILES = REPO / "meta-pymender" / "recipes-bsp" / "pymender-ubootenv" / "files"
UBOOT_BIN = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
QEMU = "qemu-system-aarch64"
ENV_SIZE = 0x4000
ENV_FILES = ("uboot.env", "uboot-redund.env")
PART_A, PART_B = 2, 3
#: The machine values of the test disks (the layer's variable names).
MACHINE_VALUES = {
    "PYMENDER_ROOTFS_PART_A_NUMBER": str(PART_A),
    "PYMENDER_ROOTFS_PART_B_NUMBER": str(PART_B),
    "PYMENDER_ROOTFS_PART_A_NUMBER_HEX": format(PART_A, "x"),
    "PYMENDER_ROOTFS_PART_B_NUMBER_HEX": format(PART_B, "x"),
    "PYMENDER_KERNEL_ROOT_BASE": "/dev/vda",
    "PYMENDER_KERNEL_IMAGE": "/boot/vmlinuz",
    "PYMENDER_INITRD_IMAGE": "",
    "PYMENDER_KERNEL_DEVICETREE": "",
    "PYMENDER_KERNEL_ARGS": "rw console=ttyAMA0",
    "PYMENDER_UBOOT_ENV_SIZE": hex(ENV_SIZE),
}
DISK_ID = "0x5eed0001"

# An arm64 Image of 247 bytes (assembled with llvm-mc from the source below): it prints
# "pymender-test-kernel: " and the bootargs U-Boot put into the device tree (found by scanning
# the tree at x0 for "root=") on the PL011 UART at 0x09000000, then calls PSCI SYSTEM_OFF.
#   _head: b start; .word 0; .quad 0 (text_offset); .quad 0x10000 (image_size);
#          .quad 0xa (LE, 4K, anywhere); .quad 0, 0, 0; .word 0x644d5241 ("ARM\x64"); .word 0
#   start: mov x9, x0; movz x1, #0x0900, lsl #16; adr x2, banner
#   1: ldrb w3, [x2], #1; cbz w3, 2f; strb w3, [x1]; b 1b
#   2: ldr w4, [x9, #4]; rev w4, w4; add x4, x9, x4; mov x5, x9
#   3: cmp x5, x4; b.hs 6f; (compare the 5 bytes at x5 with "root=", b.ne 4f each; b.eq 5f)
#   4: add x5, x5, #1; b 3b
#   5: ldrb w3, [x5], #1; cbz w3, 6f; strb w3, [x1]; b 5b
#   6: mov w3, #'\n'; strb w3, [x1]; movz x0, #0x0008; movk x0, #0x8400, lsl #16; hvc #0
#   7: b 7b
#   banner: .asciz "pymender-test-kernel: "
TEST_KERNEL = bytes.fromhex(
    "1000001400000000000000000000000000000100000000000a0000000000000000000000000000000000000000000000"
    "000000000000000041524d6400000000e90300aa0120a1d2c2040010431440386300003423000039fdffff17240540b9"
    "8408c05a2401048be50309aabf0004ebc2020054a30040397fc80171a1010054a30440397fbc017141010054a3084039"
    "7fbc0171e1000054a30c40397fd0017181000054a31040397ff4007160000054a5040091eeffff17a314403863000034"
    "23000039fdffff174301805223000039000180d20080b0f2020000d40000001470796d656e6465722d746573742d6b65"
    "726e656c3a2000"
)
#: What the test kernel prints (group 1: its command line).
TEST_KERNEL_LINE = re.compile(r"pymender-test-kernel: ([^\r\n]*)")


def substitute(template: Path, values: Mapping[str, str]) -> str:
    """The template with every ``@NAME@`` replaced, as the layer and the test image do."""
    text = template.read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    left = re.findall(r"@[A-Z0-9_]+@", text)
    if left:
        raise ValueError(f"{template.name}: no value for {', '.join(left)}")
    return text


def boot_script(workdir: Path, values: Mapping[str, str]) -> bytes:
    """``boot.scr``: the substituted defines, an empty line, the A/B script; through mkimage."""
    source = workdir / "boot.cmd"
    source.write_text(substitute(FILES / "pymender-boot-defines.cmd.in", values) + "\n"
                      + (FILES / "pymender-boot.cmd").read_text(encoding="utf-8"), encoding="utf-8")
    output = workdir / "boot.scr"
    subprocess.run(["mkimage", "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none",
                    "-n", "pymender boot script", "-d", str(source), str(output)],
                   check=True, capture_output=True)
    return output.read_bytes()


def initial_env(workdir: Path, values: Mapping[str, str]) -> bytes:
    """uboot.env as the layer makes it: the rendered template through ``mkenvimage -r``."""
    text = workdir / "pymender-uboot-env.txt"
    text.write_text(substitute(FILES / "pymender-uboot-env.txt.in", values), encoding="utf-8")
    output = workdir / "uboot.env"
    subprocess.run(["mkenvimage", "-r", "-s", values["PYMENDER_UBOOT_ENV_SIZE"], "-o", str(output),
                    str(text)], check=True, capture_output=True)
    return output.read_bytes()


def env_copy(variables: Mapping[str, str], flags: int, size: int = ENV_SIZE) -> bytes:
    """One redundant copy, built here from the format's definition (not by the code under test)."""
    body = b"".join(f"{k}={v}".encode() + b"\0" for k, v in sorted(variables.items())) + b"\0"
    data = body + b"\0" * (size - 5 - len(body))
    return struct.pack("<I", zlib.crc32(data)) + bytes([flags]) + data


@dataclass(frozen=True)
class EnvCopy:
    """One copy as stored: CRC check, flags byte and variables."""

    valid: bool
    flags: int
    variables: dict[str, str]

    @classmethod
    def parse(cls, blob: bytes) -> EnvCopy:
        data = blob[5:]
        variables = {}
        for entry in data.split(b"\0"):
            if not entry:
                break
            name, _, value = entry.decode().partition("=")
            variables[name] = value
        return cls(len(blob) == ENV_SIZE and struct.unpack("<I", blob[:4])[0] == zlib.crc32(data),
                   blob[4] if len(blob) > 4 else -1, variables)


def ext4_image(path: Path, files: Mapping[str, bytes], size_mb: int = 4) -> Path:
    """An ext4 filesystem image holding ``files`` (paths inside it), made without root."""
    tree = path.with_suffix(".tree")
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    for name, content in files.items():
        target = tree / name.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    path.unlink(missing_ok=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(path), f"{size_mb}M"],
                   check=True, capture_output=True)
    return path


def gzip_kernel(image: bytes) -> bytes:
    """The kernel as Debian ships arm64 kernels: a gzip-compressed Image."""
    return gzip.compress(image, mtime=0)


@dataclass(frozen=True)
class UBootDisk:
    """A built disk: where partitions start, so files can be read and written with mtools."""

    path: Path
    starts: dict[int, int]

    def _fat(self) -> str:
        return f"{self.path}@@{self.starts[1]}"

    def read(self, name: str) -> bytes:
        result = subprocess.run(["mtype", "-i", self._fat(), f"::{name}"], check=True,
                                capture_output=True)
        return result.stdout

    def write(self, name: str, content: bytes, workdir: Path) -> None:
        source = workdir / f"put-{name}"
        source.write_bytes(content)
        subprocess.run(["mcopy", "-o", "-i", self._fat(), str(source), f"::{name}"], check=True,
                       capture_output=True)

    def copies(self) -> tuple[EnvCopy, EnvCopy]:
        first, second = (EnvCopy.parse(self.read(name)) for name in ENV_FILES)
        return first, second

    def export_env(self, directory: Path) -> Path:
        """Both env files copied into ``directory``, and an fw_env.config naming them."""
        directory.mkdir(parents=True, exist_ok=True)
        lines = []
        for name in ENV_FILES:
            (directory / name).write_bytes(self.read(name))
            lines.append(f"{directory / name} 0x0 {ENV_SIZE:#x}\n")
        config = directory / "fw_env.config"
        config.write_text("".join(lines))
        return config

    def import_env(self, directory: Path, workdir: Path) -> None:
        """Put the env files of ``directory`` (as export_env left them) back on the disk."""
        for name in ENV_FILES:
            self.write(name, (directory / name).read_bytes(), workdir)


def build_disk(workdir: Path, boot_files: Mapping[str, bytes],
               rootfs_a: Mapping[str, bytes] | None = None,
               rootfs_b: Mapping[str, bytes] | None = None) -> UBootDisk:
    """An sdimg (boot, rootfs A, rootfs B, data) with ``boot_files`` on the FAT partition."""
    boot = workdir / "boot"
    shutil.rmtree(boot, ignore_errors=True)
    boot.mkdir(parents=True)
    for name, content in boot_files.items():
        (boot / name).write_bytes(content)
    disk = workdir / "disk.img"
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from pymender.cli.image import run; sys.exit(run())",
         "build", "--layout", "sdimg", "--rootfs", str(ext4_image(workdir / "a.ext4", rootfs_a or {})),
         "--boot-dir", str(boot), "--total-size-mb", "40", "--boot-size-mb", "4", "--data-size-mb", "4",
         "--alignment", str(1 << 20), "--disk-id", DISK_ID, "--json", "-o", str(disk)],
        check=True, capture_output=True, text=True)
    starts = {p["number"]: p["start"] for p in json.loads(result.stdout)["partitions"]}
    if rootfs_b is not None:
        image = ext4_image(workdir / "b.ext4", rootfs_b).read_bytes()
        with disk.open("r+b") as out:
            out.seek(starts[PART_B])
            out.write(image)
    return UBootDisk(disk, starts)


class UBootMachine:
    """QEMU's arm64 virt machine running U-Boot from ``-bios`` on one disk, for one boot."""

    #: U-Boot's prompt once distro boot has tried everything.
    PROMPT = re.compile(r"\n=> ")

    def __init__(self, disk: UBootDisk, log: Path) -> None:
        self.disk = disk
        self.log = log

    def boot(self, timeout: float = 120.0) -> str:
        """Boot once; return the console text. Ends at U-Boot's prompt, a reset or a power-off."""
        argv = ["-M", "virt", "-cpu", "cortex-a57", "-m", "512", "-nographic", "-no-reboot",
                "-bios", str(UBOOT_BIN), "-nic", "none",
                "-drive", f"if=virtio,format=raw,file={self.disk.path}"]
        with self.log.open("a", encoding="utf-8", errors="replace") as log:
            log.write(f"\n===== {QEMU} {' '.join(argv)}\n")
            child = pexpect.spawn(QEMU, argv, encoding="utf-8", codec_errors="replace",
                                  timeout=timeout, env={**os.environ, "TERM": "dumb"})
            child.logfile_read = log
            try:
                index = child.expect([self.PROMPT, pexpect.EOF])
                text = (child.before or "") + ("\n=> " if index == 0 else "")
            finally:
                if child.isalive():
                    child.kill(signal.SIGKILL)
                child.close(force=True)
        return text.replace("\r", "")
