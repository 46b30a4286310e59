"""The update state machine: every state of an update and every way between them, in one table.

Install, commit, rollback and the finishing of an interrupted operation are walks through
:data:`TABLE`. A row says, for a state and an event, where the update goes next, which state
scripts run on the way and what is recorded in the state store *before* anything of the new
state happens; or that the request is refused, and with which words. :meth:`Flow.advance` is
the only code that moves an update: it looks the row up, runs the scripts of the state being
left, persists, then runs the scripts of the state entered. :meth:`Flow.walk` repeats that,
running in each state the work the caller gives for it (writing the payload, switching the
bootloader), until the update rests: no update in progress (``Idle``), or installed and waiting
for the reboot and the commit (``Before_ArtifactCommit_Enter``). The front ends
(:mod:`pymender.device.install`) only choose the first event; the payload handler
(:mod:`pymender.device.payloads.rootfs_image`) only does the work of a state.

The walks, as the table has them (scripts in brackets):

- Install: ``Idle`` -INSTALL-> ``Download`` [``Download_Enter``]; the Artifact is read, checked
  and written to the inactive partition; -DONE-> [``Download_Leave``] the pending update is
  recorded in ``Before_ArtifactInstall_Enter``; -DONE-> ``ArtifactInstall_Enter``
  [``ArtifactInstall_Enter``]; the bootloader is switched in ONE crash-safe write
  (``mender_boot_part[_hex]`` = new partition, ``upgrade_available=1``, ``bootcount=0``);
  -DONE-> [``ArtifactInstall_Leave``] ``Before_ArtifactCommit_Enter``: installed, waiting for
  the reboot and the commit. Every refusal (signature, device type, depends, partitions,
  bootloader, size) happens in ``Download``, before the Artifact's scripts are stored and
  before the first payload byte is written; a failure there [``Download_Error``] leaves the
  active partition, the bootloader environment and the store as they were. A bootstrap
  Artifact (no payload) goes from ``Download`` straight back to ``Idle``, its name and provides
  recorded. A failure in ``ArtifactInstall_Enter`` [``ArtifactInstall_Error``] goes the
  failure path.
- Commit, once the device runs the new partition: ``ArtifactCommit_Enter``
  [``ArtifactCommit_Enter``]; ``upgrade_available=0``; ``Before_ArtifactCommit_Leave``;
  ``ArtifactCommit_Leave`` [``ArtifactCommit_Leave``: failures are only logged, and the name
  then gets ``_INCONSISTENT``]; ``Cleanup``; then ONE store write makes the new Artifact
  current (provides applied) and forgets the pending update. If the bootloader has already
  gone back to the old partition, the commit fails [``ArtifactCommit_Error``] and goes the
  failure path; the old Artifact stays current.
- Rollback: ``ArtifactRollback_Enter`` [``ArtifactRollback_Enter``]; the bootloader points back
  at the previous partition (``upgrade_available=0``); [``ArtifactRollback_Leave``]
  ``Cleanup``; the update is forgotten. A reboot then runs the old system, if the device had
  already rebooted into the new one.
- The failure path: ``RollbackQuery`` (nothing recorded: can the update be rolled back? a
  rootfs-image always can; an Update Module is asked), then ``ArtifactRollback_Enter`` (marked
  failed) as above, then ``ArtifactFailure_Enter`` [``ArtifactFailure_Enter``,
  ``ArtifactFailure_Leave``], then ``Cleanup`` and the update is forgotten. The scripts of the
  failure path never stop it: their failures are only logged. (What an Update Module adds, a
  failure path without rollback and the ``_INCONSISTENT`` records, is in the rows after the
  table.)
- A pending update whose trial the bootloader has already ended (the device runs the previous
  partition and the bootloader boots it, with no trial open: the new system did not stay up,
  or was rebooted before its commit) is a *failed* update in every path: install first walks
  its failure path (TRIAL_ENDED) and goes on; rollback walks the same; commit fails as above.
  No reboot would ever try it again, so no path may wait for one.
- Stop and resume (Mender 5.x's ``--stop-before`` and ``resume``): a walk asked to stop before
  one of the states of :data:`STOP_POINTS` stops when the update gets there, recorded, before
  anything of that state runs. RESUME goes on from any stored state as Mender 5.x does: a
  stopped install is finished, an installed update committed, an install or commit
  interrupted inside its state rolled back, the end of a commit, a rollback or a failure path
  finished.

The names of the stored states are Mender 5.x's standalone ``InState`` names, and the states a
walk records are those Mender 5.x records, so a walk stops and resumes where Mender's would.

Why the store is written *before* the bootloader switch, not only after it
-------------------------------------------------------------------------
A SIGKILL or power cut can fall between any two steps. The bootloader environment and the store
are each replaced atomically (see :mod:`pymender.device.bootenv` and
:mod:`pymender.device.store`), so the question is only about the order of the two writes:

- If the store were written only after the switch, a crash in between would leave the bootloader
  trying a new system that no record explains: a commit would find "nothing to commit", and a new
  install could not tell whether the partition it is about to overwrite is the bootloader's
  fallback. So the pending update (with the partitions and the previous environment) is recorded
  first, in state ``ArtifactInstall_Enter``, and only then is the bootloader switched.
- Invariant: ``upgrade_available=1`` set by pymender implies a pending update in the store.
  The partition the bootloader boots always holds a complete system: the old one (never written),
  or the new one, which is switched in only after its whole image was written, verified and
  fsynced; while ``upgrade_available=1`` the old one stays the fallback.
- A crash in ``Download``: nothing but the inactive partition changed; the next install simply
  overwrites it. A crash in ``Before_ArtifactInstall_Enter`` is the same, recorded: the next
  install undoes it first, ``resume`` finishes it.
- A crash in ``ArtifactInstall_Enter`` leaves a pending update in that state, with the
  bootloader switched or not. Next boot: the old system, or the new complete one on trial (a
  second boot returns to the old one). The next ``install`` (or ``rollback``) undoes it: points
  the bootloader back at the previous partition and runs the rollback and failure scripts; a
  commit is refused, since the install never finished. If the device had rebooted into the new
  system in between, the install then refuses because the bootloader no longer boots the
  running partition: reboot first.
- A crash during commit leaves the update in a commit state; running ``commit`` again finishes
  it (the steps are idempotent), or goes the failure path if the bootloader has meanwhile rolled
  back. ``install`` refuses until then, naming the command.
- A crash during rollback leaves ``ArtifactRollback_Enter``/``ArtifactFailure_Enter``; the next
  ``rollback`` or ``install`` finishes it.
- A crash in ``Cleanup`` leaves a finished update not yet recorded: the command that was
  interrupted (``commit`` or ``rollback``), ``resume`` or the next ``install`` records it.

Adding states
-------------
A new kind of payload (an Update Module) or a new front end (a daemon) adds states and rows, and
gives :meth:`Flow.walk` the work of its new states; the walk itself does not change. The tests
check the table as a table: every stored state reachable, every one with a way back to rest,
every transition into a stored state persisted first.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from enum import Enum
from typing import NamedTuple

from pymender.device.log import get_logger
from pymender.device.scripts import ScriptRunner
from pymender.device.store import PendingUpdate, StateStore, apply_update
from pymender.errors import NothingToDoError, ScriptError, StateError, UsageError

log = get_logger(__name__)


class UpdateState(str, Enum):
    """Where an update is. The stored ones are Mender's standalone ``InState`` names."""

    #: No update in progress (nothing stored).
    IDLE = "Idle"
    #: The Artifact is being read, checked and written to the inactive partition (nothing
    #: stored: nothing but the inactive partition changes).
    DOWNLOAD = "Download"
    #: Written to the inactive partition, the bootloader not switched yet.
    BEFORE_ARTIFACT_INSTALL_ENTER = "Before_ArtifactInstall_Enter"
    ARTIFACT_INSTALL_ENTER = "ArtifactInstall_Enter"
    #: Installed: waiting for the reboot into the new system and the commit.
    BEFORE_ARTIFACT_COMMIT_ENTER = "Before_ArtifactCommit_Enter"
    ARTIFACT_COMMIT_ENTER = "ArtifactCommit_Enter"
    #: Committed in the bootloader; the ``ArtifactCommit_Leave`` scripts not run yet.
    BEFORE_ARTIFACT_COMMIT_LEAVE = "Before_ArtifactCommit_Leave"
    ARTIFACT_COMMIT_LEAVE = "ArtifactCommit_Leave"
    #: A failure is to be rolled back: the payload's handler says whether it can (nothing
    #: stored: the update stays recorded in the state that failed; Mender's RollbackQuery).
    ROLLBACK_QUERY = "RollbackQuery"
    ARTIFACT_ROLLBACK_ENTER = "ArtifactRollback_Enter"
    ARTIFACT_FAILURE_ENTER = "ArtifactFailure_Enter"
    #: Done (committed, or rolled back): only the store's final record is left to write.
    CLEANUP = "Cleanup"
    # --- the daemon's reboots (Mender's daemon's names; see the block of rows after TABLE)
    #: Installed by an Update Module that needs a reboot: the reboot asked for.
    ARTIFACT_REBOOT = "ArtifactReboot"
    #: After the reboot (or when it ended without one): the module's ArtifactVerifyReboot.
    ARTIFACT_VERIFY_REBOOT = "ArtifactVerifyReboot"
    #: Rolled back by an Update Module that needs a reboot: the reboot asked for.
    ARTIFACT_ROLLBACK_REBOOT = "ArtifactRollbackReboot"
    #: After that reboot: the module's ArtifactVerifyRollbackReboot.
    ARTIFACT_VERIFY_ROLLBACK_REBOOT = "ArtifactVerifyRollbackReboot"


class Event(str, Enum):
    """What moves an update on."""

    #: Requests of a front end.
    INSTALL = "install"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    #: The work of the state is done.
    DONE = "done"
    #: The download found an Artifact without payload: nothing to install, only to record.
    EMPTY_PAYLOAD = "empty payload"
    #: A script or the work of the state failed.
    FAILED = "failed"
    #: Found before a request: the bootloader has already ended the update's trial.
    TRIAL_ENDED = "trial ended"
    #: Request of a front end: finish the operation that stopped (Mender 5.x's ``resume``).
    RESUME = "resume"
    # --- Update Modules (see the block of rows after TABLE)
    #: Installed by an Update Module that answered ``SupportsRollback: No``: it commits at once.
    AUTO_COMMIT = "auto commit"
    #: In RollbackQuery (or a user's rollback of a failed update): the Update Module cannot roll
    #: back (``SupportsRollback: No``); the failure path goes on without the rollback's states.
    NO_ROLLBACK = "no rollback"
    #: In ArtifactRollback_Enter: the Update Module's ArtifactRollback succeeded; ArtifactFailure
    #: follows, after a user's rollback too.
    ROLLED_BACK = "rolled back"
    #: The Update Module failed on the failure path (the query in RollbackQuery, ArtifactRollback,
    #: ArtifactFailure): the update is not rolled back and is recorded with _INCONSISTENT.
    ROLLBACK_FAILED = "rollback failed"
    #: The Update Module's Cleanup failed: a committed update is recorded with _INCONSISTENT, a
    #: rolled back one forgotten as usual.
    CLEANUP_FAILED = "cleanup failed"
    # --- the daemon (see the block of rows after TABLE)
    #: Request of the daemon, in Before_ArtifactCommit_Enter: the module needs a reboot.
    REBOOT = "reboot"
    #: In ArtifactRollback_Enter: rolled back by a module that needs a reboot for it.
    ROLLBACK_REBOOT = "rollback reboot"
    #: Request of the daemon, in Before_ArtifactInstall_Enter: the server aborted the
    #: deployment before anything was installed; only the Cleanup is left.
    ABORT = "abort"
    #: Request of the daemon after its start, in one of its reboot states: go on as Mender's
    #: daemon goes on from the state it loads (the standalone commands' RESUME is refused there).
    RESTART = "restart"


class Persist(Enum):
    """What a transition records in the state store, before anything of the new state runs."""

    #: Nothing (the store is not touched).
    NOTHING = "nothing"
    #: The pending update, prepared by the download, in the new state.
    BEGIN = "record the pending update"
    #: The new state of the pending update.
    STATE = "the new state"
    #: The new state, and that the update failed.
    STATE_FAILED = "the new state, marked failed"
    #: The new state, and that the update was rolled back.
    STATE_ROLLED_BACK = "the new state, marked rolled back"
    #: The new state, and that the update failed and was not rolled back.
    STATE_NOT_ROLLED_BACK = "the new state, marked failed and not rolled back"
    #: The new state of a committed update; marked failed when a script whose failure is
    #: ignored failed in this walk (so that :data:`COMMIT` says ``_INCONSISTENT`` even when the
    #: walk stops before it and is resumed).
    STATE_COMMITTED = "the new state, marked failed if an ignored script failed"
    #: The update made current (provides applied; ``_INCONSISTENT`` when a script whose failure
    #: is ignored failed on the way) and forgotten, in one write.
    COMMIT = "make it current and forget it"
    #: The update made current with ``_INCONSISTENT`` and forgotten, in one write.
    COMMIT_INCONSISTENT = "make it current as inconsistent and forget it"
    #: An update that needs no commit (empty payload) made current at once.
    RECORD = "make it current at once"
    #: The pending update forgotten; the installed Artifact stays.
    FORGET = "forget it"


class Script(NamedTuple):
    """The state scripts of one state and action (``ArtifactInstall_Enter_*``)."""

    state: str
    action: str

    def __str__(self) -> str:
        return f"{self.state}_{self.action}"


class Go(NamedTuple):
    """A transition: the scripts of the state left, what is persisted, the scripts of the new one."""

    to: UpdateState
    persist: Persist
    leave: tuple[Script, ...] = ()
    enter: tuple[Script, ...] = ()


class Refuse(NamedTuple):
    """The request is refused in this state, and nothing changes. ``{name}`` in the texts is
    the pending update's Artifact name, ``{tool}`` the command the user runs, ``{state}`` the
    state the update is in."""

    error: type[StateError]
    message: str
    hint: str | None = None


class Branch(NamedTuple):
    """Two rows for one state and event: which one depends on a flag of the pending update
    (``failed`` or ``rolled_back``)."""

    flag: str
    yes: Go | Refuse
    no: Go | Refuse


class FinishFirst(NamedTuple):
    """Before the request, finish the interrupted operation with ``event`` (saying ``note``)."""

    event: Event
    note: str


Row = Go | Branch | Refuse | FinishFirst

S = UpdateState
E = Event


def _scripts(*names: str) -> tuple[Script, ...]:
    return tuple(Script(*name.split("_")) for name in names)


def _rollback(persist: Persist, *leave: str) -> Go:
    """Into the rollback (of a user's request, or after a failure)."""
    return Go(S.ARTIFACT_ROLLBACK_ENTER, persist, _scripts(*leave), _scripts("ArtifactRollback_Enter"))


def _query_rollback(*leave: str) -> Go:
    """After a failure: ask whether the update can be rolled back, before anything of the
    rollback runs or is recorded (Mender's RollbackQuery)."""
    return Go(S.ROLLBACK_QUERY, Persist.NOTHING, _scripts(*leave))


#: The states in which a walk stops: nothing in progress, or waiting for the user's commit.
RESTING = frozenset({S.IDLE, S.BEFORE_ARTIFACT_COMMIT_ENTER})
#: The states the store records (a pending update exists in each of them).
STORED = frozenset(set(S) - {S.IDLE, S.DOWNLOAD, S.ROLLBACK_QUERY})
#: Mender 5.x's ``--stop-before`` names and the state a walk asked to stop there rests in:
#: recorded, with nothing of the named state run yet (``resume`` goes on from there).
STOP_POINTS: dict[str, UpdateState] = {
    "ArtifactInstall_Enter": S.BEFORE_ARTIFACT_INSTALL_ENTER,
    "ArtifactCommit_Enter": S.BEFORE_ARTIFACT_COMMIT_ENTER,
    "ArtifactCommit_Leave": S.BEFORE_ARTIFACT_COMMIT_LEAVE,
    "ArtifactRollback_Enter": S.ARTIFACT_ROLLBACK_ENTER,
    "ArtifactFailure_Enter": S.ARTIFACT_FAILURE_ENTER,
    "Cleanup": S.CLEANUP,
}

_COMMIT_INTERRUPTED = Refuse(
    StateError, "the commit of {name} was interrupted",
    "run '{tool} commit' to finish it (or '{tool} rollback'); then install again")
_INSTALL_INTERRUPTED_COMMIT = Refuse(
    StateError, "the installation of {name} was interrupted and cannot be committed",
    "run '{tool} rollback' or install it again")
_INSTALL_STOPPED_COMMIT = Refuse(
    StateError, "the installation of {name} stopped before the bootloader was switched, so there is nothing "
    "to commit yet", "run '{tool} resume' to finish the installation, or '{tool} rollback'")
_ROLLBACK_INTERRUPTED_COMMIT = Refuse(
    StateError, "a rollback of {name} was interrupted", "run '{tool} rollback' to finish it")
_ROLLED_BACK_NOT_RECORDED = Refuse(
    StateError, "{name} was rolled back, and that is not recorded yet", "run '{tool} rollback' to finish it")
_COMMITTED_NOT_RECORDED = Refuse(
    StateError, "{name} is committed, and that is not recorded yet", "run '{tool} commit' to finish it")
_UNDO_INSTALL = FinishFirst(E.ROLLBACK, "An earlier installation of {name} was interrupted; undoing it first.")
_UNDO_ROLLBACK = FinishFirst(E.ROLLBACK, "An earlier rollback of {name} was interrupted; undoing it first.")
_RECORD_FIRST = FinishFirst(E.RESUME, "An earlier operation on {name} was interrupted at its end; finishing it first.")
_TO_FAILURE = Go(S.ARTIFACT_FAILURE_ENTER, Persist.STATE_ROLLED_BACK, _scripts("ArtifactRollback_Leave"),
                 _scripts("ArtifactFailure_Enter"))
_COMMITTING = Go(S.ARTIFACT_COMMIT_ENTER, Persist.STATE, (), _scripts("ArtifactCommit_Enter"))
_COMMIT_LEAVING = Go(S.ARTIFACT_COMMIT_LEAVE, Persist.STATE, (), _scripts("ArtifactCommit_Leave"))
_INSTALLING = Go(S.ARTIFACT_INSTALL_ENTER, Persist.STATE, (), _scripts("ArtifactInstall_Enter"))
_ROLLING_BACK = _rollback(Persist.STATE)
_FAILING_AGAIN = Go(S.ARTIFACT_FAILURE_ENTER, Persist.STATE_ROLLED_BACK, (), _scripts("ArtifactFailure_Enter"))
_RECORDING = Branch("rolled_back", yes=Go(S.IDLE, Persist.FORGET), no=Go(S.IDLE, Persist.COMMIT))

#: (state, event) -> what happens. A pair that is not here cannot happen (a programming error).
TABLE: dict[tuple[UpdateState, Event], Row] = {
    # --- nothing in progress
    (S.IDLE, E.INSTALL): Go(S.DOWNLOAD, Persist.NOTHING, (), _scripts("Download_Enter")),
    (S.IDLE, E.COMMIT): Refuse(NothingToDoError, "there is nothing to commit: no update in progress"),
    (S.IDLE, E.ROLLBACK): Refuse(NothingToDoError, "there is nothing to roll back: no update in progress"),
    (S.IDLE, E.RESUME): Refuse(NothingToDoError, "there is nothing to resume: no update in progress"),
    # --- install
    (S.DOWNLOAD, E.DONE): Go(S.BEFORE_ARTIFACT_INSTALL_ENTER, Persist.BEGIN, _scripts("Download_Leave")),
    (S.DOWNLOAD, E.EMPTY_PAYLOAD): Go(S.IDLE, Persist.RECORD, _scripts("Download_Leave")),
    (S.DOWNLOAD, E.FAILED): Go(S.IDLE, Persist.NOTHING, _scripts("Download_Error")),
    (S.BEFORE_ARTIFACT_INSTALL_ENTER, E.DONE): _INSTALLING,
    (S.BEFORE_ARTIFACT_INSTALL_ENTER, E.RESUME): _INSTALLING,
    (S.BEFORE_ARTIFACT_INSTALL_ENTER, E.INSTALL): _UNDO_INSTALL,
    (S.BEFORE_ARTIFACT_INSTALL_ENTER, E.COMMIT): _INSTALL_STOPPED_COMMIT,
    (S.BEFORE_ARTIFACT_INSTALL_ENTER, E.ROLLBACK): _rollback(Persist.STATE_FAILED),
    (S.ARTIFACT_INSTALL_ENTER, E.DONE): Go(S.BEFORE_ARTIFACT_COMMIT_ENTER, Persist.STATE,
                                           _scripts("ArtifactInstall_Leave")),
    (S.ARTIFACT_INSTALL_ENTER, E.FAILED): _query_rollback("ArtifactInstall_Error"),
    (S.ARTIFACT_INSTALL_ENTER, E.INSTALL): _UNDO_INSTALL,
    (S.ARTIFACT_INSTALL_ENTER, E.COMMIT): _INSTALL_INTERRUPTED_COMMIT,
    (S.ARTIFACT_INSTALL_ENTER, E.ROLLBACK): _rollback(Persist.STATE_FAILED),
    (S.ARTIFACT_INSTALL_ENTER, E.RESUME): _rollback(Persist.STATE_FAILED),  # as Mender 5.x: undone
    # --- installed, waiting for the reboot and the commit
    (S.BEFORE_ARTIFACT_COMMIT_ENTER, E.INSTALL): Refuse(
        StateError, "an update ({name}) is already installed and waiting for a commit",
        "reboot into it and run '{tool} commit', or run '{tool} rollback'; then install again"),
    (S.BEFORE_ARTIFACT_COMMIT_ENTER, E.COMMIT): _COMMITTING,
    (S.BEFORE_ARTIFACT_COMMIT_ENTER, E.RESUME): _COMMITTING,  # as Mender 5.x: resuming commits
    (S.BEFORE_ARTIFACT_COMMIT_ENTER, E.ROLLBACK): _ROLLING_BACK,
    (S.BEFORE_ARTIFACT_COMMIT_ENTER, E.TRIAL_ENDED): _rollback(Persist.STATE_FAILED),
    # --- commit
    (S.ARTIFACT_COMMIT_ENTER, E.COMMIT): _COMMITTING,  # again, after an interrupted commit
    (S.ARTIFACT_COMMIT_ENTER, E.DONE): Go(S.BEFORE_ARTIFACT_COMMIT_LEAVE, Persist.STATE),
    (S.ARTIFACT_COMMIT_ENTER, E.FAILED): _query_rollback("ArtifactCommit_Error"),
    (S.ARTIFACT_COMMIT_ENTER, E.TRIAL_ENDED): _rollback(Persist.STATE_FAILED, "ArtifactCommit_Error"),
    (S.ARTIFACT_COMMIT_ENTER, E.INSTALL): _COMMIT_INTERRUPTED,
    (S.ARTIFACT_COMMIT_ENTER, E.ROLLBACK): _ROLLING_BACK,
    (S.ARTIFACT_COMMIT_ENTER, E.RESUME): _rollback(Persist.STATE_FAILED),  # as Mender 5.x: undone
    (S.BEFORE_ARTIFACT_COMMIT_LEAVE, E.DONE): _COMMIT_LEAVING,
    (S.BEFORE_ARTIFACT_COMMIT_LEAVE, E.COMMIT): _COMMIT_LEAVING,
    (S.BEFORE_ARTIFACT_COMMIT_LEAVE, E.RESUME): _COMMIT_LEAVING,
    (S.BEFORE_ARTIFACT_COMMIT_LEAVE, E.INSTALL): _COMMIT_INTERRUPTED,
    (S.BEFORE_ARTIFACT_COMMIT_LEAVE, E.ROLLBACK): _ROLLING_BACK,
    (S.ARTIFACT_COMMIT_LEAVE, E.COMMIT): _COMMIT_LEAVING,  # again, after an interrupted commit
    (S.ARTIFACT_COMMIT_LEAVE, E.RESUME): _COMMIT_LEAVING,
    (S.ARTIFACT_COMMIT_LEAVE, E.DONE): Go(S.CLEANUP, Persist.STATE_COMMITTED),
    (S.ARTIFACT_COMMIT_LEAVE, E.INSTALL): _COMMIT_INTERRUPTED,
    (S.ARTIFACT_COMMIT_LEAVE, E.ROLLBACK): _ROLLING_BACK,
    # --- rollback, and the failure path
    (S.ROLLBACK_QUERY, E.DONE): _rollback(Persist.STATE_FAILED),  # it can: rolled back
    (S.ARTIFACT_ROLLBACK_ENTER, E.ROLLBACK): _ROLLING_BACK,  # again, after a crash
    (S.ARTIFACT_ROLLBACK_ENTER, E.RESUME): _ROLLING_BACK,
    (S.ARTIFACT_ROLLBACK_ENTER, E.DONE): Branch(
        "failed", yes=_TO_FAILURE,
        no=Go(S.CLEANUP, Persist.STATE_ROLLED_BACK, _scripts("ArtifactRollback_Leave"))),
    (S.ARTIFACT_ROLLBACK_ENTER, E.INSTALL): _UNDO_ROLLBACK,
    (S.ARTIFACT_ROLLBACK_ENTER, E.COMMIT): _ROLLBACK_INTERRUPTED_COMMIT,
    (S.ARTIFACT_FAILURE_ENTER, E.ROLLBACK): _FAILING_AGAIN,
    (S.ARTIFACT_FAILURE_ENTER, E.RESUME): _FAILING_AGAIN,
    (S.ARTIFACT_FAILURE_ENTER, E.DONE): Go(S.CLEANUP, Persist.STATE, _scripts("ArtifactFailure_Leave")),
    (S.ARTIFACT_FAILURE_ENTER, E.INSTALL): _UNDO_ROLLBACK,
    (S.ARTIFACT_FAILURE_ENTER, E.COMMIT): _ROLLBACK_INTERRUPTED_COMMIT,
    # --- the end: committed or rolled back, the final record left to write
    (S.CLEANUP, E.DONE): _RECORDING,
    (S.CLEANUP, E.RESUME): _RECORDING,
    (S.CLEANUP, E.INSTALL): _RECORD_FIRST,
    (S.CLEANUP, E.COMMIT): Branch("rolled_back", yes=_ROLLED_BACK_NOT_RECORDED, no=Go(S.IDLE, Persist.COMMIT)),
    (S.CLEANUP, E.ROLLBACK): Branch("rolled_back", yes=Go(S.IDLE, Persist.FORGET), no=_COMMITTED_NOT_RECORDED),
}

# --- Update Modules (Mender's standalone flow for a module, src/mender-update/standalone/) -----
# The rows above serve Update Modules as they are. These add what a module can answer or fail:
# - the queries after ArtifactInstall (NeedsArtifactReboot, SupportsRollback), made in
#   Before_ArtifactCommit_Enter, leave the update waiting (rollback supported), commit it at
#   once (AUTO_COMMIT: no rollback support) or fail (the failure path);
# - in RollbackQuery (after a failure) a module that cannot roll back goes straight to the
#   failure path: no ArtifactRollback state, no ArtifactRollback scripts (NO_ROLLBACK);
# - ArtifactRollback is followed by ArtifactFailure, after a user's rollback too (ROLLED_BACK);
# - a module failing on the failure path (the query, ArtifactRollback, ArtifactFailure) leaves
#   the update not rolled back, recorded with _INCONSISTENT (ROLLBACK_FAILED); a failing
#   Cleanup records a committed update with _INCONSISTENT (CLEANUP_FAILED).
_NOT_ROLLED_BACK = Go(S.ARTIFACT_FAILURE_ENTER, Persist.STATE_NOT_ROLLED_BACK, (), _scripts("ArtifactFailure_Enter"))
TABLE.update({
    (S.BEFORE_ARTIFACT_COMMIT_ENTER, E.AUTO_COMMIT): _COMMITTING,
    (S.BEFORE_ARTIFACT_COMMIT_ENTER, E.FAILED): _query_rollback(),
    (S.ROLLBACK_QUERY, E.NO_ROLLBACK): _NOT_ROLLED_BACK,
    (S.ROLLBACK_QUERY, E.ROLLBACK_FAILED): _NOT_ROLLED_BACK,
    (S.ARTIFACT_ROLLBACK_ENTER, E.NO_ROLLBACK): _NOT_ROLLED_BACK,  # a user's, of a failed update
    (S.ARTIFACT_ROLLBACK_ENTER, E.ROLLED_BACK): _TO_FAILURE,
    (S.ARTIFACT_ROLLBACK_ENTER, E.ROLLBACK_FAILED): Go(S.ARTIFACT_FAILURE_ENTER, Persist.STATE_NOT_ROLLED_BACK,
                                                       _scripts("ArtifactRollback_Leave"),
                                                       _scripts("ArtifactFailure_Enter")),
    (S.ARTIFACT_FAILURE_ENTER, E.ROLLBACK_FAILED): Go(S.CLEANUP, Persist.STATE_NOT_ROLLED_BACK,
                                                      _scripts("ArtifactFailure_Leave")),
    (S.CLEANUP, E.CLEANUP_FAILED): Branch("rolled_back", yes=Go(S.IDLE, Persist.FORGET),
                                          no=Go(S.IDLE, Persist.COMMIT_INCONSISTENT)),
})

# --- The daemon's reboots (Mender's daemon, src/mender-update/daemon/) -------------------------
# In managed mode an update is committed by the daemon itself, after the reboot its payload
# asks for (NeedsArtifactReboot Yes or Automatic; a root filesystem always asks for the daemon's
# reboot, as Mender's rootfs-image module does): from Before_ArtifactCommit_Enter the
# daemon's REBOOT records ArtifactReboot [ArtifactReboot_Enter] and reboots (the module's
# ArtifactReboot, or the system's); ArtifactVerifyReboot is recorded next, and after the boot
# (or at once, when the module's reboot returned) the module verifies it, then
# [ArtifactReboot_Leave] the commit follows. A failure there goes the failure path
# [ArtifactReboot_Error]. A module that rolled back and needs a reboot for it goes through
# ArtifactRollbackReboot [ArtifactRollbackReboot_Enter] and ArtifactVerifyRollbackReboot (a
# failed verification reboots again, as Mender's daemon does) [ArtifactRollbackReboot_Leave]
# to the failure state. The daemon's RESTART goes on from each of them as Mender's daemon goes
# on from the state it loads after a boot: a reboot recorded is verified, a verification that
# was cut off (the daemon restarted while it verified, or while it reported ``installing``
# before the commit) is rolled back, a rollback's reboot is verified. The standalone commands'
# ``resume`` is refused there: the deployment is the daemon's (Mender 5.x keeps the daemon's
# state apart from the standalone commands', whose ``resume`` finds nothing to resume). A
# deployment the server aborted while it was reported ``installing`` (nothing installed yet)
# goes straight to Cleanup (ABORT), as in Mender's daemon.
_REBOOTING = Refuse(
    StateError, "a deployment of {name} is rebooting, and the daemon finishes it after the boot",
    "let the daemon finish it (or run '{tool} rollback'); then install again")
_ROLLBACK_REBOOTING = Refuse(
    StateError, "a deployment of {name} was rolled back and is rebooting",
    "let the daemon finish it (or run '{tool} rollback'); then install again")
_DAEMONS = Refuse(
    StateError, "the deployment of {name} is the daemon's, which finishes it (it is in {state})",
    "let the daemon finish it, or run '{tool} rollback'")
_VERIFY_REBOOT = Go(S.ARTIFACT_VERIFY_REBOOT, Persist.STATE)
_VERIFY_ROLLBACK_REBOOT = Go(S.ARTIFACT_VERIFY_ROLLBACK_REBOOT, Persist.STATE_ROLLED_BACK)
_ROLLBACK_REBOOTING_AGAIN = Go(S.ARTIFACT_ROLLBACK_REBOOT, Persist.STATE_ROLLED_BACK, (),
                               _scripts("ArtifactRollbackReboot_Enter"))
TABLE.update({
    (S.BEFORE_ARTIFACT_INSTALL_ENTER, E.ABORT): Go(S.CLEANUP, Persist.STATE_ROLLED_BACK),
    (S.BEFORE_ARTIFACT_COMMIT_ENTER, E.REBOOT): Go(S.ARTIFACT_REBOOT, Persist.STATE, (),
                                                   _scripts("ArtifactReboot_Enter")),
    (S.ARTIFACT_REBOOT, E.DONE): _VERIFY_REBOOT,
    (S.ARTIFACT_REBOOT, E.RESTART): _VERIFY_REBOOT,  # after the boot, as Mender's daemon
    (S.ARTIFACT_REBOOT, E.RESUME): _DAEMONS,
    (S.ARTIFACT_REBOOT, E.FAILED): _query_rollback("ArtifactReboot_Error"),
    (S.ARTIFACT_REBOOT, E.ROLLBACK): _rollback(Persist.STATE_FAILED),
    (S.ARTIFACT_REBOOT, E.INSTALL): _REBOOTING,
    (S.ARTIFACT_REBOOT, E.COMMIT): _REBOOTING,
    (S.ARTIFACT_VERIFY_REBOOT, E.DONE): Go(S.ARTIFACT_COMMIT_ENTER, Persist.STATE, _scripts("ArtifactReboot_Leave"),
                                           _scripts("ArtifactCommit_Enter")),
    (S.ARTIFACT_VERIFY_REBOOT, E.RESTART): _query_rollback(),  # cut off: rolled back, as Mender's daemon
    (S.ARTIFACT_VERIFY_REBOOT, E.RESUME): _DAEMONS,
    (S.ARTIFACT_VERIFY_REBOOT, E.FAILED): _query_rollback("ArtifactReboot_Error"),
    (S.ARTIFACT_VERIFY_REBOOT, E.ROLLBACK): _rollback(Persist.STATE_FAILED),
    (S.ARTIFACT_VERIFY_REBOOT, E.INSTALL): _REBOOTING,
    (S.ARTIFACT_VERIFY_REBOOT, E.COMMIT): _REBOOTING,
    (S.ARTIFACT_ROLLBACK_ENTER, E.ROLLBACK_REBOOT): Go(S.ARTIFACT_ROLLBACK_REBOOT, Persist.STATE_ROLLED_BACK,
                                                       _scripts("ArtifactRollback_Leave"),
                                                       _scripts("ArtifactRollbackReboot_Enter")),
    (S.ARTIFACT_ROLLBACK_REBOOT, E.DONE): _VERIFY_ROLLBACK_REBOOT,
    (S.ARTIFACT_ROLLBACK_REBOOT, E.RESTART): _VERIFY_ROLLBACK_REBOOT,
    (S.ARTIFACT_ROLLBACK_REBOOT, E.RESUME): _DAEMONS,
    (S.ARTIFACT_ROLLBACK_REBOOT, E.ROLLBACK): _VERIFY_ROLLBACK_REBOOT,
    (S.ARTIFACT_ROLLBACK_REBOOT, E.INSTALL): _ROLLBACK_REBOOTING,
    (S.ARTIFACT_ROLLBACK_REBOOT, E.COMMIT): _ROLLBACK_REBOOTING,
    (S.ARTIFACT_VERIFY_ROLLBACK_REBOOT, E.DONE): Go(S.ARTIFACT_FAILURE_ENTER, Persist.STATE_ROLLED_BACK,
                                                    _scripts("ArtifactRollbackReboot_Leave"),
                                                    _scripts("ArtifactFailure_Enter")),
    (S.ARTIFACT_VERIFY_ROLLBACK_REBOOT, E.FAILED): _ROLLBACK_REBOOTING_AGAIN,
    (S.ARTIFACT_VERIFY_ROLLBACK_REBOOT, E.RESTART): _VERIFY_ROLLBACK_REBOOT,
    (S.ARTIFACT_VERIFY_ROLLBACK_REBOOT, E.RESUME): _DAEMONS,
    (S.ARTIFACT_VERIFY_ROLLBACK_REBOOT, E.ROLLBACK): _VERIFY_ROLLBACK_REBOOT,
    (S.ARTIFACT_VERIFY_ROLLBACK_REBOOT, E.INSTALL): _ROLLBACK_REBOOTING,
    (S.ARTIFACT_VERIFY_ROLLBACK_REBOOT, E.COMMIT): _ROLLBACK_REBOOTING,
})

#: The work of a state: returns the event that ends it (None: DONE), raises when it failed.
Work = Callable[[], "Event | None"]


class Flow:
    """The walk of the update in ``store`` through :data:`TABLE` (see the module docstring).

    ``runner_for`` gives the runner of the state scripts for the update being walked (None:
    none recorded yet). The pending update the store holds, if any, is where the walk starts;
    before one is recorded, :meth:`prepare` gives the one to record.
    """

    def __init__(self, store: StateStore, runner_for: Callable[[PendingUpdate | None], ScriptRunner],
                 *, tool: str = "pymender") -> None:
        self.store = store
        self.runner_for = runner_for
        #: The command named in the hints of refusals (``pymender``, ``mender-update``).
        self.tool = tool
        self.pending = store.pending()
        self.state = UpdateState.IDLE if self.pending is None else stored_state(self.pending, store)
        #: Failures of scripts whose failures are ignored, in this walk (see Persist.COMMIT).
        self.ignored: list[ScriptError] = []
        #: The first failure of this walk and the state it happened in.
        self.failure: Exception | None = None
        self.failed_in: UpdateState | None = None
        #: Every transition taken by this flow, in order: (state left, event, state entered).
        self.trace: list[tuple[UpdateState, Event, UpdateState]] = []
        #: Whether the last walk stopped at one of its ``stop_before`` states.
        self.stopped = False

    @property
    def name(self) -> str:
        """The Artifact name of the update being walked ("" before the download knows it)."""
        return self.pending.artifact_name if self.pending is not None else ""

    def prepare(self, update: PendingUpdate) -> None:
        """The update the next :data:`Persist.BEGIN` records (or :data:`Persist.RECORD` makes
        current): the download's result."""
        if self.state is not UpdateState.DOWNLOAD:
            raise RuntimeError(f"an update is prepared only in Download, not in {self.state.value}")
        self.pending = update

    # --- the table ----------------------------------------------------------------------------

    def row(self, event: Event) -> Row:
        """The row of the current state for ``event``; a pair missing from the table is a
        programming error, never a user's."""
        try:
            row = TABLE[self.state, event]
        except KeyError:
            raise RuntimeError(f"no transition from {self.state.value} on {event.value}") from None
        if isinstance(row, Branch):
            return row.yes if self.pending is not None and getattr(self.pending, row.flag) else row.no
        return row

    # --- moving -------------------------------------------------------------------------------

    def start(self, request: Event, work: Mapping[UpdateState, Work] | None = None,
              say: Callable[[str], None] | None = None) -> None:
        """Make way for ``request``: raise the table's refusal, or finish the interrupted
        operation first (saying so) when the table says so. Then the request can be walked."""
        row = self.row(request)
        if isinstance(row, Refuse):
            words = {"name": self.name, "tool": self.tool, "state": self.state.value}
            raise row.error(row.message.format(**words), hint=row.hint.format(**words) if row.hint else None)
        if isinstance(row, FinishFirst):
            if say is not None:
                say(row.note.format(name=self.name))
            self.walk(row.event, work)

    def advance(self, event: Event, *, enter: bool = True) -> ScriptError | None:
        """Take the transition of :data:`TABLE` for the current state and ``event``: run the
        scripts of the state left, persist, run the scripts of the state entered (not with
        ``enter=False``: the walk stops before them).

        Returns the error of a script that failed (one whose failure is not ignored), and then
        stops: the update is in the state it was in (a script of the state left) or in the new
        one (a script of the new state). A failure to persist is raised: nothing of the new
        state has run then.
        """
        row = self.row(event)
        if not isinstance(row, Go):
            raise RuntimeError(f"{self.state.value} on {event.value} is not a transition: {row}")
        error = self._run(row.leave)
        if error is not None:
            return error
        self._persist(row)
        self.trace.append((self.state, event, row.to))
        self.state = row.to
        return self._run(row.enter) if enter else None

    def walk(self, event: Event, work: Mapping[UpdateState, Work] | None = None,
             stop_before: Collection[UpdateState] = ()) -> None:
        """Advance with ``event``, then on and on: in each state its ``work`` (if any) runs and
        the event it ends with (DONE, or FAILED when it raises) moves the update on, until it
        rests (:data:`RESTING`).

        A failure takes the table's FAILED transition and the walk goes on along the failure
        path; once the update rests, the first failure is raised (:attr:`failure`, and the state
        it happened in, :attr:`failed_in`, tell the caller what failed). A failure for which the
        table has no FAILED transition (on the failure path itself) stops the walk at once, in
        a state the store has recorded, and is raised.

        ``stop_before`` (states of :data:`STOP_POINTS`): the walk stops when the update gets
        there, recorded, before anything of the state runs (its Enter scripts, its work), and
        :attr:`stopped` says so; an update already there does not move. A later walk with
        :data:`Event.RESUME` goes on from there.
        """
        work = work or {}
        self.ignored, self.failure, self.failed_in, self.stopped = [], None, None, False
        if self.state in stop_before:
            self.stopped = True
            return
        while True:
            row = self.row(event)
            stop = isinstance(row, Go) and row.to in stop_before
            error: Exception | None = self.advance(event, enter=not stop)
            if error is None:
                if stop:
                    self.stopped = True
                    break
                if self.state in RESTING:
                    break
                step = work.get(self.state)
                try:
                    event = (step() if step is not None else None) or Event.DONE
                    continue
                except Exception as err:
                    error = err
            event = self._failed(error)
        if self.failure is not None:
            raise self.failure

    # --- inside -------------------------------------------------------------------------------

    def _failed(self, error: Exception) -> Event:
        """FAILED, where the table has it; else ``error`` stops the walk here."""
        first = self.failure is None
        if first:
            self.failure, self.failed_in = error, self.state
        if (self.state, Event.FAILED) not in TABLE:
            if first:
                raise error
            raise error from self.failure
        if not first:
            log.warning("%s (while going the failure path)", _one_line(error))
        return Event.FAILED

    def _run(self, scripts: tuple[Script, ...]) -> ScriptError | None:
        runner = self.runner_for(self.pending) if scripts else None
        for script in scripts:
            assert runner is not None
            try:
                self.ignored += runner.run(script.state, script.action)
            except ScriptError as err:
                return err
        return None

    def _persist(self, row: Go) -> None:
        store, pending = self.store, self.pending
        kind = row.persist
        if kind is Persist.NOTHING:
            return
        if pending is None:
            raise RuntimeError(f"{kind.value}: no update to record")
        if kind is Persist.BEGIN:
            self.pending = pending._replace(state=row.to.value)
            store.begin_pending(self.pending)
        elif kind is Persist.STATE:
            self.pending = store.update_pending(state=row.to.value)
        elif kind is Persist.STATE_FAILED:
            self.pending = store.update_pending(state=row.to.value, failed=True)
        elif kind is Persist.STATE_ROLLED_BACK:
            self.pending = store.update_pending(state=row.to.value, rolled_back=True)
        elif kind is Persist.STATE_NOT_ROLLED_BACK:
            self.pending = store.update_pending(state=row.to.value, failed=True, rolled_back=False)
        elif kind is Persist.STATE_COMMITTED:
            self.pending = store.update_pending(state=row.to.value, failed=bool(self.ignored) or pending.failed)
        elif kind is Persist.COMMIT:
            store.commit_pending(inconsistent=bool(self.ignored) or pending.failed)
        elif kind is Persist.COMMIT_INCONSISTENT:
            store.commit_pending(inconsistent=True)
        elif kind is Persist.RECORD:
            store.set_current(apply_update(store.current(), pending))
        elif kind is Persist.FORGET:
            store.discard_pending()


#: The names ``--stop-before`` accepts, in Mender's order.
STOPPABLE = tuple(STOP_POINTS)


def stop_points(names: Collection[str]) -> frozenset[UpdateState]:
    """The states of Mender's ``--stop-before`` names; an unknown name is a usage error,
    refused before anything happens."""
    unknown = [name for name in names if name not in STOP_POINTS]
    if unknown:
        raise UsageError(f"cannot stop before {', '.join(unknown)}: not a state the update can stop before",
                         hint=f"use one of {', '.join(STOPPABLE)}")
    return frozenset(STOP_POINTS[name] for name in names)


def stored_state(pending: PendingUpdate, store: StateStore) -> UpdateState:
    """The state a stored pending update is in; a name the table does not know is damage."""
    try:
        state = UpdateState(pending.state)
    except ValueError:
        state = UpdateState.IDLE
    if state not in STORED:
        raise StateError(
            f"the state store {store.path} holds an update in an unknown state {pending.state!r}",
            hint="the storage may be damaged; move the file away to start from 'unknown'",
        )
    return state


def _one_line(err: Exception) -> str:
    one_line = getattr(err, "one_line", None)
    return str(one_line()) if callable(one_line) else str(err)


__all__ = [
    "RESTING",
    "STOPPABLE",
    "STOP_POINTS",
    "STORED",
    "TABLE",
    "Branch",
    "Event",
    "FinishFirst",
    "Flow",
    "Go",
    "Persist",
    "Refuse",
    "Script",
    "UpdateState",
    "Work",
    "stop_points",
    "stored_state",
]
