"""A root filesystem's deployment walks the daemon's rows of the state table, as a module's does.

Mender's daemon deploys ``rootfs-image`` through its built-in module (``NeedsArtifactReboot``
``Automatic``, ``SupportsRollback`` ``Yes``), so the reboot into the new system is its
``ArtifactReboot`` state with the ``ArtifactReboot`` state scripts around it, the check after
the boot is ``ArtifactVerifyReboot``, and a failure after the reboot rolls back with
``ArtifactRollbackReboot`` into the old system before the failure is reported
(``src/mender-update/daemon/state_machine/state_machine.cpp``). Each scenario here runs the
daemon once per boot and checks the Artifact's state scripts that ran, the statuses reported
and the reboots asked for, start by start.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from device_sim import SimDevice, release
from mender_server import Deployment, MenderServer
from pymender.device.managed.daemon import Daemon
from pymender.device.managed.record import Records
from pymender.errors import StateError

from .conftest import Reboots

MakeDaemon = Callable[..., tuple[Daemon, Reboots]]

DWN, INS, RBT = "downloading", "installing", "rebooting"
STATUS = "/api/devices/v1/deployments/device/deployments/{}/status"
SCRIPTS = [f"{state}_{action}_01" for state in ("ArtifactInstall", "ArtifactReboot", "ArtifactCommit",
                                                  "ArtifactRollback", "ArtifactRollbackReboot", "ArtifactFailure")
           for action in ("Enter", "Leave", "Error")]


class Scripts:
    """The Artifact's state scripts, each logging its name; ``failing`` exits 1."""

    def __init__(self, tmp: Path, failing: str | None = None) -> None:
        self.log = tmp / "ran.log"
        self.paths = []
        for name in SCRIPTS:
            path = tmp / "art-scripts" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"#!/bin/sh\necho {name} >> {self.log}\nexit {1 if name == failing else 0}\n")
            path.chmod(0o755)
            self.paths.append(path)

    def ran(self) -> list[str]:
        lines = self.log.read_text().split() if self.log.exists() else []
        self.log.unlink(missing_ok=True)
        return [line.removesuffix("_01") for line in lines]


def statuses(server: MenderServer, deployment: Deployment) -> list[str]:
    return deployment.statuses.get(server.device().id, [])


def log_of(server: MenderServer, deployment: Deployment) -> str:
    return " ".join(line["message"] for line in deployment.logs.get(server.device().id, []))


def deploy(tmp_path: Path, server: MenderServer, failing: str | None = None) -> tuple[Deployment, Scripts]:
    scripts = Scripts(tmp_path / "scripts", failing)
    artifact, _ = release(tmp_path / "art", "release-2", seed=2, scripts=scripts.paths)
    return server.add_deployment("release-2", artifact), scripts


def start(make_daemon: MakeDaemon, first: bool = False) -> Reboots:
    daemon, reboots = make_daemon()
    daemon.start()
    if first:
        daemon.tick()
    return reboots


def test_a_root_filesystem_reboots_through_artifact_reboot_with_its_scripts(
        tmp_path: Path, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    deployment, scripts = deploy(tmp_path, server)
    assert start(make_daemon, first=True).count == 1
    assert scripts.ran() == ["ArtifactInstall_Enter", "ArtifactInstall_Leave", "ArtifactReboot_Enter"]
    assert statuses(server, deployment) == [DWN, INS, RBT]
    pending = device.store().pending()
    assert pending is not None and pending.state == "ArtifactReboot"

    device.boot()
    assert start(make_daemon).count == 0
    assert scripts.ran() == ["ArtifactReboot_Leave", "ArtifactCommit_Enter", "ArtifactCommit_Leave"]
    assert statuses(server, deployment) == [DWN, INS, RBT, INS, "success"]
    assert device.store().current().artifact_name == "release-2" and device.store().pending() is None
    assert device.running == device.part_b and device.read_env()["upgrade_available"] == "0"


def test_a_commit_failing_after_the_reboot_reboots_into_the_old_system_before_the_report(
        tmp_path: Path, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    deployment, scripts = deploy(tmp_path, server, failing="ArtifactCommit_Enter_01")
    start(make_daemon, first=True)
    scripts.ran()
    device.boot()
    assert start(make_daemon).count == 1  # back into the old system
    assert scripts.ran() == ["ArtifactReboot_Leave", "ArtifactCommit_Enter", "ArtifactCommit_Error",
                             "ArtifactRollback_Enter", "ArtifactRollback_Leave", "ArtifactRollbackReboot_Enter"]
    assert statuses(server, deployment) == [DWN, INS, RBT, INS]  # the failure after the reboot
    assert device.read_env()["upgrade_available"] == "0"

    assert device.boot() == device.part_a
    assert start(make_daemon).count == 0
    assert scripts.ran() == ["ArtifactRollbackReboot_Leave", "ArtifactFailure_Enter", "ArtifactFailure_Leave"]
    assert statuses(server, deployment) == [DWN, INS, RBT, INS, "failure"]
    assert device.store().current().artifact_name == "release-1" and device.store().pending() is None
    assert "ArtifactCommit_Enter" in log_of(server, deployment)


def test_a_new_system_that_did_not_stay_up_fails_without_another_reboot(
        tmp_path: Path, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    deployment, scripts = deploy(tmp_path, server)
    start(make_daemon, first=True)
    scripts.ran()
    device.boot()
    device.boot()  # the bootloader went back
    assert start(make_daemon).count == 0  # the old system runs already
    assert scripts.ran() == ["ArtifactReboot_Error", "ArtifactRollback_Enter", "ArtifactRollback_Leave",
                             "ArtifactFailure_Enter", "ArtifactFailure_Leave"]
    assert statuses(server, deployment) == [DWN, INS, RBT, "failure"]
    log = log_of(server, deployment)
    assert "did not stay up: the bootloader went back" in log and log.endswith("deployment finished: failure")


def test_a_restart_while_the_reboot_is_verified_rolls_back_as_menders_daemon(
        tmp_path: Path, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    deployment, scripts = deploy(tmp_path, server)
    start(make_daemon, first=True)
    scripts.ran()
    device.boot()
    server.inject("503", count=1, prefix=STATUS.format(deployment.id))
    daemon, reboots = make_daemon()

    def stop(seconds: float) -> None:  # stopped while it waits to report 'installing' again
        daemon.stopping = True

    daemon._wait = stop  # type: ignore[method-assign]
    daemon.start()
    assert scripts.ran() == []
    pending = device.store().pending()
    assert pending is not None and pending.state == "ArtifactVerifyReboot"

    assert start(make_daemon).count == 1  # the same boot: rolled back, into the old system
    assert scripts.ran() == ["ArtifactRollback_Enter", "ArtifactRollback_Leave", "ArtifactRollbackReboot_Enter"]
    assert device.boot() == device.part_a
    start(make_daemon)
    assert statuses(server, deployment) == [DWN, INS, RBT, "failure"]
    assert device.store().current().artifact_name == "release-1"
    assert "restarted while it verified the reboot" in log_of(server, deployment)


def test_the_standalone_resume_refuses_the_daemons_deployment(
        tmp_path: Path, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    """Mender 5.x keeps the daemon's deployment apart from the standalone commands' state, so
    its ``resume`` finds nothing to resume; pymender keeps one store, and says whose it is."""
    deployment, _ = deploy(tmp_path, server)
    start(make_daemon, first=True)
    device.boot()
    before = device.snapshot()
    code, out, err = device.cli("resume")
    assert code == 1, (out, err)
    assert "the deployment of release-2 is the daemon's" in err and "ArtifactReboot" in err, err
    with pytest.raises(StateError, match="is the daemon's") as refused:
        device.updater(tool="mender-update").resume()
    assert "mender-update rollback" in (refused.value.hint or "")
    assert device.snapshot() == before
    start(make_daemon)  # the daemon finishes it
    assert statuses(server, deployment) == [DWN, INS, RBT, INS, "success"]


def test_a_reboot_recorded_by_an_earlier_version_is_verified_after_the_boot(
        tmp_path: Path, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    """Earlier versions rebooted a root filesystem from Before_ArtifactCommit_Enter, the record
    in phase 'rebooting'; the new system's daemon (the update carries it) finds that."""
    deployment, scripts = deploy(tmp_path, server)
    start(make_daemon, first=True)
    scripts.ran()
    device.store().update_pending(state="Before_ArtifactCommit_Enter")
    records = Records(device.data_dir)
    record = records.load()
    assert record is not None
    records.save(record._replace(phase="rebooting", reboot=""))
    device.boot()
    assert start(make_daemon).count == 0
    assert scripts.ran() == ["ArtifactReboot_Leave", "ArtifactCommit_Enter", "ArtifactCommit_Leave"]
    assert statuses(server, deployment) == [DWN, INS, RBT, INS, "success"]
    assert device.store().current().artifact_name == "release-2"


def test_aborted_while_installing_is_reported_forgets_the_written_update(
        tmp_path: Path, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    """Aborted on the server when 'installing' is reported: nothing switched yet, so only the
    Cleanup row (as Mender's daemon); no state script of the update runs."""
    deployment, scripts = deploy(tmp_path, server)
    server.inject("409", count=100, prefix=STATUS.format(deployment.id), after=1)
    env = device.read_env()
    assert start(make_daemon, first=True).count == 0
    assert scripts.ran() == []
    assert statuses(server, deployment) == [DWN]
    assert device.store().pending() is None and device.store().current().artifact_name == "release-1"
    assert device.read_env() == env and Records(device.data_dir).load() is None
