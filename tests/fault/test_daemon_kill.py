"""``pymender daemon`` killed with SIGKILL at every durable I/O step of a deployment, then the
power comes back (one boot, as the bootloader does it) and the daemon runs again.

Both halves of a deployment, every step: the first (poll, download, install, up to the reboot
it asks for) and the second (after the reboot: the commit by itself and the report). After each
kill the device must be consistent (as in ``test_power_cut.py``), and after the daemon has run
again, the server must have heard exactly one final status that matches the device: ``success``
with the new Artifact installed and booted, or ``failure`` with the old one (a power cut before
the bootloader's commit sends the device back to the old system, as it must).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from device_sim import FAST_SOURCE, SimDevice, holds, release
from helpers import REPO
from mender_server import MenderServer
from pymender.device.managed.daemon import Daemon
from pymender.device.managed.devicekey import load_or_create

RUNNER = Path(__file__).with_name("daemon_crash_runner.py")
REBOOTED = 75
FINAL = ("success", "failure")
IDENTITY = "#!/bin/sh\necho mac=52:54:00:12:34:56\n"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    return release(tmp_path_factory.mktemp("artifacts"), "release-2", seed=2)


@pytest.fixture(autouse=True)
def identity(no_host_configuration: Path) -> None:
    script = no_host_configuration / "usr-share-mender" / "identity" / "mender-device-identity"
    script.parent.mkdir(parents=True)
    script.write_text(IDENTITY)
    script.chmod(0o755)


def _device(root: Path, server: MenderServer) -> SimDevice:
    device = SimDevice.create(root, ServerURL=server.url, AllowPlainHTTPServer=True, DeviceKeyType="ecdsa",
                              RetryPollIntervalSeconds=1)
    load_or_create(device.data_dir, "ecdsa")  # made once here: its steps are not the deployment's
    return device


def _run(device: SimDevice, kill_at: int) -> tuple[int, int | None]:
    count_file = device.root / "steps"
    count_file.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}:{RUNNER.parent}", PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, str(RUNNER), str(kill_at), str(count_file), str(device.config_path)],
                          capture_output=True, env=env, timeout=120)
    assert b"Traceback" not in done.stderr, done.stderr.decode()
    steps = int(count_file.read_text()) if count_file.exists() else None
    return done.returncode, steps


class Reboot:
    """Stands in for ``reboot``: notes it, and stops the daemon as the reboot would."""

    def __init__(self) -> None:
        self.asked = False
        self.daemon: Daemon | None = None

    def __call__(self) -> None:
        self.asked = True
        assert self.daemon is not None
        self.daemon.stopping = True


def _recover(device: SimDevice) -> None:
    """Power back on and let the daemon run (in this process) until it rests."""
    for _ in range(6):
        device.boot()
        reboot = Reboot()
        daemon = reboot.daemon = Daemon(device.load_config(), reboot=reboot, source_options=FAST_SOURCE,
                                        key=load_or_create(device.data_dir, "ecdsa"))
        daemon.start()
        if daemon.record is None:
            daemon.tick()
        if not reboot.asked:
            return
    raise AssertionError("the daemon kept rebooting")


def _check_end(device: SimDevice, server: MenderServer, new: bytes, where: str) -> None:
    statuses = server.deployments[0].statuses.get(server.device().id, [])
    finals = [status for status in statuses if status in FINAL]
    assert len(finals) == 1, f"{where}: {statuses}"
    current = device.store().current().artifact_name
    assert device.store().pending() is None, where
    if finals[0] == "success":
        assert current == "release-2" and device.running == device.part_b and holds(device.part_b, new), where
    else:
        assert current == "release-1" and device.running == device.part_a, where
        assert server.deployments[0].logs, where
    assert device.read_env()["upgrade_available"] == "0", where


def _half(tmp_path: Path, artifact: tuple[Path, bytes], second: bool) -> tuple[int, list[str]]:
    """Kill the first or second half of a deployment at every step; the outcomes."""
    path, new = artifact

    def prepared(root: Path, server: MenderServer) -> SimDevice:
        device = _device(root, server)
        server.add_deployment("release-2", path)
        if second:
            rebooted: list[bool] = []
            daemon = Daemon(device.load_config(), reboot=lambda: rebooted.append(True), source_options=FAST_SOURCE,
                            key=load_or_create(device.data_dir, "ecdsa"))
            daemon.stopping = True  # no waiting after the reboot is asked for
            daemon.start()
            daemon.tick()
            assert rebooted
            device.boot()
        return device

    with MenderServer() as server:
        code, total = _run(prepared(tmp_path / "probe", server), -1)
        assert code == (0 if second else REBOOTED) and total is not None and total > 5
    outcomes = []
    for point in range(total):
        with MenderServer() as server:
            device = prepared(tmp_path / f"p{point}", server)
            code, _ = _run(device, point)
            assert code == -9, f"step {point} of {total}: not killed (exit {code})"
            env = device.read_env()
            if env["upgrade_available"] == "1":
                assert device.store().pending() is not None, f"step {point}: a trial without a pending update"
            _recover(device)
            _check_end(device, server, new, f"step {point} of {total}")
            outcomes.append(server.deployments[0].statuses[server.device().id][-1])
        assert server.violations == []
    return total, outcomes


def test_kill_before_the_reboot(tmp_path: Path, artifact: tuple[Path, bytes]) -> None:
    total, outcomes = _half(tmp_path, artifact, second=False)
    assert "success" in outcomes


def test_kill_after_the_reboot(tmp_path: Path, artifact: tuple[Path, bytes]) -> None:
    total, outcomes = _half(tmp_path, artifact, second=True)
    assert "success" in outcomes and "failure" in outcomes  # before and after the bootloader's commit
