"""Update Modules under pymender, checked against Mender's client with a recording module.

The module (``modules/recorder.py``) records every call: the state, its arguments, its working
directory, the file tree it saw and the bytes of every stream. Each scenario's sequence of
calls is compared with :data:`MENDER`, a table written from Mender 5.x's client source:

- ``src/mender-update/standalone/standalone.cpp``: the standalone state machine (which state
  follows which on success and on failure, where ``commit``, ``rollback`` and ``resume`` start);
- ``src/mender-update/standalone/states.cpp``: the module calls in each state
  (``DoDownloadState``: ProvidePayloadFileSizes then Download or DownloadWithFileSizes;
  ``RebootAndRollbackQueryState``: NeedsArtifactReboot then SupportsRollback, auto-commit when
  rollback is not supported; ``RollbackQueryState``: SupportsRollback before ArtifactRollback,
  straight to ArtifactFailure without rollback support; every rollback followed by
  ArtifactFailure; a module failing in the query, ArtifactRollback or ArtifactFailure:
  ``RollbackFailed``, so ``SaveState`` records the update not rolled back; ``CleanupState``:
  Cleanup, the Artifact recorded with ``_INCONSISTENT`` when it failed without a rollback or
  when Cleanup itself failed);
- ``src/mender-update/update_module/v3/platform/c++17/fs_operations.cpp``: the file tree;
- ``src/mender-update/update_module/v3/update_module_download.cpp``: the stream-next protocol
  and the ``files/`` fallback;
- ``src/mender-update/update_module/v3/update_module.cpp``: the answers a query accepts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from module_rig import PAYLOAD, Rig, install_recorder

PPFS, DL, DLS = "ProvidePayloadFileSizes", "Download", "DownloadWithFileSizes"
INSTALL, REBOOT, ROLLBACK_Q = "ArtifactInstall", "NeedsArtifactReboot", "SupportsRollback"
COMMIT, ROLLBACK, FAILURE, CLEANUP = "ArtifactCommit", "ArtifactRollback", "ArtifactFailure", "Cleanup"

#: Mender 5.x standalone: scenario -> (module behaviour, calls of install, calls of the
#: command that follows (None: none), the installed Artifact's name at the end).
MENDER: dict[str, tuple[dict[str, Any], list[str], tuple[str, list[str]] | None, str]] = {
    # rollback supported: the install waits for the commit; the commit calls ArtifactCommit, Cleanup
    "rollback, commit": ({"answers": {ROLLBACK_Q: "Yes"}}, [PPFS, DL, INSTALL, REBOOT, ROLLBACK_Q],
                         ("commit", [COMMIT, CLEANUP]), "app-1"),
    # no rollback support: committed at once
    "no rollback": ({}, [PPFS, DL, INSTALL, REBOOT, ROLLBACK_Q, COMMIT, CLEANUP], None, "app-1"),
    "reboot, no rollback": ({"answers": {REBOOT: "Yes"}},
                            [PPFS, DL, INSTALL, REBOOT, ROLLBACK_Q, COMMIT, CLEANUP], None, "app-1"),
    # a user's rollback: the query, ArtifactRollback, then ArtifactFailure and Cleanup
    "rollback, rolled back": ({"answers": {ROLLBACK_Q: "Yes"}}, [PPFS, DL, INSTALL, REBOOT, ROLLBACK_Q],
                              ("rollback", [ROLLBACK_Q, ROLLBACK, FAILURE, CLEANUP]), "release-1"),
    # file sizes wanted
    "sizes": ({"answers": {PPFS: "Yes"}}, [PPFS, DLS, INSTALL, REBOOT, ROLLBACK_Q, COMMIT, CLEANUP], None,
              "app-1"),
    # failures, state by state
    "fail ProvidePayloadFileSizes": ({"fail": [PPFS]}, [PPFS, CLEANUP], None, "release-1"),
    "fail Download": ({"fail": [DL]}, [PPFS, DL, CLEANUP], None, "release-1"),
    "fail ArtifactInstall, rollback": ({"fail": [INSTALL], "answers": {ROLLBACK_Q: "Yes"}},
                                       [PPFS, DL, INSTALL, ROLLBACK_Q, ROLLBACK, FAILURE, CLEANUP], None,
                                       "release-1"),
    "fail ArtifactInstall, no rollback": ({"fail": [INSTALL]},
                                          [PPFS, DL, INSTALL, ROLLBACK_Q, FAILURE, CLEANUP], None,
                                          "app-1_INCONSISTENT"),
    "fail NeedsArtifactReboot": ({"fail": [REBOOT], "answers": {ROLLBACK_Q: "Yes"}},
                                 [PPFS, DL, INSTALL, REBOOT, ROLLBACK_Q, ROLLBACK, FAILURE, CLEANUP], None,
                                 "release-1"),
    "fail ArtifactCommit, rollback": ({"fail": [COMMIT], "answers": {ROLLBACK_Q: "Yes"}},
                                      [PPFS, DL, INSTALL, REBOOT, ROLLBACK_Q],
                                      ("commit", [COMMIT, ROLLBACK_Q, ROLLBACK, FAILURE, CLEANUP]), "release-1"),
    "fail ArtifactCommit, no rollback": ({"fail": [COMMIT]},
                                         [PPFS, DL, INSTALL, REBOOT, ROLLBACK_Q, COMMIT, ROLLBACK_Q, FAILURE,
                                          CLEANUP], None, "app-1_INCONSISTENT"),
    "fail ArtifactRollback": ({"fail": [INSTALL, ROLLBACK], "answers": {ROLLBACK_Q: "Yes"}},
                              [PPFS, DL, INSTALL, ROLLBACK_Q, ROLLBACK, FAILURE, CLEANUP], None,
                              "app-1_INCONSISTENT"),
    "fail SupportsRollback after a failure": ({"fail": [INSTALL, ROLLBACK_Q]},
                                              [PPFS, DL, INSTALL, ROLLBACK_Q, FAILURE, CLEANUP], None,
                                              "app-1_INCONSISTENT"),
    # ArtifactFailure failing: RollbackFailed, recorded not rolled back, however the rollback went
    "fail ArtifactFailure": ({"fail": [INSTALL, FAILURE], "answers": {ROLLBACK_Q: "Yes"}},
                             [PPFS, DL, INSTALL, ROLLBACK_Q, ROLLBACK, FAILURE, CLEANUP], None, "app-1_INCONSISTENT"),
    "fail ArtifactFailure in a user's rollback": ({"fail": [FAILURE], "answers": {ROLLBACK_Q: "Yes"}},
                                                  [PPFS, DL, INSTALL, REBOOT, ROLLBACK_Q],
                                                  ("rollback", [ROLLBACK_Q, ROLLBACK, FAILURE, CLEANUP]),
                                                  "app-1_INCONSISTENT"),
    # Cleanup failing: a committed update is recorded _INCONSISTENT, a rolled back one forgotten
    "fail Cleanup": ({"fail": [CLEANUP]}, [PPFS, DL, INSTALL, REBOOT, ROLLBACK_Q, COMMIT, CLEANUP], None,
                     "app-1_INCONSISTENT"),
    "fail Cleanup after a commit": ({"fail": [CLEANUP], "answers": {ROLLBACK_Q: "Yes"}},
                                    [PPFS, DL, INSTALL, REBOOT, ROLLBACK_Q], ("commit", [COMMIT, CLEANUP]),
                                    "app-1_INCONSISTENT"),
    "fail Cleanup after a rollback": ({"fail": [INSTALL, CLEANUP], "answers": {ROLLBACK_Q: "Yes"}},
                                      [PPFS, DL, INSTALL, ROLLBACK_Q, ROLLBACK, FAILURE, CLEANUP], None,
                                      "release-1"),
}


@pytest.fixture
def rig(tmp_path: Path, no_host_configuration: Path, monkeypatch: pytest.MonkeyPatch) -> Rig:
    rig = Rig(tmp_path, no_host_configuration, monkeypatch)
    install_recorder(rig.modules / "rec")
    return rig


@pytest.mark.parametrize("scenario", list(MENDER))
def test_each_scenario_calls_the_module_as_mender_does(rig: Rig, scenario: str) -> None:
    behaviour, install_calls, then, name = MENDER[scenario]
    rig.behave(behaviour)
    rig.device.mender_update("install", str(rig.artifact()))
    assert [c["state"] for c in rig.calls()] == install_calls
    if then is not None:
        command, calls = then
        rig.device.mender_update(command)
        assert [c["state"] for c in rig.calls()] == calls
    assert rig.device.mender_update("show-artifact")[1].strip() == name
    assert not rig.tree.exists()  # Cleanup removed it
    assert rig.device.store().pending() is None


def test_every_call_gets_the_state_and_the_tree_and_runs_in_the_tree(rig: Rig) -> None:
    rig.behave({"answers": {ROLLBACK_Q: "Yes"}})
    rig.device.mender_update("install", str(rig.artifact()))
    rig.device.mender_update("commit")
    for call in rig.calls():
        assert call["argv"] == [call["state"], str(rig.tree)]
        assert Path(call["cwd"]).resolve() == rig.tree.resolve()


def test_the_file_tree_is_laid_out_byte_for_byte_as_mender_does(rig: Rig) -> None:
    meta = {"b": 1, "A": [1, {"z": "\u00e9"}], "path": "/opt/x"}
    rig.device.mender_update("install", str(rig.artifact(meta_data=meta)))
    first = rig.calls()[0]
    assert first["state"] == PPFS
    tree = first["tree"]
    header_info = json.loads(tree["header/header-info"])
    assert tree == {
        "version": "3\n",
        "current_artifact_name": "release-1\n",
        "current_artifact_group": "",
        "current_device_type": "qemux86-64\n",
        "tmp/": None,
        "header/": None,
        "header/artifact_name": "app-1",
        "header/artifact_group": "",
        "header/payload_type": "rec",
        # nlohmann's dump(2): two-space indentation, keys in case-insensitive order, UTF-8 as is
        "header/meta-data": '{\n  "A": [\n    1,\n    {\n      "z": "\u00e9"\n    }\n  ],\n  "b": 1,\n'
                            '  "path": "/opt/x"\n}',
        "header/type-info": '{\n  "artifact_provides": {\n    "rootfs-image.rec.version": "app-1"\n  },\n'
                            '  "clears_artifact_provides": [\n    "rootfs-image.rec.*"\n  ],\n  "type": "rec"\n}',
        "header/header-info": json.dumps(header_info, indent=2, sort_keys=True),
    }
    assert header_info["artifact_provides"] == {"artifact_name": "app-1"}


def test_no_meta_data_is_null_as_mender_writes_it(rig: Rig) -> None:
    rig.device.mender_update("install", str(rig.artifact()))
    assert rig.calls()[0]["tree"]["header/meta-data"] == "null"


def test_streams_come_through_stream_next_in_order_with_sizes_when_asked(rig: Rig) -> None:
    files = {"a.txt": b"first\n", "b.bin": PAYLOAD, "empty": b""}
    rig.behave({"answers": {PPFS: "Yes"}})
    rig.device.mender_update("install", str(rig.artifact(files=files)))
    download = rig.calls()[1]
    assert download["state"] == DLS
    assert download["tree"]["stream-next"] == "<fifo>"
    streams = download["streams"]
    assert list(streams) == ["streams/a.txt 6\n", f"streams/b.bin {len(PAYLOAD)}\n", "streams/empty 0\n"]
    assert [v.encode("latin-1") for v in streams.values()] == list(files.values())


def test_without_file_sizes_stream_next_names_only_the_stream(rig: Rig) -> None:
    rig.device.mender_update("install", str(rig.artifact()))
    download = rig.calls()[1]
    assert list(download["streams"]) == ["streams/payload.bin\n"]
    assert download["streams"]["streams/payload.bin\n"].encode("latin-1") == PAYLOAD


def test_a_module_that_does_not_take_the_streams_gets_files(rig: Rig) -> None:
    rig.behave({"files": True})
    rig.device.mender_update("install", str(rig.artifact(files={"a.txt": b"one", "b.txt": b"two"})))
    install = rig.calls()[2]
    assert install["state"] == INSTALL
    assert install["tree"]["files/a.txt"] == "one" and install["tree"]["files/b.txt"] == "two"
    assert "stream-next" not in install["tree"] and "streams/" not in install["tree"]


def test_reboot_is_reported_and_exit_code_4_on_request(rig: Rig) -> None:
    rig.behave({"answers": {REBOOT: "Yes", ROLLBACK_Q: "Yes"}})
    code, out, _ = rig.device.mender_update("install", "--reboot-exit-code", str(rig.artifact()))
    assert code == 4
    assert out.splitlines() == ["Installing artifact...", "Installed, but not committed.",
                                "Use 'commit' to update, or 'rollback' to roll back the update.",
                                "At least one payload requested a reboot of the device it updated."]
    rig.device.mender_update("rollback")
    rig.behave({"answers": {REBOOT: "Automatic"}})
    code, out, _ = rig.device.mender_update("install", "--reboot-exit-code", str(rig.artifact("app-2")))
    assert code == 4 and "Installed and committed." in out.splitlines()


def test_no_reboot_means_exit_0_and_no_reboot_line(rig: Rig) -> None:
    rig.behave({"answers": {ROLLBACK_Q: "Yes"}})
    code, out, _ = rig.device.mender_update("install", "--reboot-exit-code", str(rig.artifact()))
    assert code == 0 and "reboot" not in out
    code, out, _ = rig.device.mender_update("commit")
    assert (code, out) == (0, "Committed.\n")


def test_auto_commit_result_lines(rig: Rig) -> None:
    code, out, _ = rig.device.mender_update("install", str(rig.artifact()))
    assert (code, out) == (0, "Installing artifact...\nUpdate Module doesn't support rollback. Committing "
                              "immediately.\nInstalled and committed.\n")
    assert rig.device.mender_update("show-provides")[1].splitlines() == [
        "artifact_name=app-1", "rootfs-image.rec.version=app-1"]


def test_a_failure_without_rollback_says_so_and_records_inconsistent(rig: Rig) -> None:
    rig.behave({"fail": [INSTALL]})
    code, out, err = rig.device.mender_update("install", str(rig.artifact()))
    assert code == 1
    assert out.splitlines() == ["Installing artifact...", "Installation failed.",
                                "Update Module does not support rollback. System may be in an inconsistent state."]
    assert "failed in ArtifactInstall (exit code 1)" in err


#: The Artifact's state scripts the scenarios below record (each writes its name to the log).
SCRIPTS = [f"{state}_{action}" for state in ("ArtifactInstall", "ArtifactCommit", "ArtifactRollback", "ArtifactFailure")
           for action in ("Enter", "Leave", "Error")]


@pytest.mark.parametrize(("behaviour", "command", "expected"), [
    # standalone.cpp: ArtifactInstall_Error, then RollbackQuery; without rollback support
    # (NothingToDo) on to save_artifact_failure: no ArtifactRollback state, no scripts of it
    ({"fail": [INSTALL]}, None,
     ["ArtifactInstall_Enter", INSTALL, "ArtifactInstall_Error", ROLLBACK_Q,
      "ArtifactFailure_Enter", FAILURE, "ArtifactFailure_Leave", CLEANUP]),
    ({"fail": [INSTALL], "answers": {ROLLBACK_Q: "Yes"}}, None,
     ["ArtifactInstall_Enter", INSTALL, "ArtifactInstall_Error", ROLLBACK_Q,
      "ArtifactRollback_Enter", ROLLBACK, "ArtifactRollback_Leave",
      "ArtifactFailure_Enter", FAILURE, "ArtifactFailure_Leave", CLEANUP]),
    # ArtifactRollback failing: its Leave scripts still run (Failure -> artifact_rollback_leave)
    ({"fail": [INSTALL, ROLLBACK], "answers": {ROLLBACK_Q: "Yes"}}, None,
     ["ArtifactInstall_Enter", INSTALL, "ArtifactInstall_Error", ROLLBACK_Q,
      "ArtifactRollback_Enter", ROLLBACK, "ArtifactRollback_Leave",
      "ArtifactFailure_Enter", FAILURE, "ArtifactFailure_Leave", CLEANUP]),
    # auto-commit
    ({}, None,
     ["ArtifactInstall_Enter", INSTALL, "ArtifactInstall_Leave", REBOOT, ROLLBACK_Q,
      "ArtifactCommit_Enter", COMMIT, "ArtifactCommit_Leave", CLEANUP]),
    # a user's rollback: RollbackQuery, the rollback, then always the ArtifactFailure state
    ({"answers": {ROLLBACK_Q: "Yes"}}, "rollback",
     [ROLLBACK_Q, "ArtifactRollback_Enter", ROLLBACK, "ArtifactRollback_Leave",
      "ArtifactFailure_Enter", FAILURE, "ArtifactFailure_Leave", CLEANUP]),
    # a commit failing without rollback support
    ({"fail": [COMMIT]}, None,
     ["ArtifactInstall_Enter", INSTALL, "ArtifactInstall_Leave", REBOOT, ROLLBACK_Q,
      "ArtifactCommit_Enter", COMMIT, "ArtifactCommit_Error", ROLLBACK_Q,
      "ArtifactFailure_Enter", FAILURE, "ArtifactFailure_Leave", CLEANUP]),
], ids=["install fails, no rollback", "install fails, rollback", "rollback fails", "auto-commit",
        "user's rollback", "commit fails, no rollback"])
def test_state_scripts_run_around_the_module_calls_as_mender_runs_them(
        rig: Rig, behaviour: dict[str, Any], command: str | None, expected: list[str]) -> None:
    rig.behave(behaviour)
    rig.device.mender_update("install", str(rig.artifact(scripts=rig.recording_scripts(*SCRIPTS))))
    calls = [c["state"] for c in rig.calls() if c["state"] not in (PPFS, DL)]
    if command is not None:
        rig.device.mender_update(command)
        calls = [c["state"] for c in rig.calls()]
    assert calls == expected


@pytest.mark.parametrize(("behaviour", "lines", "name"), [
    ({"fail": [INSTALL, FAILURE], "answers": {ROLLBACK_Q: "Yes"}},
     ["Installation failed.", "Rollback failed. System may be in an inconsistent state."], "app-1_INCONSISTENT"),
    ({"fail": [INSTALL, ROLLBACK_Q]},
     ["Installation failed.", "Rollback failed. System may be in an inconsistent state."], "app-1_INCONSISTENT"),
    ({"fail": [CLEANUP]}, ["Update Module doesn't support rollback. Committing immediately.",
                           "Installed and committed.", "Cleanup failed."], "app-1_INCONSISTENT"),
])
def test_a_module_failing_on_the_failure_path_or_in_cleanup_says_so(
        rig: Rig, behaviour: dict[str, Any], lines: list[str], name: str) -> None:
    """actions.cpp's result lines: RollbackFailed, CleanupFailed (the operation then counts as
    done); the exit code is 1 and the Artifact is recorded with _INCONSISTENT."""
    rig.behave(behaviour)
    code, out, err = rig.device.mender_update("install", str(rig.artifact()))
    assert code == 1 and out.splitlines() == ["Installing artifact...", *lines], err
    assert rig.device.mender_update("show-artifact")[1] == f"{name}\n"
    assert rig.device.mender_update("show-provides")[1].splitlines()[0] == f"artifact_name={name}"


@pytest.mark.parametrize("supports", ["Yes", "No"])
def test_resume_of_an_install_interrupted_inside_it_rolls_back_without_asking(rig: Rig, supports: str) -> None:
    """standalone.cpp, SetStartStateFromStateData: ArtifactInstall_Enter starts at
    save_artifact_rollback_state_, past RollbackQuery: ArtifactRollback is called at once,
    whatever the module would answer, and the update counts as rolled back."""
    rig.behave({"answers": {ROLLBACK_Q: supports}})
    rig.device.mender_update("install", "--stop-before", "ArtifactInstall_Enter", str(rig.artifact()))
    rig.calls()
    rig.device.store().update_pending(state="ArtifactInstall_Enter")  # as a power cut inside it leaves it
    code, out, _ = rig.device.mender_update("resume")
    assert [c["state"] for c in rig.calls()] == [ROLLBACK, FAILURE, CLEANUP]
    assert (code, out) == (0, "Rolled back.\n")
    assert rig.device.mender_update("show-artifact")[1] == "release-1\n"


def test_a_cleanup_run_again_by_resume_that_fails_records_inconsistent(rig: Rig) -> None:
    """Resumed in Cleanup (save_cleanup_state_), the module's Cleanup runs again; its failure
    marks the update as CleanupState does. Stopped before Cleanup again, nothing runs."""
    rig.behave({"answers": {ROLLBACK_Q: "Yes"}})
    rig.device.mender_update("install", str(rig.artifact()))
    rig.device.mender_update("commit", "--stop-before", "Cleanup")
    assert [c["state"] for c in rig.calls()][-1] == COMMIT
    assert rig.device.mender_update("resume", "--stop-before", "Cleanup")[0] == 0
    assert rig.calls() == []
    rig.behave({"fail": [CLEANUP]})
    code, out, _ = rig.device.mender_update("resume")
    assert [c["state"] for c in rig.calls()] == [CLEANUP]
    assert code == 1 and out.splitlines()[-1] == "Cleanup failed."
    assert rig.device.mender_update("show-artifact")[1] == "app-1_INCONSISTENT\n"
    assert rig.device.store().pending() is None


def test_a_failed_install_rolled_back_leaves_the_device_as_it_was(rig: Rig) -> None:
    rig.behave({"fail": [INSTALL], "answers": {ROLLBACK_Q: "Yes"}})
    code, out, _ = rig.device.mender_update("install", str(rig.artifact()))
    assert code == 1 and out.splitlines()[-1] == "Rolled back."
    assert rig.device.mender_update("show-provides")[1].splitlines() == ["artifact_name=release-1"]


def test_a_user_rollback_is_refused_when_the_module_cannot_roll_back(rig: Rig) -> None:
    rig.device.mender_update("install", "--stop-before", "ArtifactCommit_Enter", str(rig.artifact()))
    assert [c["state"] for c in rig.calls()] == [PPFS, DL, INSTALL, REBOOT, ROLLBACK_Q]
    code, _, err = rig.device.mender_update("rollback")
    assert code == 1 and "does not support rollback" in err
    assert [c["state"] for c in rig.calls()] == [ROLLBACK_Q]
    assert rig.device.store().pending() is not None  # nothing changed
    assert rig.device.mender_update("commit")[0] == 0
    assert [c["state"] for c in rig.calls()] == [COMMIT, CLEANUP]


def test_resume_after_a_stop_before_install_runs_the_rest(rig: Rig) -> None:
    rig.behave({"answers": {ROLLBACK_Q: "Yes"}})
    rig.device.mender_update("install", "--stop-before", "ArtifactInstall_Enter", str(rig.artifact()))
    assert [c["state"] for c in rig.calls()] == [PPFS, DL]
    assert rig.device.mender_update("resume")[0] == 0
    assert [c["state"] for c in rig.calls()] == [INSTALL, REBOOT, ROLLBACK_Q]
    assert rig.device.mender_update("resume")[0] == 0  # resuming an installed update commits it
    assert [c["state"] for c in rig.calls()] == [COMMIT, CLEANUP]
    assert rig.device.mender_update("show-artifact")[1] == "app-1\n"


def test_the_pymender_command_installs_and_commits_too(rig: Rig) -> None:
    rig.behave({"answers": {ROLLBACK_Q: "Yes", REBOOT: "Yes"}})
    code, out, _ = rig.device.cli("install", "--reboot-exit-code", "--no-progress", str(rig.artifact()))
    assert code == 4 and "with the rec Update Module; not committed yet" in out
    assert rig.device.cli("commit")[0] == 0
    assert rig.device.cli("show-artifact")[1] == "app-1\n"


# --- refusals and broken modules ------------------------------------------------------------------


def test_a_missing_module_refuses_the_artifact_naming_the_type(rig: Rig) -> None:
    before = rig.device.snapshot()
    code, _, err = rig.device.mender_update("install", str(rig.artifact(payload_type="nosuch")))
    assert code == 1 and "no Update Module for the payload type 'nosuch'" in err
    assert rig.device.snapshot() == before and not rig.tree.exists()


def test_a_module_that_is_not_executable_is_not_run(rig: Rig) -> None:
    (rig.modules / "rec").chmod(0o644)
    code, _, err = rig.device.mender_update("install", str(rig.artifact()))
    assert code == 1 and "none executable" in err and rig.calls() == []


def test_the_pymender_directory_is_searched_after_menders(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    from pymender.device import config

    own = rig.tmp / "own-modules"
    own.mkdir()
    install_recorder(own / "mine")
    monkeypatch.setattr(config, "PYMENDER_MODULES_DIR", own)
    assert rig.device.mender_update("install", str(rig.artifact(payload_type="mine")))[0] == 0
    assert rig.calls()[0]["argv"][0] == PPFS


def test_a_rootfs_image_module_never_shadows_the_built_in_one(rig: Rig) -> None:
    from device_sim import release

    (rig.modules / "rootfs-image").write_text("#!/bin/sh\necho called >> \"$RECORDER_LOG\"\nexit 1\n")
    (rig.modules / "rootfs-image").chmod(0o755)
    artifact, _ = release(rig.tmp / "rootfs", "release-2", seed=3)
    code, out, _ = rig.device.mender_update("install", str(artifact))
    assert code == 0 and not rig.log.exists()


@pytest.mark.parametrize("answer", ["maybe", "Yes\nNo"])
def test_a_query_answered_wrongly_fails_the_install(rig: Rig, answer: str) -> None:
    rig.behave({"answers": {REBOOT: answer, ROLLBACK_Q: "Yes"}})
    code, _, err = rig.device.mender_update("install", str(rig.artifact()))
    assert code == 1 and "NeedsArtifactReboot" in err
    assert [c["state"] for c in rig.calls()][-4:] == [ROLLBACK_Q, ROLLBACK, FAILURE, CLEANUP]
    assert rig.device.mender_update("show-artifact")[1] == "release-1\n"


def test_a_module_that_stops_reading_its_stream_fails_the_download(rig: Rig) -> None:
    rig.behave({"stop_after": 1000})
    before = rig.device.snapshot()
    code, out, err = rig.device.mender_update("install", str(rig.artifact()))
    assert code == 1 and "Streaming failed." in out
    # the stream fits in the pipe: the module's next read of stream-next never comes (with a
    # larger stream the write itself fails: see the benchmark's and the fault tests' modules)
    assert "without reading stream-next to its end" in err
    assert [c["state"] for c in rig.calls()] == [PPFS, DL, CLEANUP]
    assert rig.device.snapshot() == before and not rig.tree.exists()


def test_a_module_that_skips_the_last_read_of_stream_next_fails(rig: Rig) -> None:
    rig.behave({"skip_last": True})
    code, _, err = rig.device.mender_update("install", str(rig.artifact()))
    assert code == 1 and "without reading stream-next to its end" in err


def test_a_module_that_hangs_is_stopped_after_module_timeout_seconds(rig: Rig) -> None:
    (rig.device.mender_host / "etc-mender" / "mender.conf").write_text(json.dumps({
        **json.loads((rig.device.mender_host / "etc-mender" / "mender.conf").read_text()),
        "ModuleTimeoutSeconds": 1}))
    rig.behave({"hang": [INSTALL], "answers": {ROLLBACK_Q: "Yes"}})
    started = time.monotonic()
    code, _, err = rig.device.mender_update("install", str(rig.artifact()))
    assert code == 1 and "did not finish ArtifactInstall within 1 s (ModuleTimeoutSeconds)" in err
    assert time.monotonic() - started < 30
    assert [c["state"] for c in rig.calls()][-4:] == [ROLLBACK_Q, ROLLBACK, FAILURE, CLEANUP]


def test_a_module_that_hangs_in_download_is_stopped(rig: Rig) -> None:
    (rig.device.mender_host / "etc-mender" / "mender.conf").write_text(json.dumps({
        **json.loads((rig.device.mender_host / "etc-mender" / "mender.conf").read_text()),
        "ModuleTimeoutSeconds": 1}))
    rig.behave({"files": True, "hang": [DL]})
    code, _, err = rig.device.mender_update("install", str(rig.artifact()))
    assert code == 1 and "did not finish Download within 1 s" in err
    assert [c["state"] for c in rig.calls()] == [PPFS, DL, CLEANUP]


def test_a_module_killed_by_a_signal_is_named(rig: Rig) -> None:
    (rig.modules / "rec").write_text("#!/bin/sh\n[ \"$1\" = ArtifactInstall ] && kill -9 $$\nexit 0\n")
    code, _, err = rig.device.mender_update("install", str(rig.artifact()))
    assert code == 1 and "killed by signal 9 in ArtifactInstall" in err
    assert rig.device.mender_update("show-artifact")[1] == "app-1_INCONSISTENT\n"


def test_meta_data_that_is_not_a_json_object_is_refused(rig: Rig) -> None:
    from artifact_factory import fix_manifest, join_members, member, split_members, tar_bytes

    artifact = rig.artifact()
    members = split_members(artifact.read_bytes())
    header = member(members, "header.tar")
    import io
    import tarfile

    entries: list[tarfile.TarInfo | tuple[str, bytes]] = []
    with tarfile.open(fileobj=io.BytesIO(header.data)) as tar:
        for info in tar.getmembers():
            data = tar.extractfile(info).read() if info.isfile() else b""  # type: ignore[union-attr]
            entries.append((info.name, data))
    entries.append(("headers/0000/meta-data", b"not json"))
    header.data = tar_bytes(entries)
    broken = rig.tmp / "broken.mender"
    fix_manifest(members)
    broken.write_bytes(join_members(members))
    before = rig.device.snapshot()
    code, _, err = rig.device.mender_update("install", str(broken))
    assert code == 1 and "meta-data" in err
    assert rig.calls() == [] and rig.device.snapshot() == before


def test_a_module_that_never_opens_its_stream_fails_the_download(rig: Rig) -> None:
    (rig.modules / "rec").write_text(
        "#!/bin/sh\n[ \"$1\" = Download ] && cat \"$2/stream-next\" > /dev/null\nexit 0\n")
    before = rig.device.snapshot()
    code, out, err = rig.device.mender_update("install", str(rig.artifact()))
    assert code == 1 and "Streaming failed." in out
    assert "read stream-next but returned from Download without opening streams/payload.bin" in err
    assert rig.device.snapshot() == before and not rig.tree.exists()
