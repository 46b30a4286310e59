"""The standalone flow on a booted device: the QEMU part of the demo.

    scripts/demo-qemu [WORK_DIR]

Builds the test image and its release Artifact (scripts/build-test-image, a no-op when nothing
changed), boots the image in QEMU (x86-64, UEFI), and on the device: shows the factory system,
mounts a "USB stick" holding the release Artifact, installs it, reboots into it, commits it, and
reboots once more to show that it stays. Each step prints the command run on the device and what
it printed. The machine is driven over its serial console by the end-to-end tests' harness
(tests/e2e/qemu.py); the console log is kept in WORK_DIR (default: a temporary directory).

Needs root (the image build uses mmdebstrap's chroot mode) and the packages of ci/install-deps.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the harness lives with the tests that use it

from e2e.qemu import Machine, MachineConfig, kvm_usable, make_fat_disk, overlay_disk  # noqa: E402

IMAGE_DIR = REPO / "build" / "test-image"
STICK_DEVICE = "/dev/disk/by-id/virtio-disk1"


def step(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def say(text: str) -> None:
    print(f"   {text}", flush=True)


def on_device(machine: Machine, command: str, timeout: float = 1200.0) -> int:
    """Run ``command`` on the device and print it with its output, as a terminal would."""
    print(f"device# {command}", flush=True)
    code, output = machine.run(command, timeout=timeout)
    if output:
        print(output, flush=True)
    if code != 0:
        print(f"(exit code {code})", flush=True)
    return code


def boot_messages(machine: Machine) -> None:
    """What GRUB's boot script said about its choice on the last boot."""
    for line in machine.last_boot_log.splitlines():
        if line.startswith("pymender: ") and "root=" not in line:
            say(f"GRUB: {line}")


def timed(what: str, action: object) -> None:
    started = time.monotonic()
    action()  # type: ignore[operator]
    say(f"{what} in {time.monotonic() - started:.0f} s")


def main() -> int:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="pymender-qemu."))
    work.mkdir(parents=True, exist_ok=True)

    step("11. Build the QEMU test image and its release Artifact (scripts/build-test-image)")
    say("Debian bookworm packages, pymender and the layer's runtime files; GRUB on UEFI; A/B rootfs")
    subprocess.run([str(REPO / "scripts" / "build-test-image"), str(IMAGE_DIR)], check=True)
    info = json.loads((IMAGE_DIR / "image.json").read_text())
    artifact = IMAGE_DIR / info["update_artifact"]
    print(f"$ pymender-artifact read {artifact.relative_to(REPO)}", flush=True)
    subprocess.run(["pymender-artifact", "read", "-k", str(IMAGE_DIR / info["keys"]["verify_key"]),
                    str(artifact)], check=True)

    step("12. Power on the device (a copy of the image; a USB stick holds the Artifact)")
    disk = overlay_disk(IMAGE_DIR / info["image"], work / "device.qcow2")
    stick = make_fat_disk(work / "usb-stick.img", {artifact.name: artifact})
    log = work / "console.log"
    machine = Machine(MachineConfig(disk=disk, extra_disks=[stick]), log)
    say(f"QEMU with {'KVM' if kvm_usable() else 'TCG (emulated CPU: about a minute a boot)'}; "
        f"console log: {log}")
    try:
        timed("booted", machine.start)
        boot_messages(machine)
        on_device(machine, f"cat {info['marker_file']}; findmnt -n -o SOURCE /")
        on_device(machine, "pymender show-artifact")

        step("13. Mount the stick and install the release Artifact into the inactive partition")
        on_device(machine, f"mkdir -p /mnt/usb1 && mount {STICK_DEVICE} /mnt/usb1 && ls -l /mnt/usb1")
        started = time.monotonic()
        if on_device(machine, f"pymender install --no-progress /mnt/usb1/{artifact.name}") != 0:
            return 1
        say(f"installed in {time.monotonic() - started:.0f} s")

        step("14. Reboot: GRUB tries the new system once")
        timed("rebooted", machine.reboot)
        boot_messages(machine)
        on_device(machine, f"cat {info['marker_file']}; findmnt -n -o SOURCE /")
        say("show-artifact names the committed Artifact: still the old one until the commit")
        on_device(machine, "pymender show-artifact")

        step("15. It works: commit it")
        if on_device(machine, "pymender commit") != 0:
            return 1
        on_device(machine, "pymender show-artifact")

        step("16. Reboot again: the committed system stays")
        timed("rebooted", machine.reboot)
        boot_messages(machine)
        on_device(machine, f"cat {info['marker_file']}; findmnt -n -o SOURCE /")
        on_device(machine, "pymender show-artifact")

        step("17. Power off")
        machine.poweroff()
    finally:
        machine.close()
    if len(sys.argv) <= 1:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
