"""Choosing and opening a bootloader environment backend."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from pymender.device.bootenv import (
    BootEnv,
    GrubEnv,
    UBootEnv,
    detect_bootloader,
    find_grub_env_dir,
    open_bootenv,
)
from pymender.device.bootenv.base import advisory_lock, apply_changes, check_changes
from pymender.errors import BootEnvError

pytestmark = pytest.mark.usefixtures("no_fsync")


def make_grub(directory: Path) -> None:
    GrubEnv(directory, lock_file=None).initialize({"mender_boot_part": "2"})


def make_uboot(directory: Path) -> Path:
    config = directory / "fw_env.config"
    config.write_text(f"{directory / 'env'} 0 0x1000\n")
    return config


def test_open_grub_and_uboot(scratch: Path) -> None:
    make_grub(scratch / "grub")
    config = make_uboot(scratch)
    grub = open_bootenv("grub", grub_env_dir=scratch / "grub")
    uboot = open_bootenv("uboot", uboot_config=config)
    assert isinstance(grub, GrubEnv) and isinstance(grub, BootEnv)
    assert isinstance(uboot, UBootEnv) and isinstance(uboot, BootEnv)
    assert str(scratch / "grub") in grub.describe()
    assert grub.read() == {"mender_boot_part": "2"}


def test_open_unknown_kind_is_refused() -> None:
    with pytest.raises(BootEnvError, match="unknown bootloader 'lilo'"):
        open_bootenv("lilo")


def test_detect_prefers_grub_then_uboot(scratch: Path) -> None:
    config = make_uboot(scratch)
    assert detect_bootloader(grub_env_dir=scratch / "grub", uboot_config=config) == "uboot"
    make_grub(scratch / "grub")
    assert detect_bootloader(grub_env_dir=scratch / "grub", uboot_config=config) == "grub"
    assert isinstance(open_bootenv(None, grub_env_dir=scratch / "grub"), GrubEnv)


def test_detect_without_either_says_which_keys_to_set(scratch: Path) -> None:
    with pytest.raises(BootEnvError) as info:
        detect_bootloader(grub_env_dir=scratch / "no", uboot_config=scratch / "no.config")
    assert info.value.hint and '"Bootloader"' in info.value.hint


def test_find_grub_env_dir_in_the_usual_places(scratch: Path) -> None:
    assert find_grub_env_dir(scratch) is None
    make_grub(scratch / "boot/grub/grub-mender-grubenv")
    assert find_grub_env_dir(scratch) == scratch / "boot/grub/grub-mender-grubenv"
    make_grub(scratch / "boot/efi/grub-mender-grubenv")
    assert find_grub_env_dir(scratch) == scratch / "boot/efi/grub-mender-grubenv"
    assert detect_bootloader(root=scratch) == "grub"


def test_find_grub_env_dir_honours_mender_grubenv_config(scratch: Path) -> None:
    make_grub(scratch / "boot/efi/grub-mender-grubenv")
    make_grub(scratch / "custom/env")
    (scratch / "etc").mkdir()
    (scratch / "etc/mender_grubenv.config").write_text("ENV_DIR=/nowhere\nENV_DIR = /custom/env\n")
    assert find_grub_env_dir(scratch) == scratch / "custom/env"


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
