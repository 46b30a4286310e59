"""A deployment's walk through the state table, after the download, as Mender's daemon walks it.

The download is the daemon's (the walk stops recorded in ``Before_ArtifactInstall_Enter`` while
``installing`` is reported). From there the update walks the one state table
(:mod:`pymender.device.flow`) with the payload's work in each state
(:mod:`~pymender.device.managed.steps`: an Update Module's calls, or the bootloader of a root
filesystem) and the daemon's rows for the reboots; one walk for both kinds of payload:

- ``ArtifactInstall``, then the question ``NeedsArtifactReboot``. ``No``: the status
  ``installing`` is reported again (retried; the update is rolled back when the server cannot be
  reached or aborted the deployment) and the update committed at once (``ArtifactCommit``).
  ``Yes`` or ``Automatic`` (a root filesystem: always): ``rebooting`` is reported,
  ``ArtifactReboot`` recorded, and the payload reboots (``Yes``: the module's ``ArtifactReboot``)
  or the daemon does (``Automatic``: ``reboot``). After the boot, or at once when the module's
  ``ArtifactReboot`` returned, ``ArtifactVerifyReboot`` (a root filesystem: the device runs the
  new partition and the bootloader boots it); then the same report and the commit.
- A failure on the way goes the failure path: ``ArtifactRollback`` (a module that does not
  support rollback goes on without it, the Artifact then recorded with ``_INCONSISTENT``),
  ``NeedsArtifactReboot`` asked again and, on ``Yes`` or ``Automatic``,
  ``ArtifactRollbackReboot`` (or ``reboot``) and ``ArtifactVerifyRollbackReboot`` (another
  reboot when it fails, at most :data:`~pymender.device.managed.record.MAX_REBOOTS` in all).
  Then ``ArtifactFailure`` and ``Cleanup``.

The outcome is ``success`` when the Artifact was committed as it is, ``failure`` otherwise.
The answer to ``NeedsArtifactReboot`` and the reboots asked for are kept in the deployment's
record (:mod:`~pymender.device.managed.record`), the state in the state store, so a restart
anywhere goes on as Mender's daemon goes on after a boot: a reboot recorded is verified, a
verification, install or commit cut off in the middle is rolled back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pymender.device.flow import Event, Flow, UpdateState
from pymender.device.log import get_logger
from pymender.device.managed import deployments as dep
from pymender.device.managed.deployments import Aborted
from pymender.device.managed.record import MAX_REBOOTS, REBOOT_GRACE, Record
from pymender.device.managed.steps import Steps, steps_for
from pymender.errors import DeviceError, PymenderError, UpdateModuleError

if TYPE_CHECKING:
    from pymender.device.flow import Work
    from pymender.device.install import Updater

log = get_logger(__name__)

S = UpdateState
#: The answers to NeedsArtifactReboot that reboot.
REBOOTS = ("Yes", "Automatic")
#: States a restart finds an update in that it cannot go on from: interrupted inside the
#: install or the commit, or before the daemon asked about the reboot. Rolled back.
_INTERRUPTED = (S.ARTIFACT_INSTALL_ENTER, S.BEFORE_ARTIFACT_COMMIT_ENTER, S.ARTIFACT_COMMIT_ENTER)
#: The daemon's reboot states, which a restart goes on from with RESTART (the table says how).
_REBOOT_STATES = (S.ARTIFACT_REBOOT, S.ARTIFACT_VERIFY_REBOOT, S.ARTIFACT_ROLLBACK_REBOOT,
                  S.ARTIFACT_VERIFY_ROLLBACK_REBOOT)


class Interrupted(BaseException):
    """The daemon is stopping while the update waits (for the server, for a reboot): the walk
    ends where the store has it, and goes on after the restart. Not an ``Exception``: the walk
    does not take it for a failure of the state's work."""


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


class DeploymentWalk:
    """The walk of the update recorded in the store, for the daemon's deployment."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.updater = daemon.updater
        #: The failure of the walk, once it is in the deployment's log.
        self._noted: Exception | None = None

    # --- entry points ---------------------------------------------------------------------

    def abort(self) -> None:
        """The server aborted the deployment: before the install, the payload's Cleanup and
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
        daemon = self.daemon
        pending = self.updater.store.pending()
        assert pending is not None and daemon.record is not None
        state = UpdateState(pending.state)
        if state is S.BEFORE_ARTIFACT_INSTALL_ENTER:
            daemon._save(phase="installing")
            daemon._status(dep.INSTALLING)
            return self._run(Event.RESUME)
        if state is S.BEFORE_ARTIFACT_COMMIT_ENTER and daemon.record.phase == "rebooting":
            # Recorded by an earlier version, which rebooted from here without the reboot's
            # rows: recorded as ArtifactReboot now (its scripts did not run then), and verified.
            daemon._save(phase="installing", reboot="Automatic")
            with self.updater._lock():
                self.updater._flow().advance(Event.REBOOT, enter=False)
            return self._run(Event.RESTART)
        if state in _INTERRUPTED:
            daemon._note("error", f"the installation was interrupted in {state.value}; rolling back")
            return self._run(Event.FAILED if state is S.BEFORE_ARTIFACT_COMMIT_ENTER else Event.RESUME)
        if state is S.ARTIFACT_VERIFY_REBOOT:
            daemon._note("error", "the daemon restarted while it verified the reboot; rolling back")
        return self._run(Event.RESTART if state in _REBOOT_STATES else Event.RESUME)

    # --- the walk -------------------------------------------------------------------------

    def _run(self, event: Event) -> str | None:
        daemon = self.daemon
        updater = self.updater
        with updater._lock():
            flow = updater._flow()
            steps = steps_for(updater, flow)
            work = self._work(flow, steps)
            if flow.state is S.CLEANUP and S.CLEANUP in work:
                work[S.CLEANUP]()  # interrupted: run again, as after a restart Mender's daemon does
            while True:
                try:
                    flow.walk(event, work)
                except Interrupted:
                    return None  # a reboot on its way, or the daemon stopping: recorded where it is
                except Exception as err:
                    if err is not self._noted:
                        self._failed(err)
                if flow.state is S.BEFORE_ARTIFACT_COMMIT_ENTER:
                    try:
                        event = self._installed(steps)
                    except Interrupted:
                        return None
                    continue
                break
            for error in steps.errors:
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

    def _installed(self, steps: Steps) -> Event:
        """Installed: ask whether it needs a reboot; the event that goes on."""
        daemon = self.daemon
        try:
            answer = steps.needs_reboot()
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

    def _work(self, flow: Flow, steps: Steps) -> dict[UpdateState, Work]:
        daemon = self.daemon
        work = steps.work()
        rollback = work.get(S.ARTIFACT_ROLLBACK_ENTER)

        def needs_reboot() -> bool:
            return daemon.record is not None and daemon.record.reboot in REBOOTS

        def automatic() -> bool:
            return daemon.record is not None and daemon.record.reboot == "Automatic"

        def after_reboot() -> None:
            """The reboot asked for is ending the process: the walk stays in the reboot's state,
            recorded, and the next start verifies it. A reboot that returned (the module's,
            without going down) is verified at once."""
            if daemon.stopping:
                raise Interrupted()

        def reboot() -> None:
            self._count_reboot()
            if automatic():
                self._system_reboot()
            else:
                steps.reboot()
            after_reboot()

        def verify_reboot() -> None:
            steps.verify_reboot()
            daemon._commit_status()

        def roll_back() -> Event | None:
            if flow.failure is not None and self._noted is None:
                # In the log now: a reboot into the old system may come before the walk ends.
                self._failed(flow.failure)
                self._noted = flow.failure
            event = rollback() if rollback is not None else None
            if event not in (None, Event.ROLLED_BACK):
                return event  # the module's ArtifactRollback failed
            try:  # asked again after the rollback, as Mender's daemon asks
                answer = steps.needs_reboot()
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
                    steps.rollback_reboot()
            except PymenderError as err:
                daemon._note("error", err.one_line())
            after_reboot()

        def verify_rollback_reboot() -> None:
            try:
                steps.verify_rollback_reboot()
            except PymenderError as err:
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


__all__ = ["REBOOTS", "DeploymentWalk", "Interrupted"]
