"""Managed mode under QEMU: the layer's unit runs ``pymender daemon`` against a Mender server.

The test server (``tests/mender_server.py``: the device APIs, every request and answer checked
against the server's own OpenAPI files) listens on the host's 127.0.0.1 only, over TLS with a
certificate from a CA made for this test, which the image does not trust otherwise; the guest
reaches it through QEMU's user network at 10.0.2.2. One x86-64 machine, from a fresh overlay of
the factory image:

1. Managed mode is switched on in the running factory system as the layer installs it when
   ``PYMENDER_SERVER_URL`` and ``PYMENDER_SERVER_CERTIFICATE`` are set: ``ServerURL`` and
   ``ServerCertificate`` added to ``/etc/pymender/pymender.conf``, the CA as
   ``/etc/pymender/server.crt``, and ``systemctl enable pymender.service`` (what
   ``SYSTEMD_AUTO_ENABLE = "enable"`` does), plus short poll intervals; then the unit is
   started. The test image itself is built in standalone mode, as every other end-to-end test
   needs it. The device authenticates, sends its inventory and polls.

   The unit starts after ``network-online.target``, as Mender's does. The test image masks
   ``systemd-networkd-wait-online.service`` to shorten its boots, which makes that target
   mean nothing; a device's own image has it, so the managed systems here unmask it: after a
   boot the daemon goes on with a deployment at once, and it needs the network for that.
2. A deployment of the update (``release-2``) is created and ``pymender check-update`` makes the
   daemon poll. The server sends the Artifact slowly, and the power is cut when a quarter of it
   has gone out: ``downloading`` has been reported, nothing else. Powered on again, the
   enabled unit starts the daemon, which starts the download again (from the beginning: a
   power cut loses the download), installs, reports ``installing`` and ``rebooting`` and
   reboots by itself; the new system runs on trial, the daemon reports ``installing`` again
   before it commits (Mender's daemon does, to roll back a success it could not report),
   commits it and reports ``success``. The device runs release-2, committed, and its
   inventory says so. A clean deployment reports the same five statuses; the cut adds only
   the second download.
3. A deployment of an update that never comes up (``release-no-init``: the kernel and
   initramfs, no init; see ``e2e/updates.py``), triggered with ``mender-update check-update``:
   downloaded, installed, rebooted into; the initramfs gives up and resets the board, the
   bootloader goes back to release-2, and the daemon there reports ``failure`` with the
   deployment's log, which says why. The device still runs release-2, committed.

At the end the server must have seen nothing the specification does not allow.

Where the configuration lives: the layer writes ``ServerURL`` into the root filesystem
(``/etc/pymender/pymender.conf``) and enables the unit there, so every release built with
``PYMENDER_SERVER_URL`` carries both; the device key, the deployment record and the device type
are in the data store on ``/data`` (``/var/lib/pymender`` links there), which an update does not
touch. So the update deployed here is built as such a release would be: the test image's
``release-2`` root filesystem with the same configuration file, CA file and unit link written
into it on the host (``debugfs``), signed like the image's own update. After the update the
new system reaches the server and finds the deployment record on its own, as a real one does.

Cut for time on arm64 (``PYMENDER_E2E_FULL=1`` runs it there too): the daemon and the unit are
the same there, the bootloader's part is that of the standalone scenarios, and every boot takes
1.5 times as long.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from e2e.conftest import BootMachine, E2EImage, cut_for_time
from e2e.guest import boot_env, root_device, running_release
from e2e.qemu import HOST_ADDRESS, Machine
from e2e.updates import NO_INIT_RELEASE, no_init_artifact, update_rootfs, write_artifact
from helpers import require_tool
from mender_server import MenderServer
from pki import make_pki

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

T = TypeVar("T")

#: Seconds a deployment may take from the poll to the reboot, under TCG.
DEPLOYMENT_TIMEOUT = 1200.0
#: Seconds the daemon may take to reach the server, commit, report.
SERVER_TIMEOUT = 300.0
#: The Artifact's download speed until the power cut (bytes per second).
SLOW_DOWNLOAD = 4 << 20
CONFIG = "/etc/pymender/pymender.conf"
SERVER_CERTIFICATE = "/etc/pymender/server.crt"
#: What ``systemctl enable pymender.service`` makes (the unit's WantedBy).
UNIT_LINK = "/etc/systemd/system/multi-user.target.wants/pymender.service"
UNIT = "/lib/systemd/system/pymender.service"
#: Masked by the test image (see the module docstring).
WAIT_ONLINE = "systemd-networkd-wait-online.service"
#: Short intervals, so that the test never waits for a regular poll (check-update starts one).
INTERVALS = {"UpdatePollIntervalSeconds": 60, "InventoryPollIntervalSeconds": 60,
             "RetryPollIntervalSeconds": 5}


@pytest.fixture
def server(test_image: E2EImage, tmp_path: Path) -> Iterator[MenderServer]:
    """The test server on the host's 127.0.0.1, as the guest sees it (10.0.2.2), over TLS."""
    _, cert, key = make_pki(tmp_path / "pki", HOST_ADDRESS)
    with MenderServer(tls=(cert, key), device_host=HOST_ADDRESS) as running:
        yield running
    assert running.violations == []


def managed_config(image: E2EImage, directory: Path, server: MenderServer) -> str:
    """The configuration file a release built with the server set has: the image's own (read
    from the update's root filesystem, the same as the factory one) with the server's keys."""
    debugfs = require_tool("debugfs")
    rootfs = update_rootfs(image, directory / "config-source.ext4")
    original = subprocess.run([debugfs, "-R", f"cat {CONFIG}", str(rootfs)], capture_output=True, text=True,
                              check=True).stdout
    rootfs.unlink()
    config = {**json.loads(original), "ServerURL": server.device_url, "ServerCertificate": SERVER_CERTIFICATE,
              **INTERVALS}
    return json.dumps(config, indent=2) + "\n"


def managed_update(image: E2EImage, directory: Path, config: str, ca: Path) -> Path:
    """The update Artifact of a release built in managed mode: the image's update with the
    configuration, the server's CA and the enabled unit in its root filesystem (and the wait for
    the network unmasked)."""
    debugfs = require_tool("debugfs")
    rootfs = update_rootfs(image, directory / "managed.ext4")
    conf = directory / "pymender.conf"
    conf.write_text(config)
    edits = [f"rm {CONFIG}", f"write {conf} {CONFIG}", f"write {ca} {SERVER_CERTIFICATE}",
             f"symlink {UNIT_LINK} {UNIT}", f"rm /etc/systemd/system/{WAIT_ONLINE}"]
    subprocess.run([debugfs, "-w", "-f", "-", str(rootfs)], input="\n".join(edits) + "\n", text=True,
                   check=True, capture_output=True)
    for path, expected in ((CONFIG, config), (SERVER_CERTIFICATE, ca.read_text())):
        written = subprocess.run([debugfs, "-R", f"cat {path}", str(rootfs)], capture_output=True,
                                 text=True, check=True).stdout
        assert written == expected, f"{path} was not written into the update"
    subprocess.run(["e2fsck", "-fn", str(rootfs)], check=True, capture_output=True)
    artifact = write_artifact(directory / "release-2-managed.mender", rootfs, device_type=image.device_type,
                              key=image.keys["signing_key"], name=image.update_release)
    rootfs.unlink()
    return artifact


def switch_on_managed_mode(machine: Machine, config: str, ca: Path) -> None:
    """What the layer installs with a server set, in the running system, then the unit started."""
    machine.check(f"printf %s {shlex.quote(config)} > {CONFIG} && "
                  f"printf %s {shlex.quote(ca.read_text())} > {SERVER_CERTIFICATE} && "
                  f"systemctl unmask {WAIT_ONLINE} 2>&1 && "
                  "systemctl enable pymender.service 2>&1 && systemctl start pymender.service")
    assert_managed_units(machine)


def assert_managed_units(machine: Machine) -> None:
    assert machine.check(f"readlink {UNIT_LINK}") == UNIT
    assert machine.run(f"systemctl is-enabled pymender.service {WAIT_ONLINE}") == (0, "enabled\nenabled")


def daemon_log(machine: Machine) -> str:
    """The daemon's log of this boot (for failure messages); empty when it cannot be read."""
    try:
        return machine.check("journalctl -b -u pymender.service --no-pager -o cat | tail -n 200", timeout=60)
    except Exception as err:  # the machine may be down or rebooting
        return f"(no log: {err})"


def wait_for(what: str, value: Callable[[], T | None], machine: Machine, timeout: float = SERVER_TIMEOUT) -> T:
    """``value()`` once it is true, asked every half second; the daemon's log if it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = value()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; the daemon's log:\n{daemon_log(machine)}")


def statuses(server: MenderServer, deployment_id: str) -> list[str]:
    deployment = next(d for d in server.deployments if d.id == deployment_id)
    return list(next(iter(deployment.statuses.values()), []))


def finished(server: MenderServer, deployment_id: str) -> list[str] | None:
    reported = statuses(server, deployment_id)
    return reported if reported and reported[-1] in ("success", "failure") else None


def inventory(server: MenderServer) -> dict[str, object]:
    return {item["name"]: item["value"] for item in server.device().inventory}


def assert_runs_release_2_committed(machine: Machine, image: E2EImage) -> None:
    assert machine.booted_partition == 3
    assert root_device(machine) == image.partitions["rootfs_b"]
    assert running_release(machine, image.marker_file) == image.update_release
    assert machine.run("pymender show-artifact") == (0, image.update_release)
    env = boot_env(machine)
    assert (env["mender_boot_part"], env["upgrade_available"]) == ("3", "0"), env


def test_deployments_from_a_server_power_cut_and_rollback(
        boot: BootMachine, test_image: E2EImage, server: MenderServer, tmp_path: Path) -> None:
    cut_for_time(test_image, "the daemon and the unit are the same Python and files on both machines, and the "
                 "bootloader paths are those of the standalone scenarios")
    started = time.monotonic()
    ca = tmp_path / "pki" / "ca.pem"
    config = managed_config(test_image, tmp_path, server)
    update = managed_update(test_image, tmp_path, config, ca)
    broken = no_init_artifact(test_image, tmp_path)

    # 1. The factory system, switched to managed mode: it authenticates, reports and polls.
    machine = boot(host_access=True)
    assert machine.booted_partition == 2
    switch_on_managed_mode(machine, config, ca)
    wait_for("the device's inventory", lambda: server.devices and inventory(server), machine)
    wait_for("a poll", lambda: server.calls("/deployments/next"), machine)
    assert inventory(server)["artifact_name"] == test_image.factory_release
    assert inventory(server)["device_type"] == test_image.device_type
    device_id = server.device().id
    print(f"managed mode: the device polls, {time.monotonic() - started:.0f} s in")

    # 2. A deployment; the power is cut during its download.
    deployment = server.add_deployment(test_image.update_release, update, rate=SLOW_DOWNLOAD,
                                       device_types=(test_image.device_type,))
    size = update.stat().st_size
    assert machine.run("pymender check-update")[0] == 0
    wait_for("a quarter of the download", lambda: deployment.served >= size // 4, machine)
    assert statuses(server, deployment.id) == ["downloading"]
    assert deployment.served < size
    machine.kill()
    deployment.rate = None
    print(f"managed mode: power cut after {deployment.served >> 20} MiB, {time.monotonic() - started:.0f} s in")

    # The enabled unit starts the daemon at boot: it downloads again, installs and reboots.
    machine.start()
    assert machine.booted_partition == 2
    log = machine.wait_for_reboot(DEPLOYMENT_TIMEOUT)
    assert "pymender: trying the update on partition 3" in log
    reported = wait_for("the deployment's end", lambda: finished(server, deployment.id), machine)
    assert reported == ["downloading", "installing", "rebooting", "installing", "success"], deployment.logs
    print(f"managed mode: success reported, {time.monotonic() - started:.0f} s in")
    downloads = server.calls(f"/download/{deployment.id}")
    assert len(downloads) >= 2 and deployment.served >= size + size // 4, (downloads, deployment.served)
    assert_runs_release_2_committed(machine, test_image)
    assert_managed_units(machine)  # the update's own
    assert machine.run("systemctl is-active pymender.service") == (0, "active")
    wait_for("the inventory of release-2",
             lambda: inventory(server).get("artifact_name") == test_image.update_release, machine)
    assert server.device().id == device_id  # the same key on /data: the same device

    # 3. An update that never comes up: rolled back by the bootloader, reported as a failure.
    failed = server.add_deployment(NO_INIT_RELEASE, broken, device_types=(test_image.device_type,))
    assert machine.run("mender-update check-update")[0] == 0
    log = machine.wait_for_reboot(DEPLOYMENT_TIMEOUT)
    assert "pymender: trying the update on partition 2" in log
    assert "pymender: update on partition 2 not committed, rolling back to partition 3" in log
    reported = wait_for("the broken deployment's end", lambda: finished(server, failed.id), machine)
    assert reported == ["downloading", "installing", "rebooting", "failure"]
    print(f"managed mode: failure reported, {time.monotonic() - started:.0f} s in")
    # The log follows the status, as Mender's client sends them.
    entries = wait_for("the failed deployment's log", lambda: failed.logs.get(device_id), machine)
    messages = [entry["message"] for entry in entries]
    print("managed mode: the failed deployment's log:", *messages, sep="\n  ")
    assert messages[0] == f"Deployment with ID {failed.id} started: {NO_INIT_RELEASE}", messages
    assert any("did not stay up: the bootloader went back" in message for message in messages), messages
    assert messages[-1] == "deployment finished: failure", messages
    assert_runs_release_2_committed(machine, test_image)
    log = daemon_log(machine)
    assert "Traceback" not in log and "deployment finished: failure" in log, log
