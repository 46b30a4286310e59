"""The ``pymender`` command line: commands, legacy spellings, options, messages, exit codes."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from device_sim import SimDevice, holds, release
from helpers import REPO
from pymender import __version__
from pymender.cli.device import build_parser, translate_legacy


@pytest.fixture
def device(tmp_path: Path) -> SimDevice:
    return SimDevice.create(tmp_path / "device")


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    return release(tmp_path / "artifacts", "release-2", seed=2)[0]


def _subprocess(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run([sys.executable, "-c", "from pymender.cli.device import run; run()", *args],
                          input=stdin, capture_output=True, env=env, timeout=60)


def test_legacy_spellings_are_translated() -> None:
    assert translate_legacy(["-install", "x.mender"]) == ["install", "x.mender"]
    assert translate_legacy(["-c", "conf", "-commit"]) == ["-c", "conf", "commit"]
    assert translate_legacy(["-rollback", "-show-artifact"]) == ["rollback", "show-artifact"]


def test_help_explains_the_standalone_flow(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for words in ("pymender install <URI>", "reboot", "pymender commit", "pymender rollback", "-install <URI>",
                  "4  reboot required", "--config", "--data", "--log-level"):
        assert words in text


def test_version() -> None:
    done = _subprocess("--version")
    assert done.returncode == 0 and done.stdout.decode().strip() == f"pymender {__version__}"


def test_full_flow_with_messages_and_exit_codes(device: SimDevice, artifact: Path) -> None:
    code, out, err = device.cli("install", str(artifact))
    assert code == 0, err
    assert "Installing Artifact of size" in out and "then run 'pymender commit'" in out
    code, out, err = device.cli("commit")
    assert code == 1 and "pymender: error:" in err and "reboot into the new system first" in err
    assert "Traceback" not in err
    device.boot()
    code, out, _ = device.cli("commit")
    assert code == 0 and "Committed release-2" in out
    assert device.cli("show-artifact") == (0, "release-2\n", "")
    code, out, _ = device.cli("show-provides")
    lines = out.splitlines()
    assert code == 0 and lines == sorted(lines) and "artifact_name=release-2" in lines
    code, _, err = device.cli("commit")
    assert code == 2 and "nothing to commit" in err
    code, _, err = device.cli("rollback")
    assert code == 2 and "nothing to roll back" in err


def test_legacy_forms_work_end_to_end(device: SimDevice, artifact: Path) -> None:
    assert device.cli("-install", str(artifact))[0] == 0
    device.boot()
    assert device.cli("-commit")[0] == 0
    assert device.cli("-show-artifact")[1] == "release-2\n"
    artifact3 = release(device.root.parent / "more", "release-3", seed=3)[0]
    assert device.cli("-install", str(artifact3))[0] == 0
    code, out, _ = device.cli("-rollback")
    assert code == 0 and "Rolled back release-3" in out


def test_stop_before_and_resume(device: SimDevice, artifact: Path) -> None:
    code, out, err = device.cli("install", "--stop-before", "ArtifactInstall_Enter", str(artifact))
    assert code == 0, err
    assert "stopped before switching the bootloader: run 'pymender resume'" in out
    assert device.read_env()["upgrade_available"] == "0"
    code, out, err = device.cli("resume", "--reboot-exit-code")
    assert code == 4 and "Installed release-2" in out, err
    device.boot()
    code, out, _ = device.cli("commit", "--stop-before", "ArtifactCommit_Leave")
    assert code == 0 and "Stopped release-2 in Before_ArtifactCommit_Leave" in out
    code, out, _ = device.cli("resume")
    assert code == 0 and "Committed release-2" in out
    code, _, err = device.cli("resume")
    assert code == 2 and "nothing to resume" in err
    code, _, err = device.cli("rollback", "--stop-before", "Frobnicate")
    assert code == 1 and "cannot stop before Frobnicate" in err and err.count("\n") == 1


def test_mender_s_fallback_configuration_file(device: SimDevice, artifact: Path, tmp_path: Path) -> None:
    """-b names Mender's fallback file, read under pymender's own (-c)."""
    document = device.config_document()
    fallback = tmp_path / "fallback.conf"
    fallback.write_text(json.dumps({key: document.pop(key) for key in ("RootfsPartA", "RootfsPartB")}))
    device.config_path.write_text(json.dumps(document))
    assert device.cli("install", str(artifact))[0] == 1  # RootfsPartA/B are missing
    code, out, err = device.cli("-b", str(fallback), "install", str(artifact))
    assert code == 0 and "Installed release-2" in out, err


def test_reboot_exit_code(device: SimDevice, artifact: Path) -> None:
    code, out, err = device.cli("install", "--reboot-exit-code", str(artifact))
    assert code == 4 and "error" not in err and "Installed release-2" in out


def test_global_options_after_the_command(device: SimDevice, artifact: Path, tmp_path: Path) -> None:
    data = tmp_path / "other-data"
    data.mkdir()
    (data / "device_type").write_text("device_type=qemux86-64\n")
    code, _, err = device.cli("install", str(artifact), "-d", str(data), "-l", "warning")
    assert code == 0, err
    assert (data / "store.json").exists() and not (device.data_dir / "store.json").exists()


def test_usage_errors_are_one_line(device: SimDevice) -> None:
    code, _, err = device.cli()
    assert code == 1 and "no command given" in err
    code, _, err = device.cli("install")
    assert code == 1 and err.startswith("pymender: error:") and "--help" in err
    code, _, err = device.cli("frobnicate")
    assert code == 1 and "invalid choice" in err


def test_bad_source_and_config_are_one_line(device: SimDevice, tmp_path: Path) -> None:
    code, _, err = device.cli("install", str(tmp_path / "missing.mender"))
    assert code == 1 and "cannot open" in err and err.count("\n") == 1
    done = _subprocess("-c", str(tmp_path / "nope.conf"), "show-artifact")
    assert done.returncode == 1 and b"does not exist" in done.stderr and b"Traceback" not in done.stderr


def test_install_from_stdin(device: SimDevice, tmp_path: Path) -> None:
    artifact, image = release(tmp_path / "artifacts", "release-2", seed=2, compression="gzip")
    done = _subprocess("-c", str(device.config_path), "install", "-", stdin=artifact.read_bytes())
    assert done.returncode == 0, done.stderr
    assert holds(device.part_b, image)


def test_second_concurrent_install_is_refused(device: SimDevice, artifact: Path, tmp_path: Path) -> None:
    # The first install stops in its Download_Enter script, which says so through one FIFO and
    # waits for a line on another: the second install certainly runs while the first holds the
    # lock, and no clock is involved.
    started, release_it = tmp_path / "started", tmp_path / "go"
    os.mkfifo(started)
    os.mkfifo(release_it)
    hook = device.scripts_dir / "Download_Enter_01_wait"
    hook.write_text(f"#!/bin/sh\necho started > {started}\nread line < {release_it}\n")
    hook.chmod(0o755)
    (device.scripts_dir / "version").write_text("3\n")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    signal = os.open(started, os.O_RDONLY | os.O_NONBLOCK)  # no writer yet: must not block
    first = subprocess.Popen(
        [sys.executable, "-c", "from pymender.cli.device import run; run()", "-c", str(device.config_path),
         "install", str(artifact)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    exited = os.pidfd_open(first.pid)
    waiting = False
    try:
        # Wakes when the script has written its line, or when the first install has ended.
        ready, _, _ = select.select([signal, exited], [], [])
        waiting = signal in ready and os.read(signal, 100) == b"started\n"
        assert waiting, first.communicate()[1]
        before = device.snapshot()
        code, _, err = device.cli("install", str(artifact))
        assert code == 1 and "another pymender operation is running (process" in err
        assert device.snapshot() == before
    finally:
        if waiting:
            with open(release_it, "w") as go:  # the script is reading it: opens at once
                go.write("go\n")
        else:
            first.kill()
        out, err_bytes = first.communicate()
        os.close(signal)
        os.close(exited)
    assert first.returncode == 0, err_bytes


def test_install_after_a_failed_trial_says_so_in_one_line(device: SimDevice, artifact: Path) -> None:
    assert device.cli("install", str(artifact))[0] == 0
    device.boot()
    device.boot()  # not committed: the bootloader went back to the old system
    assert device.cli("show-artifact") == (0, "release-1\n", "")
    code, out, err = device.cli("install", str(artifact))
    assert code == 0 and err == "", err
    notes = [line for line in out.splitlines() if "previous update" in line]
    assert notes == [f"The previous update release-2 failed (the bootloader went back to {device.part_a}) "
                     "and was rolled back."]
    assert "Installed release-2" in out
