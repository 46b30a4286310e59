"""Update Modules in managed deployments, against the test server, checked against Mender's daemon.

A recording module (``tests/unit/device/modules/recorder.py``) logs every call. Each scenario's
calls, statuses and reboots are compared with :data:`MENDER`, written from Mender's daemon
(``src/mender-update/daemon/state_machine/state_machine.cpp`` for which state follows which,
``src/mender-update/daemon/states.cpp`` for the calls in each):

- after ``ArtifactInstall``, ``NeedsArtifactReboot``: ``No`` goes to the commit at once;
  ``Yes`` calls the module's ``ArtifactReboot`` and, when that returns, ``ArtifactVerifyReboot``;
  ``Automatic`` runs ``reboot``, and ``ArtifactVerifyReboot`` follows after the boot;
- before the commit ``installing`` is reported again (``SendStatusUpdateState`` with retries):
  no commit without the server;
- a failure: ``SupportsRollback``; ``Yes``: ``ArtifactRollback``, then ``NeedsArtifactReboot``
  again and, on ``Yes``/``Automatic``, ``ArtifactRollbackReboot`` (or ``reboot``) and
  ``ArtifactVerifyRollbackReboot``; then ``ArtifactFailure`` and ``Cleanup``; without rollback
  the Artifact is recorded with ``_INCONSISTENT``;
- the final status, with the log on failure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from device_sim import SimDevice
from mender_server import Deployment, MenderServer
from module_rig import install_recorder, module_artifact
from pymender.device.managed.daemon import Daemon
from pymender.device.managed.record import Records

from .conftest import Clock, Reboots

MakeDaemon = Callable[..., tuple[Daemon, Reboots]]

PPFS, DL = "ProvidePayloadFileSizes", "Download"
INSTALL, NAR, SR = "ArtifactInstall", "NeedsArtifactReboot", "SupportsRollback"
REBOOT, VERIFY = "ArtifactReboot", "ArtifactVerifyReboot"
COMMIT, ROLLBACK, FAILURE, CLEANUP = "ArtifactCommit", "ArtifactRollback", "ArtifactFailure", "Cleanup"
RB_REBOOT, RB_VERIFY = "ArtifactRollbackReboot", "ArtifactVerifyRollbackReboot"
DWN, INS, RBT = "downloading", "installing", "rebooting"

#: scenario -> (module behaviour, per start of the daemon (the first one polls): the module's
#: calls, the statuses reported by then, the reboots that start ran; the installed Artifact
#: at the end: Mender names the new one ``_INCONSISTENT`` when its rollback failed or was not
#: possible).
MENDER: dict[str, tuple[dict[str, Any], list[tuple[list[str], list[str], int]], str]] = {
    "no reboot": ({"answers": {NAR: "No"}},
                  [([PPFS, DL, INSTALL, NAR, COMMIT, CLEANUP], [DWN, INS, INS, "success"], 0)], "app-2"),
    "the module reboots": ({"answers": {NAR: "Yes"}},
                           [([PPFS, DL, INSTALL, NAR, REBOOT, VERIFY, COMMIT, CLEANUP],
                             [DWN, INS, RBT, INS, "success"], 0)], "app-2"),
    "the daemon reboots": ({"answers": {NAR: "Automatic"}},
                           [([PPFS, DL, INSTALL, NAR], [DWN, INS, RBT], 1),
                            ([VERIFY, COMMIT, CLEANUP], [DWN, INS, RBT, INS, "success"], 0)], "app-2"),
    "install fails, rolled back": ({"answers": {NAR: "No", SR: "Yes"}, "fail": [INSTALL]},
                                   [([PPFS, DL, INSTALL, SR, ROLLBACK, NAR, FAILURE, CLEANUP],
                                     [DWN, INS, "failure"], 0)], "release-1"),
    "install fails, no rollback": ({"answers": {NAR: "No", SR: "No"}, "fail": [INSTALL]},
                                   [([PPFS, DL, INSTALL, SR, FAILURE, CLEANUP], [DWN, INS, "failure"], 0)],
                                   "app-2_INCONSISTENT"),
    "reboot not verified, the module rolls back with its reboot": (
        {"answers": {NAR: "Yes", SR: "Yes"}, "fail": [VERIFY]},
        [([PPFS, DL, INSTALL, NAR, REBOOT, VERIFY, SR, ROLLBACK, NAR, RB_REBOOT, RB_VERIFY, FAILURE, CLEANUP],
          [DWN, INS, RBT, "failure"], 0)], "release-1"),
    "reboot not verified, the daemon reboots into the rollback": (
        {"answers": {NAR: "Automatic", SR: "Yes"}, "fail": [VERIFY]},
        [([PPFS, DL, INSTALL, NAR], [DWN, INS, RBT], 1),
         ([VERIFY, SR, ROLLBACK, NAR], [DWN, INS, RBT], 1),
         ([RB_VERIFY, FAILURE, CLEANUP], [DWN, INS, RBT, "failure"], 0)], "release-1"),
    "commit fails, rolled back": ({"answers": {NAR: "No", SR: "Yes"}, "fail": [COMMIT]},
                                  [([PPFS, DL, INSTALL, NAR, COMMIT, SR, ROLLBACK, NAR, FAILURE, CLEANUP],
                                    [DWN, INS, INS, "failure"], 0)], "release-1"),
    "reboot query fails": ({"answers": {SR: "Yes"}, "fail": [NAR]},
                           [([PPFS, DL, INSTALL, NAR, SR, ROLLBACK, NAR, FAILURE, CLEANUP], [DWN, INS, "failure"], 0)],
                           "app-2_INCONSISTENT"),
}


class Module:
    """The recording module installed on the device, its calls, and Artifacts for it."""

    def __init__(self, tmp: Path, host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        self.log = tmp / "calls.jsonl"
        self.monkeypatch = monkeypatch
        path = host / "usr-share-mender" / "modules" / "v3" / "rec"
        path.parent.mkdir(parents=True, exist_ok=True)
        install_recorder(path)
        monkeypatch.setenv("RECORDER_LOG", str(self.log))
        self.behave({})

    def behave(self, behaviour: dict[str, Any]) -> None:
        self.monkeypatch.setenv("RECORDER_BEHAVE", json.dumps(behaviour))

    def calls(self) -> list[str]:
        if not self.log.exists():
            return []
        states = [json.loads(line)["state"] for line in self.log.read_text().splitlines()]
        self.log.unlink()
        return states

    def artifact(self, name: str) -> Path:
        return module_artifact(self.tmp, name)


@pytest.fixture
def module(tmp_path: Path, no_host_configuration: Path, monkeypatch: pytest.MonkeyPatch) -> Module:
    return Module(tmp_path / "module", no_host_configuration, monkeypatch)


def statuses(server: MenderServer, deployment_id: str) -> list[str]:
    deployment = next(d for d in server.deployments if d.id == deployment_id)
    return deployment.statuses.get(server.device().id, [])


def run_starts(behaviour: dict[str, Any], starts: list[tuple[list[str], list[str], int]], device: SimDevice,
               server: MenderServer, make_daemon: MakeDaemon, module: Module) -> Deployment:
    """Deploy app-2 with the module behaving so; start the daemon once per entry of ``starts``
    (after a boot but the first time) and check each start's calls, statuses and reboots."""
    module.behave(behaviour)
    deployment = server.add_deployment("app-2", module.artifact("app-2"))
    for number, (calls, reported, reboot_count) in enumerate(starts):
        if number:
            device.boot()
        daemon, reboots = make_daemon()
        daemon.start()
        if number == 0:
            daemon.tick()
        assert module.calls() == calls, number
        assert statuses(server, deployment.id) == reported, number
        assert reboots.count == reboot_count, number
    return deployment


@pytest.mark.parametrize("scenario", sorted(MENDER))
def test_each_scenario_runs_the_module_as_menders_daemon(scenario: str, device: SimDevice, server: MenderServer,
                                                         make_daemon: MakeDaemon, module: Module) -> None:
    behaviour, starts, installed = MENDER[scenario]
    deployment = run_starts(behaviour, starts, device, server, make_daemon, module)
    reported = starts[-1][1]
    assert Records(device.data_dir).load() is None
    assert device.store().pending() is None
    assert device.store().current().artifact_name == installed
    assert not (device.data_dir / "modules" / "v3" / "payloads" / "0000" / "tree").exists()  # cleaned up
    logs = deployment.logs.get(server.device().id)
    if reported[-1] == "failure":
        assert logs, "the log goes with a failure"
    else:
        assert not logs
    # A module's deployment never touches the root filesystem's bootloader variables.
    assert device.read_env()["upgrade_available"] == "0"


STATUS = "/api/devices/v1/deployments/device/deployments/{}/status"


def test_no_commit_while_the_server_cannot_be_told_and_the_final_status_is_dropped_after_its_retries(
        device: SimDevice, server: MenderServer, make_daemon: MakeDaemon, module: Module) -> None:
    """Mender's daemon sends 'installing' before the commit with retries and rolls back when
    it cannot; the final status is retried too, then dropped, and the daemon polls again."""
    module.behave({"answers": {NAR: "No", SR: "Yes"}})
    deployment = server.add_deployment("app-2", module.artifact("app-2"))
    server.inject("down", count=100, prefix=STATUS.format(deployment.id), after=2)
    clock = Clock()
    daemon, reboots = make_daemon(clock=clock)
    daemon.start()
    daemon.tick()
    assert module.calls() == [PPFS, DL, INSTALL, NAR, SR, ROLLBACK, NAR, FAILURE, CLEANUP]
    assert len(reboots.waits) == 3 and all(30 <= wait <= 33 for wait in reboots.waits)  # RetryPollIntervalSeconds
    assert device.store().current().artifact_name == "release-1"
    assert daemon.record is not None and daemon.record.outcome == "failure"
    messages = " ".join(line["message"] for line in daemon.record.log)
    assert "giving up, not committed" in messages
    daemon.poll_due = daemon.inventory_due = float("inf")  # (the server would give the deployment again)
    for _ in range(3):  # the final status: retried by the loop ...
        assert daemon.record is not None
        clock.now = daemon.report_due
        daemon.tick()
    assert daemon.record is None  # ... then dropped, as Mender's daemon drops it
    assert Records(device.data_dir).load() is None
    assert statuses(server, deployment.id) == [DWN, INS]


def test_a_status_lost_once_before_the_commit_is_sent_again(
        device: SimDevice, server: MenderServer, make_daemon: MakeDaemon, module: Module) -> None:
    module.behave({"answers": {NAR: "No"}})
    deployment = server.add_deployment("app-2", module.artifact("app-2"))
    server.inject("500", count=1, prefix=STATUS.format(deployment.id), after=2)
    daemon, reboots = make_daemon()
    daemon.start()
    daemon.tick()
    assert len(reboots.waits) == 1
    assert statuses(server, deployment.id) == [DWN, INS, INS, "success"]
    assert device.store().current().artifact_name == "app-2"


def test_stopped_while_waiting_for_the_server_is_rolled_back_after_the_restart(
        device: SimDevice, server: MenderServer, make_daemon: MakeDaemon, module: Module) -> None:
    """A restart finds the update in ArtifactVerifyReboot (the report before the commit was
    being retried): Mender's daemon rolls it back then, and so does pymender."""
    module.behave({"answers": {NAR: "Yes", SR: "Yes"}})
    deployment = server.add_deployment("app-2", module.artifact("app-2"))
    server.inject("503", count=1, prefix=STATUS.format(deployment.id), after=3)
    daemon, reboots = make_daemon()
    daemon.start()

    def stop(seconds: float) -> None:
        reboots.waits.append(seconds)
        daemon.stopping = True

    daemon._wait = stop  # type: ignore[method-assign]
    daemon.tick()
    assert reboots.waits == [7]  # the server's Retry-After
    assert module.calls() == [PPFS, DL, INSTALL, NAR, REBOOT, VERIFY]
    assert device.store().pending() is not None
    daemon, _ = make_daemon()
    daemon.start()
    assert module.calls() == [SR, ROLLBACK, NAR, RB_REBOOT, RB_VERIFY, FAILURE, CLEANUP]  # not verified again
    assert statuses(server, deployment.id) == [DWN, INS, RBT, "failure"]
    assert device.store().pending() is None and device.store().current().artifact_name == "release-1"
    log = " ".join(line["message"] for line in deployment.logs[server.device().id])
    assert "restarted while it verified the reboot; rolling back" in log


@pytest.mark.parametrize("after", [1, 2])
def test_aborted_on_the_server(after: int, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon,
                               module: Module) -> None:
    """Aborted when 'installing' is reported: nothing installed, only the module's Cleanup.
    Aborted when 'installing' is reported before the commit: rolled back, not committed."""
    module.behave({"answers": {NAR: "No", SR: "Yes"}})
    deployment = server.add_deployment("app-2", module.artifact("app-2"))
    server.inject("409", count=100, prefix=STATUS.format(deployment.id), after=after)
    daemon, _ = make_daemon()
    daemon.start()
    daemon.tick()
    if after == 1:
        assert module.calls() == [PPFS, DL, CLEANUP]
    else:
        assert module.calls() == [PPFS, DL, INSTALL, NAR, SR, ROLLBACK, NAR, FAILURE, CLEANUP]
    assert daemon.record is None and Records(device.data_dir).load() is None
    assert device.store().pending() is None
    assert device.store().current().artifact_name == "release-1"
    assert statuses(server, deployment.id) == [DWN, INS][:after]


def test_a_reboot_that_does_not_come_fails_the_deployment(
        device: SimDevice, server: MenderServer, make_daemon: MakeDaemon, module: Module) -> None:
    """As Mender's daemon: ``reboot`` that does not end the process within the grace time is
    a failed reboot; the rollback's own reboot failing is only logged."""
    module.behave({"answers": {NAR: "Automatic", SR: "Yes"}})
    deployment = server.add_deployment("app-2", module.artifact("app-2"))
    daemon, reboots = make_daemon()
    asked: list[bool] = []
    daemon.reboot = lambda: asked.append(True)  # the device does not go down
    daemon.start()
    daemon.tick()
    assert asked == [True, True]  # the update's reboot, then the rollback's
    assert reboots.waits == [300.0, 300.0]
    assert module.calls() == [PPFS, DL, INSTALL, NAR, SR, ROLLBACK, NAR, RB_VERIFY, FAILURE, CLEANUP]
    assert statuses(server, deployment.id) == [DWN, INS, RBT, "failure"]
    assert device.store().current().artifact_name == "release-1"
    log = " ".join(line["message"] for line in deployment.logs[server.device().id])
    assert "did not reboot within 300 s" in log


def test_the_rollbacks_reboot_is_tried_again_a_bounded_number_of_times(
        device: SimDevice, server: MenderServer, make_daemon: MakeDaemon, module: Module) -> None:
    """Mender's daemon reboots again after every failed ArtifactVerifyRollbackReboot until its
    state loop detection ends it; pymender stops after three reboots of the deployment."""
    module.behave({"answers": {NAR: "Yes", SR: "Yes"}, "fail": [VERIFY, RB_VERIFY]})
    deployment = server.add_deployment("app-2", module.artifact("app-2"))
    daemon, _ = make_daemon()
    daemon.start()
    daemon.tick()
    assert module.calls() == [PPFS, DL, INSTALL, NAR, REBOOT, VERIFY, SR, ROLLBACK, NAR,
                              RB_REBOOT, RB_VERIFY, RB_REBOOT, RB_VERIFY, FAILURE, CLEANUP]
    assert statuses(server, deployment.id) == [DWN, INS, RBT, "failure"]
    log = " ".join(line["message"] for line in deployment.logs[server.device().id])
    assert "giving up after 3 reboots" in log


def test_the_daemons_reboot_into_the_rollback_is_verified_after_each_boot(
        device: SimDevice, server: MenderServer, make_daemon: MakeDaemon, module: Module) -> None:
    """Every reboot the daemon asks for, the rollback's again included, is verified after the
    boot, never before it; the third reboot of the deployment is the last."""
    run_starts({"answers": {NAR: "Automatic", SR: "Yes"}, "fail": [VERIFY, RB_VERIFY]},
               [([PPFS, DL, INSTALL, NAR], [DWN, INS, RBT], 1),
                ([VERIFY, SR, ROLLBACK, NAR], [DWN, INS, RBT], 1),
                ([RB_VERIFY], [DWN, INS, RBT], 1),
                ([RB_VERIFY, FAILURE, CLEANUP], [DWN, INS, RBT, "failure"], 0)], device, server, make_daemon, module)
    assert device.store().pending() is None and device.store().current().artifact_name == "release-1"
