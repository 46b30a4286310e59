"""Choosing and opening a bootloader environment backend: the registry of backends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO
from pymender.device import bootenv
from pymender.device.bootenv import BootEnv, GrubEnv, UBootEnv, detect_bootloader, open_bootenv
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
    assert "no GRUB environment directory (mender_grubenv1/)" in info.value.message
    assert f"no {scratch / 'no.config'}" in info.value.message


def test_detect_finds_grub_where_mender_puts_it(scratch: Path) -> None:
    make_grub(scratch / "boot/efi/grub-mender-grubenv")
    assert detect_bootloader(root=scratch) == "grub"


def test_every_backend_offers_the_same_interface() -> None:
    assert bootenv.KINDS == ("grub", "uboot")
    for kind, (_, cls) in bootenv.BACKENDS.items():
        module = bootenv.backend(kind)
        for function in ("detect", "looked_for", "open_env"):
            assert callable(getattr(module, function)), f"{kind}: {function}"
        assert getattr(bootenv, cls) is getattr(module, cls)
    with pytest.raises(AttributeError):
        bootenv.LiloEnv  # noqa: B018


@pytest.mark.parametrize(("kind", "other"), [("grub", "uboot"), ("uboot", "grub")])
def test_only_the_backend_in_use_is_imported(scratch: Path, kind: str, other: str) -> None:
    make_grub(scratch / "grub")
    config = make_uboot(scratch)
    UBootEnv.from_config(config, lock_file=None).initialize({"mender_boot_part": "2"})
    code = (
        "import sys\n"
        "from pymender.device.bootenv import open_bootenv\n"
        f"env = open_bootenv({kind!r}, grub_env_dir={str(scratch / 'grub')!r}, uboot_config={str(config)!r})\n"
        "env.read()\n"
        f"print({'pymender.device.bootenv.' + kind!r} in sys.modules, "
        f"{'pymender.device.bootenv.' + other!r} in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(REPO / "src")})
    assert done.stdout.split() == ["True", "False"]
