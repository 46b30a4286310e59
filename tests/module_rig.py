"""A simulated device in Mender's layout with Update Modules installed (see device_sim)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from device_sim import SimDevice
from pymender.artifact import builders
from pymender.artifact.writer import write_artifact

REPO = Path(__file__).resolve().parent.parent
#: pymender's shipped Update Modules.
SHIPPED = REPO / "modules"
#: Mender's own modules, as Debian's mender-client package installs them.
MENDERS = Path("/usr/share/mender/modules/v3")
RECORDER = Path(__file__).parent / "unit" / "device" / "modules" / "recorder.py"
PAYLOAD = b"".join(bytes([i % 251]) * 7 for i in range(20000))


class Rig:
    """A simulated device in Mender's layout; its modules directory is :attr:`modules`."""

    def __init__(self, tmp: Path, host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        self.device = SimDevice.create(tmp / "dev", mender_host=host)
        self.modules = host / "usr-share-mender" / "modules" / "v3"
        self.modules.mkdir(parents=True, exist_ok=True)
        self.log = tmp / "calls.jsonl"
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("RECORDER_LOG", str(self.log))
        self.behave({})
        self.tree = self.device.data_dir / "modules" / "v3" / "payloads" / "0000" / "tree"

    def behave(self, behaviour: dict[str, Any]) -> None:
        self.monkeypatch.setenv("RECORDER_BEHAVE", json.dumps(behaviour))

    def artifact(self, name: str = "app-1", *, payload_type: str = "rec", files: dict[str, bytes] | None = None,
                 meta_data: dict[str, Any] | None = None, scripts: list[Path] | None = None) -> Path:
        contents = {"payload.bin": PAYLOAD} if files is None else files
        paths = []
        for file_name, data in contents.items():
            path = self.tmp / "files" / name / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            paths.append(path)
        common = builders.CommonOptions(name=name, device_types=["qemux86-64"], scripts=scripts or [])
        spec = builders.module_image(common, payload_type, paths, meta_data, builders.SoftwareOptions())
        out = self.tmp / f"{name}-{payload_type}.mender"
        write_artifact(spec, out, compression_name="none", signer=None, threads=1)
        return out

    def recording_scripts(self, *names: str) -> list[Path]:
        """State scripts (``ArtifactInstall_Error`` ...) that record their own name in the
        module's log, so that the log holds the scripts and the module's calls in order."""
        made = []
        for name in names:
            path = self.tmp / "scripts" / f"{name}_01_rec"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"#!/bin/sh\necho '{json.dumps({'state': name})}' >> '{self.log}'\n")
            path.chmod(0o755)
            made.append(path)
        return made

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        records = [json.loads(line) for line in self.log.read_text().splitlines()]
        self.log.unlink()
        return records

    def install_module(self, source: Path, name: str | None = None) -> Path:
        """Copy the module ``source`` into the device's modules directory."""
        target = self.modules / (name or source.name)
        target.write_bytes(source.read_bytes())
        target.chmod(0o755)
        return target


def install_recorder(path: Path) -> None:
    path.write_text(f"#!{sys.executable}\n" + RECORDER.read_text())
    path.chmod(0o755)


def module_artifact(tmp: Path, name: str, payload_type: str = "rec", device_type: str = "qemux86-64") -> Path:
    """A module-image Artifact ``name`` for ``payload_type`` with :data:`PAYLOAD` as its one file."""
    payload = tmp / "files" / name / "payload.bin"
    payload.parent.mkdir(parents=True, exist_ok=True)
    payload.write_bytes(PAYLOAD)
    spec = builders.module_image(builders.CommonOptions(name=name, device_types=[device_type]), payload_type,
                                 [payload], None, builders.SoftwareOptions())
    out = tmp / f"{name}-{payload_type}.mender"
    write_artifact(spec, out, compression_name="none", signer=None, threads=1)
    return out
