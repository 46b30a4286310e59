"""A simulated A/B device on the host, for the tests of ``pymender`` (install, commit, rollback).

Regular files stand in for the two root filesystem partitions, a GRUB environment directory (or
U-Boot environment files with an ``fw_env.config``) for the bootloader's storage, and
:meth:`SimDevice.boot` plays the bootloader: the boot logic of DESIGN.md section 3.3, then it
pins ``RootDevice`` in the configuration to the partition it "booted", as a real boot would change
what ``/`` is mounted from.

With ``mender_host`` (the directory the tests' ``no_host_configuration`` fixture points Mender's
variables at), the device is laid out as meta-mender lays out a Mender device: the data store is
Mender's (``var-lib-mender``: ``device_type``, later ``mender-store``, ``bootstrap.mender``),
``RootfsPartA``/``RootfsPartB`` are in Mender's fallback configuration file
(``var-lib-mender/mender.conf``), the rest in Mender's own (``etc-mender/mender.conf``, with the
keys only a host needs: ``RootDevice``, the bootloader's place), and pymender has no file of its
own.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artifact_factory import make_image, write_rootfs
from pymender.cli.common import run_cli
from pymender.device.bootenv import BOOT_PART, BOOT_PART_HEX, BOOTCOUNT, UPGRADE_AVAILABLE, GrubEnv, UBootEnv
from pymender.device.bootenv.base import BootEnv
from pymender.device.config import DeviceConfig, load_config
from pymender.device.install import Updater
from pymender.device.store import StateStore

PART_SIZE = 1 << 20
DEVICE_TYPE = "qemux86-64"
FAST_SOURCE = {"retries": 3, "backoff": 0.01, "timeout": 5.0, "sleep": lambda seconds: None}
UBOOT_ENV_SIZE = 0x4000


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: Keys that a device in Mender's layout does not have (they would name pymender's own layout).
_OWN_LAYOUT_KEYS = ("DataDir", "ScriptsDir")


@dataclass
class SimDevice:
    root: Path
    bootloader: str = "grub"
    #: Mender's directories (see the module docstring); None: pymender's own layout.
    mender_host: Path | None = None

    # --- layout ------------------------------------------------------------------------------

    @property
    def part_a(self) -> Path:
        return self.root / "rootfs-a.img"

    @property
    def part_b(self) -> Path:
        return self.root / "rootfs-b.img"

    @property
    def config_path(self) -> Path:
        if self.mender_host is not None:
            return self.mender_host / "etc-mender" / "mender.conf"
        return self.root / "pymender.conf"

    @property
    def fallback_config_path(self) -> Path:
        """Mender's fallback configuration file (Mender's layout only)."""
        assert self.mender_host is not None
        return self.data_dir / "mender.conf"

    @property
    def data_dir(self) -> Path:
        if self.mender_host is not None:
            return self.mender_host / "var-lib-mender"
        return self.root / "data"

    @property
    def scripts_dir(self) -> Path:
        if self.mender_host is not None:
            return self.mender_host / "etc-mender" / "scripts"
        return self.root / "scripts"

    @property
    def grub_dir(self) -> Path:
        return self.root / "grubenv"

    @property
    def fw_env_config(self) -> Path:
        return self.root / "fw_env.config"

    @classmethod
    def create(cls, root: Path, *, bootloader: str = "grub", part_size: int = PART_SIZE,
               device_type: str = DEVICE_TYPE, artifact_name: str = "release-1", mender_host: Path | None = None,
               **config: Any) -> SimDevice:
        root.mkdir(parents=True, exist_ok=True)
        device = cls(root, bootloader, mender_host)
        if mender_host is not None:
            device.config_path.parent.mkdir(parents=True, exist_ok=True)
        old = make_image(root / "factory.img", size=part_size // 3, seed=0).read_bytes()
        device.part_a.write_bytes(old + bytes(part_size - len(old)))
        device.part_b.write_bytes(b"\xff" * part_size)
        device.data_dir.mkdir()
        (device.data_dir / "device_type").write_text(f"device_type={device_type}\n")
        (root / "artifact_info").write_text(f"artifact_name={artifact_name}\n")
        device.scripts_dir.mkdir(parents=True)
        if bootloader == "grub":
            device.grub_dir.mkdir()
        else:
            device.fw_env_config.write_text(
                f"{root / 'uboot-env1'} 0 {UBOOT_ENV_SIZE:#x}\n{root / 'uboot-env2'} 0 {UBOOT_ENV_SIZE:#x}\n"
            )
        device.env().initialize({BOOT_PART: "2", BOOT_PART_HEX: "2", UPGRADE_AVAILABLE: "0", BOOTCOUNT: "0"})
        device.write_config(device.part_a, **config)
        return device

    def write_config(self, running: Path, **extra: Any) -> None:
        document: dict[str, Any] = {
            "RootfsPartA": str(self.part_a),
            "RootfsPartB": str(self.part_b),
            "RootDevice": str(running),
            "Bootloader": self.bootloader,
            "DataDir": "data",
            "ScriptsDir": "scripts",
            "ArtifactInfoFile": "artifact_info",
            "StateScriptRetryIntervalSeconds": 1,
            "StateScriptRetryTimeoutSeconds": 2,
        }
        if self.bootloader == "grub":
            document["GrubEnvDir"] = "grubenv"
        else:
            document["UBootEnvConfig"] = "fw_env.config"
        old = self.config_document() if self.config_path.exists() else {}
        for key in ("ArtifactVerifyKey", "SkipIdenticalBlocks"):
            if key in old:
                document[key] = old[key]
        document.update(extra)
        if self.mender_host is not None:
            for key in _OWN_LAYOUT_KEYS:
                document.pop(key, None)
            for key, path in (("GrubEnvDir", self.grub_dir), ("UBootEnvConfig", self.fw_env_config),
                              ("ArtifactInfoFile", self.root / "artifact_info")):
                if key in document:  # not relative to Mender's configuration directory
                    document[key] = str(path)
            fallback = {key: document.pop(key) for key in ("RootfsPartA", "RootfsPartB")}
            self.fallback_config_path.write_text(json.dumps(fallback, indent=4, sort_keys=True))
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(document, indent=1))
        tmp.replace(self.config_path)

    def config_document(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.config_path.read_text())
        if self.mender_host is not None:
            result.update(json.loads(self.fallback_config_path.read_text()))
        return result

    def env(self) -> BootEnv:
        if self.bootloader == "grub":
            return GrubEnv(self.grub_dir, lock_file=None)
        return UBootEnv.from_config(self.fw_env_config, lock_file=None)

    def read_env(self) -> dict[str, str]:
        return self.env().read()

    @property
    def running(self) -> Path:
        return Path(self.config_document()["RootDevice"])

    def store(self) -> StateStore:
        return StateStore(self.data_dir, artifact_info=self.root / "artifact_info",
                          mender_store=self.data_dir / "mender-store")

    def load_config(self) -> DeviceConfig:
        """The device's configuration, read as the command reads it."""
        return load_config(None) if self.mender_host is not None else load_config(self.config_path)

    def updater(self, **options: Any) -> Updater:
        options.setdefault("source_options", FAST_SOURCE)
        return Updater(self.load_config(), **options)

    # --- the bootloader ------------------------------------------------------------------------

    def partition(self, number: str) -> Path:
        return {"2": self.part_a, "3": self.part_b}[number]

    def boot(self) -> Path:
        """One boot, as Mender's boot integration does it; returns the partition booted."""
        env = self.env()
        values = env.read()
        if values.get(UPGRADE_AVAILABLE) == "1":
            if values.get(BOOTCOUNT, "0") != "0":
                other = "3" if values[BOOT_PART] == "2" else "2"
                env.write({BOOT_PART: other, BOOT_PART_HEX: other, UPGRADE_AVAILABLE: "0", BOOTCOUNT: "0"})
            else:
                env.write({BOOTCOUNT: "1"})
        booted = self.partition(env.read()[BOOT_PART])
        self.write_config(booted)
        return booted

    # --- observing -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything an install must not change when it refuses."""
        store = self.data_dir / "store.json"
        if self.bootloader == "grub":
            env_files = {str(p.relative_to(self.root)): p.read_bytes() for p in sorted(self.grub_dir.rglob("*"))
                         if p.is_file()}
        else:
            env_files = {name: (self.root / name).read_bytes() for name in ("uboot-env1", "uboot-env2")}
        return {
            "a": sha(self.part_a),
            "b": sha(self.part_b),
            "env": env_files,
            "store": store.read_bytes() if store.exists() else None,
        }

    def cli(self, *args: str) -> tuple[int, str, str]:
        """Run ``pymender -c <config> ARGS`` in this process (without ``-c`` in Mender's
        layout); (exit code, stdout, stderr)."""
        from pymender.cli.device import main

        own = ["-c", str(self.config_path)] if self.mender_host is None else []
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run_cli("pymender", main, [*own, *args])
        return code, out.getvalue(), err.getvalue()

    def mender_update(self, *args: str) -> tuple[int, str, str]:
        """Run ``mender-update ARGS`` in this process; (exit code, stdout, stderr)."""
        from pymender.cli.mender_update import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run_cli("mender-update", main, list(args))
        return code, out.getvalue(), err.getvalue()


def release(tmp: Path, name: str, *, seed: int, size: int = PART_SIZE // 2, **options: Any) -> tuple[Path, bytes]:
    """A rootfs-image Artifact ``name`` and the image bytes it carries."""
    tmp.mkdir(parents=True, exist_ok=True)
    image = make_image(tmp / f"{name}.ext4", size=size, seed=seed)
    options.setdefault("compression", "none")
    options.setdefault("device_types", (DEVICE_TYPE,))
    artifact = write_rootfs(tmp, name, image=image, out=f"{name}.mender", **options)
    return artifact, image.read_bytes()


def holds(partition: Path, image: bytes) -> bool:
    """Whether ``partition`` starts with exactly ``image``."""
    with partition.open("rb") as f:
        return f.read(len(image)) == image
