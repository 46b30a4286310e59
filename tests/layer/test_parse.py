"""Every file of meta-pymender parses with BitBake's parser, and the opt-in behaves as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from helpers import REPO

pytest.importorskip("bb")
from layer import bbparse
from layer.bbparse import (
    FATAL_ERRORS,
    IMAGE,
    LAYER,
    STANDINS,
    UPDATER,
    capture_warnings,
    configuration,
    kas_local_conf,
    local_conf,
    recipe,
)

RECIPES = bbparse.layer_files(".bb")
APPENDS = {
    "base-files": LAYER / "recipes-core" / "base-files" / "base-files_%.bbappend",
    "grub-efi": LAYER / "recipes-bsp" / "grub" / "grub-efi_%.bbappend",
}
STANDIN_RECIPES = {
    "base-files": STANDINS / "recipes" / "base-files_3.0.14.bb",
    "grub-efi": STANDINS / "recipes" / "grub-efi_2.12.bb",
}


def test_layer_has_every_kind_of_file() -> None:
    names = {p.suffix for p in LAYER.rglob("*") if p.is_file()}
    assert {".bb", ".bbappend", ".bbclass", ".inc", ".conf"} <= names
    assert set(APPENDS.values()) == set(bbparse.layer_files(".bbappend"))


def test_layer_conf(tmp_path: Path) -> None:
    d = configuration(tmp_path, local_conf(opt_in=False))
    assert d.getVar("LAYERSERIES_COMPAT_pymender").split() == ["scarthgap", "wrynose"]
    assert d.getVar("LAYERDEPENDS_pymender") == "core"
    assert "pymender" in d.getVar("BBFILE_COLLECTIONS").split()


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_parses_in_every_variant(tmp_path: Path, path: Path) -> None:
    d = configuration(tmp_path, local_conf())
    variants = recipe(d, path)
    assert "" in variants
    if path.name.startswith("pymender_"):
        assert set(variants) == {"", "native", "nativesdk"}
    for data in variants.values():
        assert data.getVar("__SKIPPED") is None


@pytest.mark.parametrize("name", sorted(APPENDS))
@pytest.mark.parametrize("opt_in", [True, False], ids=["opted-in", "layer-only"])
def test_bbappend_and_its_include_parse(tmp_path: Path, name: str, opt_in: bool) -> None:
    d = configuration(tmp_path, local_conf(opt_in=opt_in))
    recipe(d, STANDIN_RECIPES[name], [APPENDS[name]])


@pytest.mark.parametrize("path", bbparse.layer_files(".bbclass"), ids=lambda p: p.name)
def test_class_parses_in_an_image(tmp_path: Path, path: Path) -> None:
    d = configuration(tmp_path, local_conf(f'IMAGE_CLASSES += "{path.stem}"'))
    image = recipe(d, IMAGE)[""]
    assert str(path) in image.getVar("__inherit_cache", False)


def test_every_include_is_read_when_opted_in(tmp_path: Path) -> None:
    read: set[str] = set()
    for bootloader in ("grub", "uboot"):
        d = configuration(tmp_path / bootloader, local_conf(f'PYMENDER_BOOTLOADER = "{bootloader}"'))
        for name, append in APPENDS.items():
            read.update(recipe(d, STANDIN_RECIPES[name], [append])[""].getVar("BBINCLUDED").split())
    assert {str(p) for p in bbparse.layer_files(".inc")} <= read


def test_opt_in_adds_image_types_and_updater(tmp_path: Path) -> None:
    d = configuration(tmp_path, local_conf('PYMENDER_IMAGE_TYPES = "sdimg uefiimg"'))
    image = recipe(d, IMAGE)[""]
    assert image.getVar("IMAGE_FSTYPES").split()[-3:] == ["mender", "sdimg", "uefiimg"]
    assert {"pymender", "pymender-config", "kernel-image"} <= set(image.getVar("IMAGE_INSTALL").split())
    for image_type in ("sdimg", "uefiimg", "mender"):
        assert image.getVar(f"IMAGE_CMD:{image_type}")
        assert "pymender-native:do_populate_sysroot" in image.getVarFlag(f"do_image_{image_type}", "depends")


def test_artifact_options_come_from_the_variables(tmp_path: Path) -> None:
    d = configuration(tmp_path, local_conf(
        'PYMENDER_DEVICE_TYPES_COMPATIBLE = "board-a board-b"',
        'PYMENDER_ARTIFACT_SIGNING_KEY = "/keys/sign.pem"',
        'PYMENDER_ARTIFACT_PROVIDES = "data.version:3 data.checksum:abc"',
        'PYMENDER_ARTIFACT_PROVIDES_GROUP = "fleet"',
        'PYMENDER_ARTIFACT_DEPENDS = "rootfs-image.version:1"',
        'PYMENDER_ARTIFACT_DEPENDS_GROUPS = "beta gamma"',
        'PYMENDER_ARTIFACT_NAME_DEPENDS = "release-0"',
    ))
    image = recipe(d, IMAGE)[""]
    assert image.getVar("PYMENDER_ARTIFACT_ARGS").split() == [
        "-n", "release-1", "-t", "board-a", "-t", "board-b", "-k", "/keys/sign.pem",
        "-p", "data.version:3", "-p", "data.checksum:abc", "-g", "fleet", "-d", "rootfs-image.version:1",
        "-G", "beta", "-G", "gamma", "-N", "release-0"]
    assert "python3-cryptography-native" in image.getVarFlag("do_image_mender", "depends")


@pytest.mark.parametrize("sizes", [
    {},
    {"PYMENDER_STORAGE_TOTAL_SIZE_MB": "2048", "PYMENDER_BOOT_PART_SIZE_MB": "20",
     "PYMENDER_DATA_PART_SIZE_MB": "300", "PYMENDER_PARTITION_ALIGNMENT": "4194304",
     "PYMENDER_RESERVED_SPACE_BOOTLOADER_DATA": "4194304"},
], ids=["defaults", "custom"])
def test_rootfs_size_agrees_with_pymender_image(tmp_path: Path, sizes: dict[str, str]) -> None:
    d = configuration(tmp_path, local_conf(*(f'{k} = "{v}"' for k, v in sizes.items())))
    options = {"PYMENDER_STORAGE_TOTAL_SIZE_MB": "--total-size-mb", "PYMENDER_BOOT_PART_SIZE_MB": "--boot-size-mb",
               "PYMENDER_DATA_PART_SIZE_MB": "--data-size-mb", "PYMENDER_PARTITION_ALIGNMENT": "--alignment",
               "PYMENDER_RESERVED_SPACE_BOOTLOADER_DATA": "--reserved-bootloader-bytes"}
    argv = [sys.executable, "-c", "import sys; from pymender.cli.image import run; sys.exit(run())", "rootfs-size"]
    for variable, option in options.items():
        argv += [option, d.getVar(variable)]
    result = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert d.getVar("PYMENDER_CALC_ROOTFS_SIZE") == result.stdout.strip()


def test_missing_artifact_name_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FATAL_ERRORS, match="^PYMENDER_ARTIFACT_NAME is not set"), capture_warnings():
        configuration(tmp_path, local_conf(artifact_name=None))


def test_kas_qemuarm64_selects_the_uboot_path(tmp_path: Path) -> None:
    d = configuration(tmp_path, kas_local_conf("qemuarm64.yml"))
    assert d.getVar("PYMENDER_BOOTLOADER") == "uboot"
    assert d.getVar("PYMENDER_BOOT_PART_MOUNT_LOCATION") == "/uboot"
    assert d.getVar("PYMENDER_KERNEL_ARGS") == "rw console=ttyAMA0,115200"
    image = recipe(d, IMAGE)[""]
    assert "u-boot" in image.getVar("EXTRA_IMAGEDEPENDS").split()
    assert "pymender-ubootenv" in image.getVar("IMAGE_INSTALL").split()
    depends = image.getVarFlag("do_image_sdimg", "depends").split()
    assert "pymender-ubootenv:do_deploy" in depends
    assert not [dep for dep in depends if "grub" in dep]
    ubootenv = recipe(d, LAYER / "recipes-bsp" / "pymender-ubootenv" / "pymender-ubootenv_1.0.bb")[""]
    assert ubootenv.getVar("PYMENDER_MKIMAGE_ARCH") == "arm64"
    assert ubootenv.getVar("RDEPENDS:pymender-ubootenv").split() == ["libubootenv-bin"]
    assert "u-boot-tools-native" in ubootenv.getVar("DEPENDS").split()


def test_uboot_defaults_follow_the_bootloader(tmp_path: Path) -> None:
    d = configuration(tmp_path, local_conf('PYMENDER_BOOTLOADER = "uboot"'))
    assert d.getVar("PYMENDER_BOOT_PART_MOUNT_LOCATION") == "/uboot"
    assert d.getVar("PYMENDER_UBOOT_ENV_SIZE") == "0x4000"
    assert d.getVar("PYMENDER_KERNEL_DEVICETREE") == ""
    grub = configuration(tmp_path, local_conf())
    assert grub.getVar("PYMENDER_BOOTLOADER") == "grub"
    assert grub.getVar("PYMENDER_BOOT_PART_MOUNT_LOCATION") == "/boot/efi"
    image = recipe(grub, IMAGE)[""]
    assert "pymender-ubootenv" not in image.getVar("IMAGE_INSTALL").split()
    assert "pymender-grubenv:do_deploy" in image.getVarFlag("do_image_sdimg", "depends")


def test_unknown_bootloader_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FATAL_ERRORS, match='PYMENDER_BOOTLOADER must be "grub" or "uboot"'), capture_warnings():
        configuration(tmp_path, local_conf('PYMENDER_BOOTLOADER = "barebox"'))


def test_systemd_is_required(tmp_path: Path) -> None:
    with pytest.raises(FATAL_ERRORS, match='INIT_MANAGER = "systemd"'), capture_warnings():
        configuration(tmp_path, local_conf('DISTRO_FEATURES = "ipv4"'))


def test_unknown_pymender_variable_warns(tmp_path: Path) -> None:
    with capture_warnings() as messages:
        configuration(tmp_path, local_conf('PYMENDER_STORAGE_TOTAL_SIZE = "2048"',
                                           'PYMENDER_DATA_PART_SIZE_MB = "256"',
                                           'PYMENDER_STORAGE_DEVICE_DEFAULT:qemux86-64 = "/dev/sda"'))
    assert len(messages.warnings) == 1
    assert "PYMENDER_STORAGE_TOTAL_SIZE is not a pymender variable (typo?)" in messages.warnings[0]


# The python3-* package of oe-core's python3-manifest.json (scarthgap and wrynose) that holds
# each standard library module pymender imports; None: in python3-core.
STDLIB_PACKAGES = {
    "__future__": None, "argparse": None, "binascii": None, "collections": None, "contextlib": None,
    "dataclasses": None, "enum": None, "errno": None, "importlib": None, "io": None, "lzma": None, "os": None,
    "pathlib": None, "posixpath": None, "re": None, "shutil": None, "signal": None, "stat": None,
    "struct": None, "subprocess": None, "sys": None, "threading": None, "time": None, "types": None,
    "typing": None, "zlib": None, "base64": "python3-netclient", "concurrent": "python3-asyncio",
    "ctypes": "python3-ctypes", "queue": "python3-threading",
    "datetime": "python3-datetime", "fcntl": "python3-fcntl", "hashlib": "python3-crypt",
    "http": "python3-netclient", "json": "python3-json", "logging": "python3-logging",
    "ssl": "python3-io", "tarfile": "python3-compression", "tempfile": "python3-io",
    "urllib": "python3-netclient", "uuid": "python3-netclient",
}
OPTIONAL = {"cryptography": "verify", "zstandard": "zstd"}
# Imported only when installed, only by host-side code, and never needed on the device: the
# recipe does not depend on them (isal: faster gzip when writing Artifacts; zlib otherwise).
HOST_SPEEDUPS = {"isal"}


def imported_modules() -> set[str]:
    import ast

    found = set()
    for path in (REPO / "src" / "pymender").rglob("*.py"):
        tree = ast.parse(path.read_text())
        guarded = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in guarded:
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - {"pymender"}


def test_rdepends_are_exactly_the_imported_modules(tmp_path: Path) -> None:
    modules = imported_modules()
    unknown = modules - set(STDLIB_PACKAGES) - set(OPTIONAL) - HOST_SPEEDUPS
    assert not unknown, f"map {sorted(unknown)} to their python3-* package here and in the recipe"
    wanted = {"python3-core"} | {STDLIB_PACKAGES[m] for m in modules if STDLIB_PACKAGES.get(m)}
    d = configuration(tmp_path, local_conf())
    target = recipe(d, UPDATER)[""]
    assert set(target.getVar("RDEPENDS:pymender").split()) == wanted
    flags = target.getVarFlags("PACKAGECONFIG")
    assert flags["verify"].split(",")[3] == "python3-cryptography"
    assert flags["zstd"].split(",")[3] == "python3-zstandard"


def test_every_documented_variable_is_known(tmp_path: Path) -> None:
    d = configuration(tmp_path, local_conf())
    known = set(d.getVar("PYMENDER_KNOWN_VARIABLES").split())
    readme = (LAYER / "README.md").read_text()
    internal = {name for name in known if name.startswith(("PYMENDER_KNOWN", "PYMENDER_FOREIGN"))} | {
        "PYMENDER_UNPACKDIR", "PYMENDER_ARTIFACT_ARGS", "PYMENDER_IMAGE_ARGS", "PYMENDER_DATAIMG_ARGS",
        "PYMENDER_IMAGE_ROOTFS_SIZE", "PYMENDER_BOOT_FILES_DIR", "PYMENDER_PART_IMAGE_DEPENDS",
        "PYMENDER_DATA_CONTENT", "PYMENDER_BOOT_CONTENT", "PYMENDER_IMAGE_ARTIFACT_SCRIPTS",
        "PYMENDER_STATE_SCRIPTS_STAGING", "PYMENDER_ROOTFS_FSTYPES_SUPPORTED", "PYMENDER_DATA_IMAGE_TYPE",
        "PYMENDER_BOOTSTRAP_ARGS", "PYMENDER_BOOTSTRAP_IMAGE_TYPE", "PYMENDER_DATA_STAGING"}
    for name in known - internal:
        assert name in readme, f"{name} is not in meta-pymender/README.md"
    setup = (LAYER / "classes" / "pymender-setup.bbclass").read_text()
    for name in known - internal:
        assert name in setup, f"{name} is not described in pymender-setup.bbclass"
    image = recipe(d, IMAGE)[""]
    source = recipe(d, UPDATER)[""]
    undefined = [name for name in sorted(known) if image.getVar(name) is None and source.getVar(name) is None]
    assert undefined == ["PYMENDER_STATE_SCRIPTS_DIR"]  # defined by the class recipes inherit


def test_updater_recipe_defaults(tmp_path: Path) -> None:
    d = configuration(tmp_path, local_conf())
    target = recipe(d, UPDATER)[""]
    assert target.getVar("SYSTEMD_AUTO_ENABLE") == "disable"
    assert target.getVar("SYSTEMD_SERVICE:pymender") == "pymender.service"
    assert target.getVar("PYMENDER_SOURCE") == "local"
    assert target.getVar("PYMENDER_SRC_DIR") == str(REPO)
    assert target.getVar("PV") == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert "python_setuptools_build_meta" in " ".join(target.getVar("__inherit_cache", False))
    backend = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["build-backend"]
    assert backend == "setuptools.build_meta"
    assert target.getVar("PACKAGECONFIG") == ""
    # mender-update has a package of its own, which Mender's mender-update package excludes.
    assert target.getVar("PACKAGES").split()[0] == "pymender-mender-update"
    assert target.getVar("FILES:pymender-mender-update").split() == ["/usr/bin/mender-update"]
    assert target.getVar("RCONFLICTS:pymender-mender-update") == "mender-update"
    assert target.getVar("RDEPENDS:pymender-mender-update") == "pymender"
    config = recipe(configuration(tmp_path, local_conf('PYMENDER_ARTIFACT_VERIFY_KEY = "/keys/verify.pem"')),
                    LAYER / "recipes-pymender" / "pymender-config" / "pymender-config_1.0.bb")[""]
    assert config.getVar("RDEPENDS:pymender-config").split() == ["python3-cryptography", "pymender"]


def test_standins_define_every_oe_core_variable_the_layer_uses(tmp_path: Path) -> None:
    """A directory variable the stand-ins lack would expand to nothing in a shell task, and the
    layer tests and test images would install files in the wrong place unnoticed."""
    import re

    d = configuration(tmp_path, local_conf())
    used = set()
    for path in bbparse.layer_files(".bb", ".bbclass", ".inc", ".bbappend"):
        used |= set(re.findall(r"\$\{([a-z][a-z_]*)\}", path.read_text()))
    assert used and not [name for name in sorted(used) if d.getVar(name) is None]
