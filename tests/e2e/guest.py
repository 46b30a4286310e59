"""Small questions the end-to-end tests ask the running test image (through :class:`Machine`)."""

from __future__ import annotations

import json
import shlex

from e2e.qemu import Machine

#: Where the first extra disk (the "USB stick") appears in the guest.
STICK_DEVICE = "/dev/disk/by-id/virtio-disk1"
#: The bootloader variables pymender and the boot scripts share (DESIGN.md §3.3).
BOOT_VARIABLES = ("bootcount", "mender_boot_part", "mender_boot_part_hex", "upgrade_available")


def boot_env(machine: Machine) -> dict[str, str]:
    """The bootloader environment as pymender's own code on the device reads it (GRUB's two
    copies or U-Boot's, whichever the device's configuration names): every variable on GRUB,
    the shared ones (:data:`BOOT_VARIABLES`) on U-Boot, whose environment may also hold U-Boot's
    own. ``mender_boot_part_hex``, when present, must match ``mender_boot_part``.

    The factory environments differ: GRUB's has no ``mender_boot_part_hex`` until pymender
    first writes the environment; U-Boot's has it from the start (the layer's initial env).
    """
    env = dict(json.loads(machine.check(
        "python3 -c 'import json; from pymender.device.bootenv import open_bootenv; "
        "print(json.dumps(open_bootenv(None).read()))'"
    )))
    if "mender_boot_part_hex" in env:
        assert int(env["mender_boot_part_hex"], 16) == int(env["mender_boot_part"]), env
    if machine.config.arch == "x86_64":
        return env
    return {name: value for name, value in env.items() if name in BOOT_VARIABLES}


def fw_printenv(machine: Machine) -> dict[str, str]:
    """The shared variables as libubootenv's ``fw_printenv`` reads them (U-Boot machines): the
    peer that must agree with pymender and U-Boot on every byte of the environment."""
    output = machine.check(f"fw_printenv {' '.join(BOOT_VARIABLES)} 2>/dev/null; true")
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def running_release(machine: Machine, marker_file: str) -> str:
    """The release marker of the running root filesystem."""
    return machine.check(f"cat {shlex.quote(marker_file)}")


def root_device(machine: Machine) -> str:
    """The device mounted on ``/``."""
    return machine.check("findmnt -n -o SOURCE /")


def mount_stick(machine: Machine, mountpoint: str = "/mnt/usb1",
                device: str = STICK_DEVICE) -> None:
    """Mount the FAT "USB stick" (the first extra disk) as the documented flow does."""
    machine.check(f"mkdir -p {shlex.quote(mountpoint)} && "
                  f"mount {shlex.quote(device)} {shlex.quote(mountpoint)}")
