"""Updates the end-to-end tests make on the host from the test image's own: Artifacts written
with ``pymender-artifact``, the update's root filesystem taken out of its Artifact, and an
update whose system never comes up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from e2e.conftest import E2EImage
from helpers import require_tool

#: The name of :func:`no_init_artifact`'s update.
NO_INIT_RELEASE = "release-no-init"


def artifact_tool() -> str:
    """``pymender-artifact``: the virtual environment's (not always on PATH), else PATH's."""
    tool = Path(sys.executable).with_name("pymender-artifact")
    return str(tool) if tool.exists() else "pymender-artifact"


def write_artifact(out: Path, image: Path, *, device_type: str, key: Path | None,
                   compression: str = "gzip", name: str = "release-bad") -> Path:
    """A rootfs-image Artifact of the filesystem ``image``, signed with ``key`` unless None."""
    args = [artifact_tool(), "write", "rootfs-image", "-n", name, "-t", device_type,
            "-f", str(image), "--compression", compression, "--no-progress", "-o", str(out)]
    if key is not None:
        args += ["-k", str(key)]
    subprocess.run(args, check=True)
    return out


def update_rootfs(image: E2EImage, out: Path) -> Path:
    """The update's root filesystem (an ext4 image), out of the update Artifact."""
    with out.open("wb") as file:
        subprocess.run([artifact_tool(), "cat", str(image.update_artifact)], stdout=file, check=True)
    return out


def no_init_artifact(image: E2EImage, directory: Path) -> Path:
    """A signed update for this machine that holds the update's kernel and initramfs and
    nothing else: the bootloader boots it, the initramfs mounts it, and no init is there."""
    debugfs = require_tool("debugfs")
    update = update_rootfs(image, directory / "update.ext4")
    listing = subprocess.run([debugfs, "-R", "ls -p /boot", str(update)], capture_output=True, text=True,
                             check=True).stdout
    names = [line.strip("/").split("/")[4] for line in listing.splitlines() if line.startswith("/")]
    tree = directory / "no-init"
    (tree / "boot").mkdir(parents=True)
    for prefix, link in (("vmlinuz-", "vmlinuz"), ("initrd.img-", "initrd.img")):
        found = sorted(name for name in names if name.startswith(prefix))
        assert found, f"no /boot/{prefix}* in {image.update_artifact}: {names}"
        subprocess.run([debugfs, "-R", f"dump /boot/{found[0]} {tree / 'boot' / link}", str(update)],
                       check=True, capture_output=True)
    update.unlink()
    size_mb = sum(path.stat().st_size for path in (tree / "boot").iterdir()) // (1 << 20) + 16
    rootfs = directory / "no-init.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", str(tree), str(rootfs), f"{size_mb}M"],
                   check=True, stdout=subprocess.DEVNULL)
    return write_artifact(directory / "no-init.mender", rootfs, device_type=image.device_type,
                          key=image.keys["signing_key"], name=NO_INIT_RELEASE)


__all__ = ["NO_INIT_RELEASE", "artifact_tool", "no_init_artifact", "update_rootfs", "write_artifact"]
