"""``pymender daemon`` killed with SIGKILL at every durable I/O step of a deployment, then the
power comes back (one boot, as the bootloader does it) and the daemon runs again.

Both halves of a deployment, every step: the first (poll, download, install, up to the reboot
it asks for) and the second (after the reboot: the commit by itself and the report; or, when
the commit fails, the rollback, the reboot into the old system and the report after it). After each
kill the device must be consistent (as in ``test_power_cut.py``), and after the daemon has run
again, the server must have heard exactly one final status that matches the device: ``success``
with the new Artifact installed and booted, or ``failure`` with the old one (a power cut before
the bootloader's commit sends the device back to the old system, as it must).
"""

from __future__ import annotations

import json
import os
import signal
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


@pytest.fixture(scope="module")
def failing_commit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """release-2 with an ArtifactCommit_Enter script that fails: the commit after the reboot
    fails, and the daemon rolls back and reboots into the old system before it reports."""
    tmp = tmp_path_factory.mktemp("failing-commit")
    script = tmp / "ArtifactCommit_Enter_01"
    script.write_text("#!/bin/sh\nexit 1\n")
    script.chmod(0o755)
    return release(tmp, "release-2", seed=2, scripts=[script])


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
    stderr = device.root / "stderr"
    # In its own process group: an Update Module the daemon was running when it was killed
    # (blocked on its streams) is ended with it, as the power cut would end it.
    with stderr.open("wb") as errors:
        runner = subprocess.Popen([sys.executable, str(RUNNER), str(kill_at), str(count_file),
                                   str(device.config_path)], stdout=subprocess.DEVNULL, stderr=errors, env=env,
                                  start_new_session=True)
        try:
            code = runner.wait(timeout=120)
        finally:
            try:
                os.killpg(runner.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert b"Traceback" not in stderr.read_bytes(), stderr.read_text()
    steps = int(count_file.read_text()) if count_file.exists() else None
    return code, steps


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


def _deploy_up_to_the_reboot(device: SimDevice) -> None:
    """The first half of the deployment, not killed: up to the reboot, then the boot."""
    rebooted: list[bool] = []
    daemon = Daemon(device.load_config(), reboot=lambda: rebooted.append(True), source_options=FAST_SOURCE,
                    key=load_or_create(device.data_dir, "ecdsa"))
    daemon.stopping = True  # no waiting after the reboot is asked for
    daemon.start()
    daemon.tick()
    assert rebooted
    device.boot()


def _half(tmp_path: Path, artifact: tuple[Path, bytes], second: bool, *, rebooted: bool = False
          ) -> tuple[int, list[str]]:
    """Kill the first or second half of a deployment at every step; the outcomes."""
    path, new = artifact

    def prepared(root: Path, server: MenderServer) -> SimDevice:
        device = _device(root, server)
        server.add_deployment("release-2", path)
        if second:
            _deploy_up_to_the_reboot(device)
        return device

    with MenderServer() as server:
        code, total = _run(prepared(tmp_path / "probe", server), -1)
        assert code == (0 if second and not rebooted else REBOOTED) and total is not None and total > 5
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


def test_kill_after_the_reboot_when_the_commit_fails(tmp_path: Path, failing_commit: tuple[Path, bytes]) -> None:
    """The second half goes the failure path and reboots into the old system (the rollback's
    reboot, then its verification after the boot): killed anywhere, it ends as a failure."""
    total, outcomes = _half(tmp_path, failing_commit, second=True, rebooted=True)
    assert set(outcomes) == {"failure"}


# --- an Update Module's deployment -------------------------------------------------------------
# The recording module (tests/unit/device/modules/recorder.py) answers NeedsArtifactReboot
# "Automatic" (the daemon reboots, so the deployment has the same two halves) and supports
# rollback. After each kill and the recovery, the server must have heard one final status, and
# the module's calls must match it: success, the new Artifact installed and its last install
# committed; failure, the old Artifact installed and the last install rolled back (a commit
# cut off is rolled back, as Mender's daemon rolls it back).

MODULE_BEHAVIOUR = {"answers": {"NeedsArtifactReboot": "Automatic", "SupportsRollback": "Yes"}}


@pytest.fixture
def module_artifact_path(tmp_path: Path, no_host_configuration: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from module_rig import install_recorder, module_artifact

    path = no_host_configuration / "usr-share-mender" / "modules" / "v3" / "rec"
    path.parent.mkdir(parents=True)
    install_recorder(path)
    monkeypatch.setenv("RECORDER_BEHAVE", json.dumps(MODULE_BEHAVIOUR))
    return module_artifact(tmp_path / "artifacts", "app-2")


def _module_calls(log: Path) -> list[str]:
    return [json.loads(line)["state"] for line in log.read_text().splitlines()] if log.exists() else []


def _check_module_end(device: SimDevice, server: MenderServer, log: Path, where: str) -> str:
    statuses = server.deployments[0].statuses.get(server.device().id, [])
    finals = [status for status in statuses if status in FINAL]
    assert len(finals) == 1, f"{where}: {statuses}"
    calls = _module_calls(log)
    assert device.store().pending() is None, where
    assert not device.load_config().module_tree.exists(), where
    assert calls and calls[-1] == "Cleanup", f"{where}: {calls}"
    last_install = len(calls) - 1 - calls[::-1].index("ArtifactInstall") if "ArtifactInstall" in calls else None
    after = calls[last_install:] if last_install is not None else []
    current = device.store().current().artifact_name
    if finals[0] == "success":
        assert current == "app-2", where
        assert "ArtifactCommit" in after and "ArtifactRollback" not in after, f"{where}: {calls}"
    else:
        assert current == "release-1", f"{where}: {current}"
        if last_install is not None:  # rolled back (after a commit that was cut off, as Mender's daemon does)
            ends = [call for call in after if call in ("ArtifactCommit", "ArtifactRollback")]
            assert ends and ends[-1] == "ArtifactRollback", f"{where}: {calls}"
            assert after.index("ArtifactRollback") < after.index("ArtifactFailure"), f"{where}: {calls}"
        assert server.deployments[0].logs, where
    assert device.running == device.part_a and device.read_env()["upgrade_available"] == "0", where
    return finals[0]


def _module_half(tmp_path: Path, artifact: Path, monkeypatch: pytest.MonkeyPatch, second: bool) -> list[str]:
    def prepared(root: Path, server: MenderServer) -> SimDevice:
        monkeypatch.setenv("RECORDER_LOG", str(root.parent / f"{root.name}.calls"))
        device = _device(root, server)
        server.add_deployment("app-2", artifact)
        if second:
            _deploy_up_to_the_reboot(device)
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
            _recover(device)
            outcomes.append(_check_module_end(device, server, tmp_path / f"p{point}.calls", f"step {point} of {total}"))
        assert server.violations == []
    return outcomes


def test_kill_a_modules_deployment_before_the_reboot(tmp_path: Path, module_artifact_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = _module_half(tmp_path, module_artifact_path, monkeypatch, second=False)
    assert "success" in outcomes and "failure" in outcomes  # before and after ArtifactInstall began


def test_kill_a_modules_deployment_after_the_reboot(tmp_path: Path, module_artifact_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = _module_half(tmp_path, module_artifact_path, monkeypatch, second=True)
    assert "success" in outcomes
