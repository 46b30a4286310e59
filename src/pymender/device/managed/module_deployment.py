"""A deployment of an Update Module's Artifact, as Mender's daemon runs it.

The download is the daemon's, as for a root filesystem (the walk stops recorded in
``Before_ArtifactInstall_Enter`` while ``installing`` is reported). From there the update walks
the one state table (:mod:`pymender.device.flow`) with the module's calls as the work of each
state, and the daemon's rows for the reboots:

- ``ArtifactInstall``, then the query ``NeedsArtifactReboot``. ``No``: the status ``installing``
  is reported again (retried; the update is rolled back when the server cannot be reached or
  aborted the deployment) and the update committed at once (``ArtifactCommit``). ``Yes`` or
  ``Automatic``: ``rebooting`` is reported, ``ArtifactReboot`` recorded, and the module reboots
  (``Yes``: its ``ArtifactReboot``) or the daemon does (``Automatic``: ``reboot``). After the
  boot, or at once when the module's ``ArtifactReboot`` returned, ``ArtifactVerifyReboot``; then
  the same report and the commit.
- A failure on the way goes the failure path: ``SupportsRollback``; ``Yes``: ``ArtifactRollback``,
  ``NeedsArtifactReboot`` asked again and, on ``Yes`` or ``Automatic``, ``ArtifactRollbackReboot``
  (or ``reboot``) and ``ArtifactVerifyRollbackReboot`` (another reboot when it fails, at most
  :data:`~pymender.device.managed.record.MAX_REBOOTS` in all); ``No``: no rollback, the
  Artifact then recorded with ``_INCONSISTENT``. Then ``ArtifactFailure`` and ``Cleanup``.

The outcome is ``success`` when the Artifact was committed as it is, ``failure`` otherwise.
The module's answer to ``NeedsArtifactReboot`` and the reboots asked for are kept in the
deployment's record (:mod:`~pymender.device.managed.record`), the state in the state store,
so a restart anywhere goes on as Mender's daemon goes on after a boot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pymender.device.flow import Event, Flow, UpdateState
from pymender.device.log import get_logger
from pymender.device.managed import deployments as dep
from pymender.device.managed.deployments import Aborted
from pymender.device.managed.record import MAX_REBOOTS, REBOOT_GRACE, Record
from pymender.device.payloads import is_module
from pymender.errors import DeviceError, PymenderError, UpdateModuleError

if TYPE_CHECKING:
    from pymender.device.flow import Work
    from pymender.device.install import Updater
    from pymender.device.payloads.update_module import UpdateModule

log = get_logger(__name__)

S = UpdateState
#: The answers to NeedsArtifactReboot that reboot.
REBOOTS = ("Yes", "Automatic")
#: States a restart finds a module's update in that it cannot go on from: interrupted inside
#: the install or the commit, or before the daemon asked about the reboot. Rolled back.
_INTERRUPTED = (S.ARTIFACT_INSTALL_ENTER, S.BEFORE_ARTIFACT_COMMIT_ENTER, S.ARTIFACT_COMMIT_ENTER)


class Interrupted(BaseException):
    """The daemon is stopping while the update waits (for the server, for a reboot): the walk
    ends where the store has it, and goes on after the restart. Not an ``Exception``: the walk
    does not take it for a failure of the state's work."""


def module_pending(updater: Updater) -> bool:
    """Whether the update the store holds is an Update Module's."""
    pending = updater.store.pending()
    return pending is not None and is_module(pending.payload_type)


class Daemon(Protocol):
    """What the walk uses of the daemon (:class:`pymender.device.managed.daemon.Daemon`)."""

    updater: Updater
    record: Record | None
    stopping: bool
    reboot: Callable[[], None]

    def _note(self, level: str, message: str) -> None: ...

    def _save(self, **changes: Any) -> Record: ...

    def _status(self, status: str) -> None: ...

    def _commit_status(self) -> None: ...

    def _wait(self, timeout: float) -> None: ...


class ModuleDeployment:
    """The walk of the module's update recorded in the store, for the daemon's deployment."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.updater = daemon.updater

    # --- entry points ---------------------------------------------------------------------

    def abort(self) -> None:
        """The server aborted the deployment: before the install, the module's Cleanup and
        nothing else (as Mender's daemon); later, the failure path."""
        pending = self.updater.store.pending()
        if pending is not None and pending.state == S.BEFORE_ARTIFACT_INSTALL_ENTER.value:
            self._run(Event.ABORT)
        else:
            self._run(Event.ROLLBACK)

    def install(self) -> str | None:
        """From ``Before_ArtifactInstall_Enter`` (``installing`` reported): the outcome, or None
        while a reboot is on its way."""
        return self._run(Event.RESUME)

    def resume(self) -> str | None:
        """After a restart, from the state the store holds."""
        pending = self.updater.store.pending()
        assert pending is not None
        state = UpdateState(pending.state)
        if state is S.BEFORE_ARTIFACT_INSTALL_ENTER:
            self.daemon._status(dep.INSTALLING)
            return self._run(Event.RESUME)
        if state in _INTERRUPTED:
            self.daemon._note("error", f"the installation was interrupted in {state.value}; rolling back")
            return self._run(Event.FAILED if state is S.BEFORE_ARTIFACT_COMMIT_ENTER else Event.RESUME)
        return self._run(Event.RESUME)

    # --- the walk -------------------------------------------------------------------------

    def _run(self, event: Event) -> str | None:
        daemon = self.daemon
        updater = self.updater
        with updater._lock():
            flow = updater._flow()
            modules: list[UpdateModule] = []
            errors: list[UpdateModuleError] = []

            def module() -> UpdateModule:
                if not modules:
                    modules.append(updater._module_of(flow.pending))
                return modules[0]

            work = self._work(flow, module, errors)
            if flow.state is S.CLEANUP:
                work[S.CLEANUP]()  # interrupted: run again, as after a restart Mender's daemon does
            while True:
                try:
                    flow.walk(event, work)
                except Interrupted:
                    return None  # a reboot on its way, or the daemon stopping: recorded where it is
                except Exception as err:
                    self._failed(err)
                if flow.state is S.BEFORE_ARTIFACT_COMMIT_ENTER:
                    try:
                        event = self._installed(module())
                    except Interrupted:
                        return None
                    continue
                break
            for error in errors:
                daemon._note("error", error.one_line())
            if flow.state is not S.IDLE:
                daemon._note("error", f"the update stopped in {flow.state.value}; it is finished by the next one")
                return dep.FAILURE
        current = updater.store.current().artifact_name
        assert daemon.record is not None
        return dep.SUCCESS if current == daemon.record.artifact_name else dep.FAILURE

    def _failed(self, err: Exception) -> None:
        if isinstance(err, Aborted):
            self.daemon._note("error", "the deployment was aborted on the server")
        else:
            self.daemon._note("error", err.one_line() if isinstance(err, PymenderError) else str(err))

    def _installed(self, module: UpdateModule) -> Event:
        """Installed: ask the module whether it needs a reboot; the event that goes on."""
        daemon = self.daemon
        try:
            answer = module.query("NeedsArtifactReboot")
        except UpdateModuleError as err:
            daemon._note("error", err.one_line())
            return Event.FAILED
        daemon._save(reboot=answer)
        try:
            if answer in REBOOTS:
                daemon._status(dep.REBOOTING)
                return Event.REBOOT
            daemon._commit_status()
        except Aborted:
            daemon._note("error", "the deployment was aborted on the server")
            return Event.FAILED
        except PymenderError:
            return Event.FAILED  # (the reason is in the log)
        return Event.COMMIT

    # --- the work of each state -------------------------------------------------------------

    def _work(self, flow: Flow, module: Callable[[], UpdateModule],
              errors: list[UpdateModuleError]) -> dict[UpdateState, Work]:
        daemon = self.daemon
        work = self.updater._module_work(flow, module, errors)
        rollback = work[S.ARTIFACT_ROLLBACK_ENTER]

        def needs_reboot() -> bool:
            return daemon.record is not None and daemon.record.reboot in REBOOTS

        def automatic() -> bool:
            return daemon.record is not None and daemon.record.reboot == "Automatic"

        def reboot() -> None:
            self._count_reboot()
            if automatic():
                self._system_reboot()
            else:
                module().call("ArtifactReboot")

        def after_reboot() -> None:
            """Entered recorded, before the reboot asked for ends the process: wait for the boot.
            A reboot that returned (the module's, without going down) is verified at once."""
            if daemon.stopping:
                raise Interrupted()

        def verify_reboot() -> None:
            after_reboot()
            module().call("ArtifactVerifyReboot")
            daemon._commit_status()

        def roll_back() -> Event | None:
            event = rollback()
            if event is not Event.ROLLED_BACK:
                return event  # the module's ArtifactRollback failed
            try:  # asked again after the rollback, as Mender's daemon asks
                answer = module().query("NeedsArtifactReboot")
            except UpdateModuleError as err:
                daemon._note("error", err.one_line())
                return Event.ROLLBACK_FAILED  # the rollback counts as failed (_INCONSISTENT)
            daemon._save(reboot=answer)
            return Event.ROLLBACK_REBOOT if needs_reboot() else Event.ROLLED_BACK

        def rollback_reboot() -> None:
            self._count_reboot()
            try:  # failures here are only logged: the verification decides (as Mender's daemon)
                if automatic():
                    self._system_reboot()
                else:
                    module().call("ArtifactRollbackReboot")
            except PymenderError as err:
                daemon._note("error", err.one_line())

        def verify_rollback_reboot() -> None:
            after_reboot()
            try:
                module().call("ArtifactVerifyRollbackReboot")
            except UpdateModuleError as err:
                record = daemon.record
                if record is not None and record.reboots >= MAX_REBOOTS:
                    daemon._note("error", f"{err.one_line()}; giving up after {record.reboots} reboots")
                    return
                daemon._note("error", f"{err.one_line()}; rebooting again")
                raise

        work.update({S.ARTIFACT_REBOOT: reboot, S.ARTIFACT_VERIFY_REBOOT: verify_reboot,
                     S.ARTIFACT_ROLLBACK_ENTER: roll_back, S.ARTIFACT_ROLLBACK_REBOOT: rollback_reboot,
                     S.ARTIFACT_VERIFY_ROLLBACK_REBOOT: verify_rollback_reboot})
        return work

    def _count_reboot(self) -> None:
        record = self.daemon.record
        assert record is not None
        self.daemon._save(reboots=record.reboots + 1)

    def _system_reboot(self) -> None:
        """``reboot``, then wait for it to end the process (as Mender's daemon waits)."""
        daemon = self.daemon
        daemon._note("info", "rebooting the device")
        daemon.reboot()
        if not daemon.stopping:
            daemon._wait(REBOOT_GRACE)
        if not daemon.stopping:
            raise DeviceError(f"the device did not reboot within {int(REBOOT_GRACE)} s of the reboot command")


__all__ = ["REBOOTS", "Interrupted", "ModuleDeployment", "module_pending"]
