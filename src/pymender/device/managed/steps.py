"""What each kind of payload does in the rows of a managed deployment.

The daemon walks one state table for every deployment (:mod:`~pymender.device.managed.walk`);
the differences between payloads are here, as the work of each row and the answers to the
daemon's questions, the way Mender's daemon asks them of an Update Module:

- :class:`ModuleSteps`: an Update Module's Artifact. The module's calls (``ArtifactInstall``,
  ``ArtifactReboot``, ``ArtifactVerifyReboot``, ...) and queries (``NeedsArtifactReboot``).
- :class:`RootfsSteps`: a root filesystem (``rootfs-image``), as Mender's built-in
  ``rootfs-image`` module behaves in Mender's daemon: the bootloader switch as
  ``ArtifactInstall``; ``NeedsArtifactReboot`` always ``Automatic`` (the daemon reboots);
  ``ArtifactVerifyReboot``: the device runs the new partition and the bootloader boots it;
  the commit and the rollback in the bootloader. One difference: after the rollback the daemon
  reboots only when the device runs the new system (Mender's module always asks for it); when
  the bootloader has already gone back, the old system runs and no reboot is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from pymender.device.flow import Flow, UpdateState
from pymender.device.payloads import is_module
from pymender.errors import DeviceError, StateError, UpdateModuleError

if TYPE_CHECKING:
    from pymender.device.flow import Work
    from pymender.device.install import Updater
    from pymender.device.payloads.rootfs_image import RootfsImage
    from pymender.device.payloads.update_module import UpdateModule

S = UpdateState


class Steps(Protocol):
    """The payload's side of the daemon's rows."""

    #: Failures of the payload on the failure path: logged, kept, and the walk goes on.
    errors: list[UpdateModuleError]

    def work(self) -> dict[UpdateState, Work]:
        """The work of the standalone rows: install, commit, rollback, failure, cleanup."""

    def needs_reboot(self) -> str:
        """``No``, ``Yes`` (the payload reboots: :meth:`reboot`) or ``Automatic`` (the daemon does)."""

    def reboot(self) -> None:
        """The payload's own reboot (``Yes``)."""

    def verify_reboot(self) -> None:
        """After the reboot: raises when the update does not run as it should."""

    def rollback_reboot(self) -> None:
        """The payload's own reboot into the rolled-back system (``Yes``)."""

    def verify_rollback_reboot(self) -> None:
        """After that reboot: raises when the old system does not run."""


class ModuleSteps:
    """An Update Module's Artifact: each step is the module's call of the same name."""

    def __init__(self, updater: Updater, flow: Flow) -> None:
        self.errors: list[UpdateModuleError] = []
        self._updater = updater
        self._flow = flow
        self._modules: list[UpdateModule] = []

    def module(self) -> UpdateModule:
        if not self._modules:
            self._modules.append(self._updater._module_of(self._flow.pending))
        return self._modules[0]

    def work(self) -> dict[UpdateState, Work]:
        return self._updater._module_work(self._flow, self.module, self.errors)

    def needs_reboot(self) -> str:
        return self.module().query("NeedsArtifactReboot")

    def reboot(self) -> None:
        self.module().call("ArtifactReboot")

    def verify_reboot(self) -> None:
        self.module().call("ArtifactVerifyReboot")

    def rollback_reboot(self) -> None:
        self.module().call("ArtifactRollbackReboot")

    def verify_rollback_reboot(self) -> None:
        self.module().call("ArtifactVerifyRollbackReboot")


class RootfsSteps:
    """A root filesystem: the partitions and the bootloader, as the standalone commands use
    them (:class:`~pymender.device.payloads.rootfs_image.RootfsImage`)."""

    def __init__(self, updater: Updater, flow: Flow) -> None:
        self.errors: list[UpdateModuleError] = []
        self._updater = updater
        self._flow = flow
        self._rootfs: RootfsImage = updater._rootfs()

    def work(self) -> dict[UpdateState, Work]:
        updater, flow, rootfs = self._updater, self._flow, self._rootfs

        def commit() -> None:
            assert flow.pending is not None
            rootfs.commit(flow.pending)

        rollback: Callable[[], None] = updater._rollback_work(flow, rootfs)
        return {S.ARTIFACT_INSTALL_ENTER: lambda: updater._switch(flow, rootfs), S.ARTIFACT_COMMIT_ENTER: commit,
                S.ARTIFACT_ROLLBACK_ENTER: rollback}

    def needs_reboot(self) -> str:
        """After the install, always the daemon's reboot; after the rollback, only when the
        device runs the new system."""
        pending = self._flow.pending
        assert pending is not None
        if self._flow.state is S.ARTIFACT_ROLLBACK_ENTER:
            parts = self._rootfs.partitions()
            return "Automatic" if parts.active != parts.named(pending.previous_partition, "previous") else "No"
        return "Automatic"

    def reboot(self) -> None:  # pragma: no cover - a root filesystem never asks for "Yes"
        raise DeviceError("a root filesystem is rebooted by the daemon")

    rollback_reboot = reboot

    def verify_reboot(self) -> None:
        from pymender.device.payloads.rootfs_image import Trial

        pending = self._flow.pending
        assert pending is not None
        view = self._rootfs.trial(pending)
        if view.trial is Trial.RUNNING:
            return
        if view.trial is Trial.ENDED:
            raise StateError(f"the new system did not stay up: the bootloader went back to {view.previous.path}, "
                             f"so {pending.artifact_name} was not committed")
        if view.trial is Trial.NOT_BOOTED:
            raise DeviceError(f"the device did not reboot into the new system: it still runs {view.previous.path}")
        raise DeviceError(f"the device runs {view.partitions.active.path} and the bootloader boots "
                          f"{view.boots_next.path} next, but the update was written to {view.new.path}")

    def verify_rollback_reboot(self) -> None:
        pending = self._flow.pending
        assert pending is not None
        parts = self._rootfs.partitions()
        previous = parts.named(pending.previous_partition, "previous")
        if parts.active != previous:
            raise DeviceError(f"the device still runs {parts.active.path}, not the previous system on "
                              f"{previous.path}")


def steps_for(updater: Updater, flow: Flow) -> Steps:
    """The steps of the update ``flow`` walks."""
    pending = flow.pending
    assert pending is not None
    if is_module(pending.payload_type):
        return ModuleSteps(updater, flow)
    return RootfsSteps(updater, flow)


__all__ = ["ModuleSteps", "RootfsSteps", "Steps", "steps_for"]
