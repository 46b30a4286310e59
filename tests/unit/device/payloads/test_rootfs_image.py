"""The rootfs-image payload's work in each state: the checks before writing, the bootloader
switches, and how far the bootloader's trial of a pending update got."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_sim import SimDevice
from pymender.device.config import load_config
from pymender.device.payloads.rootfs_image import RootfsImage, Trial
from pymender.device.store import PendingUpdate
from pymender.errors import DeviceError, StateError


@pytest.fixture(params=["grub", "uboot"])
def device(request: pytest.FixtureRequest, tmp_path: Path) -> SimDevice:
    return SimDevice.create(tmp_path / "device", bootloader=request.param)


def handler(device: SimDevice) -> RootfsImage:
    return RootfsImage(load_config(device.config_path), device.env)


def pending(device: SimDevice) -> PendingUpdate:
    return PendingUpdate("release-2", str(device.part_b), previous_partition=str(device.part_a))


def test_the_target_is_the_inactive_partition_with_the_environment_before(device: SimDevice) -> None:
    target = handler(device).target()
    assert target.partition.path == str(device.part_b) and target.partitions.active.path == str(device.part_a)
    assert RootfsImage.recorded_env(target) == {"mender_boot_part": "2", "mender_boot_part_hex": "2",
                                                "upgrade_available": "0", "bootcount": "0"}


@pytest.mark.parametrize(("changes", "match"), [
    ({"mender_boot_part": "3"}, "will boot partition 3"),
    ({"upgrade_available": "1"}, "trying out the running system"),
])
def test_no_target_while_the_bootloader_disagrees(device: SimDevice, changes: dict[str, str], match: str) -> None:
    device.env().write(changes)
    with pytest.raises(DeviceError, match=match):
        handler(device).target()


def test_install_commit_and_rollback_write_the_bootloader_variables(device: SimDevice) -> None:
    rootfs = handler(device)
    parts = rootfs.partitions()
    rootfs.install(parts.b)
    assert device.read_env() == {"mender_boot_part": "3", "mender_boot_part_hex": "3",
                                 "upgrade_available": "1", "bootcount": "0"}
    device.boot()
    rootfs = handler(device)  # the configuration now says the device runs B
    rootfs.commit(pending(device))
    assert device.read_env() == {"mender_boot_part": "3", "mender_boot_part_hex": "3",
                                 "upgrade_available": "0", "bootcount": "1"}
    rootfs.rollback(parts.a)
    assert device.read_env() == {"mender_boot_part": "2", "mender_boot_part_hex": "2",
                                 "upgrade_available": "0", "bootcount": "0"}


def test_how_far_the_trial_got(device: SimDevice) -> None:
    update = pending(device)
    rootfs = handler(device)
    rootfs.install(rootfs.partitions().b)
    assert handler(device).trial(update).trial is Trial.NOT_BOOTED
    device.boot()
    view = handler(device).trial(update)
    assert view.trial is Trial.RUNNING and view.boots_next.path == str(device.part_b)
    device.boot()  # a second boot without commit: the bootloader goes back
    view = handler(device).trial(update)
    assert view.trial is Trial.ENDED and view.previous.path == str(device.part_a)
    device.write_config(device.part_b)  # runs B, but the bootloader boots A: nothing explains it
    assert handler(device).trial(update).trial is Trial.ELSEWHERE


def test_commit_refuses_unless_the_new_system_runs_and_boots(device: SimDevice) -> None:
    rootfs = handler(device)
    rootfs.install(rootfs.partitions().b)
    before = device.read_env()
    with pytest.raises(StateError, match="release-2 cannot be committed: the device runs .*rootfs-a"):
        handler(device).commit(pending(device))
    assert device.read_env() == before


def test_a_partition_the_configuration_no_longer_names_is_refused(device: SimDevice) -> None:
    with pytest.raises(DeviceError, match="the new partition of the pending update .* is neither"):
        handler(device).trial(PendingUpdate("release-2", "/dev/elsewhere", previous_partition=str(device.part_a)))


def test_the_bootloader_environment_is_opened_only_when_needed(device: SimDevice) -> None:
    calls: list[str] = []

    def bootenv():  # type: ignore[no-untyped-def]
        calls.append("opened")
        return device.env()

    rootfs = RootfsImage(load_config(device.config_path), bootenv)
    assert calls == []
    rootfs.partitions()
    assert calls == []
    rootfs.target()
    assert calls == ["opened"]
