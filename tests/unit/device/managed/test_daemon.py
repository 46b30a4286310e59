"""The daemon against the test server on a simulated device: deployments from start to end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from device_sim import SimDevice, holds, release
from mender_server import MenderServer
from pymender.device.managed.daemon import Daemon
from pymender.device.managed.record import Records

from .conftest import Clock, Reboots

MakeDaemon = Callable[..., tuple[Daemon, Reboots]]


def statuses(server: MenderServer, deployment_id: str) -> list[str]:
    deployment = next(d for d in server.deployments if d.id == deployment_id)
    return deployment.statuses.get(server.device().id, [])


def test_first_start_authenticates_sends_inventory_and_polls(device: SimDevice, server: MenderServer,
                                                             make_daemon: MakeDaemon) -> None:
    daemon, _ = make_daemon()
    daemon.start()
    wait = daemon.tick()
    assert 0 < wait <= 60
    names = {item["name"]: item["value"] for item in server.device().inventory}
    assert names["artifact_name"] == "release-1"
    assert names["device_type"] == "qemux86-64"
    assert names["os"] == "Test OS 1.0"
    assert names["ipv4_eth0"] == ["10.0.2.15/24", "10.0.2.16/24"]
    assert names["mender_client_version_provider"] == "internal"
    assert [item["name"] for item in server.device().inventory] == sorted(names)
    # v2 answered 404, then the v1 GET of the specification
    assert [m for m, _ in server.calls("/deployments/next")] == ["POST", "GET"]
    key = device.data_dir / "mender-agent.pem"
    assert key.stat().st_mode & 0o777 == 0o600


def test_inventory_is_sent_only_when_it_changed(device: SimDevice, server: MenderServer,
                                                make_daemon: MakeDaemon) -> None:
    clock = Clock()
    daemon, _ = make_daemon(clock=clock)
    daemon.start()
    daemon.tick()
    assert server.device().inventory_puts == 1
    clock.now += 601
    daemon.tick()
    assert server.device().inventory_puts == 1  # unchanged: not sent
    assert daemon.inventory_due == clock.now + 600


def test_deployment_installs_reboots_commits_and_reports_success(
        tmp_path: Path, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    artifact, image = release(tmp_path / "art", "release-2", seed=2)
    deployment = server.add_deployment("release-2", artifact)
    daemon, reboots = make_daemon()
    daemon.start()
    daemon.tick()
    assert reboots.count == 1
    assert statuses(server, deployment.id) == ["downloading", "installing", "rebooting"]
    assert holds(device.part_b, image)
    assert Records(device.data_dir).load() is not None

    device.boot()  # into the new system
    daemon, reboots = make_daemon()
    daemon.start()  # verifies the reboot, commits by itself
    # 'installing' again before the commit, as Mender's daemon sends it: no commit without the server
    assert statuses(server, deployment.id) == ["downloading", "installing", "rebooting", "installing", "success"]
    assert device.store().current().artifact_name == "release-2"
    assert device.read_env()["upgrade_available"] == "0"
    assert Records(device.data_dir).load() is None
    assert deployment.logs == {}
    daemon.tick()
    names = {item["name"]: item["value"] for item in server.device().inventory}
    assert names["artifact_name"] == "release-2"


def test_new_system_that_does_not_stay_up_is_rolled_back_and_reported_with_its_log(
        tmp_path: Path, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    artifact, _ = release(tmp_path / "art", "release-2", seed=2)
    deployment = server.add_deployment("release-2", artifact)
    daemon, _ = make_daemon()
    daemon.start()
    daemon.tick()
    device.boot()  # the new system boots, fails before the daemon commits ...
    device.boot()  # ... and the bootloader goes back to the old one
    assert device.running == device.part_a
    daemon, _ = make_daemon()
    daemon.start()
    assert statuses(server, deployment.id)[-1] == "failure"
    assert device.store().current().artifact_name == "release-1"
    assert device.store().pending() is None
    messages = [line["message"] for line in deployment.logs[server.device().id]]
    assert any("did not stay up" in message for message in messages)


def test_the_deployment_log_says_what_happened_not_which_command_to_run(
        tmp_path: Path, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    artifact, _ = release(tmp_path / "art", "release-2", seed=2)
    deployment = server.add_deployment("release-2", artifact)
    daemon, reboots = make_daemon()
    daemon.start()
    daemon.tick()
    assert reboots.count == 1
    assert daemon.record is not None
    messages = [entry["message"] for entry in daemon.record.log]
    assert any(message.startswith("Wrote release-2 to ") for message in messages), messages
    assert not any("'pymender " in message or "run '" in message for message in messages), messages
    assert statuses(server, deployment.id) == ["downloading", "installing", "rebooting"]


def test_artifact_failing_a_check_is_reported_as_failure_with_the_reason(
        tmp_path: Path, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    artifact, _ = release(tmp_path / "art", "release-2", seed=2, device_types=("raspberrypi4",))
    deployment = server.add_deployment("release-2", artifact)
    before = device.snapshot()
    daemon, reboots = make_daemon()
    daemon.start()
    daemon.tick()
    assert reboots.count == 0
    assert statuses(server, deployment.id) == ["downloading", "failure"]
    messages = " ".join(line["message"] for line in deployment.logs[server.device().id])
    assert "raspberrypi4" in messages
    assert device.snapshot()["a"] == before["a"]
    assert device.snapshot()["env"] == before["env"]


def test_already_installed_artifact_is_reported_so(tmp_path: Path, device: SimDevice, server: MenderServer,
                                                   make_daemon: MakeDaemon) -> None:
    artifact, _ = release(tmp_path / "art", "release-1", seed=1)
    deployment = server.add_deployment("release-1", artifact)
    daemon, reboots = make_daemon()
    daemon.start()
    daemon.tick()
    assert statuses(server, deployment.id) == ["already-installed"]
    assert reboots.count == 0
    assert not server.calls("/download/")


def test_download_cut_off_resumes_in_the_same_install(tmp_path: Path, device: SimDevice, server: MenderServer,
                                                     make_daemon: MakeDaemon) -> None:
    artifact, image = release(tmp_path / "art", "release-2", seed=2)
    deployment = server.add_deployment("release-2", artifact, cut_after=100_000, cuts=1)
    daemon, reboots = make_daemon()
    daemon.start()
    daemon.tick()
    assert reboots.count == 1
    assert holds(device.part_b, image)
    assert len(server.calls("/download/")) == 2
    assert statuses(server, deployment.id) == ["downloading", "installing", "rebooting"]


def test_power_cut_during_the_download_starts_it_again_after_boot(
        tmp_path: Path, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    artifact, image = release(tmp_path / "art", "release-2", seed=2)
    deployment = server.add_deployment("release-2", artifact)
    daemon, _ = make_daemon()
    daemon.start()
    # What a power cut in the middle of the download leaves: the deployment recorded in its
    # download, nothing in the state store, part of the image on the inactive partition.
    from pymender.device.managed.record import Record

    Records(device.data_dir).save(Record(deployment.id, "release-2", f"{server.url}/download/{deployment.id}",
                                         attempts=1))
    device.part_b.write_bytes(image[:1000] + bytes(len(image)))
    device.boot()
    daemon, reboots = make_daemon()
    daemon.start()
    assert reboots.count == 1
    assert holds(device.part_b, image)
    device.boot()
    daemon, _ = make_daemon()
    daemon.start()
    assert statuses(server, deployment.id)[-1] == "success"
    assert device.store().current().artifact_name == "release-2"


def test_a_download_server_out_of_reach_after_the_boot_is_tried_again_later(
        tmp_path: Path, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    """After a power cut the network may not be up yet when the daemon starts again: the
    download is tried again after the backoff instead of failing the deployment, and these
    tries do not count as interrupted downloads."""
    artifact, image = release(tmp_path / "art", "release-2", seed=2)
    deployment = server.add_deployment("release-2", artifact)
    from pymender.device.managed.record import Record

    Records(device.data_dir).save(Record(deployment.id, "release-2", f"{server.url}/download/{deployment.id}",
                                         attempts=2))
    server.inject("down", count=3, prefix="/download/")
    clock = Clock()
    daemon, reboots = make_daemon(clock=clock)
    daemon.start()
    for _ in range(3):
        assert reboots.count == 0
        assert not any(deployment.statuses.values())
        record = Records(device.data_dir).load()
        assert record is not None and record.phase == "downloading" and record.attempts == 2
        wait = daemon.tick()
        assert wait > 0
        assert daemon.tick() == wait  # nothing happens before it is due
        clock.now += wait
        daemon.tick()
    assert reboots.count == 1
    assert holds(device.part_b, image)
    assert len(server.calls("/download/")) == 4
    assert daemon.record is not None
    assert "trying the download again" in " ".join(entry["message"] for entry in daemon.record.log)


def test_a_download_server_that_stays_out_of_reach_fails_the_deployment(
        tmp_path: Path, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    artifact, _ = release(tmp_path / "art", "release-2", seed=2)
    deployment = server.add_deployment("release-2", artifact)
    server.inject("down", count=1000, prefix="/download/")
    clock = Clock()
    daemon, reboots = make_daemon(clock=clock)
    daemon.start()
    for _ in range(100):
        clock.now += daemon.tick()
        if statuses(server, deployment.id)[-1:] == ["failure"]:
            break
    assert statuses(server, deployment.id) == ["downloading", "failure"]
    assert reboots.count == 0
    retries = len(server.calls("/download/"))
    assert 2 <= retries < 100
    assert Records(device.data_dir).load() is None


def test_an_interrupted_download_is_given_up_after_three_attempts(
        tmp_path: Path, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    artifact, _ = release(tmp_path / "art", "release-2", seed=2)
    deployment = server.add_deployment("release-2", artifact)
    daemon, _ = make_daemon()
    daemon.start()
    from pymender.device.managed.record import Record

    Records(device.data_dir).save(Record(deployment.id, "release-2", "http://x/", attempts=3))
    daemon, reboots = make_daemon()
    daemon.start()
    assert reboots.count == 0
    assert statuses(server, deployment.id) == ["failure"]


def test_idle_and_sync_scripts_run_around_each_round_with_retry_later(
        device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    ran = device.root / "ran"
    (device.scripts_dir / "version").write_text("3\n")
    for name in ("Idle_Enter_00", "Idle_Leave_00", "Sync_Enter_00", "Sync_Leave_00"):
        script = device.scripts_dir / name
        script.write_text(f"#!/bin/sh\necho {name} >> {ran}\n")
        script.chmod(0o755)
    later = device.scripts_dir / "Sync_Enter_01_later"
    later.write_text(f"#!/bin/sh\nif [ ! -e {ran}.once ]; then touch {ran}.once; exit 21; fi\necho later >> {ran}\n")
    later.chmod(0o755)
    daemon, _ = make_daemon()
    daemon.start()
    daemon.tick()
    assert ran.read_text().split() == ["Idle_Enter_00", "Idle_Leave_00", "Sync_Enter_00", "later", "Sync_Leave_00",
                                       "Idle_Enter_00"]
    assert server.device().inventory_puts == 1


def test_deployment_aborted_on_the_server_is_dropped_and_rolled_back(
        tmp_path: Path, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    artifact, _ = release(tmp_path / "art", "release-2", seed=2)
    deployment = server.add_deployment("release-2", artifact)
    server.inject("409", prefix=f"/api/devices/v1/deployments/device/deployments/{deployment.id}/status")
    before = device.snapshot()
    daemon, reboots = make_daemon()
    daemon.start()
    daemon.tick()  # 'downloading' is answered 409: aborted before anything is written
    assert reboots.count == 0 and daemon.record is None
    assert Records(device.data_dir).load() is None
    assert not server.calls("/download/")
    assert device.snapshot() == before


def test_new_system_that_cannot_reach_the_server_is_rolled_back_and_reported_from_the_old_one(
        tmp_path: Path, device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    """As Mender's daemon: 'installing' is reported before the commit, with retries; a new
    system that cannot tell the server is not kept."""
    artifact, _ = release(tmp_path / "art", "release-2", seed=2)
    deployment = server.add_deployment("release-2", artifact)
    daemon, _ = make_daemon()
    daemon.start()
    daemon.tick()
    device.boot()  # into the new system, which cannot reach the server
    server.inject("down", count=4, prefix=f"/api/devices/v1/deployments/device/deployments/{deployment.id}/status")
    daemon, reboots = make_daemon()
    daemon.start()
    assert len(reboots.waits) == 3  # three retries (RetryPollIntervalSeconds 30)
    assert reboots.count == 1  # back into the old system
    assert device.read_env()["upgrade_available"] == "0"
    pending = device.store().pending()
    assert pending is not None and pending.state == "ArtifactRollbackReboot"  # verified after the boot
    assert statuses(server, deployment.id) == ["downloading", "installing", "rebooting"]
    device.boot()
    assert device.running == device.part_a
    daemon, _ = make_daemon()
    daemon.start()
    assert device.store().current().artifact_name == "release-1" and device.store().pending() is None
    assert statuses(server, deployment.id) == ["downloading", "installing", "rebooting", "failure"]
    messages = " ".join(line["message"] for line in deployment.logs[server.device().id])
    assert "giving up, not committed" in messages
