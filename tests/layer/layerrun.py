"""Run meta-pymender's own tasks and image functions outside a Yocto build.

A Yocto build cannot run here, but the layer's code can: BitBake's parser (with the oe-core
stand-ins of ``bbparse``) expands the layer's tasks and image functions exactly as BitBake
would, and :class:`LayerRun` runs them, shell functions with every function they call and the
exported variables, Python ones through BitBake's own ``exec_func``. The QEMU test images are
assembled this way (``scripts/build-test-image``), so the end-to-end tests boot what the
layer's code builds; the layer tests use it to check single tasks.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from layer.bbparse import LAYER, STANDINS, DataSmart, configuration, recipe, run_python, run_shell

#: The layer's recipes and the stand-ins the test images use, by name.
RECIPES = {
    "pymender": LAYER / "recipes-pymender" / "pymender" / "pymender_0.1.0.bb",
    "pymender-config": LAYER / "recipes-pymender" / "pymender-config" / "pymender-config_1.0.bb",
    "pymender-growfs-data": LAYER / "recipes-pymender" / "pymender-growfs-data" / "pymender-growfs-data_1.0.bb",
    "pymender-update-modules": LAYER / "recipes-pymender" / "pymender-update-modules" /
    "pymender-update-modules_0.1.0.bb",
    "pymender-grubenv": LAYER / "recipes-bsp" / "pymender-grubenv" / "pymender-grubenv_1.0.bb",
    "pymender-ubootenv": LAYER / "recipes-bsp" / "pymender-ubootenv" / "pymender-ubootenv_1.0.bb",
    "base-files": STANDINS / "recipes" / "base-files_3.0.14.bb",
    "grub-efi": STANDINS / "recipes" / "grub-efi_2.12.bb",
    "image": STANDINS / "recipes" / "core-image-minimal.bb",
}
APPENDS = {
    "base-files": [LAYER / "recipes-core" / "base-files" / "base-files_%.bbappend"],
    "grub-efi": [LAYER / "recipes-bsp" / "grub" / "grub-efi_%.bbappend"],
}


class LayerRun:
    """A configuration (``local_conf`` in the build directory ``topdir``) and its recipes."""

    def __init__(self, topdir: Path, local_conf: str, *, path: Sequence[Path] = ()) -> None:
        self.topdir = topdir
        self.config = configuration(topdir, local_conf)
        #: Directories searched first for the programs the tasks run (pymender-image, ...).
        self.path = list(path)

    def recipe(self, name: str) -> DataSmart:
        """The target variant of recipe ``name`` (with its bbappends), parsed afresh."""
        return recipe(self.config, RECIPES[name], APPENDS.get(name, []))[""]

    def unpack(self, data: DataSmart) -> None:
        """do_fetch and do_unpack of the recipe, with BitBake's own fetcher."""
        import bb.fetch2

        uris = (data.getVar("SRC_URI") or "").split()
        if uris:
            unpackdir = Path(data.getVar("PYMENDER_UNPACKDIR") or data.getVar("WORKDIR"))
            unpackdir.mkdir(parents=True, exist_ok=True)
            fetcher = bb.fetch2.Fetch(uris, data)
            fetcher.download()
            fetcher.unpack(str(unpackdir))

    def run(self, data: DataSmart, *functions: str, env: dict[str, str] | None = None) -> None:
        """Run each function of the recipe in turn, in its task directories (B, D, DEPLOYDIR)."""
        for variable in ("B", "D", "DEPLOYDIR", "T"):
            value = data.getVar(variable)
            if value:
                Path(value).mkdir(parents=True, exist_ok=True)
        for function in functions:
            if data.getVarFlag(function, "python"):
                run_python(data, function)
            else:
                run_shell(data, function, path=self.path, env=env)

    def build(self, name: str, tasks: Iterable[str], env: dict[str, str] | None = None) -> DataSmart:
        """Parse recipe ``name``, unpack its local files and run ``tasks``; its datastore."""
        data = self.recipe(name)
        for variable in ("WORKDIR",):
            work = Path(data.getVar(variable))
            if work.exists():
                shutil.rmtree(work)
        self.unpack(data)
        self.run(data, *tasks, env=env)
        return data


def install_into(data: DataSmart, rootfs: Path) -> None:
    """Copy what a recipe's do_install put into D into a root filesystem (as a package would)."""
    image = Path(data.getVar("D"))
    for source in sorted(image.rglob("*")):
        target = rootfs / source.relative_to(image)
        if source.is_symlink():
            if target.is_symlink() or target.exists():
                target.unlink()
            target.symlink_to(os.readlink(source))
        elif source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
