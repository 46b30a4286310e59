"""The standalone flow on the booted test image: install, reboot, commit, roll back, refuse,
lose power.

The scenarios of the standalone flow, each from a fresh copy of the factory image. A boot under
TCG costs about a minute, so scenarios that can share a machine without weakening each other do:

- ``test_documented_flow_from_usb_stick``: the documented flow (install from a FAT stick,
  reboot, commit, a reboot), then, on the same machine, an update that never comes up: its
  kernel boots, but there is no init; the initramfs gives up and resets the board (the
  image's ``panic=5``, as a watchdog would), and the bootloader returns to the committed
  system. The next install says in one line that the update failed and goes on.
- ``test_https_install_without_commit_rolls_back``: the install comes over https from a server
  on the host's loopback (a TLS certificate from the test CA the image trusts); the new system
  runs once, is not committed, and the next boot goes back to the old one.
- ``test_refusals_and_power_cuts``: broken Artifacts are refused and change nothing; a power
  cut at a random moment of a real install (``e2e/powercut.py``; the seed is printed) leaves a
  device that boots a complete system, as the environment names it, with any trial explained by
  a pending update; a cut while the payload streams leaves the old system and the factory
  environment, byte for byte. After that a new install works (doing what a refusal asks, when
  the cut came after the switch), a power cut right after it still leads to the trial of the new
  system, and without a commit the next boot goes back to the old one.

Each runs on both machines (x86-64 with GRUB, arm64 with U-Boot). On arm64 the https scenario
is cut for time (see ``conftest.cut_for_time``): the https source is the same Python on both
machines, and the rollback without commit is also the end of the refusals scenario.

That the unit is installed and disabled and that ``/data`` is mounted is checked on the factory
boot in ``test_boot.py::test_factory_image_boots_rootfs_a_with_pymender_set_up``.
"""

from __future__ import annotations

import datetime
import functools
import http.server
import ipaddress
import json
import os
import random
import shlex
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.conftest import BootMachine, E2EImage, cut_for_time
from e2e.guest import boot_env, fw_printenv, mount_stick, root_device, running_release
from e2e.powercut import cut_during, install_way_forward, power_on_and_check
from e2e.qemu import HOST_ADDRESS, Machine, make_fat_disk
from e2e.updates import NO_INIT_RELEASE, no_init_artifact, write_artifact

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

#: Seconds an install of the full root filesystem may take under TCG (about a minute here).
INSTALL_TIMEOUT = 1200.0
STICK = "/mnt/usb1"


def install(machine: Machine, source: str, *, legacy: bool = False) -> tuple[int, str]:
    command = "-install" if legacy else "install"
    return machine.run(f"pymender {command} --no-progress {shlex.quote(source)}",
                       timeout=INSTALL_TIMEOUT)


def env_files_digest(machine: Machine, image: E2EImage) -> str:
    """The bytes of every file of the bootloader environment (GRUB's two copies with their
    lock files, or U-Boot's two copies), as one digest list."""
    return machine.check("sha256sum " + " ".join(map(shlex.quote, image.env_files)))


def factory_env(image: E2EImage) -> dict[str, str]:
    """The environment of a factory image: rootfs A, no trial. U-Boot's initial environment
    also has mender_boot_part_hex; GRUB's gets it when pymender first writes it."""
    env = {"bootcount": "0", "mender_boot_part": "2", "upgrade_available": "0"}
    if image.bootloader == "uboot":
        env["mender_boot_part_hex"] = "2"
    return env


def assert_env(machine: Machine, image: E2EImage, expected: dict[str, str]) -> None:
    """The environment as pymender reads it is ``expected``; on U-Boot machines libubootenv's
    fw_printenv reads the same values from the same bytes."""
    assert boot_env(machine) == expected
    if image.bootloader == "uboot":
        assert fw_printenv(machine) == expected


def assert_factory_system(machine: Machine, image: E2EImage) -> None:
    assert machine.booted_partition == 2
    assert root_device(machine) == image.partitions["rootfs_a"]
    assert running_release(machine, image.marker_file) == image.factory_release
    assert machine.run("pymender show-artifact") == (0, image.factory_release)


def assert_one_line_error(output: str, *expected: str) -> None:
    """The device command line reports a failure in one clear line, never a traceback."""
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("pymender: error: ")]
    assert len(errors) == 1, output
    for text in expected:
        assert text in errors[0], output


# --- 1. the documented flow ------------------------------------------------------------------


def test_documented_flow_from_usb_stick(
    boot: BootMachine, test_image: E2EImage, tmp_path: Path
) -> None:
    stick = make_fat_disk(tmp_path / "stick.img", {"release1.mender": test_image.update_artifact,
                                                   "no-init.mender": no_init_artifact(test_image, tmp_path)})
    machine = boot(extra_disks=[stick])
    assert_factory_system(machine, test_image)

    # Mount the stick and install with Mender's legacy spelling, as the documentation shows.
    mount_stick(machine, STICK)
    code, output = install(machine, f"{STICK}/release1.mender", legacy=True)
    assert code == 0, output
    assert (f"Installed {test_image.update_release} to {test_image.partitions['rootfs_b']} "
            "(partition 3); not committed yet.") in output
    assert_env(machine, test_image, {"bootcount": "0", "mender_boot_part": "3",
                                     "mender_boot_part_hex": "3", "upgrade_available": "1"})

    # The first boot after the install is the new system's one trial.
    log = machine.reboot()
    assert "pymender: trying the update on partition 3" in log
    assert machine.booted_partition == 3
    assert root_device(machine) == test_image.partitions["rootfs_b"]
    assert running_release(machine, test_image.marker_file) == test_image.update_release
    # show-artifact names the committed Artifact: still the factory one until the commit.
    assert machine.run("pymender show-artifact") == (0, test_image.factory_release)
    assert boot_env(machine)["bootcount"] == "1"

    code, output = machine.run("pymender -commit")
    assert code == 0, output
    assert f"Committed {test_image.update_release}" in output
    assert machine.run("pymender show-artifact") == (0, test_image.update_release)
    assert_env(machine, test_image, {"bootcount": "1", "mender_boot_part": "3",
                                     "mender_boot_part_hex": "3", "upgrade_available": "0"})

    # Committed: a later boot runs the new system, with no trial and no rollback (the boot
    # that ends the failed update's trial below shows it once more).
    log = machine.reboot()
    assert "trying the update" not in log and "rolling back" not in log
    assert_committed_system(machine, test_image)

    # An update that never comes up: its kernel boots, its initramfs finds no init and resets
    # the board; the bootloader, finding the trial boot used up, returns to the committed system.
    mount_stick(machine, STICK)
    code, output = install(machine, f"{STICK}/no-init.mender")
    assert code == 0, output
    assert f"Installed {NO_INIT_RELEASE} to {test_image.partitions['rootfs_a']}" in output
    log = machine.reboot()
    assert "pymender: trying the update on partition 2" in log
    assert "No init found" in log
    assert "pymender: update on partition 2 not committed, rolling back to partition 3" in log
    assert_committed_system(machine, test_image)  # show-artifact names the committed Artifact

    # No reboot will try it again: it failed. The next install says so in one line and goes on.
    mount_stick(machine, STICK)
    code, output = install(machine, f"{STICK}/no-init.mender")
    assert code == 0, output
    assert (f"The previous update {NO_INIT_RELEASE} failed (the bootloader went back to "
            f"{test_image.partitions['rootfs_b']}) and was rolled back.") in output.splitlines()
    assert f"Installed {NO_INIT_RELEASE} to {test_image.partitions['rootfs_a']}" in output
    assert machine.run("pymender show-artifact") == (0, test_image.update_release)


def assert_committed_system(machine: Machine, image: E2EImage) -> None:
    """The device runs the committed update from rootfs B, and pymender says so."""
    assert machine.booted_partition == 3
    assert root_device(machine) == image.partitions["rootfs_b"]
    assert running_release(machine, image.marker_file) == image.update_release
    assert machine.run("pymender show-artifact") == (0, image.update_release)


# --- 2 + 3. https install, no commit, rollback -----------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format: str, *args: object) -> None:
        self.requests.append(self.requestline)


def _server_certificate(image: E2EImage, directory: Path) -> tuple[Path, Path]:
    """A certificate for the guest's view of the host (IP 10.0.2.2), signed by the test CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_key = serialization.load_pem_private_key(image.keys["ca_key"].read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(image.keys["ca_cert"].read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST_ADDRESS)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(HOST_ADDRESS))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def https_server(test_image: E2EImage, tmp_path: Path) -> Iterator[tuple[int, list[str]]]:
    """An https server on the host's 127.0.0.1 only, serving the update Artifact.

    Yields its port and the request lines it served.
    """
    root = tmp_path / "www"
    root.mkdir()
    (root / "release-2.mender").symlink_to(test_image.update_artifact.resolve())
    cert, key = _server_certificate(test_image, tmp_path)
    requests: list[str] = []
    handler = functools.partial(type("Handler", (_QuietHandler,), {"requests": requests}),
                                directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], requests
    finally:
        server.shutdown()
        server.server_close()


def test_https_install_without_commit_rolls_back(
    boot: BootMachine, test_image: E2EImage, https_server: tuple[int, list[str]]
) -> None:
    cut_for_time(test_image, "https is the same Python code on both machines, and the rollback "
                 "without commit ends test_refusals_and_power_cuts")
    port, requests = https_server
    machine = boot(host_access=True)
    assert_factory_system(machine, test_image)

    # Over https from the host, verified against the test CA the image trusts system-wide
    # (once DHCP has given the guest its default route: the login does not wait for it).
    machine.check("(for i in $(seq 120); do awk '$2 == \"00000000\"' /proc/net/route | grep -q . "
                  "&& exit 0; sleep 0.5; done; exit 1)", timeout=90)
    url = f"https://{HOST_ADDRESS}:{port}/release-2.mender"
    code, output = install(machine, url)
    assert code == 0, output
    assert f"from {url}" in output
    assert f"Installed {test_image.update_release} to {test_image.partitions['rootfs_b']}" in output
    assert any("GET /release-2.mender" in line for line in requests), requests

    # The new system runs once...
    log = machine.reboot()
    assert "pymender: trying the update on partition 3" in log
    assert machine.booted_partition == 3
    assert running_release(machine, test_image.marker_file) == test_image.update_release

    # ...and without a commit the next boot goes back to the old one by itself.
    log = machine.reboot()
    assert "pymender: update on partition 3 not committed, rolling back to partition 2" in log
    assert_factory_system(machine, test_image)
    assert boot_env(machine) == {"bootcount": "0", "mender_boot_part": "2",
                                 "mender_boot_part_hex": "2", "upgrade_available": "0"}

    # A late commit fails as designed (exit 1, says why), and the update is forgotten.
    code, output = machine.run("pymender commit")
    assert code == 1, output
    assert_one_line_error(output, "did not stay up", f"{test_image.update_release} was not committed")
    assert machine.run("pymender commit")[0] == 2  # no update in progress any more
    assert machine.run("pymender show-artifact") == (0, test_image.factory_release)


# --- 4 + 5. refusals and power cuts ----------------------------------------------------------


def _refused_artifacts(image: E2EImage, directory: Path) -> dict[str, Path]:
    """Small Artifacts the device must refuse, by name on the stick."""
    payload = os.urandom(8 << 20)  # the payload need not be a filesystem to be refused
    rootfs = directory / "small.ext4"
    rootfs.write_bytes(payload)
    signing = image.keys["signing_key"]
    artifacts = {
        "wrong-device-type.mender": write_artifact(
            directory / "wrong-device-type.mender", rootfs, device_type="raspberrypi4",
            key=signing),
        "untrusted-signature.mender": write_artifact(
            directory / "untrusted-signature.mender", rootfs, device_type=image.device_type,
            key=image.keys["untrusted_signing_key"]),
        "unsigned.mender": write_artifact(
            directory / "unsigned.mender", rootfs, device_type=image.device_type, key=None),
    }
    # Signed by the trusted key, for this device type, with one payload byte flipped: only the
    # payload's checksum can catch it. Uncompressed, so the payload's bytes are in the file.
    corrupted = write_artifact(directory / "corrupted.mender", rootfs,
                                device_type=image.device_type, key=signing, compression="none")
    data = bytearray(corrupted.read_bytes())
    probe = payload[(4 << 20):(4 << 20) + 64]
    offset = data.find(probe)
    assert offset > 0 and data.find(probe, offset + 1) == -1
    data[offset + 32] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    artifacts["corrupted.mender"] = corrupted
    return artifacts


def test_refusals_and_power_cuts(
    boot: BootMachine, test_image: E2EImage, tmp_path: Path
) -> None:
    refused = _refused_artifacts(test_image, tmp_path)
    stick = make_fat_disk(tmp_path / "stick.img",
                          {**refused, "release1.mender": test_image.update_artifact})
    machine = boot(extra_disks=[stick])
    assert_factory_system(machine, test_image)
    mount_stick(machine, STICK)
    env_before = env_files_digest(machine, test_image)
    assert_env(machine, test_image, factory_env(test_image))

    # 4. Each broken Artifact is refused with one clear line and exit code 1.
    expected = {
        "wrong-device-type.mender": ("device type", "raspberrypi4", test_image.device_type),
        "untrusted-signature.mender": ("signature",),
        "unsigned.mender": ("not signed",),
        "corrupted.mender": ("checksum",),
    }
    for name, words in expected.items():
        code, output = install(machine, f"{STICK}/{name}")
        assert code == 1, f"{name}: {output}"
        assert_one_line_error(output, *words)
        # Nothing changed: the environment's bytes, the installed Artifact, no pending update.
        assert env_files_digest(machine, test_image) == env_before, name
        assert machine.run("pymender show-artifact") == (0, test_image.factory_release)
        assert machine.run("pymender commit")[0] == 2, name

    # 5a. A power cut at a random moment of a real install (the seed is printed; a failure
    # replays with PYMENDER_POWER_CUT_SEED): mostly while the payload streams, sometimes after the
    # whole payload was written, when the bootloader switch and the store writes happen.
    seed = int(os.environ.get("PYMENDER_POWER_CUT_SEED") or int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF)
    print(f"power cut: seed {seed} (replay: PYMENDER_POWER_CUT_SEED={seed})")
    payload = int(json.loads((test_image.directory / "image.json").read_text())["rootfs_size_mb"]) << 20
    cut = cut_during(machine, test_image, "install", random.Random(seed), artifact=f"{STICK}/release1.mender",
                     payload_bytes=payload)
    print(f"power cut: {cut}")
    after = power_on_and_check(machine, test_image)
    if after.pending is None:
        # Cut before the pending update was recorded: the old system boots and the environment
        # is as at the factory, byte for byte.
        assert "trying the update" not in machine.last_boot_log
        assert_factory_system(machine, test_image)
        assert env_files_digest(machine, test_image) == env_before
        assert_env(machine, test_image, factory_env(test_image))
        assert after.pending is None

    # 5b. A new install then succeeds (after what a refusal asks, if the cut came after the
    # switch); the power goes right after it, before any reboot.
    mount_stick(machine, STICK)
    _, output = install_way_forward(machine, f"{STICK}/release1.mender")
    assert f"Installed {test_image.update_release}" in output
    new = 3 if f"{test_image.partitions['rootfs_b']} (partition 3)" in output else 2
    old = 5 - new
    machine.kill()

    # What the install switched reached the disk: the next boot tries the new system.
    log = machine.start()
    assert f"pymender: trying the update on partition {new}" in log
    assert machine.booted_partition == new
    assert root_device(machine) == test_image.partitions["rootfs_b" if new == 3 else "rootfs_a"]
    assert running_release(machine, test_image.marker_file) == test_image.update_release
    assert boot_env(machine)["upgrade_available"] == "1"

    # 5c. Not committed: the next boot goes back to the old system by itself, and the update
    # is then reported as failed and forgotten.
    log = machine.reboot()
    assert f"pymender: update on partition {new} not committed, rolling back to partition {old}" in log
    assert machine.booted_partition == old
    assert_env(machine, test_image, {**factory_env(test_image), "mender_boot_part": str(old),
                                     "mender_boot_part_hex": str(old)})
    if old == 2 and after.current == test_image.factory_release:
        assert_factory_system(machine, test_image)
    code, output = machine.run("pymender commit")
    assert code == 1, output
    assert_one_line_error(output, "did not stay up", f"{test_image.update_release} was not committed")
    assert machine.run("pymender commit")[0] == 2
