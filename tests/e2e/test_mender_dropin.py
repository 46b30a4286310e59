"""A device laid out as meta-mender lays out a Mender device, driven with ``mender-update`` only.

The x86-64 test image is booted and, in the guest, reshaped into meta-mender's layout before
anything else runs (and the update's root filesystem likewise, once it is written): the
configuration split over Mender's two files (``RootfsPartA``/``B`` in
``/var/lib/mender/mender.conf``, the verify key in ``/etc/mender/mender.conf``, as
meta-mender's ``mender`` recipe writes them), ``/var/lib/mender`` a link to ``/data/mender``
holding ``device_type`` and the image's bootstrap Artifact (the layer's, built for this disk),
no pymender configuration and no pymender data directory. Then, on one machine:

1. ``mender-update show-artifact`` installs the bootstrap Artifact first (the factory release,
   with its provides) and removes it;
2. ``mender-update install`` from the USB stick: Mender's lines, the update on trial;
3. reboot; ``mender-update commit --stop-before ArtifactCommit_Enter`` stops before the
   commit, ``mender-update resume`` commits: ``Committed.``;
4. ``mender-update install --stop-before ArtifactInstall_Enter`` streams the update to the
   other partition and stops before the bootloader switch; ``resume`` switches it;
   ``rollback`` points the bootloader back: ``Rolled back.``; nothing left (exit 2);
5. ``check-update``, a daemon-only command: meta-mender's configuration names a server, but the
   unit is disabled (standalone), so it says the daemon is not running, exit 1.

pymender keeps its own records in Mender's data store (``store.json``) and never writes
Mender's store. Cut for time on arm64: the layout and the command line are the same Python
on both machines, and the bootloader paths are those of the standalone scenarios.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from e2e.conftest import BootMachine, E2EImage, cut_for_time
from e2e.guest import boot_env, mount_stick, root_device, running_release
from e2e.qemu import Machine, make_fat_disk

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

#: Seconds an install of the full root filesystem may take under TCG.
INSTALL_TIMEOUT = 1200.0
STICK = "/mnt/usb1"
INSTALLED = ["Installed, but not committed.", "Use 'commit' to update, or 'rollback' to roll back the update.",
             "At least one payload requested a reboot of the device it updated."]


def meta_mender_rootfs(image: E2EImage, root: str = "") -> str:
    """The guest's shell commands that reshape the root filesystem mounted at ``root`` into
    meta-mender's: Mender's configuration file and verify key, ``/var/lib/mender`` a link to
    ``/data/mender``, nothing of pymender's configuration."""
    transient = json.dumps({"ArtifactVerifyKey": "/etc/mender/artifact-verify-key.pem",
                            "InventoryPollIntervalSeconds": 28800, "RetryPollIntervalSeconds": 300,
                            "ServerURL": "https://docker.mender.io", "UpdatePollIntervalSeconds": 1800},
                           indent=4, sort_keys=True)
    return " && ".join([
        f"mkdir -p {root}/etc/mender",
        f"cp {root}/etc/pymender/artifact-verify-key.pem {root}/etc/mender/artifact-verify-key.pem",
        f"rm -rf {root}/etc/pymender {root}/etc/mender/artifact_info {root}/var/lib/pymender",
        f"ln -s /data/mender {root}/var/lib/mender",
        f"printf %s {shlex.quote(transient)} > {root}/etc/mender/mender.conf",
    ])


def meta_mender_data(image: E2EImage) -> str:
    """The guest's shell commands that reshape the data partition into meta-mender's:
    ``/data/mender`` with ``device_type``, the fallback configuration file with the partitions
    and the bootstrap Artifact."""
    persistent = json.dumps({"RootfsPartA": image.partitions["rootfs_a"],
                             "RootfsPartB": image.partitions["rootfs_b"]}, indent=4, sort_keys=True)
    return " && ".join([
        "mkdir -p /data/mender",
        "mv /data/pymender/device_type /data/pymender/bootstrap.mender /data/mender/",
        "rm -rf /data/pymender",
        f"printf %s {shlex.quote(persistent)} > /data/mender/mender.conf",
    ])


def mender_update(machine: Machine, arguments: str, timeout: float = 120.0) -> tuple[int, list[str]]:
    """``mender-update ARGUMENTS`` in the guest: its exit code and stdout lines (its log goes to
    /tmp/mender-update.log, which the error checks read)."""
    code, output = machine.run(f"mender-update {arguments} 2>/tmp/mender-update.log", timeout=timeout)
    return code, output.splitlines()


def test_a_meta_mender_device_driven_with_mender_update(
        boot: BootMachine, test_image: E2EImage, tmp_path: Path) -> None:
    cut_for_time(test_image, "the Mender layout and mender-update are the same Python on both machines; the "
                 "bootloader paths are those of the standalone scenarios")
    stick = make_fat_disk(tmp_path / "stick.img", {"release1.mender": test_image.update_artifact})
    machine = boot(extra_disks=[stick])
    assert machine.booted_partition == 2
    assert running_release(machine, test_image.marker_file) == test_image.factory_release
    machine.check(meta_mender_data(test_image) + " && " + meta_mender_rootfs(test_image))
    assert machine.run("test -e /etc/pymender || test -e /var/lib/pymender")[0] == 1

    # 1. The bootstrap Artifact is installed first, then removed; its provides are the device's.
    assert mender_update(machine, "show-artifact") == (0, [test_image.factory_release])
    assert machine.run("test -e /data/mender/bootstrap.mender")[0] == 1
    code, provides = mender_update(machine, "-l debug show-provides")
    assert code == 0
    assert f"rootfs-image.version={test_image.factory_release}" in provides
    assert any(line.startswith("rootfs-image.checksum=") for line in provides)
    assert "data store /var/lib/mender (Mender's layout" in machine.check("cat /tmp/mender-update.log")

    # 2. Install from the stick: Mender's lines only.
    mount_stick(machine, STICK)
    code, lines = mender_update(machine, f"install {STICK}/release1.mender", timeout=INSTALL_TIMEOUT)
    assert (code, lines) == (0, ["Installing artifact...", *INSTALLED])
    assert boot_env(machine) == {"bootcount": "0", "mender_boot_part": "3", "mender_boot_part_hex": "3",
                                 "upgrade_available": "1"}
    # The update is a meta-mender image too: its root filesystem gets the same layout.
    machine.check(f"mkdir -p /mnt/rootfs-b && mount {test_image.partitions['rootfs_b']} /mnt/rootfs-b && "
                  f"{meta_mender_rootfs(test_image, '/mnt/rootfs-b')} && umount /mnt/rootfs-b")

    # 3. The trial boot; a commit stopped before ArtifactCommit_Enter, then resumed.
    log = machine.reboot()
    assert "pymender: trying the update on partition 3" in log
    assert machine.booted_partition == 3 and root_device(machine) == test_image.partitions["rootfs_b"]
    assert mender_update(machine, "commit --stop-before ArtifactCommit_Enter") == (0, [])
    assert boot_env(machine)["upgrade_available"] == "1"
    assert mender_update(machine, "show-artifact") == (0, [test_image.factory_release])
    assert mender_update(machine, "resume") == (0, ["Committed."])
    assert boot_env(machine)["upgrade_available"] == "0"
    assert mender_update(machine, "show-artifact") == (0, [test_image.update_release])

    # 4. An install stopped before the bootloader switch, resumed, then rolled back.
    mount_stick(machine, STICK)
    env = boot_env(machine)
    code, lines = mender_update(machine, f"install --stop-before ArtifactInstall_Enter {STICK}/release1.mender",
                                timeout=INSTALL_TIMEOUT)
    assert (code, lines) == (0, ["Installing artifact...", "Streamed to storage, but not installed/enabled."]), \
        machine.check("cat /tmp/mender-update.log")
    assert boot_env(machine) == env
    assert mender_update(machine, "resume --reboot-exit-code") == (4, INSTALLED)
    assert boot_env(machine)["mender_boot_part"] == "2" and boot_env(machine)["upgrade_available"] == "1"
    assert mender_update(machine, "rollback") == (0, ["Rolled back."])
    assert boot_env(machine) == {**env, "bootcount": "0"}
    for command in ("commit", "rollback", "resume"):
        assert mender_update(machine, command) == (2, ["No update in progress."]), command
    assert mender_update(machine, "show-artifact") == (0, [test_image.update_release])

    # 5. meta-mender's configuration names a server, but no daemon runs (standalone): it says so.
    code, lines = mender_update(machine, "check-update")
    assert (code, lines) == (1, [])
    assert "the pymender daemon is not running" in machine.check("cat /tmp/mender-update.log")

    # pymender's records are in Mender's data store, next to what Mender put there; Mender's
    # own store was never made.
    listing = set(machine.check("ls /data/mender").split())
    assert {"device_type", "mender.conf", "store.json"} <= listing
    assert not {"mender-store", "bootstrap.mender"} & listing, listing
