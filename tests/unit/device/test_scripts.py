"""Tests of pymender.device.scripts with small shell scripts: Mender's naming, order and exit codes."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from pymender.device.scripts import ScriptRunner, errors_ignored, store_artifact_scripts
from pymender.errors import ArtifactFormatError, ScriptError, UnsafeArtifactError


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(rootfs scripts dir, artifact scripts dir, trace file every script appends its name to)."""
    rootfs, artifact = tmp_path / "etc-scripts", tmp_path / "data-scripts"
    for d in (rootfs, artifact):
        d.mkdir()
        (d / "version").write_text("3\n")
    return rootfs, artifact, tmp_path / "trace"


def script(directory: Path, name: str, body: str = "exit 0", trace: Path | None = None) -> Path:
    path = directory / name
    record = f'echo "{name}" >> "{trace}"\n' if trace else ""
    path.write_text(f"#!/bin/sh\n{record}{body}\n")
    path.chmod(0o755)
    return path


def ran(trace: Path) -> list[str]:
    return trace.read_text().split() if trace.exists() else []


class FakeTime:
    """The runner's clock and sleep: time moves only when the runner sleeps, so the retries
    are counted exactly, whatever the speed of the machine, and nothing really waits."""

    def __init__(self) -> None:
        self.now = 1000
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def runner(dirs: tuple[Path, Path, Path], fake: FakeTime | None = None, **kw: float) -> ScriptRunner:
    times = {"timeout": 5.0, "retry_interval": 60, "retry_timeout": 1800} | kw
    fake = fake or FakeTime()
    return ScriptRunner(dirs[0], dirs[1], **times, clock=fake.clock, sleep=fake.sleep)


def test_order_naming_and_directories(dirs: tuple[Path, Path, Path]) -> None:
    rootfs, artifact, trace = dirs
    for name in [
        "Download_Enter_10_b",
        "Download_Enter_10_a",
        "Download_Enter_02",
        "Download_Enter_99_last",
        "Download_Enter_100",  # three digits: never run
        "Download_Enter_5",  # one digit: never run
        "Download_Leave_01",  # another action
        "ArtifactInstall_Enter_01_wrong_dir",  # Artifact scripts never come from the rootfs
        "Download_Enter_01.bak",  # matches the pattern only if \S+ follows "_": it does not
    ]:
        script(rootfs, name, trace=trace)
    script(artifact, "Download_Enter_01_wrong_dir", trace=trace)  # rootfs-only state
    script(artifact, "ArtifactInstall_Enter_01", trace=trace)
    r = runner(dirs)
    assert r.run("Download", "Enter") == []
    assert ran(trace) == [
        "Download_Enter_02", "Download_Enter_10_a", "Download_Enter_10_b", "Download_Enter_99_last"
    ]
    trace.unlink()
    r.run("ArtifactInstall", "Enter")
    assert ran(trace) == ["ArtifactInstall_Enter_01"]


def test_no_scripts_and_missing_dirs_are_fine(tmp_path: Path) -> None:
    r = ScriptRunner(tmp_path / "none", None, timeout=1, retry_interval=0, retry_timeout=0)
    assert r.run("Download", "Enter") == []
    assert r.run("ArtifactCommit", "Leave") == []


def test_failure_stops_the_state(dirs: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    rootfs, _, trace = dirs
    script(rootfs, "Download_Enter_01", "echo to-stdout; echo to-stderr >&2; exit 3", trace)
    script(rootfs, "Download_Enter_02", trace=trace)
    with caplog.at_level(logging.INFO), pytest.raises(ScriptError, match="Download_Enter_01 exited with code 3"):
        runner(dirs).run("Download", "Enter")
    assert ran(trace) == ["Download_Enter_01"]
    assert "Download_Enter_01 stdout: to-stdout" in caplog.text
    assert "Download_Enter_01 stderr: to-stderr" in caplog.text


@pytest.mark.parametrize(
    ("state", "action"),
    [("ArtifactInstall", "Error"), ("ArtifactCommit", "Leave"), ("ArtifactRollback", "Enter"),
     ("ArtifactFailure", "Leave")],
)
def test_failures_ignored_where_mender_ignores_them(
    dirs: tuple[Path, Path, Path], state: str, action: str
) -> None:
    _, artifact, trace = dirs
    script(artifact, f"{state}_{action}_01", "exit 1", trace)
    script(artifact, f"{state}_{action}_02", trace=trace)
    ignored = runner(dirs).run(state, action)
    assert ran(trace) == [f"{state}_{action}_01", f"{state}_{action}_02"]
    assert [str(e) for e in ignored] == [f"state script {state}_{action}_01 exited with code 1"]


def test_which_failures_are_ignored() -> None:
    assert not errors_ignored("Download", "Enter")
    assert not errors_ignored("Download", "Leave")
    assert not errors_ignored("ArtifactInstall", "Leave")
    assert not errors_ignored("ArtifactCommit", "Enter")
    assert errors_ignored("Download", "Error")
    assert errors_ignored("ArtifactCommit", "Leave")
    assert errors_ignored("ArtifactRollback", "Leave")


def test_retry_later_then_success(dirs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    rootfs, _, trace = dirs
    count = tmp_path / "count"
    # Exit 21 twice, then 0.
    body = f'n=$(cat "{count}" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "{count}"; [ $n -ge 3 ] || exit 21'
    script(rootfs, "Download_Enter_01", body, trace)
    fake = FakeTime()
    runner(dirs, fake, retry_interval=60, retry_timeout=1800).run("Download", "Enter")
    assert ran(trace) == ["Download_Enter_01"] * 3
    assert fake.sleeps == [60, 60]  # the retry interval before each run again


def test_retry_later_gives_up_after_the_retry_timeout(dirs: tuple[Path, Path, Path]) -> None:
    rootfs, _, trace = dirs
    script(rootfs, "Download_Enter_01", "exit 21", trace)
    fake = FakeTime()
    with pytest.raises(ScriptError, match=r"still asked to retry later \(exit code 21\) after 3 runs in 120 s"):
        runner(dirs, fake, retry_interval=60, retry_timeout=150).run("Download", "Enter")
    # Runs at 0, 60 and 120 s; a run at 180 s would start after the retry timeout.
    assert len(ran(trace)) == 3
    assert fake.sleeps == [60, 60]


def test_a_run_that_starts_exactly_at_the_retry_timeout_is_made(dirs: tuple[Path, Path, Path]) -> None:
    rootfs, _, trace = dirs
    script(rootfs, "Download_Enter_01", "exit 21", trace)
    with pytest.raises(ScriptError, match="after 4 runs in 180 s"):
        runner(dirs, retry_interval=60, retry_timeout=180).run("Download", "Enter")
    assert len(ran(trace)) == 4  # at 0, 60, 120 and 180 s


def test_timeout_kills_the_whole_process_group(dirs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    rootfs, _, _ = dirs
    # The script and a background child of it hold the write end of a FIFO whose read end this
    # test holds. The read ends (EOF) once both are gone; if only the script were killed, the
    # child would write "survived" after its sleep. No clock decides anything here.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        script(rootfs, "Download_Enter_01", f'exec 3>"{fifo}"; (sleep 30; echo survived >&3) & wait')
        with pytest.raises(ScriptError, match="did not finish within 0.3 s and was killed"):
            runner(dirs, timeout=0.3).run("Download", "Enter")
        os.set_blocking(reader, True)
        with os.fdopen(reader, "rb") as pipe:
            reader = -1
            assert pipe.read() == b""
    finally:
        if reader >= 0:
            os.close(reader)


def test_run_state_runs_error_scripts_and_skips_leave(dirs: tuple[Path, Path, Path]) -> None:
    _, artifact, trace = dirs
    script(artifact, "ArtifactInstall_Enter_01", trace=trace)
    script(artifact, "ArtifactInstall_Leave_01", trace=trace)
    script(artifact, "ArtifactInstall_Error_01", "exit 7", trace)  # only logged
    script(artifact, "ArtifactInstall_Error_02", trace=trace)

    def body() -> None:
        raise RuntimeError("payload install failed")

    with pytest.raises(RuntimeError, match="payload install failed"):
        runner(dirs).run_state("ArtifactInstall", body)
    assert ran(trace) == ["ArtifactInstall_Enter_01", "ArtifactInstall_Error_01", "ArtifactInstall_Error_02"]


def test_run_state_enter_failure_skips_body_and_leave(dirs: tuple[Path, Path, Path]) -> None:
    rootfs, _, trace = dirs
    script(rootfs, "Download_Enter_01", "exit 1", trace)
    script(rootfs, "Download_Leave_01", trace=trace)
    script(rootfs, "Download_Error_01", trace=trace)
    calls: list[str] = []
    with pytest.raises(ScriptError):
        runner(dirs).run_state("Download", lambda: calls.append("body"))
    assert calls == []
    assert ran(trace) == ["Download_Enter_01", "Download_Error_01"]


def test_run_state_success_returns_the_body_result(dirs: tuple[Path, Path, Path]) -> None:
    rootfs, _, trace = dirs
    for name in ("Download_Enter_01", "Download_Leave_01", "Download_Error_01"):
        script(rootfs, name, trace=trace)
    assert runner(dirs).run_state("Download", lambda: 42) == 42
    assert ran(trace) == ["Download_Enter_01", "Download_Leave_01"]


def test_leave_failure_runs_error_scripts(dirs: tuple[Path, Path, Path]) -> None:
    _, artifact, trace = dirs
    script(artifact, "ArtifactInstall_Leave_01", "exit 1", trace)
    script(artifact, "ArtifactInstall_Error_01", trace=trace)
    with pytest.raises(ScriptError):
        runner(dirs).run_state("ArtifactInstall", lambda: None)
    assert ran(trace) == ["ArtifactInstall_Leave_01", "ArtifactInstall_Error_01"]


@pytest.mark.parametrize(("content", "message"), [(None, "have no version file"), ("4\n", "version '4'")])
def test_version_file_must_exist_and_be_supported(
    dirs: tuple[Path, Path, Path], content: str | None, message: str
) -> None:
    rootfs, _, trace = dirs
    if content is None:
        (rootfs / "version").unlink()
    else:
        (rootfs / "version").write_text(content)
    script(rootfs, "Download_Enter_01", trace=trace)
    with pytest.raises(ScriptError, match=message):
        runner(dirs).run("Download", "Enter")
    assert ran(trace) == []
    # A version error in an Error state is only logged.
    script(rootfs, "Download_Error_01", trace=trace)
    assert len(runner(dirs).run("Download", "Error")) == 1
    assert ran(trace) == []


@pytest.mark.parametrize("version", ["2", "3"])
def test_versions_2_and_3_are_accepted(dirs: tuple[Path, Path, Path], version: str) -> None:
    rootfs, _, trace = dirs
    (rootfs / "version").write_text(version)
    script(rootfs, "Download_Enter_01", trace=trace)
    runner(dirs).run("Download", "Enter")
    assert ran(trace) == ["Download_Enter_01"]


def test_version_file_not_needed_without_matching_scripts(dirs: tuple[Path, Path, Path]) -> None:
    rootfs, _, _ = dirs
    (rootfs / "version").unlink()
    (rootfs / "README").write_text("not a script")
    assert runner(dirs).run("Download", "Enter") == []


def test_non_executable_script_is_an_error(dirs: tuple[Path, Path, Path]) -> None:
    rootfs, _, trace = dirs
    script(rootfs, "Download_Enter_01", trace=trace).chmod(0o644)
    with pytest.raises(ScriptError, match="not an executable file"):
        runner(dirs).run("Download", "Enter")


def test_store_artifact_scripts(tmp_path: Path) -> None:
    target = tmp_path / "data" / "scripts"
    target.mkdir(parents=True)
    (target / "ArtifactInstall_Enter_01_old").write_text("stale")
    old_umask = os.umask(0o077)
    try:
        store_artifact_scripts(
            target,
            {
                "ArtifactInstall_Enter_01": b"#!/bin/sh\necho hi\n",
                "ArtifactCommit_Leave_10_notify": b"#!/bin/sh\nexit 0\n",
            },
        )
    finally:
        os.umask(old_umask)
    assert sorted(p.name for p in target.iterdir()) == [
        "ArtifactCommit_Leave_10_notify", "ArtifactInstall_Enter_01", "version"
    ]
    assert (target / "version").read_text() == "3"
    assert stat.S_IMODE((target / "ArtifactInstall_Enter_01").stat().st_mode) == 0o755
    assert sorted(p.name for p in target.parent.iterdir()) == ["scripts"]  # no staging left
    r = ScriptRunner(tmp_path / "none", target, timeout=5, retry_interval=0, retry_timeout=0)
    assert r.run("ArtifactInstall", "Enter") == []
    store_artifact_scripts(target, {})
    assert [p.name for p in target.iterdir()] == ["version"]


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("../ArtifactInstall_Enter_01", UnsafeArtifactError),
        ("/etc/ArtifactInstall_Enter_01", UnsafeArtifactError),
        ("x/../ArtifactInstall_Enter_01", UnsafeArtifactError),
        ("..", UnsafeArtifactError),
        ("ArtifactInstall_Enter_01\0", UnsafeArtifactError),
        ("version", ArtifactFormatError),
        ("ArtifactInstall_Enter_1", ArtifactFormatError),
        ("ArtifactInstall_Begin_01", ArtifactFormatError),
        ("ArtifactInstall_Enter_01_two words", ArtifactFormatError),
        ("ArtifactInstall_Enter_01\n", ArtifactFormatError),
    ],
)
def test_store_refuses_unsafe_or_invalid_names_before_touching_anything(
    tmp_path: Path, name: str, error: type[Exception]
) -> None:
    target = tmp_path / "scripts"
    target.mkdir()
    (target / "ArtifactInstall_Enter_01_old").write_text("kept")
    with pytest.raises(error):
        store_artifact_scripts(target, {"ArtifactInstall_Enter_02": b"ok", name: b"#!/bin/sh\n"})
    assert [p.name for p in target.iterdir()] == ["ArtifactInstall_Enter_01_old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scripts"]


def test_unknown_state_is_a_programming_error(dirs: tuple[Path, Path, Path]) -> None:
    with pytest.raises(ValueError):
        runner(dirs).run("Reboot", "Enter")
