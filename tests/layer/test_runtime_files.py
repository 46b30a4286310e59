"""The layer installs the very runtime files the e2e test image installs, rendered the same way.

scripts/build-test-image reads them from meta-pymender/recipes-*/.../files and fills their
@PYMENDER_...@ placeholders; the layer's recipes fetch the same files and fill them with
pymender_render. Both must give the same bytes for the same values.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import types
from pathlib import Path

import pytest

from helpers import REPO

pytest.importorskip("bb")
from layer import bbparse  # noqa: E402
from layer.bbparse import LAYER, configuration, layer_function, local_conf, recipe  # noqa: E402

FILES_DIRS = sorted(LAYER.glob("recipes-*/*/files"))


def build_test_image() -> types.ModuleType:
    path = REPO / "scripts" / "build-test-image"
    loader = importlib.machinery.SourceFileLoader("build_test_image", str(path))
    spec = importlib.util.spec_from_loader("build_test_image", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def src_uri_files(tmp_path: Path) -> set[Path]:
    """Every file:// of the layer's recipes and bbappend includes, resolved to its file."""
    d = configuration(tmp_path, local_conf())
    found = set()
    datastores = [recipe(d, p)[""] for p in bbparse.layer_files(".bb")]
    datastores.append(recipe(d, bbparse.STANDINS / "recipes" / "base-files_3.0.14.bb",
                             [LAYER / "recipes-core" / "base-files" / "base-files_%.bbappend"])[""])
    for data in datastores:
        for uri in data.getVar("SRC_URI").split():
            name = uri[len("file://"):].split(";")[0]
            for directory in FILES_DIRS:
                if (directory / name).is_file():
                    found.add(directory / name)
    return found


def test_e2e_image_reads_the_layer_files() -> None:
    script = build_test_image()
    assert Path(script.GRUB_FILES) == LAYER / "recipes-bsp" / "pymender-grubenv" / "files"
    assert Path(script.PYMENDER_FILES) == LAYER / "recipes-pymender" / "pymender" / "files"
    text = (REPO / "scripts" / "build-test-image").read_text()
    for directory in FILES_DIRS:
        for path in directory.iterdir():
            assert f'"{path.name}"' in text, f"build-test-image does not install {path.name}"


def test_layer_installs_every_runtime_file(tmp_path: Path) -> None:
    every = {p for d in FILES_DIRS for p in d.iterdir() if p.is_file()}
    assert every and src_uri_files(tmp_path) == every


def test_placeholders_render_identically(tmp_path: Path) -> None:
    script = build_test_image()
    render = layer_function("pymender_render")
    d = configuration(tmp_path, local_conf())
    templates = [p for directory in FILES_DIRS for p in directory.glob("*.in")]
    assert len(templates) == 3
    for template in templates:
        names = sorted(set(re.findall(r"@(PYMENDER_[A-Z0-9_]+)@", template.read_text())))
        assert names
        # each placeholder is a variable the layer defines
        for name in names:
            assert d.getVar(name) is not None, f"{template.name}: {name} is not defined by the layer"
        values = {name: f"value of {name.lower()}" for name in names}
        data = d.createCopy()
        for name, value in values.items():
            data.setVar(name, value)
        out = tmp_path / template.name
        render(data, str(template), str(out))
        assert out.read_text() == script.substitute(template, values)


def test_grub_has_every_module_the_e2e_image_builds_in(tmp_path: Path) -> None:
    script = build_test_image()
    d = configuration(tmp_path, local_conf())
    grub = recipe(d, bbparse.STANDINS / "recipes" / "grub-efi_2.12.bb",
                  [LAYER / "recipes-bsp" / "grub" / "grub-efi_%.bbappend"])[""]
    missing = set(script.GRUB_MODULES) - set(grub.getVar("GRUB_BUILDIN").split())
    assert not missing, f"add {sorted(missing)} to GRUB_BUILDIN in grub-efi-pymender.inc"
