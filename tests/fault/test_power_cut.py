"""``pymender`` killed with SIGKILL at every durable I/O step of install and of commit.

Every step, not a sample: a probe run counts the steps of the operation (``crash_runner.py``
says which calls count), then the operation is run again from a fresh device once per step and
killed just before that step (38 runs for an install, 33 for a commit, and 13 for the failure
path an install walks first when the bootloader ended the trial of the update before, at the
time of writing). After each kill the device must be consistent (the store and the bootloader environment read
back; the partition the bootloader boots holds a complete system, and so does its fallback while
an update is on trial; a trial is always explained by a pending update), and the documented way
forward must work: a new install succeeds, and a commit after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from device_sim import SimDevice, holds, release
from helpers import REPO

RUNNER = Path(__file__).with_name("crash_runner.py")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bytes]]:
    tmp = tmp_path_factory.mktemp("artifacts")
    # Two blocks and a bit, so that some kills fall between the payload's writes.
    size = (2 << 20) + 4096
    return {name: release(tmp, name, seed=seed, size=size, compression="gzip")
            for name, seed in (("release-2", 2), ("release-3", 3))}


def _device(root: Path) -> SimDevice:
    return SimDevice.create(root, part_size=3 << 20)


def _run(device: SimDevice, kill_at: int, *args: str) -> tuple[int, int | None]:
    count_file = device.root / "steps"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(kill_at), str(count_file), "-c", str(device.config_path), *args],
        capture_output=True, env=env, timeout=60,
    )
    steps = int(count_file.read_text()) if count_file.exists() else None
    return done.returncode, steps


def _check_consistent(device: SimDevice, old: bytes, new: bytes) -> None:
    store = device.store()
    current, pending = store.current(), store.pending()
    env = device.read_env()
    boots = device.partition(env["mender_boot_part"])
    good = {device.part_a: old, device.part_b: new}
    assert holds(boots, good[boots]), f"the bootloader would boot an incomplete {boots.name}"
    if env["upgrade_available"] == "1":
        assert pending is not None and pending.partition == str(boots), "a trial without a pending update"
        fallback = device.part_a if boots == device.part_b else device.part_b
        assert holds(fallback, good[fallback])
    if pending is None:
        assert env["upgrade_available"] == "0"
        assert (current.artifact_name, boots) in {("release-1", device.part_a), ("release-2", device.part_b)}


def _factory_image(device: SimDevice) -> bytes:
    return (device.root / "factory.img").read_bytes()


def test_kill_during_install(tmp_path: Path, images: dict[str, tuple[Path, bytes]]) -> None:
    artifact, new = images["release-2"]
    probe = _device(tmp_path / "probe")
    code, total = _run(probe, -1, "install", str(artifact))
    assert code == 0 and total is not None and total > 5
    for point in range(total):
        device = _device(tmp_path / f"install-{point}")
        code, _ = _run(device, point, "install", str(artifact))
        assert code == -9, f"step {point} of {total}: not killed (exit {code})"
        _check_consistent(device, _factory_image(device), new)
        pending = device.store().pending()
        if pending is None or pending.state != "Before_ArtifactCommit_Enter":
            code, out, err = device.cli("install", str(artifact))
            assert code == 0, f"step {point}: reinstall failed: {err}"
        assert device.boot() == device.part_b
        code, _, err = device.cli("commit")
        assert code == 0, f"step {point}: commit failed: {err}"
        assert device.cli("show-artifact")[1] == "release-2\n"
        code, _, err = device.cli("install", str(images["release-3"][0]))
        assert code == 0, f"step {point}: next install failed: {err}"


def test_kill_during_commit(tmp_path: Path, images: dict[str, tuple[Path, bytes]]) -> None:
    artifact, new = images["release-2"]

    def installed(root: Path) -> SimDevice:
        device = _device(root)
        device.updater().install(str(artifact))
        device.boot()
        return device

    code, total = _run(installed(tmp_path / "probe"), -1, "commit")
    assert code == 0 and total is not None and total > 3
    for point in range(total):
        device = installed(tmp_path / f"commit-{point}")
        code, _ = _run(device, point, "commit")
        assert code == -9, f"step {point} of {total}: not killed (exit {code})"
        _check_consistent(device, _factory_image(device), new)
        code, _, err = device.cli("commit")
        assert code in (0, 2), f"step {point}: commit after the kill failed: {err}"
        assert device.cli("show-artifact")[1] == "release-2\n"
        env = device.read_env()
        assert (env["mender_boot_part"], env["upgrade_available"]) == ("3", "0")
        code, _, err = device.cli("install", str(images["release-3"][0]))
        assert code == 0, f"step {point}: next install failed: {err}"
        assert device.boot() == device.part_a


def test_kill_between_reboots_of_an_interrupted_install(tmp_path: Path, images: dict[str, tuple[Path, bytes]]) -> None:
    """A crash right after the bootloader switch, then a reboot: the device runs the new system on
    trial; install refuses until the next boot, which returns to the old system."""
    artifact, new = images["release-2"]
    probe = _device(tmp_path / "probe")
    _, total = _run(probe, -1, "install", str(artifact))
    assert total is not None
    device = None
    for point in range(total - 1, 0, -1):  # the last kill point before which the switch is done
        candidate = _device(tmp_path / f"p{point}")
        _run(candidate, point, "install", str(artifact))
        pending = candidate.store().pending()
        if candidate.read_env()["upgrade_available"] == "1" and pending is not None \
                and pending.state == "ArtifactInstall_Enter":
            device = candidate
            break
    assert device is not None, "no kill point between the switch and the end of the install"
    assert device.boot() == device.part_b  # power back: the new, complete system on trial
    code, _, err = device.cli("commit")
    assert code == 1 and "interrupted and cannot be committed" in err
    code, _, err = device.cli("install", str(images["release-3"][0]))
    assert code == 1 and "reboot first" in err
    assert device.boot() == device.part_a
    code, _, err = device.cli("install", str(images["release-3"][0]))
    assert code == 0, err


def test_kill_while_an_install_fails_an_update_whose_trial_ended(
        tmp_path: Path, images: dict[str, tuple[Path, bytes]]) -> None:
    """An install that first walks the failure path of an update the bootloader already gave up
    on, killed at every step of that failure path (they come before the install's own steps,
    which test_kill_during_install covers): the device keeps booting the old system, and the
    next install finishes what was left and goes on."""
    artifact2, new2 = images["release-2"]
    artifact3, new3 = images["release-3"]

    def trial_ended(root: Path) -> SimDevice:
        device = _device(root)
        device.updater().install(str(artifact2))
        assert device.boot() == device.part_b
        assert device.boot() == device.part_a  # not committed: the bootloader went back
        return device

    code, total = _run(trial_ended(tmp_path / "probe"), -1, "install", str(artifact3))
    _, plain = _run(_device(tmp_path / "plain"), -1, "install", str(artifact3))
    assert code == 0 and total is not None and plain is not None
    failure_path = total - plain
    assert failure_path >= 8  # recorded as failed, then as rolled back, then forgotten
    for point in range(failure_path):
        device = trial_ended(tmp_path / f"ended-{point}")
        code, _ = _run(device, point, "install", str(artifact3))
        assert code == -9, f"step {point} of {failure_path}: not killed (exit {code})"
        _check_consistent(device, _factory_image(device), new2)
        assert device.read_env()["mender_boot_part"] == "2"
        code, _, err = device.cli("install", str(artifact3))
        assert code == 0, f"step {point}: install after the kill failed: {err}"
        assert holds(device.part_b, new3) and device.boot() == device.part_b
        code, _, err = device.cli("commit")
        assert code == 0, f"step {point}: commit failed: {err}"
        assert device.cli("show-artifact")[1] == "release-3\n"
