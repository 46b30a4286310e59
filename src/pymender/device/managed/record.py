"""The deployment in progress, kept in the data store across reboots and power cuts.

One JSON file (``deployment.json``), replaced atomically at every step, says which deployment
the device works on, how far the daemon got with it (:data:`PHASES`), and holds its log lines,
which are uploaded when the deployment fails. The update itself is recorded by the state store
(:mod:`pymender.device.store`); this file only adds what the server needs to hear.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from pymender import sysio
from pymender.device.managed.deployments import now
from pymender.errors import StateError

FILE = "deployment.json"
#: downloading: the status sent, the install started (or about to start);
#: installing: downloaded, walked on by the state table (its state, reboots included, is in
#: the state store);
#: rebooting: written by earlier versions only (a root filesystem installed, the reboot into
#: it asked for, the state store in Before_ArtifactCommit_Enter); the walk goes on from there;
#: reporting: the outcome is known (``outcome``), the server has not taken it yet.
PHASES = ("downloading", "installing", "rebooting", "reporting")
MAX_LINES = 2000
#: Reboots asked for one deployment (``reboots``) before it is rolled back as failed.
MAX_REBOOTS = 3
#: How long to wait for the reboot asked for, before checking again.
REBOOT_GRACE = 300.0


class Record(NamedTuple):
    id: str
    artifact_name: str
    uri: str
    phase: str = "downloading"
    outcome: str = ""
    attempts: int = 0
    reboots: int = 0
    #: The payload's answer to NeedsArtifactReboot ("" until it was asked).
    reboot: str = ""
    log: tuple[dict[str, str], ...] = ()

    def logged(self, level: str, message: str) -> Record:
        line = {"timestamp": now(), "level": level, "message": message}
        return self._replace(log=(*self.log, line)[-MAX_LINES:])


class Records:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE

    def load(self) -> Record | None:
        try:
            document: Any = json.loads(self.path.read_text(encoding="utf-8"))
            record = Record(**{**document, "log": tuple(document.get("log", ()))})
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, OSError) as err:
            raise StateError(f"the deployment record {self.path} is damaged: {err}",
                             hint="move it away; the server then sees the deployment as not reported") from err
        if record.phase not in PHASES:
            raise StateError(f"the deployment record {self.path} has an unknown phase {record.phase!r}")
        return record

    def save(self, record: Record) -> Record:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sysio.replace_file(self.path, json.dumps(record._asdict()).encode("utf-8"))
        return record

    def clear(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        sysio.fsync_dir(self.path.parent)


__all__ = ["FILE", "MAX_REBOOTS", "PHASES", "REBOOT_GRACE", "Record", "Records"]
