"""The pieces every bootloader environment backend shares: change checks, changes, the lock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from pymender.device.bootenv.base import advisory_lock, apply_changes, check_changes
from pymender.errors import BootEnvError

pytestmark = pytest.mark.usefixtures("no_fsync")


@pytest.mark.parametrize("name", ["", "a=b", "a\nb", "a\0"])
def test_check_changes_refuses_bad_names(name: str) -> None:
    with pytest.raises(BootEnvError):
        check_changes({name: "1"})


def test_apply_changes_sets_and_unsets() -> None:
    assert apply_changes({"a": "1", "b": "2"}, {"a": None, "c": "3", "gone": None}) == {
        "b": "2",
        "c": "3",
    }


def test_advisory_lock_excludes_others_and_tolerates_missing_dirs(scratch: Path) -> None:
    lock = scratch / "x.lock"
    with advisory_lock(lock):
        fd = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    with advisory_lock(scratch / "missing-dir" / "x.lock"):
        pass
