"""The layer installs the very runtime files the e2e test image installs, rendered the same way.

scripts/build-test-image reads them from meta-pymender/recipes-*/.../files and fills their
@PYMENDER_...@ placeholders; the layer's recipes fetch the same files and fill them with
pymender_render. Both must give the same bytes for the same values.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from helpers import REPO, require_tool

pytest.importorskip("bb")
from layer import bbparse
from layer.bbparse import LAYER, configuration, layer_function, local_conf, recipe

#: Directories of files the layer installs in the image. recipes-bsp/u-boot/files is left out: it
#: holds a configuration fragment for building U-Boot, which the test image does not build (it
#: runs Debian's U-Boot, which has those commands).
BUILD_ONLY_DIRS = {LAYER / "recipes-bsp" / "u-boot" / "files"}
FILES_DIRS = sorted(set(LAYER.glob("recipes-*/*/files")) - BUILD_ONLY_DIRS)


def build_test_image() -> types.ModuleType:
    path = REPO / "scripts" / "build-test-image"
    loader = importlib.machinery.SourceFileLoader("build_test_image", str(path))
    spec = importlib.util.spec_from_loader("build_test_image", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: its dataclasses look their module up while they are defined.
    sys.modules["build_test_image"] = module
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
    assert len(templates) == 6
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


def run_shell_task(data: object, name: str, *args: str, path_dir: Path) -> None:
    """Run the shell function ``name`` of a parsed recipe, as BitBake would (expanded)."""
    body = data.getVar(name)  # type: ignore[attr-defined]
    script = f"set -e\n{name}() {{\n{body}\n}}\n{name} \"$@\"\n"
    env = {**os.environ, "PATH": f"{path_dir}:{os.environ['PATH']}", "SOURCE_DATE_EPOCH": "1700000000"}
    subprocess.run(["bash", "-c", script, name, *args], check=True, env=env, capture_output=True)


def test_uboot_files_are_those_of_the_arm64_test_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe's tasks (run here with the test image's values) give the bytes the arm64 test
    image puts on its boot partition and in /etc/fw_env.config; the image class copies them."""
    tools = {"uboot-mkimage": require_tool("mkimage"), "uboot-mkenvimage": require_tool("mkenvimage")}
    script = build_test_image()
    target = script.MACHINES["arm64"]
    values = script.uboot_values(target)
    # mkimage stamps its header with the time: SOURCE_DATE_EPOCH (set by BitBake) pins it.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    expected = tmp_path / "test-image" / "boot"
    expected.parent.mkdir()
    script.make_uboot_boot_dir(target, expected)

    settable = [name for name in values if not name.endswith("_NUMBER") and not name.endswith("_HEX")]
    d = configuration(tmp_path, local_conf(
        'MACHINE = "qemuarm64"', 'TARGET_ARCH = "aarch64"', 'TRANSLATED_TARGET_ARCH = "aarch64"',
        *(f'{name} = "{values[name]}"' for name in settable)))
    for name in values:
        assert d.getVar(name) == values[name], name
    data = recipe(d, LAYER / "recipes-bsp" / "pymender-ubootenv" / "pymender-ubootenv_1.0.bb")[""]
    work = tmp_path / "work"
    for variable, directory in (("S", "src"), ("B", "build"), ("D", "image"), ("DEPLOYDIR", "deploy")):
        data.setVar(variable, str(work / directory))
        (work / directory).mkdir(parents=True)
    files = LAYER / "recipes-bsp" / "pymender-ubootenv" / "files"
    for uri in data.getVar("SRC_URI").split():
        name = uri[len("file://"):].split(";")[0]
        shutil.copy(files / name, work / "src" / name)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, path in tools.items():
        (bindir / name).symlink_to(path)

    # do_pymender_defines (Python), then the shell tasks.
    body = textwrap.dedent(data.getVar("do_pymender_defines"))
    exec(body, {"d": data, "os": os, "pymender_render": layer_function("pymender_render")})
    for task in ("do_compile", "do_install", "do_deploy"):
        run_shell_task(data, task, path_dir=bindir)

    deployed = work / "deploy" / "pymender-ubootenv"
    assert sorted(p.name for p in deployed.iterdir()) == sorted(p.name for p in expected.iterdir())
    for path in expected.iterdir():
        assert (deployed / path.name).read_bytes() == path.read_bytes(), path.name
    fw_env = script.substitute(script.UBOOT_FILES / "fw_env.config.in", values)
    assert (work / "image" / "etc" / "fw_env.config").read_text() == fw_env
    assert fw_env.split() == ["/uboot/uboot.env", "0x0", "0x4000", "/uboot/uboot-redund.env", "0x0", "0x4000"]

    # The image class fills the boot partition with exactly the deployed files.
    image = recipe(d, bbparse.STANDINS / "recipes" / "core-image-standin.bb")[""]
    image.setVar("DEPLOY_DIR_IMAGE", str(work / "deploy"))
    boot = tmp_path / "boot-partition"
    run_shell_task(image, "pymender_boot_files", str(boot), path_dir=bindir)
    assert sorted(p.name for p in boot.iterdir()) == sorted(p.name for p in expected.iterdir())
    for path in expected.iterdir():
        assert (boot / path.name).read_bytes() == path.read_bytes(), path.name
