"""Fixtures of the end-to-end tests: the test image (built once per session) and machines.

``test_image`` runs ``scripts/build-test-image`` (a no-op when nothing changed; a warm rebuild
takes well under a minute thanks to its package cache). ``boot`` starts a machine on a fresh
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

from helpers import REPO, require_tool
from e2e.qemu import Machine, MachineConfig, MachineError, overlay_disk, ovmf_code

BUILD_DIR = Path(os.environ.get("PYMENDER_TEST_IMAGE_DIR", REPO / "build" / "test-image"))
LOG_DIR = Path(os.environ.get("PYMENDER_E2E_LOG_DIR", REPO / "build" / "e2e-logs"))


@dataclass(frozen=True)
class E2EImage:
    """What ``scripts/build-test-image`` built (its ``image.json``, paths made absolute)."""

    directory: Path
    disk: Path
    update_artifact: Path
    device_type: str
    factory_release: str
    update_release: str
    marker_file: str
    partitions: dict[str, str]
    grub_env_dir: str
    keys: dict[str, Path]

    @classmethod
    def load(cls, directory: Path) -> E2EImage:
        info: dict[str, Any] = json.loads((directory / "image.json").read_text())
        return cls(
            directory=directory,
            disk=directory / info["image"],
            update_artifact=directory / info["update_artifact"],
            device_type=info["device_type"],
            factory_release=info["factory_release"],
            update_release=info["update_release"],
            marker_file=info["marker_file"],
            partitions=dict(info["partitions"]),
            grub_env_dir=info["grub_env_dir"],
            keys={name: directory / path for name, path in info["keys"].items()},
        )


@pytest.fixture(scope="session")
def test_image() -> E2EImage:
    for tool in ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "grub-mkimage", "mkfs.fat",
                 "mcopy", "openssl"):
        require_tool(tool)
    try:
        ovmf_code()
    except MachineError as err:
        if os.environ.get("CI"):
            pytest.fail(str(err))
        pytest.skip(str(err))
    if os.geteuid() != 0:
        pytest.skip("building the test image needs root (mmdebstrap's chroot mode)")
    subprocess.run([str(REPO / "scripts" / "build-test-image"), str(BUILD_DIR)], check=True)
    return E2EImage.load(BUILD_DIR)


BootMachine = Callable[..., Machine]


@pytest.fixture
def boot(test_image: E2EImage, tmp_path: Path, request: pytest.FixtureRequest
         ) -> Iterator[BootMachine]:
    """``boot(**config)`` powers on a machine on a fresh overlay of the image and waits for
    its shell. Keyword arguments go to :class:`qemu.MachineConfig` (``extra_disks``,
    ``host_access``, ...). Every machine is killed at the end of the test."""
    machines: list[Machine] = []
    name = re.sub(r"[^\w.-]+", "_", request.node.nodeid.split("::", 1)[-1])

    def start(**options: Any) -> Machine:
        disk = overlay_disk(test_image.disk, tmp_path / f"disk{len(machines)}.qcow2")
        log = LOG_DIR / f"{name}{'-' + str(len(machines)) if machines else ''}.log"
        if log.exists():
            log.unlink()
        machine = Machine(MachineConfig(disk=disk, **options), log)
        machines.append(machine)
        machine.start()
        return machine

    yield start
    for machine in machines:
        machine.close()
