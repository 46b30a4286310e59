"""PYMENDER_UPDATE_MODULES: which of pymender's Update Modules an image gets (none by default),
and the recipe that installs them where pymender looks for them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("bb")
from layer.bbparse import (
    FATAL_ERRORS,
    IMAGE,
    LAYER,
    REPO,
    capture_warnings,
    configuration,
    local_conf,
    recipe,
    run_shell,
)

MODULES = LAYER / "recipes-pymender" / "pymender-update-modules" / "pymender-update-modules_0.1.0.bb"
KNOWN = ["single-file", "directory", "script", "deb"]


def installed(tmp_path: Path, *lines: str) -> list[str]:
    image = recipe(configuration(tmp_path, local_conf(*lines)), IMAGE)[""]
    return [p for p in image.getVar("IMAGE_INSTALL").split() if p.startswith("pymender-update-module")]


def test_no_update_module_by_default(tmp_path: Path) -> None:
    assert installed(tmp_path) == []


def test_the_modules_named_are_installed(tmp_path: Path) -> None:
    assert installed(tmp_path, 'PYMENDER_UPDATE_MODULES = "single-file deb"') == [
        "pymender-update-modules-single-file", "pymender-update-modules-deb"]


def test_an_unknown_module_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FATAL_ERRORS, match='PYMENDER_UPDATE_MODULES: unknown Update Module "docker"'), \
            capture_warnings():
        configuration(tmp_path, local_conf('PYMENDER_UPDATE_MODULES = "single-file docker"'))


def test_the_recipe_packages_each_module_where_pymender_looks(tmp_path: Path) -> None:
    data = recipe(configuration(tmp_path, local_conf()), MODULES)[""]
    assert sorted(data.getVar("PACKAGES").split()) == sorted(f"pymender-update-modules-{m}" for m in KNOWN)
    for module in KNOWN:
        assert data.getVar(f"FILES:pymender-update-modules-{module}").split() == [
            f"/usr/share/pymender/modules/v3/{module}"]
    assert "dpkg" in data.getVar("RDEPENDS:pymender-update-modules-deb").split()
    assert sorted(Path(u.split(";")[0][len("file://"):]).name for u in data.getVar("SRC_URI").split()) == sorted(KNOWN)


def test_do_install_installs_the_repositorys_modules(tmp_path: Path) -> None:
    data = recipe(configuration(tmp_path, local_conf()), MODULES)[""]
    source = tmp_path / "S"
    shutil.copytree(REPO / "modules", source / "modules")
    dest = tmp_path / "D"
    data.setVar("S", str(source))
    data.setVar("D", str(dest))
    run_shell(data, "do_install")
    for module in KNOWN:
        path = dest / "usr" / "share" / "pymender" / "modules" / "v3" / module
        assert path.read_bytes() == (REPO / "modules" / module).read_bytes()
        assert path.stat().st_mode & 0o777 == 0o755
