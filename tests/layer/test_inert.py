"""Adding the layer without INHERIT += "pymender-full" changes nothing: every bbappend is empty."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("bb")
from layer.bbparse import LAYER, STANDINS, configuration, layer_files, local_conf, recipe

APPENDS = {
    STANDINS / "recipes" / "base-files_3.0.14.bb": LAYER / "recipes-core" / "base-files" / "base-files_%.bbappend",
    STANDINS / "recipes" / "grub-efi_2.12.bb": LAYER / "recipes-bsp" / "grub" / "grub-efi_%.bbappend",
    STANDINS / "recipes" / "u-boot_2024.01.bb": LAYER / "recipes-bsp" / "u-boot" / "u-boot_%.bbappend",
}
#: What a configuration needs beyond the opt-in for a bbappend to act (the bootloader it serves).
ACTS_WITH = {
    STANDINS / "recipes" / "u-boot_2024.01.bb": ('PYMENDER_BOOTLOADER = "uboot"',),
}
# Bookkeeping of the parser itself, not recipe metadata.
BOOKKEEPING = {"__BBAPPEND", "BBINCLUDED", "__depends", "__base_depends", "__inherit_cache", "FILE"}


def snapshot(data: object) -> dict[str, object]:
    return {key: data.getVar(key, False) for key in data.keys()  # type: ignore[attr-defined]
            if key not in BOOKKEEPING and not key.startswith("__")}


def test_every_bbappend_is_covered() -> None:
    assert set(APPENDS.values()) == set(layer_files(".bbappend"))


@pytest.mark.parametrize("standin", sorted(APPENDS), ids=lambda p: p.name)
def test_bbappend_changes_nothing_without_opt_in(tmp_path: Path, standin: Path) -> None:
    d = configuration(tmp_path, local_conf(opt_in=False, artifact_name=None))
    plain = snapshot(recipe(d, standin)[""])
    appended = snapshot(recipe(d, standin, [APPENDS[standin]])[""])
    assert appended == plain


@pytest.mark.parametrize("standin", sorted(APPENDS), ids=lambda p: p.name)
def test_bbappend_acts_when_opted_in(tmp_path: Path, standin: Path) -> None:
    d = configuration(tmp_path, local_conf(*ACTS_WITH.get(standin, ())))
    plain = snapshot(recipe(d, standin)[""])
    appended = snapshot(recipe(d, standin, [APPENDS[standin]])[""])
    assert appended != plain


def test_uboot_bbappend_changes_nothing_on_a_grub_machine(tmp_path: Path) -> None:
    standin = STANDINS / "recipes" / "u-boot_2024.01.bb"
    d = configuration(tmp_path, local_conf('PYMENDER_BOOTLOADER = "grub"'))
    plain = snapshot(recipe(d, standin)[""])
    appended = snapshot(recipe(d, standin, [APPENDS[standin]])[""])
    assert appended == plain


def test_uboot_fragment_turns_on_what_the_boot_script_runs() -> None:
    """Every U-Boot command the boot script calls is enabled by the fragment (or is built in)."""
    script = (LAYER / "recipes-bsp" / "pymender-ubootenv" / "files" / "pymender-boot.cmd").read_text()
    fragment = (LAYER / "recipes-bsp" / "u-boot" / "files" / "pymender-boot-script.cfg").read_text()
    needs = {"load ": "CONFIG_CMD_FS_GENERIC=y", "save ": "CONFIG_FAT_WRITE=y",
             "env import": "CONFIG_CMD_IMPORTENV=y", "env export": "CONFIG_CMD_EXPORTENV=y",
             "setexpr": "CONFIG_CMD_SETEXPR=y", "itest": "CONFIG_CMD_ITEST=y",
             "cp.b": "CONFIG_CMD_MEMORY=y", "part ": "CONFIG_CMD_PART=y", "sleep": "CONFIG_CMD_SLEEP=y"}
    for command, option in needs.items():
        if command in script:
            assert option in fragment.splitlines(), (command, option)


def test_layer_conf_sets_only_layer_bookkeeping(tmp_path: Path) -> None:
    d = configuration(tmp_path, local_conf(opt_in=False, artifact_name=None))
    assert not [k for k in d.keys() if k.startswith("PYMENDER_")]
    assert "pymender-full" not in d.getVar("OVERRIDES").split(":")
    assert "pymender" not in (d.getVar("IMAGE_FSTYPES") or "")
