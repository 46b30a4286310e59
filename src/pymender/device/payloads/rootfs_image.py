"""The ``rootfs-image`` payload on an A/B device: where it is written and how the bootloader switches.

The work :class:`~pymender.device.flow.Flow` runs in each state of a rootfs-image update:

- Download: :meth:`RootfsImage.target` checks, before a byte is written, that the bootloader
  boots the running partition with no trial open and that the inactive partition is not
  mounted; the payload is then streamed into it (:func:`~pymender.device.payloads.rootfs.write_rootfs`).
- ArtifactInstall: :meth:`RootfsImage.install` switches the bootloader to the new partition in
  ONE crash-safe write (``mender_boot_part[_hex]``, ``upgrade_available=1``, ``bootcount=0``).
- ArtifactCommit: :meth:`RootfsImage.commit` requires the device to run the new partition, as
  the bootloader boots it, and clears ``upgrade_available`` (``bootcount`` stays, as with Mender).
- ArtifactRollback: :meth:`RootfsImage.rollback` points the bootloader back at the previous
  partition, with no trial.

:meth:`RootfsImage.trial` says how far the bootloader's trial of a pending update got; the
front ends decide with it what commit, rollback and install may do.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import NamedTuple

from pymender.device.bootenv import BOOT_PART, BOOT_PART_HEX, BOOTCOUNT, UPGRADE_AVAILABLE, BootEnv
from pymender.device.config import DeviceConfig
from pymender.device.partitions import Partition, PartitionSet, find_partitions, mounted_at
from pymender.device.store import PendingUpdate
from pymender.errors import DeviceError, StateError

#: The bootloader variables recorded with a pending update (the environment before the switch).
RECORDED = (BOOT_PART, BOOT_PART_HEX, UPGRADE_AVAILABLE, BOOTCOUNT)


class Target(NamedTuple):
    """Where a new image goes, as found by :meth:`RootfsImage.target` (every check passed)."""

    partitions: PartitionSet
    #: The bootloader environment before the switch.
    env: dict[str, str]

    @property
    def partition(self) -> Partition:
        return self.partitions.inactive


class Trial(Enum):
    """How far the bootloader's trial of a pending update got."""

    #: The device still runs the previous partition; the bootloader boots the new one next.
    NOT_BOOTED = "not booted"
    #: The device runs the new partition, and the bootloader boots it.
    RUNNING = "running"
    #: The device runs the previous partition and the bootloader boots it: the trial is over and
    #: the update failed (it did not stay up, or was rebooted before its commit).
    ENDED = "ended"
    #: Anything else: the device runs or boots a partition the update does not explain.
    ELSEWHERE = "elsewhere"


class TrialView(NamedTuple):
    """A pending update as the partitions and the bootloader see it."""

    trial: Trial
    partitions: PartitionSet
    new: Partition
    previous: Partition
    #: The partition the bootloader boots next.
    boots_next: Partition


class RootfsImage:
    """The rootfs-image payload of the device configured by ``config``; ``bootenv`` opens its
    bootloader environment when first needed (an Artifact without payload never needs it);
    ``proc`` and ``dev`` are where the running root device is discovered (tests move them)."""

    def __init__(self, config: DeviceConfig, bootenv: Callable[[], BootEnv], *, proc: Path = Path("/proc"),
                 dev: Path = Path("/dev")) -> None:
        self.config = config
        self._open_bootenv = bootenv
        self._proc = proc
        self._dev = dev

    @property
    def bootenv(self) -> BootEnv:
        return self._open_bootenv()

    def partitions(self) -> PartitionSet:
        return find_partitions(self.config, proc=self._proc, dev=self._dev)

    # --- Download ----------------------------------------------------------------------------

    def target(self) -> Target:
        """The inactive partition, once it is safe to write: the bootloader boots the running
        partition next with no trial open, and nothing has the inactive one mounted."""
        parts = self.partitions()
        env = self.bootenv.read()
        parts.check_env_agrees(env)
        target = parts.inactive
        where = mounted_at(target, proc=self._proc)
        if where is not None:
            raise DeviceError(
                f"the inactive partition {target.path} is mounted on {where}",
                hint=f"unmount it (umount {where}) and try again; nothing was written",
            )
        return Target(parts, env)

    @staticmethod
    def recorded_env(target: Target) -> dict[str, str]:
        """The bootloader variables to record with the pending update."""
        return {name: target.env[name] for name in RECORDED if name in target.env}

    # --- the states --------------------------------------------------------------------------

    def trial(self, pending: PendingUpdate) -> TrialView:
        """How far the bootloader's trial of ``pending`` got (refused when the configuration no
        longer names its partitions)."""
        parts = self.partitions()
        new = parts.named(pending.partition, "new")
        previous = parts.named(pending.previous_partition, "previous")
        env = self.bootenv.read()
        boots_next = parts.env_partition(env)
        on_trial = env.get(UPGRADE_AVAILABLE, "0").strip() == "1"
        if parts.active == previous and boots_next == new and on_trial:
            trial = Trial.NOT_BOOTED
        elif parts.active == previous and boots_next == previous:
            trial = Trial.ENDED
        elif parts.active == new and boots_next == new:
            trial = Trial.RUNNING
        else:
            trial = Trial.ELSEWHERE
        return TrialView(trial, parts, new, previous, boots_next)

    def install(self, new: Partition) -> None:
        """ArtifactInstall: the bootloader tries ``new`` on the next boot (one write)."""
        self.bootenv.write({
            BOOT_PART: str(new.number),
            BOOT_PART_HEX: new.number_hex,
            UPGRADE_AVAILABLE: "1",
            BOOTCOUNT: "0",
        })

    def commit(self, pending: PendingUpdate) -> None:
        """ArtifactCommit: keep the new system, which must be running and booted next."""
        view = self.trial(pending)
        if view.trial is not Trial.RUNNING:
            raise StateError(
                f"{pending.artifact_name} cannot be committed: the device runs {view.partitions.active.path} and "
                f"the bootloader boots {view.boots_next.path} next, but the update was written to {view.new.path}"
            )
        self.bootenv.write({UPGRADE_AVAILABLE: "0"})

    def rollback(self, previous: Partition) -> None:
        """ArtifactRollback: the bootloader boots ``previous`` again, with no trial (one write;
        the same again after a crash)."""
        self.bootenv.write({
            BOOT_PART: str(previous.number),
            BOOT_PART_HEX: previous.number_hex,
            UPGRADE_AVAILABLE: "0",
            BOOTCOUNT: "0",
        })


__all__ = ["RECORDED", "RootfsImage", "Target", "Trial", "TrialView"]
