"""The update state machine: the table checked as a table, and the walk that follows it."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from pymender.device.flow import (
    RESTING,
    STOP_POINTS,
    STOPPABLE,
    STORED,
    TABLE,
    Branch,
    Event,
    FinishFirst,
    Flow,
    Go,
    Persist,
    Refuse,
    Script,
    UpdateState,
    stop_points,
)
from pymender.device.scripts import ACTIONS, STATES
from pymender.device.store import PendingUpdate, StateStore
from pymender.errors import DeviceError, NothingToDoError, ScriptError, StateError, UsageError

S = UpdateState
E = Event
REQUESTS = (E.INSTALL, E.COMMIT, E.ROLLBACK, E.RESUME)

pytestmark = pytest.mark.usefixtures("no_fsync")


def transitions() -> list[tuple[UpdateState, Event, Go]]:
    """Every transition of the table (both sides of a branch)."""
    found = []
    for (state, event), row in TABLE.items():
        if isinstance(row, Go):
            found.append((state, event, row))
        elif isinstance(row, Branch):
            found += [(state, event, side) for side in (row.yes, row.no) if isinstance(side, Go)]
    return found


# --- the table as a table ---------------------------------------------------------------------------


def test_every_state_answers_every_request() -> None:
    """Install, commit, rollback and resume are accepted, refused with words, or finish
    something first, in every state a front end can find (not in Download and RollbackQuery,
    which only the walk itself is in)."""
    for state in set(S) - {S.DOWNLOAD, S.ROLLBACK_QUERY}:
        for request in REQUESTS:
            assert (state, request) in TABLE, f"{state.value} does not answer {request.value}"


def test_every_written_state_is_reachable_from_idle() -> None:
    seen, todo = {S.IDLE}, deque([S.IDLE])
    while todo:
        state = todo.popleft()
        for source, _, row in transitions():
            if source is state and row.to not in seen:
                seen.add(row.to)
                todo.append(row.to)
    assert seen == set(S)


def test_every_stored_state_has_a_way_back_to_rest() -> None:
    """From each stored state a resume, and a rollback where the state takes one (then
    whatever each state's work ends with: DONE), reaches a resting state without any refusal:
    an interrupted or stopped operation can always be finished, and the install that finds one
    finishes it first or says which command does."""
    for state in STORED:
        finishing = TABLE[state, E.INSTALL]
        assert isinstance(finishing, (Refuse, FinishFirst)), state
        # The daemon's reboot states are the daemon's to go on from (RESTART), not resume's.
        for request in (E.RESTART if state in DAEMON_STATES else E.RESUME, E.ROLLBACK):
            for flags in ({"failed": False, "rolled_back": False}, {"failed": True, "rolled_back": True}):
                current, event, steps = state, request, 0
                while True:
                    row = TABLE[current, event]
                    if isinstance(row, Branch):
                        row = row.yes if flags[row.flag] else row.no
                    if isinstance(row, Refuse) and steps == 0 and request is E.ROLLBACK:
                        break  # this state takes no rollback (resume finishes it)
                    assert isinstance(row, Go), (state, request, current, event)
                    current, event, steps = row.to, E.DONE, steps + 1
                    assert steps < 8, f"no way back to rest from {state.value}"
                    if current in RESTING:
                        break
                assert current in RESTING or steps == 0, (state, request)


def test_every_stop_point_is_a_stored_state_a_walk_goes_through() -> None:
    assert STOPPABLE == ("ArtifactInstall_Enter", "ArtifactCommit_Enter", "ArtifactCommit_Leave",
                         "ArtifactRollback_Enter", "ArtifactFailure_Enter", "Cleanup")
    entered = {row.to for _, _, row in transitions()}
    for name, state in STOP_POINTS.items():
        assert state in STORED and state in entered, name
        assert isinstance(TABLE[state, E.RESUME], (Go, Branch)), name
    assert stop_points(["Cleanup", "ArtifactInstall_Enter"]) == {S.CLEANUP, S.BEFORE_ARTIFACT_INSTALL_ENTER}
    with pytest.raises(UsageError, match="cannot stop before ArtifactReboot_Enter") as caught:
        stop_points(["ArtifactInstall_Enter", "ArtifactReboot_Enter"])
    assert "ArtifactCommit_Leave" in (caught.value.hint or "")


def test_resume_goes_on_as_mender_5_defines_it() -> None:
    """Stopped before the install: installs; installed: commits; interrupted inside install or
    commit: rolls back; after the bootloader's commit: finishes the commit; rollback and
    failure: finish them; the end: records it."""
    def to(state: UpdateState) -> UpdateState:
        row = TABLE[state, E.RESUME]
        assert isinstance(row, Go), state
        return row.to

    assert to(S.BEFORE_ARTIFACT_INSTALL_ENTER) is S.ARTIFACT_INSTALL_ENTER
    assert to(S.BEFORE_ARTIFACT_COMMIT_ENTER) is S.ARTIFACT_COMMIT_ENTER
    assert to(S.ARTIFACT_INSTALL_ENTER) is S.ARTIFACT_ROLLBACK_ENTER
    assert to(S.ARTIFACT_COMMIT_ENTER) is S.ARTIFACT_ROLLBACK_ENTER
    assert to(S.BEFORE_ARTIFACT_COMMIT_LEAVE) is to(S.ARTIFACT_COMMIT_LEAVE) is S.ARTIFACT_COMMIT_LEAVE
    assert to(S.ARTIFACT_ROLLBACK_ENTER) is S.ARTIFACT_ROLLBACK_ENTER
    assert to(S.ARTIFACT_FAILURE_ENTER) is S.ARTIFACT_FAILURE_ENTER
    assert TABLE[S.CLEANUP, E.RESUME] == TABLE[S.CLEANUP, E.DONE]
    assert isinstance(TABLE[S.IDLE, E.RESUME], Refuse) and TABLE[S.IDLE, E.RESUME].error is NothingToDoError


def test_refusals_tell_what_to_do() -> None:
    for (state, request), row in TABLE.items():
        for refusal in ([row] if isinstance(row, Refuse) else
                        [side for side in row if isinstance(side, Refuse)] if isinstance(row, Branch) else []):
            assert refusal.hint or refusal.error is NothingToDoError, (state, request)
            assert state is S.IDLE or "{name}" in refusal.message, (state, request)
            assert refusal.hint is None or "{tool}" in refusal.hint or "pymender" not in refusal.hint


def test_no_transition_skips_persisting() -> None:
    """Into a stored state the new state is recorded before anything of it runs; out of the
    stored states the update is committed or forgotten; Download records nothing but an
    Artifact without payload."""
    for state, event, row in transitions():
        where = f"{state.value} on {event.value} to {row.to.value}"
        if row.to in STORED:
            wanted = {Persist.BEGIN} if state is S.DOWNLOAD else {
                Persist.STATE, Persist.STATE_FAILED, Persist.STATE_ROLLED_BACK, Persist.STATE_NOT_ROLLED_BACK,
                Persist.STATE_COMMITTED}
        elif row.to in (S.DOWNLOAD, S.ROLLBACK_QUERY):
            wanted = {Persist.NOTHING}
        elif state is S.DOWNLOAD:
            wanted = {Persist.NOTHING, Persist.RECORD}
        else:
            wanted = {Persist.COMMIT, Persist.COMMIT_INCONSISTENT, Persist.FORGET}
        assert row.persist in wanted, where
        assert (row.persist is Persist.BEGIN) == (state is S.DOWNLOAD and row.to in STORED), where


def test_failures_go_the_failure_path_and_the_failure_path_never_fails_over() -> None:
    """Where work can fail there is a FAILED transition; its scripts are Error scripts. The
    failure path itself (rollback, failure) has none: a failure there stops the walk, recorded."""
    for state in (S.DOWNLOAD, S.ARTIFACT_INSTALL_ENTER, S.ARTIFACT_COMMIT_ENTER):
        row = TABLE[state, E.FAILED]
        assert isinstance(row, Go) and all(script.action == "Error" for script in row.leave), state
    # a failure asks first whether it can be rolled back (nothing recorded yet), as Mender's
    # RollbackQuery; the rollback that follows records the failure
    failed = {state: row for (state, event), row in TABLE.items() if event is E.FAILED and state is not S.DOWNLOAD}
    # the daemon's failed verification of a rollback's reboot reboots again, as Mender's daemon
    again = failed.pop(S.ARTIFACT_VERIFY_ROLLBACK_REBOOT)
    assert isinstance(again, Go) and again.to is S.ARTIFACT_ROLLBACK_REBOOT
    assert set(failed) == {S.ARTIFACT_INSTALL_ENTER, S.ARTIFACT_COMMIT_ENTER, S.BEFORE_ARTIFACT_COMMIT_ENTER,
                           S.ARTIFACT_REBOOT, S.ARTIFACT_VERIFY_REBOOT}
    assert all(isinstance(row, Go) and row.to is S.ROLLBACK_QUERY and row.persist is Persist.NOTHING
               for row in failed.values())
    assert TABLE[S.ROLLBACK_QUERY, E.DONE] == Go(S.ARTIFACT_ROLLBACK_ENTER, Persist.STATE_FAILED, (),
                                                 (Script("ArtifactRollback", "Enter"),))
    for state in (S.ROLLBACK_QUERY, S.ARTIFACT_ROLLBACK_ENTER, S.ARTIFACT_FAILURE_ENTER):
        assert (state, E.FAILED) not in TABLE


def test_an_update_module_that_cannot_roll_back_or_fails_on_the_way_is_recorded_not_rolled_back() -> None:
    """Mender's RollbackQuery without rollback support goes to ArtifactFailure with no
    ArtifactRollback state or script; a module failing in the query, ArtifactRollback or
    ArtifactFailure leaves the update not rolled back (``_INCONSISTENT``); a failing Cleanup
    records a committed update ``_INCONSISTENT`` and forgets a rolled back one."""
    into_failure = Go(S.ARTIFACT_FAILURE_ENTER, Persist.STATE_NOT_ROLLED_BACK, (),
                      (Script("ArtifactFailure", "Enter"),))
    assert TABLE[S.ROLLBACK_QUERY, E.NO_ROLLBACK] == TABLE[S.ROLLBACK_QUERY, E.ROLLBACK_FAILED] == into_failure
    assert TABLE[S.ARTIFACT_ROLLBACK_ENTER, E.NO_ROLLBACK] == into_failure
    failed = TABLE[S.ARTIFACT_ROLLBACK_ENTER, E.ROLLBACK_FAILED]
    assert isinstance(failed, Go) and failed.persist is Persist.STATE_NOT_ROLLED_BACK
    assert failed.leave == (Script("ArtifactRollback", "Leave"),) and failed.to is S.ARTIFACT_FAILURE_ENTER
    rolled_back = TABLE[S.ARTIFACT_ROLLBACK_ENTER, E.ROLLED_BACK]  # ArtifactFailure after every rollback
    assert isinstance(rolled_back, Go) and rolled_back.to is S.ARTIFACT_FAILURE_ENTER
    assert rolled_back.persist is Persist.STATE_ROLLED_BACK
    failure = TABLE[S.ARTIFACT_FAILURE_ENTER, E.ROLLBACK_FAILED]
    assert isinstance(failure, Go) and (failure.to, failure.persist) == (S.CLEANUP, Persist.STATE_NOT_ROLLED_BACK)
    cleanup = TABLE[S.CLEANUP, E.CLEANUP_FAILED]
    assert cleanup == Branch("rolled_back", yes=Go(S.IDLE, Persist.FORGET), no=Go(S.IDLE, Persist.COMMIT_INCONSISTENT))


def test_a_failed_rollback_runs_the_failure_scripts_a_requested_one_does_not() -> None:
    row = TABLE[S.ARTIFACT_ROLLBACK_ENTER, E.DONE]
    assert isinstance(row, Branch) and row.flag == "failed"
    assert isinstance(row.yes, Go) and isinstance(row.no, Go)
    assert row.yes.to is S.ARTIFACT_FAILURE_ENTER and row.yes.enter == (Script("ArtifactFailure", "Enter"),)
    assert row.no.to is S.CLEANUP and row.no.persist is Persist.STATE_ROLLED_BACK
    assert row.no.leave == (Script("ArtifactRollback", "Leave"),)


def test_the_end_records_a_commit_or_forgets_a_rollback() -> None:
    """Every walk that finishes an update passes Cleanup, where only the final record is left:
    a rolled-back update is forgotten, a committed one made current."""
    into_idle = [(state, event) for state, event, row in transitions() if row.to is S.IDLE
                 and state not in (S.DOWNLOAD, S.CLEANUP)]
    assert into_idle == [], into_idle
    row = TABLE[S.CLEANUP, E.DONE]
    assert isinstance(row, Branch) and row.flag == "rolled_back"
    assert row.yes == Go(S.IDLE, Persist.FORGET) and row.no == Go(S.IDLE, Persist.COMMIT)
    # Finished by the command that was interrupted; the other one is refused.
    commit, rollback = TABLE[S.CLEANUP, E.COMMIT], TABLE[S.CLEANUP, E.ROLLBACK]
    assert isinstance(commit, Branch) and commit.no == Go(S.IDLE, Persist.COMMIT) and isinstance(commit.yes, Refuse)
    assert isinstance(rollback, Branch) and rollback.yes == Go(S.IDLE, Persist.FORGET)
    assert isinstance(rollback.no, Refuse)


#: The states only the daemon's walks enter (its reboots), and the events that lead there.
DAEMON_STATES = {S.ARTIFACT_REBOOT, S.ARTIFACT_VERIFY_REBOOT, S.ARTIFACT_ROLLBACK_REBOOT,
                 S.ARTIFACT_VERIFY_ROLLBACK_REBOOT}


def test_scripts_are_the_state_scripts_mender_runs_in_standalone_mode() -> None:
    """The standalone walks run Mender's standalone scripts; the reboot scripts run only on
    the rows of the daemon's reboots, as Mender's daemon runs them."""
    for state, event, row in transitions():
        daemon = state in DAEMON_STATES or row.to in DAEMON_STATES
        for script in row.leave + row.enter:
            assert script.state in STATES and script.action in ACTIONS, (state, event, script)
            assert script.state not in ("Idle", "Sync"), (state, event, script)
            if not daemon:
                assert script.state not in ("ArtifactReboot", "ArtifactRollbackReboot"), (state, event, script)
        # The scripts of a state entered are its own Enter scripts (ArtifactCommit_Leave is the
        # Enter of the state Mender names after it); those of the state left, its Leave or Error.
        for script in row.enter:
            assert row.to.value.startswith(script.state), (state, event, script)
    assert {event for state, event, row in transitions() if state not in DAEMON_STATES and row.to in DAEMON_STATES} \
        == {E.REBOOT, E.ROLLBACK_REBOOT}


def test_the_daemons_reboots_go_on_after_the_boot_as_menders_daemon() -> None:
    """Recorded in a reboot state, a resume verifies the reboot; a failed verification of the
    update's reboot goes the failure path, one of the rollback's reboot reboots again; both
    verifications, once done, lead on (commit; failure state) with the Leave scripts."""
    for state, verify in ((S.ARTIFACT_REBOOT, S.ARTIFACT_VERIFY_REBOOT),
                          (S.ARTIFACT_ROLLBACK_REBOOT, S.ARTIFACT_VERIFY_ROLLBACK_REBOOT),
                          (S.ARTIFACT_VERIFY_ROLLBACK_REBOOT, S.ARTIFACT_VERIFY_ROLLBACK_REBOOT)):
        for event in (E.RESTART, E.DONE) if state is not verify else (E.RESTART,):
            row = TABLE[state, event]
            assert isinstance(row, Go) and row.to is verify and row.enter == (), (state, event)
    # A verification cut off by a restart is rolled back, as Mender's daemon rolls back every
    # state it loads but the reboots, the rollback, the end of a commit, the failure and Cleanup
    # (through RollbackQuery, as every failure: a module that cannot roll back is not asked to).
    cut = TABLE[S.ARTIFACT_VERIFY_REBOOT, E.RESTART]
    assert isinstance(cut, Go) and cut.to is S.ROLLBACK_QUERY and cut.persist is Persist.NOTHING
    assert cut.leave == ()
    # The standalone commands' resume is refused in every one of them, and says whose it is.
    for state in DAEMON_STATES:
        refusal = TABLE[state, E.RESUME]
        assert isinstance(refusal, Refuse) and "{state}" in refusal.message and "rollback" in (refusal.hint or "")
    failed = TABLE[S.ARTIFACT_VERIFY_REBOOT, E.FAILED]
    assert isinstance(failed, Go) and failed.to is S.ROLLBACK_QUERY and failed.persist is Persist.NOTHING
    assert failed.leave == (Script("ArtifactReboot", "Error"),)
    again = TABLE[S.ARTIFACT_VERIFY_ROLLBACK_REBOOT, E.FAILED]
    assert isinstance(again, Go) and again.to is S.ARTIFACT_ROLLBACK_REBOOT
    done = TABLE[S.ARTIFACT_VERIFY_REBOOT, E.DONE]
    assert isinstance(done, Go) and done.to is S.ARTIFACT_COMMIT_ENTER
    assert done.leave == (Script("ArtifactReboot", "Leave"),) and done.enter == (Script("ArtifactCommit", "Enter"),)
    failing = TABLE[S.ARTIFACT_VERIFY_ROLLBACK_REBOOT, E.DONE]
    assert isinstance(failing, Go) and failing.to is S.ARTIFACT_FAILURE_ENTER
    assert failing.persist is Persist.STATE_ROLLED_BACK
    assert failing.leave == (Script("ArtifactRollbackReboot", "Leave"),)


def test_trial_ended_is_a_failure_in_every_state_it_can_be_found_in() -> None:
    for state in (S.BEFORE_ARTIFACT_COMMIT_ENTER, S.ARTIFACT_COMMIT_ENTER):
        row = TABLE[state, E.TRIAL_ENDED]
        assert isinstance(row, Go) and row.to is S.ARTIFACT_ROLLBACK_ENTER and row.persist is Persist.STATE_FAILED


# --- the walk -------------------------------------------------------------------------------------


class Runner:
    """Stands in for the script runner: records each script with the state the store held when
    it ran; ``fail`` names the scripts that fail (ignored ones only get logged, as Mender's)."""

    def __init__(self, store: StateStore, fail: tuple[str, ...] = ()) -> None:
        self.store = store
        self.fail = fail
        self.ran: list[tuple[str, str | None]] = []

    def run(self, state: str, action: str) -> list[ScriptError]:
        pending = self.store.pending()
        name = f"{state}_{action}"
        self.ran.append((name, pending.state if pending is not None else None))
        if name not in self.fail:
            return []
        error = ScriptError(f"{name} failed")
        if action == "Error" or state in ("ArtifactRollback", "ArtifactFailure") or name == "ArtifactCommit_Leave":
            return [error]
        raise error


@pytest.fixture
def store(scratch: Path) -> StateStore:
    return StateStore(scratch / "data", artifact_info=None)


def flow_of(store: StateStore, runner: Runner) -> Flow:
    return Flow(store, lambda pending: runner)  # type: ignore[arg-type, return-value]


UPDATE = PendingUpdate(artifact_name="release-2", partition="/dev/b", previous_partition="/dev/a")


def test_install_walk_records_before_each_state_runs(store: StateStore) -> None:
    runner = Runner(store)
    flow = flow_of(store, runner)
    work: list[str] = []

    def download() -> None:
        work.append("download")
        flow.prepare(UPDATE)

    def switch() -> None:
        work.append(f"switch in {store.pending().state}")  # type: ignore[union-attr]

    flow.walk(E.INSTALL, {S.DOWNLOAD: download, S.ARTIFACT_INSTALL_ENTER: switch})
    assert flow.state is S.BEFORE_ARTIFACT_COMMIT_ENTER
    assert work == ["download", "switch in ArtifactInstall_Enter"]
    assert runner.ran == [("Download_Enter", None), ("Download_Leave", None),
                          ("ArtifactInstall_Enter", "ArtifactInstall_Enter"),
                          ("ArtifactInstall_Leave", "ArtifactInstall_Enter")]
    assert store.pending() == UPDATE._replace(state="Before_ArtifactCommit_Enter")
    assert [(left.value, event.value, entered.value) for left, event, entered in flow.trace] == [
        ("Idle", "install", "Download"), ("Download", "done", "Before_ArtifactInstall_Enter"),
        ("Before_ArtifactInstall_Enter", "done", "ArtifactInstall_Enter"),
        ("ArtifactInstall_Enter", "done", "Before_ArtifactCommit_Enter")]


def test_a_failure_goes_the_failure_path_and_is_raised_at_rest(store: StateStore) -> None:
    store.begin_pending(UPDATE)
    runner = Runner(store, fail=("ArtifactCommit_Enter", "ArtifactRollback_Leave"))
    flow = flow_of(store, runner)
    rolled_back: list[str] = []
    with pytest.raises(ScriptError, match="ArtifactCommit_Enter failed"):
        flow.walk(E.COMMIT, {S.ARTIFACT_ROLLBACK_ENTER: lambda: rolled_back.append("back")})
    assert flow.failed_in is S.ARTIFACT_COMMIT_ENTER and flow.state is S.IDLE
    assert rolled_back == ["back"]
    assert [name for name, _ in runner.ran] == [
        "ArtifactCommit_Enter", "ArtifactCommit_Error", "ArtifactRollback_Enter", "ArtifactRollback_Leave",
        "ArtifactFailure_Enter", "ArtifactFailure_Leave"]
    assert dict(runner.ran)["ArtifactFailure_Enter"] == "ArtifactFailure_Enter"
    assert store.pending() is None


def test_a_failure_on_the_failure_path_stops_there_recorded(store: StateStore) -> None:
    store.begin_pending(UPDATE._replace(state="ArtifactInstall_Enter"))
    flow = flow_of(store, Runner(store))

    def broken_bootloader() -> None:
        raise DeviceError("cannot write the environment")

    with pytest.raises(DeviceError, match="cannot write the environment"):
        flow.walk(E.ROLLBACK, {S.ARTIFACT_ROLLBACK_ENTER: broken_bootloader})
    pending = store.pending()
    assert pending is not None and pending.state == "ArtifactRollback_Enter" and pending.failed
    # The next rollback finishes it.
    again = flow_of(store, Runner(store))
    assert again.state is S.ARTIFACT_ROLLBACK_ENTER
    again.walk(E.ROLLBACK)
    assert store.pending() is None


def test_a_commit_records_inconsistent_when_an_ignored_script_failed(store: StateStore) -> None:
    store.begin_pending(UPDATE)
    flow_of(store, Runner(store, fail=("ArtifactCommit_Leave",))).walk(E.COMMIT)
    assert store.current().artifact_name == "release-2_INCONSISTENT" and store.pending() is None


def test_an_empty_payload_is_recorded_at_once(store: StateStore) -> None:
    flow = flow_of(store, Runner(store))

    def download() -> Event:
        flow.prepare(PendingUpdate("factory-7", "", provides={"rootfs-image.version": "7"}, payload_type=""))
        return E.EMPTY_PAYLOAD

    flow.walk(E.INSTALL, {S.DOWNLOAD: download})
    assert flow.state is S.IDLE and store.pending() is None
    assert store.current().all_provides() == {"artifact_name": "factory-7", "rootfs-image.version": "7"}


def test_requests_refused_or_finished_first(store: StateStore) -> None:
    with pytest.raises(NothingToDoError, match="nothing to commit"):
        flow_of(store, Runner(store)).start(E.COMMIT)
    store.begin_pending(UPDATE)
    with pytest.raises(StateError, match=r"an update \(release-2\) is already installed") as caught:
        flow_of(store, Runner(store)).start(E.INSTALL)
    assert "pymender commit" in (caught.value.hint or "")
    store.update_pending(state="ArtifactInstall_Enter")
    said: list[str] = []
    flow = flow_of(store, Runner(store))
    flow.start(E.INSTALL, say=said.append)
    assert said == ["An earlier installation of release-2 was interrupted; undoing it first."]
    assert flow.state is S.IDLE and store.pending() is None


def walk_stopping(store: StateStore, event: Event, stop: str, work: dict[UpdateState, object] | None = None,
                  runner: Runner | None = None) -> Flow:
    flow = flow_of(store, runner or Runner(store))
    flow.walk(event, work, stop_before=stop_points([stop]))  # type: ignore[arg-type]
    return flow


def test_a_walk_stops_before_the_state_named_recorded_and_resume_goes_on(store: StateStore) -> None:
    runner = Runner(store)
    flow = flow_of(store, runner)
    work: list[str] = []

    def download() -> None:
        flow.prepare(UPDATE)

    flow.walk(E.INSTALL, {S.DOWNLOAD: download}, stop_before=stop_points(["ArtifactInstall_Enter"]))
    assert flow.stopped and flow.state is S.BEFORE_ARTIFACT_INSTALL_ENTER
    assert store.pending().state == "Before_ArtifactInstall_Enter"  # type: ignore[union-attr]
    assert [name for name, _ in runner.ran] == ["Download_Enter", "Download_Leave"]
    # Stopping there again does nothing; resume goes on with ArtifactInstall.
    again = walk_stopping(store, E.RESUME, "ArtifactInstall_Enter", runner=runner)
    assert again.stopped and again.trace == [] and len(runner.ran) == 2
    resumed = flow_of(store, runner)
    resumed.walk(E.RESUME, {S.ARTIFACT_INSTALL_ENTER: lambda: work.append("switch")})
    assert not resumed.stopped and resumed.state is S.BEFORE_ARTIFACT_COMMIT_ENTER and work == ["switch"]
    assert [name for name, _ in runner.ran][2:] == ["ArtifactInstall_Enter", "ArtifactInstall_Leave"]


@pytest.mark.parametrize(("stop", "state", "scripts"), [
    ("ArtifactCommit_Enter", S.BEFORE_ARTIFACT_COMMIT_ENTER, []),
    ("ArtifactCommit_Leave", S.BEFORE_ARTIFACT_COMMIT_LEAVE, ["ArtifactCommit_Enter"]),
    ("Cleanup", S.CLEANUP, ["ArtifactCommit_Enter", "ArtifactCommit_Leave"]),
])
def test_a_commit_stops_where_asked_and_resume_finishes_it(
        store: StateStore, stop: str, state: UpdateState, scripts: list[str]) -> None:
    store.begin_pending(UPDATE)
    runner = Runner(store)
    committed: list[str] = []
    flow = walk_stopping(store, E.COMMIT, stop, {S.ARTIFACT_COMMIT_ENTER: lambda: committed.append("x")}, runner)
    assert flow.stopped and flow.state is state and store.pending().state == state.value  # type: ignore[union-attr]
    assert [name for name, _ in runner.ran] == scripts
    assert store.current().artifact_name == "unknown"
    flow_of(store, runner).walk(E.RESUME, {S.ARTIFACT_COMMIT_ENTER: lambda: committed.append("x")})
    assert committed == ["x"] and store.pending() is None
    assert store.current().artifact_name == "release-2"
    assert [name for name, _ in runner.ran] == ["ArtifactCommit_Enter", "ArtifactCommit_Leave"]


def test_an_ignored_failure_before_a_stop_still_makes_the_record_inconsistent(store: StateStore) -> None:
    store.begin_pending(UPDATE)
    walk_stopping(store, E.COMMIT, "Cleanup", runner=Runner(store, fail=("ArtifactCommit_Leave",)))
    flow_of(store, Runner(store)).walk(E.RESUME)
    assert store.current().artifact_name == "release-2_INCONSISTENT"


@pytest.mark.parametrize(("stop", "state", "scripts"), [
    ("ArtifactRollback_Enter", S.ARTIFACT_ROLLBACK_ENTER, []),
    ("ArtifactFailure_Enter", S.ARTIFACT_FAILURE_ENTER, ["ArtifactRollback_Enter", "ArtifactRollback_Leave"]),
])
def test_a_failure_path_stops_before_its_scripts(
        store: StateStore, stop: str, state: UpdateState, scripts: list[str]) -> None:
    store.begin_pending(UPDATE._replace(state="ArtifactInstall_Enter"))
    runner = Runner(store)
    rolled_back: list[str] = []
    flow = walk_stopping(store, E.ROLLBACK, stop, {S.ARTIFACT_ROLLBACK_ENTER: lambda: rolled_back.append("x")},
                         runner)
    assert flow.stopped and flow.state is state and [name for name, _ in runner.ran] == scripts
    flow_of(store, runner).walk(E.RESUME, {S.ARTIFACT_ROLLBACK_ENTER: lambda: rolled_back.append("x")})
    assert store.pending() is None and rolled_back == ["x"]
    assert [name for name, _ in runner.ran] == ["ArtifactRollback_Enter", "ArtifactRollback_Leave",
                                                "ArtifactFailure_Enter", "ArtifactFailure_Leave"]


def test_a_commit_interrupted_at_its_end_is_finished_by_commit(store: StateStore) -> None:
    store.begin_pending(UPDATE._replace(state="Cleanup"))
    with pytest.raises(StateError, match="release-2 is committed, and that is not recorded yet"):
        flow_of(store, Runner(store)).start(E.ROLLBACK)
    flow_of(store, Runner(store)).walk(E.COMMIT)
    assert store.pending() is None and store.current().artifact_name == "release-2"


@pytest.mark.parametrize("name", ["Sideways", "Idle", "Download"])
def test_a_stored_state_the_table_does_not_know_is_damage(store: StateStore, name: str) -> None:
    store.begin_pending(UPDATE._replace(state=name))
    with pytest.raises(StateError, match=f"unknown state '{name}'") as caught:
        flow_of(store, Runner(store))
    assert "damaged" in (caught.value.hint or "")


def test_a_transition_the_table_does_not_have_is_a_programming_error(store: StateStore) -> None:
    with pytest.raises(RuntimeError, match="no transition from Idle on done"):
        flow_of(store, Runner(store)).advance(E.DONE)
