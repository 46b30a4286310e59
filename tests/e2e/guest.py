"""Small questions the end-to-end tests ask the running test image (through :class:`Machine`)."""

from __future__ import annotations

import json
import shlex

from e2e.qemu import Machine

#: Where the first extra disk (the "USB stick") appears in the guest.
STICK_DEVICE = "/dev/disk/by-id/virtio-disk1"


def boot_env(machine: Machine) -> dict[str, str]:
    """The GRUB environment as pymender's own code on the device reads it."""
    return dict(json.loads(machine.check(
        "python3 -c 'import json; from pymender.device.bootenv import open_bootenv; "
        "print(json.dumps(open_bootenv(None).read()))'"
    )))


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
