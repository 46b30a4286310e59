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
    EnvCopy,
    UBootDisk,
    UBootMachine,
    boot_script,
    build_disk,
    env_copy,
    gzip_kernel,
    initial_env,
)
from fault.bootloaders import uboot_boot, uboot_import
from fault.crashcheck import crash_states_of
from fault.crashstates import CrashState
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


# --- a torn write of pymender's, as the crash-state model builds it ------------------------------

#: A variable long enough to carry the environment's data into its second sector, so that a write
#: torn at a sector boundary leaves a copy that is neither the old one nor the new one.
LONG_NOTE = {"pymender_note": "x" * 600}


def _commit_crash_states(tmp_path: Path) -> tuple[dict[str, bytes], list[CrashState]]:
    """The environment after a trial boot of B (copy 1, flags 3, bootcount=1) over pymender's
    install write (copy 2, flags 2); and every state a power cut during pymender's commit write
    (upgrade_available=0, into copy 2) can leave, by the crash-state model."""
    directory = tmp_path / "commit"
    directory.mkdir()
    before = {ENV_FILES[0]: env_copy({**TRIAL, **LONG_NOTE, "bootcount": "1"}, 3),
              ENV_FILES[1]: env_copy({**TRIAL, **LONG_NOTE}, 2)}
    lines = []
    for name, blob in before.items():
        (directory / name).write_bytes(blob)
        lines.append(f"{directory / name} 0x0 {ENV_SIZE:#x}\n")
    (directory / "fw_env.config").write_text("".join(lines))
    env = UBootEnv.from_config(directory / "fw_env.config", lock_file=None)
    states = crash_states_of(directory, lambda: env.write({"upgrade_available": "0"}), randoms=2)
    for name, blob in before.items():
        (directory / name).write_bytes(blob)
    return before, states


def _torn(state: CrashState, before: dict[str, bytes]) -> bool:
    """The commit's copy is neither as before nor as written: a sector boundary tore it."""
    blob = state.disk.files[ENV_FILES[1]]
    return blob != before[ENV_FILES[1]] and not EnvCopy.parse(blob).valid


def _boot_matches_the_model(tmp_path: Path, script: bytes, boot: Boot, files: dict[str, bytes]) -> None:
    """Real U-Boot boots ``files`` as the model of its script predicts: the partition, and every
    byte it writes; then pymender's backend and fw_printenv read what the script left."""
    predicted = uboot_boot(files, ENV_SIZE, names=ENV_FILES)
    disk = make_disk(tmp_path, script, files[ENV_FILES[0]], files[ENV_FILES[1]])
    console = boot(disk)
    assert BOOTING.format(predicted.partition) in console, console[-2000:]
    after = {name: disk.read(name) for name in ENV_FILES}
    assert after == {**files, **predicted.writes}
    left = uboot_boot(after, ENV_SIZE, names=ENV_FILES)
    assert left.source is not None
    assert_agree(disk, tmp_path, uboot_import(after[ENV_FILES[left.source - 1]][5:]) or {})


def test_a_torn_commit_write_boots_as_the_model_says(tmp_path: Path, script: bytes, boot: Boot) -> None:
    """A power cut tore pymender's commit write after the trial boot: the torn copy fails its CRC,
    U-Boot trusts the trial copy, whose trial is used up, and rolls back to A, writing the
    torn copy over, byte for byte as the model of the script says."""
    before, states = _commit_crash_states(tmp_path)
    torn = [state for state in states if _torn(state, before)]
    assert torn, [state.how for state in states]
    files = {name: torn[0].disk.files[name] for name in ENV_FILES}
    predicted = uboot_boot(files, ENV_SIZE, names=ENV_FILES)
    assert (predicted.source, predicted.partition, set(predicted.writes)) == (1, str(PART_A), {ENV_FILES[1]})
    _boot_matches_the_model(tmp_path, script, boot, files)


def test_every_crash_state_of_the_commit_write_boots_as_the_model_says(
        tmp_path: Path, script: bytes, boot: Boot) -> None:
    """Every distinct state of the commit write (on demand: a boot each)."""
    if os.environ.get("PYMENDER_E2E_FULL") != "1":
        pytest.skip("on demand (a boot for each of the commit write's crash states): PYMENDER_E2E_FULL=1")
    before, states = _commit_crash_states(tmp_path)
    assert any(_torn(state, before) for state in states)
    for index, state in enumerate(states):
        where = tmp_path / f"state-{index}"
        where.mkdir()
        _boot_matches_the_model(where, script, boot, {name: state.disk.files[name] for name in ENV_FILES})


def test_a_copy_in_a_longer_file_counts_by_its_first_bytes(tmp_path: Path, script: bytes, boot: Boot) -> None:
    """A file longer than the environment counts by its first ENV_SIZE bytes, as libubootenv
    reads it: U-Boot, pymender and fw_printenv take the same copy as current (the script used to
    call such a copy damaged and boot the other one: a finding of the ubootenv fuzz target)."""
    files = {ENV_FILES[0]: env_copy(FACTORY, 4), ENV_FILES[1]: env_copy(TRIAL, 5) + b"\x00\xff"}
    predicted = uboot_boot(files, ENV_SIZE, names=ENV_FILES)
    assert (predicted.source, predicted.partition, predicted.trial) == (2, str(PART_B), True)
    disk = make_disk(tmp_path, script, files[ENV_FILES[0]], files[ENV_FILES[1]])
    assert_agree(disk, tmp_path / "before", TRIAL)
    console = boot(disk)
    assert "damaged" not in console
    assert TRYING.format(PART_B) in console
    assert {name: disk.read(name) for name in ENV_FILES} == {**files, **predicted.writes}
    assert_agree(disk, tmp_path / "after", {**TRIAL, "bootcount": "1"})
