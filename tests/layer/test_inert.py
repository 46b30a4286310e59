"""Adding the layer without INHERIT += "pymender-full" changes nothing, to the last task signature.

This is the property yocto-check-layer's signature test checks for a software layer: a build
that adds the layer and does not opt in runs exactly the tasks it ran before. The layer's
bbappends are empty then, and its global class is not inherited.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("bb")
from layer.bbparse import (
    IMAGE,
    LAYER,
    STANDINS,
    configuration,
    layer_files,
    local_conf,
    recipe,
    task_hashes,
)

APPENDS = {
    STANDINS / "recipes" / "base-files_3.0.14.bb": LAYER / "recipes-core" / "base-files" / "base-files_%.bbappend",
    STANDINS / "recipes" / "grub-efi_2.12.bb": LAYER / "recipes-bsp" / "grub" / "grub-efi_%.bbappend",
}
#: The stand-ins of recipes a build has whether or not it has the layer (not the example of a
#: recipe that uses the layer's state scripts class).
OTHER_RECIPES = sorted(p for p in (STANDINS / "recipes").glob("*.bb") if not p.name.startswith("example-"))
# Bookkeeping of the parser itself, not recipe metadata.
BOOKKEEPING = {"__BBAPPEND", "BBINCLUDED", "__depends", "__base_depends", "__inherit_cache", "FILE"}
SETTINGS = ('UBOOT_MACHINE = "board_defconfig"', 'MACHINE = "qemuarm64"')


def snapshot(data: object) -> dict[str, object]:
    return {key: data.getVar(key, False) for key in data.keys()  # type: ignore[attr-defined]
            if key not in BOOKKEEPING and not key.startswith("__")}


def without_layer(tmp_path: Path) -> Path:
    """A layer directory with nothing but an empty layer.conf: a build without meta-pymender."""
    empty = tmp_path / "no-layer"
    (empty / "conf").mkdir(parents=True)
    (empty / "conf" / "layer.conf").write_text('BBPATH .= ":${LAYERDIR}"\n')
    return empty


def test_every_bbappend_is_covered() -> None:
    assert set(APPENDS.values()) == set(layer_files(".bbappend"))


@pytest.mark.parametrize("path", OTHER_RECIPES, ids=lambda p: p.stem)
def test_adding_the_layer_changes_no_task_signature(tmp_path: Path, path: Path) -> None:
    conf = local_conf(*SETTINGS, opt_in=False, artifact_name=None)
    plain = configuration(tmp_path / "plain", conf, layer=without_layer(tmp_path))
    with_layer = configuration(tmp_path / "layer", conf)
    appends = [APPENDS[path]] if path in APPENDS else []
    assert task_hashes(recipe(with_layer, path, appends)[""]) == task_hashes(recipe(plain, path)[""])


@pytest.mark.parametrize("standin", sorted(APPENDS), ids=lambda p: p.name)
def test_bbappend_changes_nothing_without_opt_in(tmp_path: Path, standin: Path) -> None:
    d = configuration(tmp_path, local_conf(opt_in=False, artifact_name=None))
    plain = snapshot(recipe(d, standin)[""])
    appended = snapshot(recipe(d, standin, [APPENDS[standin]])[""])
    assert appended == plain


@pytest.mark.parametrize("standin", sorted(APPENDS), ids=lambda p: p.name)
def test_bbappend_acts_when_opted_in(tmp_path: Path, standin: Path) -> None:
    d = configuration(tmp_path, local_conf())
    plain = snapshot(recipe(d, standin)[""])
    appended = snapshot(recipe(d, standin, [APPENDS[standin]])[""])
    assert appended != plain


def test_opt_in_changes_images(tmp_path: Path) -> None:
    """The counterpart of the tests above: the same comparison sees the opt-in."""
    off = recipe(configuration(tmp_path / "off", local_conf(opt_in=False, artifact_name=None)), IMAGE)[""]
    on = recipe(configuration(tmp_path / "on", local_conf()), IMAGE)[""]
    assert task_hashes(on) != task_hashes(off)


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
    assert not [k for k in d.keys() if k.startswith("PYMENDER_") or "pymender" in k.lower()
                and not k.endswith("_pymender")]
    assert "pymender-full" not in d.getVar("OVERRIDES").split(":")
    assert "pymender" not in (d.getVar("IMAGE_FSTYPES") or "")
