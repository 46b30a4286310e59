"""The standalone flow on a simulated device: install, reboot, commit, rollback, and every refusal."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from artifact_factory import join_members, make_keys, member, split_members
from device_sim import PART_SIZE, SimDevice, holds, release, sha
from pymender.artifact import builders
from pymender.artifact.writer import write_artifact
from pymender.device.flow import UpdateState
from pymender.device.lock import DeviceLock
from pymender.device.store import PendingUpdate
from pymender.errors import (
    ArtifactError,
    ArtifactUnsupportedError,
    ChecksumError,
    ConfigError,
    DeviceError,
    IncompatibleArtifactError,
    LockedError,
    MissingSignatureError,
    NothingToDoError,
    ScriptError,
    SignatureError,
    StateError,
)


@pytest.fixture(params=["grub", "uboot"])
def device(request: pytest.FixtureRequest, tmp_path: Path) -> SimDevice:
    return SimDevice.create(tmp_path / "device", bootloader=request.param)


@pytest.fixture
def grub_device(tmp_path: Path) -> SimDevice:
    return SimDevice.create(tmp_path / "device")


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


# --- the happy paths ------------------------------------------------------------------------------


def test_install_reboot_commit(device: SimDevice, artifacts: Path) -> None:
    artifact, image = release(artifacts, "release-2", seed=2)
    old_a = sha(device.part_a)
    lines: list[str] = []
    result = device.updater(report=lines.append).install(str(artifact))
    assert result.partition == str(device.part_b) and result.reboot_required and not result.committed
    assert holds(device.part_b, image) and sha(device.part_a) == old_a
    assert device.read_env() == {"mender_boot_part": "3", "mender_boot_part_hex": "3",
                                 "upgrade_available": "1", "bootcount": "0"}
    pending = device.store().pending()
    assert pending is not None and pending.state == UpdateState.BEFORE_ARTIFACT_COMMIT_ENTER
    assert pending.previous_partition == str(device.part_a)
    assert any("pymender commit" in line and "Reboot" in line for line in lines)
    assert device.updater().show_artifact() == "release-1"

    assert device.boot() == device.part_b
    commit = device.updater().commit()
    assert commit.artifact_name == "release-2" and not commit.inconsistent
    env = device.read_env()
    assert env["upgrade_available"] == "0" and env["mender_boot_part"] == "3" and env["bootcount"] == "1"
    assert device.store().pending() is None
    provides = device.updater().show_provides()
    assert provides["artifact_name"] == "release-2" and provides["rootfs-image.version"] == "release-2"
    assert device.boot() == device.part_b  # stays on the new system
    with pytest.raises(NothingToDoError):
        device.updater().commit()

    # The next update goes to the other partition.
    artifact3, image3 = release(artifacts, "release-3", seed=3)
    assert device.updater().install(str(artifact3)).partition == str(device.part_a)
    assert holds(device.part_a, image3) and holds(device.part_b, image)


def test_reboot_without_commit_rolls_back(device: SimDevice, artifacts: Path) -> None:
    artifact, _ = release(artifacts, "release-2", seed=2)
    device.updater().install(str(artifact))
    assert device.boot() == device.part_b
    assert device.boot() == device.part_a  # the second boot without commit: bootloader goes back
    assert device.read_env()["upgrade_available"] == "0"
    with pytest.raises(StateError, match="bootloader went back .* release-1 stays installed"):
        device.updater().commit()
    assert device.store().pending() is None
    assert device.updater().show_artifact() == "release-1"
    with pytest.raises(NothingToDoError):
        device.updater().commit()
    # And a new install works from there.
    device.updater().install(str(artifact))
    assert device.boot() == device.part_b


def test_commit_before_reboot_is_refused_and_changes_nothing(grub_device: SimDevice, artifacts: Path) -> None:
    artifact, _ = release(artifacts, "release-2", seed=2)
    grub_device.updater().install(str(artifact))
    before = grub_device.snapshot()
    with pytest.raises(StateError, match="but the device still runs"):
        grub_device.updater().commit()
    assert grub_device.snapshot() == before


def test_rollback_after_reboot_needs_a_reboot(device: SimDevice, artifacts: Path) -> None:
    artifact, _ = release(artifacts, "release-2", seed=2)
    device.updater().install(str(artifact))
    device.boot()
    result = device.updater().rollback()
    assert result.reboot_required and result.current == "release-1"
    assert device.read_env()["mender_boot_part"] == "2" and device.read_env()["upgrade_available"] == "0"
    assert device.store().pending() is None
    assert device.boot() == device.part_a
    with pytest.raises(NothingToDoError, match="nothing to roll back"):
        device.updater().rollback()


def test_rollback_before_reboot(grub_device: SimDevice, artifacts: Path) -> None:
    artifact, _ = release(artifacts, "release-2", seed=2)
    env_before = grub_device.read_env()
    grub_device.updater().install(str(artifact))
    assert not grub_device.updater().rollback().reboot_required
    assert grub_device.read_env() == env_before
    assert grub_device.boot() == grub_device.part_a


def test_second_install_before_commit_is_refused(grub_device: SimDevice, artifacts: Path) -> None:
    artifact, _ = release(artifacts, "release-2", seed=2)
    grub_device.updater().install(str(artifact))
    before = grub_device.snapshot()
    with pytest.raises(StateError, match="already installed and waiting for a commit"):
        grub_device.updater().install(str(artifact))
    assert grub_device.snapshot() == before


def test_skip_identical_blocks_gives_the_same_result(tmp_path: Path, artifacts: Path) -> None:
    device = SimDevice.create(tmp_path / "device", SkipIdenticalBlocks=True)
    artifact, image = release(artifacts, "release-2", seed=2)
    device.part_b.write_bytes(image + bytes(PART_SIZE - len(image)))
    device.updater().install(str(artifact))
    assert holds(device.part_b, image)


def test_signed_artifact_with_a_verify_key(tmp_path: Path, artifacts: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    device = SimDevice.create(tmp_path / "device", ArtifactVerifyKey=str(keys["ec-sec1"].public))
    artifact, image = release(artifacts, "release-2", seed=2, key=keys["ec-sec1"].private)
    device.updater().install(str(artifact))
    assert holds(device.part_b, image)


def test_bootstrap_artifact_records_provides_only(grub_device: SimDevice, artifacts: Path) -> None:
    artifacts.mkdir()
    spec = builders.bootstrap_artifact(builders.CommonOptions(
        name="factory-7", device_types=["qemux86-64"], provides=[("rootfs-image.version", "factory-7")]))
    path = artifacts / "bootstrap.mender"
    write_artifact(spec, path, compression_name="none")
    before = grub_device.snapshot()
    result = grub_device.updater().install(str(path))
    assert result.committed and result.partition is None
    after = grub_device.snapshot()
    assert (after["a"], after["b"], after["env"]) == (before["a"], before["b"], before["env"])
    assert grub_device.updater().show_provides() == {
        "artifact_name": "factory-7", "rootfs-image.version": "factory-7"}


# --- refusals leave everything as it was ----------------------------------------------------------


def _refused(device: SimDevice, artifact: Path, error: type[Exception], match: str) -> None:
    before = device.snapshot()
    with pytest.raises(error, match=match):
        device.updater().install(str(artifact))
    assert device.snapshot() == before
    assert not (device.data_dir / "scripts").exists()  # not even the Artifact's scripts were stored


def test_wrong_device_type(grub_device: SimDevice, artifacts: Path) -> None:
    artifact, _ = release(artifacts, "release-2", seed=2, device_types=("raspberrypi4",))
    _refused(grub_device, artifact, IncompatibleArtifactError,
             "for device type.*raspberrypi4.*this device is qemux86-64")


@pytest.mark.parametrize("options, match", [
    ({"depends_artifact_names": ["release-0"]}, "installs only over release-0.*has release-1"),
    ({"depends_groups": ["beta"]}, "for the group.*beta"),
    ({"depends": [("rootfs-image.version", "9")]}, r"depends on rootfs-image.version = 9.*\(not set\)"),
])
def test_unmet_depends(grub_device: SimDevice, artifacts: Path, options: dict[str, object], match: str) -> None:
    artifact, _ = release(artifacts, "release-2", seed=2, **options)
    _refused(grub_device, artifact, IncompatibleArtifactError, match)


def test_met_provides_depends_are_accepted(grub_device: SimDevice, artifacts: Path) -> None:
    store = grub_device.store()
    from pymender.device.store import DeviceState

    store.set_current(DeviceState("release-1", provides={"rootfs-image.version": "1"}))
    artifact, image = release(artifacts, "release-2", seed=2, depends=[("rootfs-image.version", "1")],
                              depends_artifact_names=["release-1"])
    result = grub_device.updater().install(str(artifact))
    assert result.artifact_name == "release-2" and result.partition == str(grub_device.part_b)
    pending = grub_device.store().pending()
    assert pending is not None and pending.artifact_name == "release-2"
    assert pending.state == UpdateState.BEFORE_ARTIFACT_COMMIT_ENTER
    assert holds(grub_device.part_b, image) and grub_device.read_env()["upgrade_available"] == "1"


def test_signature_refusals(tmp_path: Path, artifacts: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    device = SimDevice.create(tmp_path / "device", ArtifactVerifyKey=str(keys["ec-sec1"].public))
    unsigned, _ = release(artifacts, "unsigned", seed=2)
    _refused(device, unsigned, MissingSignatureError, "not signed")
    other, _ = release(artifacts, "other", seed=2, key=keys["ec-other"].private)
    _refused(device, other, SignatureError, "signature")


def test_checksum_mismatch_leaves_active_partition_env_and_store(grub_device: SimDevice, artifacts: Path) -> None:
    artifact, image = release(artifacts, "release-2", seed=2)
    raw = bytearray(artifact.read_bytes())
    start = raw.find(image)
    assert start > 0
    raw[start + len(image) - 50] ^= 1
    artifact.write_bytes(bytes(raw))
    before = grub_device.snapshot()
    with pytest.raises(ChecksumError):
        grub_device.updater().install(str(artifact))
    after = grub_device.snapshot()
    # The inactive partition was written while streaming (as with Mender); nothing else changed.
    assert (after["a"], after["env"], after["store"]) == (before["a"], before["env"], before["store"])
    assert grub_device.boot() == grub_device.part_a


@pytest.mark.parametrize("cut", [100, 3000, 20_000, -2000])
def test_truncated_artifact(grub_device: SimDevice, artifacts: Path, cut: int) -> None:
    artifact, _ = release(artifacts, "release-2", seed=2)
    data = artifact.read_bytes()
    artifact.write_bytes(data[:cut])
    before = grub_device.snapshot()
    with pytest.raises(ArtifactError):
        grub_device.updater().install(str(artifact))
    after = grub_device.snapshot()
    assert (after["a"], after["env"], after["store"]) == (before["a"], before["env"], before["store"])


def test_corrupt_header_is_refused_untouched(grub_device: SimDevice, artifacts: Path) -> None:
    artifact, _ = release(artifacts, "release-2", seed=2)
    members = split_members(artifact.read_bytes())
    header = member(members, "header.tar")
    header.data = header.data[:200] + b"X" + header.data[201:]
    artifact.write_bytes(join_members(members))
    _refused(grub_device, artifact, ArtifactError, "header")
    garbage = artifacts / "garbage.mender"
    garbage.write_bytes(b"not an artifact" * 100)
    _refused(grub_device, garbage, ArtifactError, "tar|Artifact")


def test_payload_larger_than_the_partition(grub_device: SimDevice, artifacts: Path) -> None:
    artifact, _ = release(artifacts, "huge", seed=2, size=PART_SIZE + 1)
    _refused(grub_device, artifact, IncompatibleArtifactError, "does not fit the inactive partition")


def test_module_artifact_is_refused(grub_device: SimDevice, artifacts: Path) -> None:
    artifacts.mkdir()
    payload = artifacts / "file.txt"
    payload.write_text("hello")
    spec = builders.module_image(builders.CommonOptions(name="app-1", device_types=["qemux86-64"]),
                                 "single-file", [payload], None, builders.SoftwareOptions())
    path = artifacts / "module.mender"
    write_artifact(spec, path, compression_name="none")
    _refused(grub_device, path, ArtifactUnsupportedError, "Update Module")


def test_concurrent_install_is_refused(grub_device: SimDevice, artifacts: Path) -> None:
    artifact, _ = release(artifacts, "release-2", seed=2)
    with DeviceLock(grub_device.data_dir):
        _refused(grub_device, artifact, LockedError, "another pymender operation is running")


def test_env_pointing_elsewhere_is_refused(grub_device: SimDevice, artifacts: Path) -> None:
    grub_device.env().write({"mender_boot_part": "3"})
    artifact, _ = release(artifacts, "release-2", seed=2)
    _refused(grub_device, artifact, DeviceError, "will boot partition 3")


def test_missing_device_type_file(grub_device: SimDevice, artifacts: Path) -> None:
    (grub_device.data_dir / "device_type").unlink()
    artifact, _ = release(artifacts, "release-2", seed=2)
    before = grub_device.snapshot()
    with pytest.raises(ConfigError, match="device type file .* does not exist"):
        grub_device.updater().install(str(artifact))
    assert grub_device.snapshot() == before


# --- state scripts ---------------------------------------------------------------------------------


def _script(directory: Path, name: str, log: Path, code: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\necho {name} >> {log}\nexit {code}\n")
    path.chmod(0o755)
    return path


ARTIFACT_SCRIPTS = [
    "ArtifactInstall_Enter_01", "ArtifactInstall_Leave_01", "ArtifactInstall_Error_01",
    "ArtifactCommit_Enter_01", "ArtifactCommit_Leave_01", "ArtifactCommit_Error_01",
    "ArtifactRollback_Enter_01", "ArtifactRollback_Leave_01",
    "ArtifactFailure_Enter_01", "ArtifactFailure_Leave_01",
    "ArtifactReboot_Enter_01",
]


def _scripted(device: SimDevice, tmp: Path, failing: str | None = None) -> tuple[Path, Path]:
    log = tmp / "scripts.log"
    for name in ("Download_Enter_01", "Download_Leave_01", "Download_Error_01"):
        _script(device.scripts_dir, name, log, 1 if name == failing else 0)
    (device.scripts_dir / "version").write_text("3\n")
    scripts = [_script(tmp / "art-scripts", name, log, 1 if name == failing else 0) for name in ARTIFACT_SCRIPTS]
    artifact, _ = release(tmp / "artifacts", "release-2", seed=2, scripts=scripts)
    return artifact, log


def _ran(log: Path) -> list[str]:
    lines = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def test_scripts_of_install_and_commit_in_order(grub_device: SimDevice, tmp_path: Path) -> None:
    artifact, log = _scripted(grub_device, tmp_path)
    grub_device.updater().install(str(artifact))
    assert _ran(log) == ["Download_Enter_01", "Download_Leave_01",
                         "ArtifactInstall_Enter_01", "ArtifactInstall_Leave_01"]
    assert (grub_device.data_dir / "scripts" / "version").read_text() == "3"
    grub_device.boot()
    grub_device.updater().commit()
    assert _ran(log) == ["ArtifactCommit_Enter_01", "ArtifactCommit_Leave_01"]


def test_scripts_of_a_bootloader_rollback(grub_device: SimDevice, tmp_path: Path) -> None:
    artifact, log = _scripted(grub_device, tmp_path)
    grub_device.updater().install(str(artifact))
    _ran(log)
    grub_device.boot()
    grub_device.boot()
    with pytest.raises(StateError):
        grub_device.updater().commit()
    assert _ran(log) == ["ArtifactCommit_Enter_01", "ArtifactCommit_Error_01", "ArtifactRollback_Enter_01",
                         "ArtifactRollback_Leave_01", "ArtifactFailure_Enter_01", "ArtifactFailure_Leave_01"]


def test_user_rollback_runs_rollback_scripts(grub_device: SimDevice, tmp_path: Path) -> None:
    artifact, log = _scripted(grub_device, tmp_path)
    grub_device.updater().install(str(artifact))
    _ran(log)
    grub_device.updater().rollback()
    assert _ran(log) == ["ArtifactRollback_Enter_01", "ArtifactRollback_Leave_01"]


def test_failing_install_leave_rolls_back(grub_device: SimDevice, tmp_path: Path) -> None:
    artifact, log = _scripted(grub_device, tmp_path, failing="ArtifactInstall_Leave_01")
    env_before = grub_device.read_env()
    with pytest.raises(ScriptError, match="failed and was rolled back"):
        grub_device.updater().install(str(artifact))
    assert _ran(log) == ["Download_Enter_01", "Download_Leave_01", "ArtifactInstall_Enter_01",
                         "ArtifactInstall_Leave_01", "ArtifactInstall_Error_01", "ArtifactRollback_Enter_01",
                         "ArtifactRollback_Leave_01", "ArtifactFailure_Enter_01", "ArtifactFailure_Leave_01"]
    assert grub_device.read_env() == env_before
    assert grub_device.store().pending() is None and grub_device.updater().show_artifact() == "release-1"


def test_failing_download_enter_changes_nothing(grub_device: SimDevice, tmp_path: Path) -> None:
    artifact, log = _scripted(grub_device, tmp_path, failing="Download_Enter_01")
    before = grub_device.snapshot()
    with pytest.raises(ScriptError):
        grub_device.updater().install(str(artifact))
    assert _ran(log) == ["Download_Enter_01", "Download_Error_01"]
    assert grub_device.snapshot() == before


def test_failing_commit_leave_marks_inconsistent(grub_device: SimDevice, tmp_path: Path) -> None:
    artifact, log = _scripted(grub_device, tmp_path, failing="ArtifactCommit_Leave_01")
    grub_device.updater().install(str(artifact))
    grub_device.boot()
    result = grub_device.updater().commit()
    assert result.inconsistent and grub_device.updater().show_artifact() == "release-2_INCONSISTENT"
    assert grub_device.read_env()["upgrade_available"] == "0"


def test_failing_commit_enter_rolls_back(grub_device: SimDevice, tmp_path: Path) -> None:
    artifact, log = _scripted(grub_device, tmp_path, failing="ArtifactCommit_Enter_01")
    grub_device.updater().install(str(artifact))
    grub_device.boot()
    _ran(log)
    with pytest.raises(ScriptError, match="committing release-2 failed and the update was rolled back"):
        grub_device.updater().commit()
    assert _ran(log) == ["ArtifactCommit_Enter_01", "ArtifactCommit_Error_01", "ArtifactRollback_Enter_01",
                         "ArtifactRollback_Leave_01", "ArtifactFailure_Enter_01", "ArtifactFailure_Leave_01"]
    assert grub_device.read_env()["mender_boot_part"] == "2"
    assert grub_device.boot() == grub_device.part_a


# --- interrupted operations ------------------------------------------------------------------------


def test_interrupted_install_is_undone_by_the_next_install(grub_device: SimDevice, artifacts: Path) -> None:
    # The state a crash right after the bootloader switch leaves behind.
    grub_device.store().begin_pending(PendingUpdate(
        artifact_name="release-2", partition=str(grub_device.part_b), previous_partition=str(grub_device.part_a),
        state=UpdateState.ARTIFACT_INSTALL_ENTER))
    grub_device.env().write({"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1"})
    with pytest.raises(StateError, match="interrupted and cannot be committed"):
        grub_device.updater().commit()
    artifact, image = release(artifacts, "release-3", seed=3)
    lines: list[str] = []
    grub_device.updater(report=lines.append).install(str(artifact))
    assert "An earlier installation of release-2 was interrupted; undoing it first." in lines
    pending = grub_device.store().pending()
    assert pending is not None and pending.artifact_name == "release-3"
    assert holds(grub_device.part_b, image)


def test_interrupted_commit_is_finished_by_commit(grub_device: SimDevice, artifacts: Path) -> None:
    artifact, _ = release(artifacts, "release-2", seed=2)
    grub_device.updater().install(str(artifact))
    grub_device.boot()
    grub_device.store().update_pending(state=UpdateState.ARTIFACT_COMMIT_LEAVE)
    grub_device.env().write({"upgrade_available": "0"})
    with pytest.raises(StateError, match="commit of release-2 was interrupted"):
        grub_device.updater().install(str(artifact))
    assert grub_device.updater().commit().artifact_name == "release-2"


# --- HTTP -----------------------------------------------------------------------------------------


class _DroppingHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    data = b""
    drops: list[int] = []
    ranges: list[str | None] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(self.data) - 1}/{len(self.data)}")
        self.send_header("Content-Length", str(len(self.data) - start))
        self.end_headers()
        stop = self.drops.pop(0) if self.drops else len(self.data)
        try:
            self.wfile.write(self.data[start:stop])
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True


@pytest.fixture
def http_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DroppingHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_install_over_http_that_drops_mid_stream(
    grub_device: SimDevice, artifacts: Path, http_server: http.server.ThreadingHTTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    artifact, image = release(artifacts, "release-2", seed=2)
    data = artifact.read_bytes()
    monkeypatch.setattr(_DroppingHandler, "data", data)
    monkeypatch.setattr(_DroppingHandler, "drops", [len(data) // 3, 2 * len(data) // 3])
    monkeypatch.setattr(_DroppingHandler, "ranges", [])
    url = f"http://127.0.0.1:{http_server.server_address[1]}/release-2.mender"
    grub_device.updater().install(url)
    assert holds(grub_device.part_b, image)
    assert _DroppingHandler.ranges == [None, f"bytes={len(data) // 3}-", f"bytes={2 * len(data) // 3}-"]
    grub_device.boot()
    assert grub_device.updater().commit().artifact_name == "release-2"


def test_store_document_after_install(grub_device: SimDevice, artifacts: Path) -> None:
    artifact, _ = release(artifacts, "release-2", seed=2)
    grub_device.updater().install(str(artifact))
    document = json.loads((grub_device.data_dir / "store.json").read_text())
    pending = document["pending"]
    assert pending["previous_env"] == {"mender_boot_part": "2", "mender_boot_part_hex": "2",
                                       "upgrade_available": "0", "bootcount": "0"}
    assert pending["clears_provides"] == ["artifact_group", "rootfs_image_checksum", "rootfs-image.*"]
    assert pending["provides"]["rootfs-image.version"] == "release-2"



# --- an update whose trial the bootloader ended ------------------------------------------------------


def _trial_ended(device: SimDevice, artifact: Path) -> None:
    """Install, boot the new system once, then boot again without a commit: the bootloader
    returns to the old system (the new one did not come up, and the watchdog or a power cut
    restarted the board)."""
    device.updater().install(str(artifact))
    assert device.boot() == device.part_b
    assert device.boot() == device.part_a
    env = device.read_env()
    assert (env["mender_boot_part"], env["upgrade_available"]) == ("2", "0")


def test_install_after_the_bootloader_ended_the_trial_goes_on(device: SimDevice, artifacts: Path) -> None:
    artifact2, _ = release(artifacts, "release-2", seed=2)
    _trial_ended(device, artifact2)
    assert device.updater().show_artifact() == "release-1"  # the failed update is not installed
    artifact3, image3 = release(artifacts, "release-3", seed=3)
    lines: list[str] = []
    result = device.updater(report=lines.append).install(str(artifact3))
    assert lines[0] == ("The previous update release-2 failed (the bootloader went back to "
                        f"{device.part_a}) and was rolled back.")
    assert result.artifact_name == "release-3" and result.partition == str(device.part_b)
    assert holds(device.part_b, image3)
    pending = device.store().pending()
    assert pending is not None and pending.artifact_name == "release-3" and not pending.failed
    assert device.updater().show_artifact() == "release-1"
    assert device.boot() == device.part_b
    assert device.updater().commit().artifact_name == "release-3"


def test_the_failed_update_goes_its_failure_path_before_the_next_install(
    grub_device: SimDevice, tmp_path: Path
) -> None:
    artifact, log = _scripted(grub_device, tmp_path)
    _trial_ended(grub_device, artifact)
    _ran(log)
    artifact3, _ = release(tmp_path / "more", "release-3", seed=3)  # no scripts of its own
    grub_device.updater().install(str(artifact3))
    # The failed update's own scripts (it is what is being rolled back), then the new install's.
    assert _ran(log) == ["ArtifactRollback_Enter_01", "ArtifactRollback_Leave_01", "ArtifactFailure_Enter_01",
                         "ArtifactFailure_Leave_01", "Download_Enter_01", "Download_Leave_01"]
    env = grub_device.read_env()
    assert (env["mender_boot_part"], env["upgrade_available"], env["bootcount"]) == ("3", "1", "0")


def test_an_interrupted_commit_whose_trial_ended_fails_before_the_next_install(
    grub_device: SimDevice, tmp_path: Path
) -> None:
    artifact, log = _scripted(grub_device, tmp_path)
    grub_device.updater().install(str(artifact))
    grub_device.boot()
    grub_device.store().update_pending(state=UpdateState.ARTIFACT_COMMIT_ENTER)  # a commit cut short
    grub_device.boot()  # and the bootloader went back
    _ran(log)
    artifact3, _ = release(tmp_path / "more", "release-3", seed=3)
    lines: list[str] = []
    grub_device.updater(report=lines.append).install(str(artifact3))
    assert "The previous update release-2 failed" in lines[0]
    assert _ran(log)[:5] == ["ArtifactCommit_Error_01", "ArtifactRollback_Enter_01", "ArtifactRollback_Leave_01",
                             "ArtifactFailure_Enter_01", "ArtifactFailure_Leave_01"]
    pending = grub_device.store().pending()
    assert pending is not None and pending.artifact_name == "release-3"


def test_rollback_after_the_bootloader_ended_the_trial(grub_device: SimDevice, tmp_path: Path) -> None:
    artifact, log = _scripted(grub_device, tmp_path)
    _trial_ended(grub_device, artifact)
    _ran(log)
    lines: list[str] = []
    result = grub_device.updater(report=lines.append).rollback()
    assert not result.reboot_required and result.current == "release-1"
    assert f"release-2 had already failed: the bootloader went back to {grub_device.part_a}" in lines[1]
    assert _ran(log) == ["ArtifactRollback_Enter_01", "ArtifactRollback_Leave_01", "ArtifactFailure_Enter_01",
                         "ArtifactFailure_Leave_01"]
    assert grub_device.store().pending() is None


def test_a_trial_not_yet_ended_still_refuses_the_install(device: SimDevice, artifacts: Path) -> None:
    artifact, _ = release(artifacts, "release-2", seed=2)
    device.updater().install(str(artifact))
    device.boot()  # running the new system, on trial
    before = device.snapshot()
    with pytest.raises(StateError, match="already installed and waiting for a commit"):
        device.updater().install(str(artifact))
    assert device.snapshot() == before


# --- the bootstrap Artifact in the data store ------------------------------------------------------

META_MENDER = Path(__file__).resolve().parents[2] / "fixtures" / "meta-mender"
MENDER_STORES = Path(__file__).resolve().parents[2] / "fixtures" / "mender-store"
#: What the upstream bootstrap fixtures provide (as meta-mender's mender-bootstrap-artifact).
BOOTSTRAP_PROVIDES = {
    "artifact_name": "release-1", "rootfs-image.version": "release-1",
    "rootfs-image.checksum": "4f8fa4d1a3e2f5bd1e1e1b28b1ab7bc1cd1b3b3a6f1e43a5a8bd5b4e2a4b1c7d"}


def _bootstrap(device: SimDevice, fixture: str = "bootstrap-qemux86-64.mender") -> Path:
    """Put a bootstrap Artifact written by upstream mender-artifact into the data store."""
    path = device.data_dir / "bootstrap.mender"
    path.write_bytes((META_MENDER / fixture).read_bytes())
    return path


@pytest.mark.parametrize("query", ["show_artifact", "show_provides"])
def test_the_bootstrap_artifact_is_installed_first_and_removed(grub_device: SimDevice, query: str) -> None:
    path = _bootstrap(grub_device)
    before = grub_device.snapshot()
    getattr(grub_device.updater(), query)()
    assert not path.exists()
    assert grub_device.updater().show_provides() == BOOTSTRAP_PROVIDES  # not artifact_info's release-1 alone
    after = grub_device.snapshot()
    assert (after["a"], after["b"], after["env"]) == (before["a"], before["b"], before["env"])


def test_an_install_installs_the_bootstrap_artifact_first(grub_device: SimDevice, artifacts: Path) -> None:
    """Its provides are the device's when the update's depends are checked."""
    _bootstrap(grub_device)
    artifact, _ = release(artifacts, "release-2", seed=2, depends=[("rootfs-image.version", "release-1")])
    assert grub_device.updater().install(str(artifact)).artifact_name == "release-2"
    assert not (grub_device.data_dir / "bootstrap.mender").exists()


def test_the_bootstrap_artifact_is_only_removed_when_a_name_is_recorded(grub_device: SimDevice) -> None:
    from pymender.device.store import DeviceState

    grub_device.store().set_current(DeviceState("release-7"))
    path = _bootstrap(grub_device)
    assert grub_device.updater().show_artifact() == "release-7"
    assert not path.exists()


def test_commit_and_rollback_leave_the_bootstrap_artifact_alone(grub_device: SimDevice) -> None:
    path = _bootstrap(grub_device)
    for operation in ("commit", "rollback", "resume"):
        with pytest.raises(NothingToDoError):
            getattr(grub_device.updater(), operation)()
    assert path.exists()


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda device, tmp: _bootstrap(device, "bootstrap-raspberrypi4.mender"), IncompatibleArtifactError,
     "bootstrap Artifact .* cannot be installed: the Artifact release-1 is for device type.*raspberrypi4"),
    (lambda device, tmp: (device.data_dir / "bootstrap.mender").write_bytes(
        release(tmp, "release-9", seed=9)[0].read_bytes()), ArtifactError, "has a rootfs-image payload"),
    (lambda device, tmp: (device.data_dir / "bootstrap.mender").write_bytes(b"not an Artifact"),
     ArtifactError, "bootstrap Artifact .* cannot be installed"),
])
def test_a_bad_bootstrap_artifact_changes_nothing(grub_device: SimDevice, tmp_path: Path, make: object,
                                                  error: type[Exception], match: str) -> None:
    assert callable(make)
    make(grub_device, tmp_path / "made")
    before = grub_device.snapshot()
    bootstrap = (grub_device.data_dir / "bootstrap.mender").read_bytes()
    for query in ("show_artifact", "install"):
        with pytest.raises(error, match=match) as caught:
            getattr(grub_device.updater(), query)(*(["unused.mender"] if query == "install" else []))
        assert "nothing was changed" in (caught.value.hint or "")  # type: ignore[attr-defined]
    assert grub_device.snapshot() == before
    assert (grub_device.data_dir / "bootstrap.mender").read_bytes() == bootstrap


# --- a device moved from Mender's client: its store ------------------------------------------------


def test_depends_on_what_mender_installed_keep_working(grub_device: SimDevice, artifacts: Path) -> None:
    expected = json.loads((MENDER_STORES / "expected.json").read_text())
    (grub_device.data_dir / "mender-store").write_bytes((MENDER_STORES / "committed.mender-store").read_bytes())
    assert grub_device.updater().show_artifact() == expected["artifact_name"]
    artifact, _ = release(artifacts, "release-3", seed=3, depends_artifact_names=[expected["artifact_name"]],
                          depends=[("rootfs-image.checksum", expected["provides"]["rootfs-image.checksum"])])
    grub_device.updater().install(str(artifact))
    grub_device.boot()
    grub_device.updater().commit()
    provides = grub_device.updater().show_provides()
    assert provides["artifact_name"] == "release-3" and provides["rootfs-image.version"] == "release-3"
    assert provides["app.version"] == "2.0.0"  # not cleared by rootfs-image.*: kept, as Mender keeps it
    assert (grub_device.data_dir / "mender-store").read_bytes() == (
        MENDER_STORES / "committed.mender-store").read_bytes()


# --- stop before a state, resume --------------------------------------------------------------------


def test_install_stopped_before_the_switch_and_resumed(device: SimDevice, artifacts: Path) -> None:
    from pymender.device.flow import stop_points

    artifact, image = release(artifacts, "release-2", seed=2)
    env_before = device.read_env()
    result = device.updater().install(str(artifact), stop_before=stop_points(["ArtifactInstall_Enter"]))
    assert result.stopped and not result.reboot_required
    assert holds(device.part_b, image) and device.read_env() == env_before
    pending = device.store().pending()
    assert pending is not None and pending.state == "Before_ArtifactInstall_Enter"
    with pytest.raises(StateError, match="stopped before the bootloader was switched") as caught:
        device.updater().commit()
    assert "pymender resume" in (caught.value.hint or "")
    resumed = device.updater().resume()
    assert resumed.outcome == "installed" and resumed.reboot_required
    assert device.read_env()["mender_boot_part"] == "3" and device.read_env()["upgrade_available"] == "1"
    device.boot()
    assert device.updater().resume().outcome == "committed"  # resume commits an installed update
    assert device.updater().show_artifact() == "release-2"
    with pytest.raises(NothingToDoError, match="nothing to resume"):
        device.updater().resume()


def test_a_stopped_install_is_rolled_back_on_request(grub_device: SimDevice, artifacts: Path) -> None:
    from pymender.device.flow import stop_points

    artifact, _ = release(artifacts, "release-2", seed=2)
    env_before = grub_device.read_env()
    grub_device.updater().install(str(artifact), stop_before=stop_points(["ArtifactInstall_Enter"]))
    assert not grub_device.updater().rollback().reboot_required
    assert grub_device.read_env() == env_before and grub_device.store().pending() is None


def test_a_commit_stopped_before_its_leave_scripts_can_still_be_rolled_back(
        device: SimDevice, artifacts: Path) -> None:
    """Mender's image tests: commit --stop-before ArtifactCommit_Leave, then rollback, and the
    old partition boots again."""
    from pymender.device.flow import stop_points

    artifact, _ = release(artifacts, "release-2", seed=2)
    device.updater().install(str(artifact))
    device.boot()
    assert device.updater().commit(stop_before=stop_points(["ArtifactCommit_Leave"])).stopped
    assert device.read_env()["upgrade_available"] == "0"
    assert device.updater().show_artifact() == "release-1"
    assert device.updater().rollback().reboot_required
    assert device.boot() == device.part_a and device.updater().show_artifact() == "release-1"


# --- commit before the reboot: refused (pymender) or abandoned (mender-update, as Mender 5.x) ----------


def test_commit_before_the_reboot_abandons_the_update_as_mender_5_does(
        grub_device: SimDevice, artifacts: Path, tmp_path: Path) -> None:
    from pymender.device.install import ABANDON

    artifact, _ = release(artifacts, "release-2", seed=2)
    env_before = grub_device.read_env()
    grub_device.updater().install(str(artifact))
    with pytest.raises(StateError, match="release-2 was not committed: the device still runs .*rolled back"):
        grub_device.updater().commit(before_reboot=ABANDON)
    assert grub_device.read_env() == env_before
    assert grub_device.store().pending() is None and grub_device.updater().show_artifact() == "release-1"
    assert grub_device.boot() == grub_device.part_a
