"""The test image boots to a root shell from rootfs A, set up as the layer sets up a device.

Every test runs on both machines (x86-64 with GRUB, arm64 with U-Boot; see conftest.py) unless
it says otherwise. One boot serves every check of the factory state (a boot under TCG takes
about a minute); each check is its own assertion so a failure names what is wrong. A second
test drives the harness itself: a second disk, a power cut, power on, power off (cut for time
on arm64, where the standalone scenarios drive the same steps). The third tests GRUB's boot
script; U-Boot's has its own test (test_uboot_script.py).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.conftest import BootMachine, E2EImage, cut_for_time
from e2e.guest import boot_env, fw_printenv, mount_stick, root_device, running_release
from e2e.qemu import Machine, make_fat_disk
from fault.bootloaders import grub_boot, grub_envblk_parse
from fault.crashcheck import crash_states_of
from pymender.device.bootenv.grub import GrubEnv, decode_block

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


#: The factory machine's disk is this much larger than the image, as real disks are: the data
#: partition grows into the rest on the first boot.
LARGER_DISK_MB = 256


@pytest.fixture
def machine(boot: BootMachine) -> Iterator[Machine]:
    yield boot(larger_disk_mb=LARGER_DISK_MB)


def test_factory_image_boots_rootfs_a_with_pymender_set_up(
    machine: Machine, test_image: E2EImage
) -> None:
    # The boot script (GRUB's or U-Boot's) chose rootfs A from the environment and said so.
    assert machine.booted_partition == 2
    if test_image.bootloader == "grub":
        assert "pymender: root=PARTUUID=" in machine.last_boot_log

    # The shell works and reports exit codes faithfully.
    assert machine.run("true") == (0, "")
    assert machine.run("echo out; echo err >&2; exit_with() { return $1; }; exit_with 7")[0] == 7
    assert machine.run("echo hello; false") == (1, "hello")

    # Rootfs A is the running root, the factory release is on it.
    assert root_device(machine) == test_image.partitions["rootfs_a"]
    assert running_release(machine, test_image.marker_file) == test_image.factory_release

    # The data and boot partitions are mounted as the layer's fstab lines say.
    assert machine.check("findmnt -n -o SOURCE,FSTYPE /data").split() == [
        test_image.partitions["data"], "ext4"]
    assert machine.check(f"findmnt -n -o SOURCE,FSTYPE {test_image.boot_mount}").split() == [
        test_image.partitions["boot"], "vfat"]
    assert machine.check("readlink /var/lib/pymender") == "/data/pymender"
    assert machine.check("cat /var/lib/pymender/device_type") == (
        f"device_type={test_image.device_type}")

    # The data partition grew into the rest of the larger disk before /data was mounted, and its
    # filesystem with it (the layer's grow unit and the x-systemd.growfs mount option).
    assert machine.check("systemctl is-active pymender-grow-data.service") == "active"
    data = test_image.partitions["data"].rsplit("/", 1)[1]
    partition_mb = int(machine.check(f"cat /sys/class/block/{data}/size")) // 2048
    assert partition_mb >= 128 + LARGER_DISK_MB
    filesystem_mb = int(machine.check("df --block-size=1M --output=size /data | tail -n 1"))
    assert filesystem_mb >= 128 + LARGER_DISK_MB - 16

    # The unit is installed and disabled (standalone mode); the boot did not degrade.
    assert machine.run("systemctl is-enabled pymender.service") == (1, "disabled")
    code, failed = machine.run("systemctl --failed --no-legend --plain")
    assert code == 0 and failed == "", failed

    # pymender runs on the device's own Python, with the configuration the layer installs.
    backend = f"pymender.device.bootenv.{test_image.bootloader}"
    assert machine.run(f"python3 -c 'import {backend}, cryptography'")[0] == 0
    config = json.loads(machine.check("cat /etc/pymender/pymender.conf"))
    assert config["Bootloader"] == test_image.bootloader
    assert config["RootfsPartA"] == test_image.partitions["rootfs_a"]
    assert config["RootfsPartB"] == test_image.partitions["rootfs_b"]
    assert config["ArtifactVerifyKey"] == "/etc/pymender/artifact-verify-key.pem"

    # The bootloader environment, read by pymender's own code on the device: A is active, no
    # trial (U-Boot's initial env also has mender_boot_part_hex; GRUB's gets it on first write).
    factory_env = {"bootcount": "0", "mender_boot_part": "2", "upgrade_available": "0"}
    if test_image.bootloader == "uboot":
        factory_env["mender_boot_part_hex"] = "2"
    assert boot_env(machine) == factory_env
    if test_image.bootloader == "uboot":
        # fw_env.config names the two copies on the boot partition, and libubootenv's
        # fw_printenv reads the same values from them as pymender.
        config_lines = machine.check("grep -v '^#' /etc/fw_env.config").splitlines()
        assert [line.split()[0] for line in config_lines if line.strip()] == list(
            test_image.uboot_env_files)
        assert fw_printenv(machine) == factory_env

    # The device command line reports the factory release: the data partition's bootstrap
    # Artifact (the layer's) is installed first, then removed; its provides are the device's.
    assert machine.run("test -f /data/pymender/bootstrap.mender")[0] == 0
    assert machine.run("pymender show-artifact") == (0, test_image.factory_release)
    assert machine.run("test -e /data/pymender/bootstrap.mender")[0] == 1
    provides = machine.check("pymender show-provides").splitlines()
    assert f"rootfs-image.version={test_image.factory_release}" in provides
    assert any(line.startswith("rootfs-image.checksum=") for line in provides), provides


def test_usb_stick_power_cut_and_power_on(
    boot: BootMachine, test_image: E2EImage, tmp_path: Path
) -> None:
    cut_for_time(test_image, "the stick, the power cut and the power-on are driven on arm64 by "
                 "test_standalone.py::test_refusals_and_power_cuts; this checks the harness")
    # A second disk stands in for a USB stick: a FAT filesystem without a partition table.
    note = tmp_path / "hello.txt"
    note.write_text("from the stick\n")
    stick = make_fat_disk(tmp_path / "stick.img", {"hello.txt": note})
    machine = boot(extra_disks=[stick])
    mount_stick(machine)
    assert machine.check("cat /mnt/usb1/hello.txt") == "from the stick"

    # A file written and synced survives a power cut; the machine powers on again from A.
    machine.check("echo kept > /data/power-cut-probe && sync")
    machine.kill()
    assert not machine.running
    machine.start()
    assert machine.boots == 2
    assert machine.booted_partition == 2
    assert machine.check("cat /data/power-cut-probe") == "kept"

    # An orderly power-off ends QEMU.
    machine.poweroff()
    assert not machine.running


_ENV_DIR = "/boot/efi/grub-mender-grubenv"
_GRUBENV = (
    "from pathlib import Path; "
    "from pymender.device.bootenv.grub import GrubEnv, encode_block; "
    f"env = GrubEnv(Path('{_ENV_DIR}')); "
)


def _copies_agree_and_rest(machine: Machine) -> None:
    """Both copies hold the same variables and their locks are at rest (match their checksums).

    (Not the same bytes: GRUB's save_env appends variables a copy did not have.)
    """
    for copy in ("mender_grubenv1", "mender_grubenv2"):
        machine.check(f"cd {_ENV_DIR}/{copy} && sha256sum --quiet -c lock.sha256sum")
        assert "editing=0" in machine.check(f"cat {_ENV_DIR}/{copy}/lock")
    machine.check(
        "python3 -c \"from pathlib import Path; "
        "from pymender.device.bootenv.grub import decode_block; "
        f"d = Path('{_ENV_DIR}'); "
        "one, two = (decode_block((d / c / 'env').read_bytes()) "
        "for c in ('mender_grubenv1', 'mender_grubenv2')); "
        "assert one is not None and one == two, (one, two)\""
    )


def _guest_files(machine: Machine) -> dict[str, bytes]:
    return {f"{copy}/{name}": base64.b64decode(machine.check(f"base64 -w0 {_ENV_DIR}/{copy}/{name}"))
            for copy in ("mender_grubenv1", "mender_grubenv2") for name in ("env", "lock", "lock.sha256sum")}


def _torn_trial_write(files: dict[str, bytes], workdir: Path) -> dict[str, bytes]:
    """The factory environment with a long variable added, then pymender's write of a trial of
    partition 2 (the running one, so the trial boot can succeed) cut by a power loss while it
    wrote copy 1's env: the crash-state model's state with copy 1's lock marked editing and its
    env torn at the sector boundary (neither the old block nor the new)."""
    for name, content in files.items():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_bytes(content)
    env = GrubEnv(workdir, lock_file=None)
    env.write({"pymender_note": "x" * 600})  # the data now reaches the env's second sector
    old = (workdir / "mender_grubenv1" / "env").read_bytes()
    states = crash_states_of(workdir, lambda: env.write(
        {"mender_boot_part": "2", "mender_boot_part_hex": "2", "upgrade_available": "1", "bootcount": "0"}))
    new = (workdir / "mender_grubenv1" / "env").read_bytes()
    torn = [state.disk.files for state in states
            if state.disk.files["mender_grubenv1/env"] not in (old, new)
            and decode_block(state.disk.files["mender_grubenv1/lock"]) == {"editing": "1"}]
    assert torn, [state.how for state in states]
    return {name: torn[0][name] for name in files}


def test_grub_script_repairs_tries_once_and_rolls_back(
    boot: BootMachine, test_image: E2EImage, tmp_path: Path
) -> None:
    if test_image.bootloader != "grub":
        pytest.skip("GRUB's boot script only; U-Boot's boot script has its own test "
                    "(tests/e2e/test_uboot_script.py)")
    machine = boot()
    # Copy 1 as a power cut in the middle of pymender's write leaves it (a state of the
    # crash-state model): lock "editing=1", env torn. GRUB must trust copy 2, which holds the
    # trial, rebuild copy 1 from it, and try the update, as the model of its script predicts.
    files = _torn_trial_write(_guest_files(machine), tmp_path)
    predicted = grub_boot(files)
    assert (predicted.source, predicted.partition, predicted.trial) == (2, "2", True)
    for name, content in files.items():  # one file a command: a console line holds 4095 characters
        machine.check(f"echo {base64.b64encode(content).decode()} | base64 -d > {_ENV_DIR}/{name}")
    machine.check("sync")
    assert _guest_files(machine) == files
    log = machine.reboot()
    assert "env copy 1 damaged or half written, repairing it from copy 2" in log
    assert "trying the update on partition 2" in log
    assert machine.booted_partition == int(predicted.partition)
    expected = {k: v for k, v in predicted.env.items() if k != "pymender_note"}
    assert {k: v for k, v in boot_env(machine).items() if k != "pymender_note"} == expected == {
        "bootcount": "1", "mender_boot_part": "2", "mender_boot_part_hex": "2", "upgrade_available": "1"}
    _copies_agree_and_rest(machine)
    after = _guest_files(machine)
    for copy in (1, 2):
        assert grub_envblk_parse(after[f"mender_grubenv{copy}/env"]) == {
            **(grub_envblk_parse(files["mender_grubenv2/env"]) or {}), "bootcount": "1"}

    # Partition 3 was on trial and its one trial boot is used up: the next boot rolls back.
    machine.check(
        "python3 -c \"" + _GRUBENV
        + "env.write({'mender_boot_part': '3', 'mender_boot_part_hex': '3', 'upgrade_available': '1', "
        "'bootcount': '1'})\" && sync"
    )
    log = machine.reboot()
    assert "partition 3 not committed, rolling back to partition 2" in log
    assert machine.booted_partition == 2
    assert boot_env(machine) == {"bootcount": "0", "mender_boot_part": "2", "mender_boot_part_hex": "2",
                                 "upgrade_available": "0", "pymender_note": "x" * 600}
    _copies_agree_and_rest(machine)
