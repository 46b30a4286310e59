"""A bootstrap Artifact written by upstream mender-artifact, installed by mender-update first on
a device laid out as meta-mender lays it out (the way meta-mender's mender-bootstrap-artifact
class writes it: the image's name, rootfs-image.version and .checksum, clearing rootfs-image.*).

Debian package: mender-artifact.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from device_sim import SimDevice
from helpers import require_tool

pytestmark = pytest.mark.interop


def test_upstream_bootstrap_artifact_is_installed_first(tmp_path: Path, no_host_configuration: Path) -> None:
    tool = require_tool("mender-artifact")
    device = SimDevice.create(tmp_path / "device", mender_host=no_host_configuration)
    checksum = hashlib.sha256(device.part_a.read_bytes()).hexdigest()
    bootstrap = device.data_dir / "bootstrap.mender"
    subprocess.run([tool, "write", "bootstrap-artifact", "-n", "factory-3", "-t", "qemux86-64",
                    "-p", "rootfs-image.version:factory-3", "-p", f"rootfs-image.checksum:{checksum}",
                    "-g", "fleet", "--clears-provides", "rootfs-image.*", "--no-progress", "-o", str(bootstrap)],
                   check=True, capture_output=True)
    code, out, err = device.mender_update("show-provides")
    assert code == 0, err
    assert out.splitlines() == ["artifact_group=fleet", "artifact_name=factory-3",
                                f"rootfs-image.checksum={checksum}", "rootfs-image.version=factory-3"]
    assert not bootstrap.exists()
