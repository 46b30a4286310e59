"""Fixtures of the end-to-end tests: the test images (built once per session) and machines.

``test_image`` is parametrised by architecture (ids ``x86_64`` and ``arm64``), so every test
that uses it, or ``boot``, runs on both machines: x86-64 with UEFI and GRUB, arm64 with U-Boot.
``PYMENDER_E2E_ARCHES`` (a comma list, default ``x86_64,arm64``) restricts the run locally.
Each image is built by ``scripts/build-test-image --arch`` (a no-op when nothing changed; a warm
rebuild takes about a minute thanks to its package cache). ``boot`` starts a machine on a fresh
copy-on-write overlay of the image, so every test begins from the factory state; the console
log of each test is kept under ``build/e2e-logs/`` (``PYMENDER_E2E_LOG_DIR`` to change it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from e2e.qemu import Machine, MachineConfig, MachineError, overlay_disk, ovmf_code, uboot_arm64
from helpers import REPO, require_tool

#: The machines the e2e tests know, in the order they run.
ARCHES = ("x86_64", "arm64")
#: Where each image is built; ``PYMENDER_TEST_IMAGE_DIR`` moves the x86-64 one (as before) and
#: ``PYMENDER_TEST_IMAGE_DIR_ARM64`` the arm64 one.
BUILD_DIRS = {
    "x86_64": Path(os.environ.get("PYMENDER_TEST_IMAGE_DIR", REPO / "build" / "test-image")),
    "arm64": Path(os.environ.get("PYMENDER_TEST_IMAGE_DIR_ARM64",
                                 REPO / "build" / "test-image-arm64")),
}
LOG_DIR = Path(os.environ.get("PYMENDER_E2E_LOG_DIR", REPO / "build" / "e2e-logs"))
#: The host tools each image's build and machine need, besides the shared ones.
ARCH_TOOLS = {
    "x86_64": ("qemu-system-x86_64", "grub-mkimage"),
    "arm64": ("qemu-system-aarch64", "mkimage", "mkenvimage", "qemu-aarch64-static"),
}


def selected_arches() -> list[str]:
    """The architectures ``PYMENDER_E2E_ARCHES`` names (all when unset)."""
    value = os.environ.get("PYMENDER_E2E_ARCHES", "")
    chosen = [name.strip() for name in value.split(",") if name.strip()] or list(ARCHES)
    unknown = sorted(set(chosen) - set(ARCHES))
    if unknown:
        raise pytest.UsageError(f"PYMENDER_E2E_ARCHES: unknown {', '.join(unknown)}; "
                                f"known: {', '.join(ARCHES)}")
    return [arch for arch in ARCHES if arch in chosen]


@dataclass(frozen=True)
class E2EImage:
    """What ``scripts/build-test-image`` built (its ``image.json``, paths made absolute)."""

    directory: Path
    disk: Path
    update_artifact: Path
    #: ``x86_64`` or ``arm64``: the machine to boot it on (MachineConfig.arch).
    arch: str
    #: ``grub`` or ``uboot``.
    bootloader: str
    device_type: str
    factory_release: str
    update_release: str
    marker_file: str
    partitions: dict[str, str]
    #: Where the boot partition is mounted in the guest (/boot/efi, /uboot).
    boot_mount: str
    #: GRUB: the directory holding mender_grubenv1/ and mender_grubenv2/ (None on U-Boot).
    grub_env_dir: str | None
    #: U-Boot: the two environment copies, as fw_env.config names them (empty on GRUB).
    uboot_env_files: tuple[str, ...]
    keys: dict[str, Path]

    @property
    def env_files(self) -> tuple[str, ...]:
        """Every file of the bootloader environment in the guest (for byte comparisons)."""
        if self.grub_env_dir is not None:
            return tuple(f"{self.grub_env_dir}/mender_grubenv{copy}/{name}"
                         for copy in (1, 2) for name in ("env", "lock", "lock.sha256sum"))
        return self.uboot_env_files

    @classmethod
    def load(cls, directory: Path) -> E2EImage:
        info: dict[str, Any] = json.loads((directory / "image.json").read_text())
        return cls(
            directory=directory,
            disk=directory / info["image"],
            update_artifact=directory / info["update_artifact"],
            arch=info.get("arch", "x86_64"),
            bootloader=info.get("bootloader", "grub"),
            device_type=info["device_type"],
            factory_release=info["factory_release"],
            update_release=info["update_release"],
            marker_file=info["marker_file"],
            partitions=dict(info["partitions"]),
            boot_mount=info["boot_mount"],
            grub_env_dir=info.get("grub_env_dir"),
            uboot_env_files=tuple(info.get("uboot_env_files", ())),
            keys={name: directory / path for name, path in info["keys"].items()},
        )


def _require_firmware(arch: str) -> None:
    try:
        ovmf_code() if arch == "x86_64" else uboot_arm64()
    except MachineError as err:
        if os.environ.get("CI"):
            pytest.fail(str(err))
        pytest.skip(str(err))


@pytest.fixture(scope="session", params=selected_arches())
def test_image(request: pytest.FixtureRequest) -> E2EImage:
    arch: str = request.param
    for tool in ("qemu-img", "mmdebstrap", "mkfs.fat", "mcopy", "openssl", *ARCH_TOOLS[arch]):
        require_tool(tool)
    _require_firmware(arch)
    if os.geteuid() != 0:
        pytest.skip("building the test image needs root (mmdebstrap's chroot mode)")
    subprocess.run([str(REPO / "scripts" / "build-test-image"), "--arch", arch,
                    str(BUILD_DIRS[arch])], check=True)
    image = E2EImage.load(BUILD_DIRS[arch])
    assert image.arch == arch, f"{BUILD_DIRS[arch]} holds an {image.arch} image"
    return image


def cut_for_time(image: E2EImage, reason: str) -> None:
    """Skip a scenario on arm64, where TCG emulation makes every boot slow, to keep the arm64
    suite inside its CI time budget; the skip names the scenario as cut and says why, so the
    report shows it. ``PYMENDER_E2E_FULL=1`` runs every scenario on every architecture."""
    if image.arch == "arm64" and os.environ.get("PYMENDER_E2E_FULL") != "1":
        pytest.skip(f"cut for time on arm64 (set PYMENDER_E2E_FULL=1 to run it): {reason}")


BootMachine = Callable[..., Machine]


@pytest.fixture
def boot(test_image: E2EImage, tmp_path: Path, request: pytest.FixtureRequest
         ) -> Iterator[BootMachine]:
    """``boot(**config)`` powers on a machine of the image's architecture on a fresh overlay of
    the image and waits for its shell. ``larger_disk_mb`` makes the disk that much larger than
    the image; other keyword arguments go to :class:`qemu.MachineConfig` (``extra_disks``,
    ``host_access``, ...). Every machine is killed at the end of the test."""
    machines: list[Machine] = []
    name = re.sub(r"[^\w.-]+", "_", request.node.nodeid.split("::", 1)[-1])

    def start(larger_disk_mb: int = 0, **options: Any) -> Machine:
        disk = overlay_disk(test_image.disk, tmp_path / f"disk{len(machines)}.qcow2", larger_disk_mb)
        log = LOG_DIR / f"{name}{'-' + str(len(machines)) if machines else ''}.log"
        if log.exists():
            log.unlink()
        machine = Machine(MachineConfig(disk=disk, arch=test_image.arch, **options), log)
        machines.append(machine)
        machine.start()
        return machine

    yield start
    for machine in machines:
        machine.close()

