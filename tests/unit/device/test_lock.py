"""Tests of pymender.device.lock: one holder at a time, across processes, freed when a holder dies."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymender.device.lock import DeviceLock
from pymender.errors import LockedError, StateError

HOLDER = (
    "import sys\n"
    "from pathlib import Path\n"
    "from pymender.device.lock import DeviceLock\n"
    "with DeviceLock(Path(sys.argv[1])):\n"
    "    print('locked', flush=True)\n"
    "    sys.stdin.readline()\n"
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that holds the lock until its stdin gets a line."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "locked\n"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_second_process_is_refused_with_the_holders_pid(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(LockedError) as caught:
        with DeviceLock(tmp_path):
            pytest.fail("the lock was taken twice")
    assert f"(process {holder.pid})" in caught.value.message
    assert caught.value.hint


def test_lock_is_free_after_the_holder_finishes(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.write("done\n")
    holder.stdin.flush()
    assert holder.wait(timeout=10) == 0
    with DeviceLock(tmp_path) as lock:
        assert lock.held
        assert (tmp_path / "pymender.lock").read_text().strip().isdigit()
    assert not lock.held
    assert (tmp_path / "pymender.lock").read_text() == ""


def test_lock_is_free_after_the_holder_is_killed(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    with DeviceLock(tmp_path):
        pass


def test_two_locks_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    with DeviceLock(tmp_path):
        with pytest.raises(LockedError, match="another pymender operation is running"):
            DeviceLock(tmp_path).acquire()
    with DeviceLock(tmp_path):
        pass


def test_lock_file_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError, match="cannot create the lock file"):
        DeviceLock(blocker / "data").acquire()


def test_lock_creates_a_missing_data_directory(tmp_path: Path) -> None:
    with DeviceLock(tmp_path / "var" / "lib" / "pymender"):
        assert (tmp_path / "var" / "lib" / "pymender" / "pymender.lock").exists()
