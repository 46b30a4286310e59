"""The layer's U-Boot boot script, run by the real U-Boot (QEMU arm64 virt), without Linux.

Each test builds a small disk (uboot_disk.py), boots it once or twice and reads the two
environment files back, checking them three ways: the raw bytes (CRC, flags, which copy was
written), pymender's U-Boot backend and libubootenv's ``fw_printenv``. The rootfs partitions hold
no kernel unless a test puts the tiny test kernel there, so the script says which partition it
boots, fails to load it and stops (or resets, during a trial).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.uboot_disk import (
    ENV_FILES,
    ENV_SIZE,
    MACHINE_VALUES,
    PART_A,
    PART_B,
    TEST_KERNEL,
    TEST_KERNEL_LINE,
    UBOOT_BIN,
    UBootDisk,
    UBootMachine,
    boot_script,
    build_disk,
    env_copy,
    gzip_kernel,
    initial_env,
)
from helpers import require_tool
from pymender.device.bootenv.uboot import UBootEnv

pytestmark = pytest.mark.e2e

FACTORY = {"bootcount": "0", "mender_boot_part": str(PART_A), "mender_boot_part_hex": str(PART_A),
           "upgrade_available": "0"}
TRIAL = {"bootcount": "0", "mender_boot_part": str(PART_B), "mender_boot_part_hex": str(PART_B),
         "upgrade_available": "1"}
BOOTING = "pymender: booting partition {}"
TRYING = "pymender: trying the update on partition {}"
ROLLING_BACK = "pymender: update on partition {} not committed, rolling back to partition {}"


@pytest.fixture(scope="module")
def tools() -> None:
    for tool in ("qemu-system-aarch64", "mkimage", "mkenvimage", "mcopy", "mtype", "mkfs.ext4",
                 "fw_printenv", "fw_setenv"):
        require_tool(tool)
    if not UBOOT_BIN.is_file():
        message = f"{UBOOT_BIN} is missing (package u-boot-qemu; ci/install-deps installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def script(tools: None, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return boot_script(tmp_path_factory.mktemp("script"), MACHINE_VALUES)


Boot = Callable[[UBootDisk], str]


@pytest.fixture
def boot(tmp_path: Path) -> Boot:
    def run(disk: UBootDisk) -> str:
        return UBootMachine(disk, tmp_path / "console.log").boot()
    return run


def make_disk(tmp_path: Path, script: bytes, first: bytes, second: bytes | None = None,
              **rootfs: dict[str, bytes]) -> UBootDisk:
    return build_disk(tmp_path, {"boot.scr": script, ENV_FILES[0]: first,
                                 ENV_FILES[1]: first if second is None else second}, **rootfs)


def fw_printenv(disk: UBootDisk, directory: Path) -> dict[str, str]:
    config = disk.export_env(directory)
    out = subprocess.run(["fw_printenv", "-c", str(config)], check=True, capture_output=True,
                         text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def backend(disk: UBootDisk, directory: Path) -> UBootEnv:
    return UBootEnv.from_config(disk.export_env(directory), lock_file=None)


def assert_agree(disk: UBootDisk, tmp_path: Path, expected: dict[str, str]) -> None:
    """pymender's backend and fw_printenv read the same variables, and those are ``expected``."""
    assert backend(disk, tmp_path / "pm").read() == expected
    assert fw_printenv(disk, tmp_path / "fw") == expected


def test_factory_boot_writes_nothing(tmp_path: Path, script: bytes, boot: Boot) -> None:
    env = initial_env(tmp_path, MACHINE_VALUES)
    assert env[4] == 1 and len(env) == ENV_SIZE
    disk = make_disk(tmp_path, script, env)
    console = boot(disk)
    assert BOOTING.format(PART_A) in console
    assert "pymender: root=/dev/vda2" in console
    assert "trying the update" not in console and "damaged" not in console
    assert [disk.read(name) for name in ENV_FILES] == [env, env]


def test_trial_boot_then_rollback_without_commit(tmp_path: Path, script: bytes, boot: Boot) -> None:
    disk = make_disk(tmp_path, script, initial_env(tmp_path, MACHINE_VALUES))
    # What `pymender install` does: one write through its backend (copy 2 gets flags 2).
    state = tmp_path / "state"
    env = backend(disk, state)
    env.write({"mender_boot_part": str(PART_B), "mender_boot_part_hex": str(PART_B),
               "upgrade_available": "1", "bootcount": "0", "keep_me": "a value"})
    disk.import_env(state, tmp_path)
    before = disk.copies()
    current_bytes = disk.read(ENV_FILES[1])
    assert before[1].flags == 2 and before[1].variables["upgrade_available"] == "1"

    console = boot(disk)
    assert TRYING.format(PART_B) in console
    assert BOOTING.format(PART_B) in console
    assert "pymender: cannot boot partition 3" in console
    assert "resetting to roll back" in console
    first, second = disk.copies()
    assert disk.read(ENV_FILES[1]) == current_bytes  # the current copy is never written
    assert first.valid and first.flags == 3
    assert first.variables == {**before[1].variables, "bootcount": "1"}
    assert_agree(disk, tmp_path, first.variables)

    console = boot(disk)
    assert ROLLING_BACK.format(PART_B, PART_A) in console
    assert BOOTING.format(PART_A) in console
    assert "resetting" not in console
    first_after, second = disk.copies()
    assert first_after == first
    assert second.valid and second.flags == 4
    expected = {**FACTORY, "keep_me": "a value"}
    assert second.variables == expected
    assert_agree(disk, tmp_path, expected)


def test_damaged_current_copy_falls_back_to_the_other(tmp_path: Path, script: bytes, boot: Boot) -> None:
    damaged = bytearray(env_copy(TRIAL, 5))
    damaged[40] ^= 0xFF
    disk = make_disk(tmp_path, script, env_copy(FACTORY, 4), bytes(damaged))
    console = boot(disk)
    assert "pymender: env copy 2 damaged or half written, using copy 1" in console
    assert BOOTING.format(PART_A) in console and "trying the update" not in console
    assert disk.read(ENV_FILES[1]) == bytes(damaged)
    assert_agree(disk, tmp_path, FACTORY)


def test_damaged_older_copy_is_replaced_and_nothing_is_lost(tmp_path: Path, script: bytes,
                                                           boot: Boot) -> None:
    current = env_copy({**TRIAL, "serial": "A-17"}, 9)
    disk = make_disk(tmp_path, script, b"\xff" * ENV_SIZE, current)
    console = boot(disk)
    assert "pymender: env copy 1 damaged or half written, using copy 2" in console
    assert TRYING.format(PART_B) in console
    first, _ = disk.copies()
    assert disk.read(ENV_FILES[1]) == current
    assert first.valid and first.flags == 10
    assert first.variables == {**TRIAL, "serial": "A-17", "bootcount": "1"}
    assert_agree(disk, tmp_path, first.variables)


@pytest.mark.parametrize(("flags", "current", "written_flags"), [
    ((0xFF, 0x00), 1, 0x01),  # 0 is newer than 255: copy 2 is current, copy 1 gets 1
    ((0xFF, 0xFE), 0, 0x00),  # copy 1 (255) is current; the write wraps to 0 in copy 2
], ids=["read-wrap", "write-wrap"])
def test_flags_wrap(tmp_path: Path, script: bytes, boot: Boot, flags: tuple[int, int], current: int,
                    written_flags: int) -> None:
    blobs = [env_copy(FACTORY, flags[0]), env_copy(FACTORY, flags[1])]
    blobs[current] = env_copy(TRIAL, flags[current])
    disk = make_disk(tmp_path, script, blobs[0], blobs[1])
    assert fw_printenv(disk, tmp_path / "fw-before") == TRIAL
    console = boot(disk)
    assert TRYING.format(PART_B) in console
    copies = disk.copies()
    assert disk.read(ENV_FILES[current]) == blobs[current]
    written = copies[1 - current]
    assert written.valid and written.flags == written_flags
    assert_agree(disk, tmp_path, {**TRIAL, "bootcount": "1"})


def test_both_copies_damaged_boot_rootfs_a(tmp_path: Path, script: bytes, boot: Boot) -> None:
    bad = bytearray(env_copy(TRIAL, 1))
    bad[0] ^= 1
    short = env_copy(TRIAL, 2)[: ENV_SIZE // 2]
    disk = make_disk(tmp_path, script, bytes(bad), short)
    console = boot(disk)
    assert f"pymender: both env copies damaged, booting rootfs A (partition {PART_A})" in console
    assert BOOTING.format(PART_A) in console and "trying the update" not in console
    assert [disk.read(name) for name in ENV_FILES] == [bytes(bad), short]


def test_invalid_values_make_a_copy_unusable(tmp_path: Path, script: bytes, boot: Boot) -> None:
    disk = make_disk(tmp_path, script, env_copy(FACTORY, 1), env_copy({**TRIAL, "bootcount": "7"}, 2))
    console = boot(disk)
    assert "pymender: env copy 2 damaged or half written, using copy 1" in console
    assert BOOTING.format(PART_A) in console


def test_env_written_by_fw_setenv_is_honoured(tmp_path: Path, script: bytes, boot: Boot) -> None:
    disk = make_disk(tmp_path, script, initial_env(tmp_path, MACHINE_VALUES))
    state = tmp_path / "state"
    config = disk.export_env(state)
    lines = "".join(f"{k}={v}\n" for k, v in TRIAL.items())
    subprocess.run(["fw_setenv", "-c", str(config), "-s", "-"], input=lines, text=True, check=True,
                   capture_output=True)
    disk.import_env(state, tmp_path)
    before = disk.copies()
    writer = 0 if before[0].flags > before[1].flags else 1

    console = boot(disk)
    assert TRYING.format(PART_B) in console
    after = disk.copies()
    assert after[writer] == before[writer]
    assert after[1 - writer].flags == (before[writer].flags + 1) % 256
    assert_agree(disk, tmp_path, {**TRIAL, "bootcount": "1"})


@pytest.mark.parametrize("variant", ["plain-image", "gzip-initrd-devicetree-partuuid"])
def test_kernel_is_started_with_root_and_args(tmp_path: Path, boot: Boot, tools: None, variant: str) -> None:
    values = dict(MACHINE_VALUES)
    files = {"/boot/vmlinuz": TEST_KERNEL}
    expected_root = f"/dev/vda{PART_B}"
    if variant != "plain-image":
        dtb = tmp_path / "virt.dtb"
        subprocess.run(["qemu-system-aarch64", "-M", f"virt,dumpdtb={dtb}", "-cpu", "cortex-a57",
                        "-m", "512", "-nographic"], check=True, capture_output=True)
        files = {"/boot/vmlinuz": gzip_kernel(TEST_KERNEL), "/boot/initrd.img": b"initramfs" * 5000,
                 "/boot/virt.dtb": dtb.read_bytes()}
        values.update(PYMENDER_KERNEL_ROOT_BASE="", PYMENDER_INITRD_IMAGE="/boot/initrd.img",
                      PYMENDER_KERNEL_DEVICETREE="/boot/virt.dtb")
        expected_root = "PARTUUID=5eed0001-03"
    disk = make_disk(tmp_path, boot_script(tmp_path, values), env_copy(TRIAL, 1), env_copy(FACTORY, 0),
                     rootfs_b=files)
    console = boot(disk)
    assert TRYING.format(PART_B) in console
    started = TEST_KERNEL_LINE.search(console)
    assert started, console[-2000:]
    assert started.group(1).split() == [f"root={expected_root}", "rw", "console=ttyAMA0"]
    if variant != "plain-image":
        assert "Uncompressing Kernel Image" in console
        assert "Loading Ramdisk" in console
    assert "cannot boot" not in console
