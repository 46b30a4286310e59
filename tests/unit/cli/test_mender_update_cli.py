"""``mender-update``: Mender 5.x's subcommands, options, result lines and exit codes, on a
simulated device laid out as meta-mender lays it out (device_sim: the configuration split over
Mender's two files, Mender's data store, no pymender file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from device_sim import SimDevice, release
from helpers import REPO
from pymender import __version__
from pymender.cli.mender_update import INSTALLED, REBOOT, SERVER_COMMANDS, build_parser

META_MENDER = REPO / "tests" / "fixtures" / "meta-mender"
MENDER_STORES = REPO / "tests" / "fixtures" / "mender-store"
INSTALLED_LINES = ["Installing artifact...", *INSTALLED.split("\n"), REBOOT]


@pytest.fixture
def device(tmp_path: Path, no_host_configuration: Path) -> SimDevice:
    device = SimDevice.create(tmp_path / "device", mender_host=no_host_configuration)
    (device.data_dir / "bootstrap.mender").write_bytes((META_MENDER / "bootstrap-qemux86-64.mender").read_bytes())
    return device


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    return release(tmp_path / "artifacts", "release-2", seed=2)[0]


def lines(output: str) -> list[str]:
    return output.splitlines()


def one_error_line(err: str, *words: str) -> None:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("mender-update: error: ")]
    assert len(errors) == 1, err
    for word in words:
        assert word in errors[0], err


def test_a_mender_device_as_it_is(device: SimDevice, artifact: Path) -> None:
    """The bootstrap Artifact first; install, reboot, commit stopped and resumed; an install
    stopped and resumed, then rolled back; nothing left: exit 2. Only Mender's lines on stdout."""
    assert not (device.root / "pymender.conf").exists()
    code, out, err = device.mender_update("show-artifact")
    assert (code, out) == (0, "release-1\n") and "installing the bootstrap Artifact" in err
    assert not (device.data_dir / "bootstrap.mender").exists()
    code, out, _ = device.mender_update("show-provides")
    assert code == 0 and "rootfs-image.version=release-1" in lines(out) and "artifact_name=release-1" in lines(out)

    code, out, err = device.mender_update("install", str(artifact))
    assert (code, lines(out)) == (0, INSTALLED_LINES), err
    assert "pymender" not in out
    device.boot()
    assert device.mender_update("commit", "--stop-before", "ArtifactCommit_Enter")[:2] == (0, "")
    assert device.store().pending() is not None
    assert device.mender_update("resume")[:2] == (0, "Committed.\n")
    assert device.mender_update("show-artifact")[:2] == (0, "release-2\n")

    env = device.read_env()
    code, out, _ = device.mender_update("install", "--stop-before", "ArtifactInstall_Enter", str(artifact))
    assert (code, lines(out)) == (0, ["Installing artifact...", "Streamed to storage, but not installed/enabled."])
    assert device.read_env() == env
    code, out, _ = device.mender_update("resume", "--reboot-exit-code")
    assert (code, lines(out)) == (4, INSTALLED_LINES[1:])
    assert device.read_env()["upgrade_available"] == "1"
    assert device.mender_update("rollback")[:2] == (0, "Rolled back.\n")
    assert device.read_env()["mender_boot_part"] == env["mender_boot_part"]
    for command in ("commit", "rollback", "resume"):
        code, out, err = device.mender_update(command)
        assert (code, out) == (2, "No update in progress.\n"), command
        one_error_line(err, "no update in progress")


def test_install_with_the_reboot_exit_code(device: SimDevice, artifact: Path) -> None:
    code, out, _ = device.mender_update("install", "--reboot-exit-code", str(artifact))
    assert (code, lines(out)) == (4, INSTALLED_LINES)


def test_commit_before_the_reboot_abandons_the_update_as_mender_5_does(device: SimDevice, artifact: Path) -> None:
    env = device.read_env()
    device.mender_update("install", str(artifact))
    code, out, err = device.mender_update("commit")
    assert (code, lines(out)) == (1, ["Committing failed.", "Rolled back."])
    one_error_line(err, "release-2 was not committed")
    assert device.read_env() == env and device.store().pending() is None
    assert device.mender_update("show-artifact")[:2] == (0, "release-1\n")


def test_a_failed_trial_fails_the_commit(device: SimDevice, artifact: Path) -> None:
    device.mender_update("install", str(artifact))
    device.boot()
    device.boot()  # rebooted again before the commit: the bootloader went back
    code, out, err = device.mender_update("commit")
    assert (code, lines(out)) == (1, ["Committing failed.", "Rolled back."])
    one_error_line(err, "did not stay up")


def test_a_refused_artifact_leaves_the_system_not_modified(device: SimDevice, tmp_path: Path) -> None:
    device.mender_update("show-artifact")
    wrong, _ = release(tmp_path / "wrong", "release-9", seed=9, device_types=("raspberrypi4",))
    before = device.snapshot()
    code, out, err = device.mender_update("install", str(wrong))
    assert (code, lines(out)) == (1, ["Installing artifact...", "Streaming failed.", "System not modified."])
    one_error_line(err, "raspberrypi4")
    assert device.snapshot() == before


def test_an_install_over_a_waiting_update_is_refused(device: SimDevice, artifact: Path) -> None:
    device.mender_update("install", str(artifact))
    before = device.snapshot()
    code, out, err = device.mender_update("install", str(artifact))
    assert (code, lines(out)) == (1, ["System not modified."])
    one_error_line(err, "already installed and waiting for a commit", "mender-update commit")
    assert device.snapshot() == before


def _script(directory: Path, name: str, code: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\nexit {code}\n")
    path.chmod(0o755)
    return path


def test_a_failed_installation_is_rolled_back(device: SimDevice, tmp_path: Path) -> None:
    artifact, _ = release(tmp_path / "a", "release-2", seed=2,
                          scripts=[_script(tmp_path / "s", "ArtifactInstall_Leave_01", 1)])
    code, out, _ = device.mender_update("install", str(artifact))
    assert (code, lines(out)) == (1, ["Installing artifact...", "Installation failed.", "Rolled back."])


def test_a_failed_post_commit_step_is_reported_and_exits_1(device: SimDevice, tmp_path: Path) -> None:
    artifact, _ = release(tmp_path / "a", "release-2", seed=2,
                          scripts=[_script(tmp_path / "s", "ArtifactCommit_Leave_01", 1)])
    device.mender_update("install", str(artifact))
    device.boot()
    code, out, _ = device.mender_update("commit")
    assert (code, lines(out)) == (1, ["Committed.", "One or more post-commit steps failed."])
    assert device.mender_update("show-artifact")[:2] == (0, "release-2_INCONSISTENT\n")


def test_an_artifact_with_an_empty_payload(device: SimDevice) -> None:
    device.mender_update("show-artifact")
    code, out, _ = device.mender_update("install", str(META_MENDER / "bootstrap-qemux86-64.mender"))
    assert (code, lines(out)) == (0, ["Installing artifact...", "Artifact with empty payload. Committing immediately.",
                                      "Installed and committed."])


@pytest.mark.parametrize("command", ["install x.mender", "commit", "rollback", "resume"])
def test_an_unknown_stop_state_is_refused_before_anything(device: SimDevice, command: str) -> None:
    before = device.snapshot()
    code, out, err = device.mender_update(*command.split(), "--stop-before", "ArtifactReboot_Enter")
    assert (code, out) == (1, "")
    one_error_line(err, "cannot stop before ArtifactReboot_Enter", "ArtifactCommit_Leave")
    assert device.snapshot() == before and (device.data_dir / "bootstrap.mender").exists()


@pytest.mark.parametrize("command", sorted(SERVER_COMMANDS))
def test_server_commands_say_managed_mode_is_not_available(device: SimDevice, command: str) -> None:
    code, out, err = device.mender_update(command)
    assert (code, out) == (1, "")
    one_error_line(err, f"'{command}' is not available", "managed mode is not available")


def test_global_options(device: SimDevice, artifact: Path, tmp_path: Path) -> None:
    """-c and -b name Mender's two files, -d the data store, -L the log file, -l Mender's
    level names."""
    moved = tmp_path / "moved"
    moved.mkdir()
    main, fallback = moved / "main.conf", moved / "fallback.conf"
    main.write_bytes(device.config_path.read_bytes())
    fallback.write_bytes(device.fallback_config_path.read_bytes())
    device.config_path.unlink()
    device.fallback_config_path.unlink()
    store = moved / "store"
    device.data_dir.rename(store)
    log = tmp_path / "update.log"
    code, out, err = device.mender_update("-c", str(main), "-b", str(fallback), "-d", str(store), "-L", str(log),
                                          "-l", "trace", "install", str(artifact))
    assert (code, lines(out)) == (0, INSTALLED_LINES) and err == ""
    text = log.read_text()
    assert f"data store {store} (as configured" in text and "Writing release-2" in text
    assert (store / "store.json").exists() and not (store / "bootstrap.mender").exists()
    for level in ("debug", "info", "warning", "error", "fatal"):
        assert build_parser().parse_args(["-l", level, "show-artifact"]).log_level == level
    code, out, err = device.mender_update("-l", "verbose", "show-artifact")
    assert code == 1 and out == ""
    one_error_line(err, "invalid choice: 'verbose'")


def test_conflicting_keys_in_mender_s_two_files_are_one_error(device: SimDevice) -> None:
    document = json.loads(device.fallback_config_path.read_text())
    device.fallback_config_path.write_text(json.dumps({**document, "ArtifactVerifyKeys": ["/k.pem"]}))
    device.write_config(device.running, ArtifactVerifyKey="/k.pem")
    device.fallback_config_path.write_text(json.dumps({**document, "ArtifactVerifyKeys": ["/k.pem"]}))
    before = device.snapshot()
    code, out, err = device.mender_update("show-artifact")
    assert (code, out) == (1, "")
    one_error_line(err, '"ArtifactVerifyKeys" is set in', '"ArtifactVerifyKey" in')
    assert device.snapshot() == before and (device.data_dir / "bootstrap.mender").exists()


@pytest.mark.parametrize(("store", "words"), [
    ("committed.mender-store", ()),
    (None, ("not a readable LMDB store",)),
])
def test_mender_s_store_on_first_use(device: SimDevice, store: str | None, words: tuple[str, ...]) -> None:
    """Read before the bootstrap Artifact is considered; a store that cannot be taken over, or
    cannot be read, is one error and changes nothing."""
    target = device.data_dir / "mender-store"
    target.write_bytes((MENDER_STORES / store).read_bytes() if store else b"\xff" * 8192)
    before = device.snapshot()
    code, out, err = device.mender_update("show-artifact")
    if not words:
        assert (code, out) == (0, "release-2\n")
        assert not (device.data_dir / "bootstrap.mender").exists()  # not needed: removed
        return
    assert (code, out) == (1, "")
    one_error_line(err, *words)
    assert device.snapshot() == before and (device.data_dir / "bootstrap.mender").exists()


def test_help_and_version() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    run = [sys.executable, "-c", "from pymender.cli.mender_update import run; run()"]
    done = subprocess.run([*run, "--help"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0
    for words in ("install", "commit", "rollback", "resume", "show-artifact", "show-provides", "--stop-before",
                  "--fallback-config", "--datastore", "--log-file", "4  reboot required", "managed mode"):
        assert words in done.stdout, words
    done = subprocess.run([*run, "--version"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, f"{__version__} (pymender)")


# --- the update Mender's client installed: taken over ----------------------------------------------


def _installed_by_mender(device: SimDevice, artifacts: Path) -> None:
    """What Mender's client leaves after its install: the image in B, the bootloader trying B,
    its store (written by the real client) holding the update, waiting for the commit."""
    _, image = release(artifacts, "release-2", seed=2)
    with device.part_b.open("r+b") as partition:
        partition.write(image)
    device.env().write({"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1",
                        "bootcount": "0"})
    (device.data_dir / "mender-store").write_bytes((MENDER_STORES / "installed.mender-store").read_bytes())


def test_the_update_mender_installed_is_committed_after_the_reboot(device: SimDevice, tmp_path: Path) -> None:
    """A device moving to pymender by an update Mender's client installed: the new system's
    mender-update commits it."""
    expected = json.loads((MENDER_STORES / "expected.json").read_text())
    _installed_by_mender(device, tmp_path / "a")
    assert device.boot() == device.part_b
    # Meanwhile the installed Artifact is what it was, and the bootstrap Artifact waits.
    assert device.mender_update("show-artifact")[:2] == (0, "release-1\n")
    assert (device.data_dir / "bootstrap.mender").exists() and not (device.data_dir / "store.json").exists()
    code, out, err = device.mender_update("commit")
    assert (code, lines(out)) == (0, ["Committed."]), err
    assert "Took over the update of release-2 that Mender's client installed" in err
    assert device.mender_update("show-artifact")[:2] == (0, "release-2\n")
    assert not (device.data_dir / "bootstrap.mender").exists()  # a name is recorded: removed unread
    code, out, _ = device.mender_update("show-provides")
    assert {f"{key}={value}" for key, value in expected["provides"].items()} <= set(lines(out))
    assert device.read_env()["upgrade_available"] == "0"
    assert (device.data_dir / "mender-store").read_bytes() == (MENDER_STORES / "installed.mender-store").read_bytes()


def test_the_update_mender_installed_can_be_rolled_back(device: SimDevice, tmp_path: Path) -> None:
    _installed_by_mender(device, tmp_path / "a")
    assert device.mender_update("rollback")[:2] == (0, "Rolled back.\n")
    assert device.read_env()["mender_boot_part"] == "2" and device.read_env()["upgrade_available"] == "0"
    assert device.boot() == device.part_a


# --- the result lines, from the walk ---------------------------------------------------------------


def _flow(tmp_path: Path, trace: list[tuple[str, str, str]], *, failed_in: str | None = None,
          state: str = "Idle", ignored: bool = False, stopped: bool = False) -> object:
    from pymender.device.flow import Event, Flow, UpdateState
    from pymender.device.store import StateStore
    from pymender.errors import ScriptError

    flow = Flow(StateStore(tmp_path / "store", artifact_info=None), lambda pending: None)  # type: ignore[arg-type,return-value]
    flow.trace = [(UpdateState(a), Event(e), UpdateState(b)) for a, e, b in trace]
    flow.state, flow.stopped = UpdateState(state), stopped
    if failed_in is not None:
        flow.failure, flow.failed_in = RuntimeError("x"), UpdateState(failed_in)
    if ignored:
        flow.ignored = [ScriptError("x")]
    return flow


ROLLED_BACK_TO_REST = [("ArtifactRollback_Enter", "done", "ArtifactFailure_Enter"),
                       ("ArtifactFailure_Enter", "done", "Cleanup"), ("Cleanup", "done", "Idle")]


@pytest.mark.parametrize(("command", "trace", "options", "failed", "expected"), [
    ("install", [("Idle", "install", "Download"), ("Download", "failed", "Idle")], {"failed_in": "Download"}, True,
     ["Streaming failed.", "System not modified."]),
    ("install", [("Idle", "install", "Download"), ("Download", "done", "Before_ArtifactInstall_Enter"),
                 ("Before_ArtifactInstall_Enter", "done", "ArtifactInstall_Enter"),
                 ("ArtifactInstall_Enter", "failed", "ArtifactRollback_Enter"), *ROLLED_BACK_TO_REST],
     {"failed_in": "ArtifactInstall_Enter"}, True, ["Installation failed.", "Rolled back."]),
    # The failure path itself failed: the rollback did not finish.
    ("commit", [("Before_ArtifactCommit_Enter", "commit", "ArtifactCommit_Enter"),
                ("ArtifactCommit_Enter", "failed", "ArtifactRollback_Enter")],
     {"failed_in": "ArtifactCommit_Enter", "state": "ArtifactRollback_Enter"}, True,
     ["Committing failed.", "Rollback failed. System may be in an inconsistent state."]),
    ("commit", [("Before_ArtifactCommit_Enter", "commit", "ArtifactCommit_Enter"),
                ("ArtifactCommit_Enter", "done", "Before_ArtifactCommit_Leave"),
                ("Before_ArtifactCommit_Leave", "done", "ArtifactCommit_Leave"),
                ("ArtifactCommit_Leave", "done", "Cleanup"), ("Cleanup", "done", "Idle")],
     {"ignored": True}, False, ["Committed.", "One or more post-commit steps failed."]),
    # Resumed at the end of a commit: only the record was left to write.
    ("resume", [("Cleanup", "resume", "Idle")], {}, False, ["Cleaned up."]),
    ("rollback", [("Before_ArtifactCommit_Enter", "rollback", "ArtifactRollback_Enter")],
     {"state": "ArtifactRollback_Enter", "stopped": True}, False, []),
    ("rollback", [("Before_ArtifactCommit_Enter", "rollback", "ArtifactRollback_Enter"),
                  ("ArtifactRollback_Enter", "done", "Cleanup"), ("Cleanup", "done", "Idle")], {}, False,
     ["Rolled back."]),
])
def test_result_lines_follow_mender_s_rules(tmp_path: Path, command: str, trace: list[tuple[str, str, str]],
                                            options: dict[str, object], failed: bool, expected: list[str]) -> None:
    from pymender.cli.mender_update import results
    from pymender.errors import StateError

    flow = _flow(tmp_path, trace, **options)  # type: ignore[arg-type]
    assert results(command, flow, StateError("x") if failed else None).lines == expected  # type: ignore[arg-type]
