"""pymender-state-scripts: a recipe ships state scripts, as meta-mender's class lets recipes do.

Artifact state scripts go into the Artifact of every image that installs the recipe's package
(through the image's rootfs post-processing, not through the rootfs); Idle, Sync and Download
scripts go into the rootfs, where pymender runs them, and the image gets their version file.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytest.importorskip("bb")
from layer.bbparse import IMAGE, STANDINS, configuration, local_conf, recipe, run_shell
from layer.layerrun import LayerRun

EXAMPLE = STANDINS / "recipes" / "example-state-scripts_1.0.bb"


def build_example(tmp_path: Path, extra: str = "") -> Path:
    layer = LayerRun(tmp_path, local_conf())
    data = recipe(layer.config, EXAMPLE)[""]
    layer.unpack(data)
    layer.run(data, "do_pymender_state_script_dirs", "do_compile")
    if extra:
        (Path(data.getVar("PYMENDER_STATE_SCRIPTS_DIR")) / extra).write_text("#!/bin/sh\n")
    layer.run(data, "do_install")
    assert "/usr/share/pymender/artifact-scripts" in data.getVar("FILES:example-state-scripts")
    return Path(data.getVar("D"))


def test_scripts_are_sorted_into_the_artifact_and_the_rootfs(tmp_path: Path) -> None:
    image = build_example(tmp_path)
    installed = sorted(str(p.relative_to(image)) for p in image.rglob("*") if p.is_file())
    assert installed == ["etc/mender/scripts/Download_Enter_00", "etc/mender/scripts/Idle_Enter_10_led",
                         "usr/share/pymender/artifact-scripts/ArtifactInstall_Leave_50_check-app"]
    assert all(p.stat().st_mode & 0o111 for p in image.rglob("*") if p.is_file())


@pytest.mark.parametrize("name", ["check-app", "ArtifactInstall_Leave", "Idle_Enter_x"])
def test_a_name_that_is_no_state_script_stops_the_build(tmp_path: Path, name: str) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failure:
        build_example(tmp_path, name)
    assert f"{name} is not a state script name" in failure.value.stdout


def test_the_image_puts_artifact_scripts_into_the_artifact_only(tmp_path: Path) -> None:
    package = build_example(tmp_path / "recipe")
    image = recipe(configuration(tmp_path / "image", local_conf()), IMAGE)[""]
    rootfs = Path(image.getVar("IMAGE_ROOTFS"))
    rootfs.mkdir(parents=True)
    subprocess.run(["cp", "-a", f"{package}/.", str(rootfs)], check=True)
    run_shell(image, "pymender_rootfs_postprocess")
    staged = Path(image.getVar("PYMENDER_IMAGE_ARTIFACT_SCRIPTS"))
    assert [p.name for p in staged.iterdir()] == ["ArtifactInstall_Leave_50_check-app"]
    assert not (rootfs / "usr/share/pymender").exists()
    scripts = rootfs / "etc/mender/scripts"
    assert sorted(p.name for p in scripts.iterdir()) == ["Download_Enter_00", "Idle_Enter_10_led", "version"]
    assert (scripts / "version").read_text() == "3\n"
    # pymender_artifact_image passes each staged script (and PYMENDER_ARTIFACT_SCRIPTS_DIR's) as -s.
    assert "${PYMENDER_IMAGE_ARTIFACT_SCRIPTS}" in image.getVar("pymender_artifact_image", False)
