"""Mender's own data store (``mender-store``), written by Debian's real Mender client.

pymender reads Mender's LMDB store read-only (:mod:`pymender.device.mender_store`). Its tests
must read stores that Mender wrote, never stores written by pymender's code or by a library
pretending to be Mender. This module runs Debian's ``mender-client`` package (3.4, the Go client;
the keys and values it stores are those of the 5.x C++ client too) in standalone mode and keeps a
copy of its store at three moments:

- ``empty.mender-store``: Mender has opened its store but recorded nothing (``show-artifact``
  on a new device; no ``artifact-name`` key, as before a bootstrap Artifact is installed);
- ``installed.mender-store``: after ``mender install``: an update in progress
  (``standalone-state``), the factory name not yet in the store;
- ``committed.mender-store``: after ``mender commit``: ``artifact-name``, ``artifact-group``
  and ``artifact-provides`` of the installed Artifact.

How the client is run without touching the host: two files stand in for the partitions,
attached as loop devices (3.4 refuses regular files); ``fw_printenv``/``fw_setenv`` wrappers use
a private ``fw_env.config`` whose environment is two regular files; a ``mount`` wrapper says
loop device A is mounted on ``/``; a private mount namespace (``unshare -m``) puts a scratch
directory on ``/etc/mender``, where 3.4 reads ``artifact_info`` (the factory name) and its rootfs
scripts. Needs root, ``losetup``, ``unshare``, ``mender`` and ``mender-artifact``.

``tests/fixtures/mender-store/`` holds the stores this module made, with ``expected.json`` (what
was installed, as this module asked Mender to install it), for the unit tests. To make them
again: ``python tests/interop/mender_client.py tests/fixtures/mender-store``. The interop test
makes new ones on every run and checks the reader against them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: What the client is asked to install.
DEVICE_TYPE = "test-device"
FACTORY_NAME = "release-1"
ARTIFACT_NAME = "release-2"
ARTIFACT_GROUP = "fleet-a"
#: Enough provides that Mender's JSON of them (about 5 KiB) does not fit a 4 KiB page: LMDB
#: keeps such a value on overflow pages, which the reader must follow.
EXTRA_PROVIDES = {"app.version": "2.0.0",
                  **{f"app.component-{index:02}.version": f"2.0.{index}-built-for-the-overflow-page-test"
                     for index in range(80)}}
PART_SIZE = 8 << 20
ENV_SIZE = 0x4000
#: The moments at which the store is kept, by file name (``<name>.mender-store``).
STORES = ("empty", "installed", "committed")


def blocker() -> str | None:
    """Why the real client cannot be run here, or None."""
    for tool in ("mender", "mender-artifact", "losetup", "unshare", "fw_printenv", "fw_setenv", "mkenvimage"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
            return f"{tool} is not installed"
    if os.geteuid() != 0:
        return "running Mender's client on loop devices needs root"
    if subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False).returncode:
        return "cannot create a mount namespace (unshare -m)"
    return None


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result  # type: ignore[no-any-return]


def _env_files(root: Path, number: int) -> Path:
    """A U-Boot environment in two regular files (U-Boot's mkenvimage, redundant format) that
    boots partition ``number``: 3.x takes the partition number from the device name's trailing
    digits (``/dev/loop5`` is 5) and wants it in ``mender_boot_part``."""
    config = root / "fw_env.config"
    config.write_text(f"{root / 'env1'} 0 {ENV_SIZE:#x}\n{root / 'env2'} 0 {ENV_SIZE:#x}\n")
    text = root / "env.txt"
    text.write_text(f"mender_boot_part={number}\nmender_boot_part_hex={number:x}\nupgrade_available=0\nbootcount=0\n")
    _run(["mkenvimage", "-r", "-s", f"{ENV_SIZE:#x}", "-o", str(root / "env1"), str(text)])
    shutil.copyfile(root / "env1", root / "env2")
    return config


def make_stores(out: Path) -> dict[str, object]:
    """Run the client and copy its store to ``out`` at each moment of :data:`STORES`; write and
    return ``expected.json`` (what was installed)."""
    reason = blocker()
    if reason:
        raise RuntimeError(reason)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pymender-mender-client-") as tmp:
        root = Path(tmp)
        part_a, part_b = root / "rootfs-a.img", root / "rootfs-b.img"
        for part in (part_a, part_b):
            part.write_bytes(bytes(PART_SIZE))
        loops: list[str] = []
        try:
            for part in (part_a, part_b):
                loops.append(_run(["losetup", "-f", "--show", str(part)]).stdout.strip())
            expected = _drive(root, loops, out)
        finally:
            for loop in loops:
                subprocess.run(["losetup", "-d", loop], check=False)
    (out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    return expected


def _drive(root: Path, loops: list[str], out: Path) -> dict[str, object]:
    config = _env_files(root, int(loops[0].rstrip("/").removeprefix("/dev/loop")))
    bin_dir, data, etc = root / "bin", root / "data", root / "etc-mender"
    for folder in (bin_dir, data, etc):
        folder.mkdir()
    for tool in ("fw_printenv", "fw_setenv"):
        real = shutil.which(tool) or f"/usr/bin/{tool}"
        (bin_dir / tool).write_text(f'#!/bin/sh\nexec {real} -c "{config}" "$@"\n')
        (bin_dir / tool).chmod(0o755)
    (bin_dir / "mount").write_text(f'#!/bin/sh\necho "{loops[0]} on / type ext4 (rw,relatime)"\n')
    (bin_dir / "mount").chmod(0o755)
    (data / "device_type").write_text(f"device_type={DEVICE_TYPE}\n")
    (root / "mender.conf").write_text(json.dumps({"RootfsPartA": loops[0], "RootfsPartB": loops[1]}))
    runner = root / "run-mender"
    runner.write_text(
        "#!/bin/sh\n"
        f'mount --bind "{etc}" /etc/mender || exit 99\n'
        f'PATH="{bin_dir}:$PATH" exec mender -no-syslog -config "{root / "mender.conf"}" -data "{data}" "$@"\n')
    runner.chmod(0o755)

    def mender(*args: str) -> str:
        return _run(["unshare", "-m", str(runner), *args]).stdout

    store = data / "mender-store"
    # A new device: no name anywhere. The client opens (creates) its store and records nothing.
    subprocess.run(["unshare", "-m", str(runner), "show-artifact"], capture_output=True, check=False)
    shutil.copyfile(store, out / "empty.mender-store")

    payload = root / "rootfs.img"
    payload.write_bytes(hashlib.sha256(b"pymender").digest() * (PART_SIZE // 64))
    artifact = root / f"{ARTIFACT_NAME}.mender"
    args = ["mender-artifact", "write", "rootfs-image", "-n", ARTIFACT_NAME, "-t", DEVICE_TYPE,
            "-g", ARTIFACT_GROUP, "-f", str(payload), "-o", str(artifact)]
    for key, value in EXTRA_PROVIDES.items():
        args += ["--provides", f"{key}:{value}"]
    _run(args)
    (etc / "artifact_info").write_text(f"artifact_name={FACTORY_NAME}\n")
    mender("install", str(artifact))
    shutil.copyfile(store, out / "installed.mender-store")
    mender("commit")  # 3.x commits without checking that the device runs the new partition
    shutil.copyfile(store, out / "committed.mender-store")
    env = _run(["fw_printenv", "-c", str(config)]).stdout
    if "upgrade_available=0" not in env.split():
        raise RuntimeError(f"the client did not commit:\n{env}")
    checksum = hashlib.sha256(payload.read_bytes()).hexdigest()
    return {
        "client": _run(["mender", "--version"]).stdout.split()[0],
        "device_type": DEVICE_TYPE,
        "factory_name": FACTORY_NAME,
        "artifact_name": ARTIFACT_NAME,
        "artifact_group": ARTIFACT_GROUP,
        "provides": {"rootfs-image.version": ARTIFACT_NAME, "rootfs-image.checksum": checksum,
                     **EXTRA_PROVIDES},
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUTPUT_DIR")
    print(json.dumps(make_stores(Path(sys.argv[1])), indent=1))
