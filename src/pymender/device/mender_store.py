"""What a device's Mender client had installed, read from Mender's store, so pymender starts there.

Mender's clients (3.x, 4.x, 5.x) keep the installed Artifact in ``<datastore>/mender-store``,
an LMDB file, under these keys of its main database:

- ``artifact-name``: the name (plain text); absent on a device that never installed anything
  (then a bootstrap Artifact, ``<datastore>/bootstrap.mender``, gives it);
- ``artifact-group``: the group (plain text; absent when there is none);
- ``artifact-provides``: a JSON object of strings, every provide but ``artifact_name`` and
  ``artifact_group`` (``rootfs-image.version``, ``rootfs-image.checksum``, ...);
- ``standalone-state``: present while a standalone update is in progress (JSON);
- others (``state``, ``authtoken``, ...): Mender's daemon only.

pymender reads the first three when it has no store of its own yet (:mod:`pymender.device.store`
asks), so ``artifact_depends`` and the provides of the installed system keep working after a
device moves from Mender's client to pymender; an update Mender installed and left waiting for
its commit is taken over (:mod:`pymender.device.mender_takeover`). Mender's file is only read
(:mod:`pymender.device.lmdb`): never written, locked or repaired. A file that cannot be read is
an error that says what to do; it is never taken for "nothing installed".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from pymender.device.lmdb import read_main_db
from pymender.errors import StateError

STORE_FILE = "mender-store"
NAME_KEY = b"artifact-name"
GROUP_KEY = b"artifact-group"
PROVIDES_KEY = b"artifact-provides"
STANDALONE_STATE_KEY = b"standalone-state"


class MenderInstalled(NamedTuple):
    """The installed Artifact as Mender's store records it."""

    #: None when the store holds no name (a device that never installed an Artifact).
    artifact_name: str | None
    artifact_group: str
    provides: dict[str, str]
    #: The name of the Artifact of a standalone update Mender started and did not finish.
    in_progress: str | None
    #: That update's record (``standalone-state``, parsed JSON; None when there is none or it
    #: is not JSON).
    standalone: Any = None


def read_mender_store(path: Path) -> MenderInstalled:
    """The installed Artifact in Mender's store ``path`` (see the module docstring)."""
    entries = read_main_db(path)

    def text(key: bytes) -> str | None:
        value = entries.get(key)
        if value is None:
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _damaged(path, f"{key.decode()} is not text") from None

    name = text(NAME_KEY)
    provides: dict[str, str] = {}
    raw = text(PROVIDES_KEY)
    if raw:
        try:
            document = json.loads(raw)
        except ValueError:
            raise _damaged(path, "artifact-provides is not JSON") from None
        if not isinstance(document, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in document.items()):
            raise _damaged(path, "artifact-provides is not a map of strings")
        provides = {k: v for k, v in document.items() if k not in ("artifact_name", "artifact_group")}
    in_progress, record = None, None
    state = text(STANDALONE_STATE_KEY)
    if state is not None:
        try:
            record = json.loads(state)
            in_progress = str(record["ArtifactName"]) if isinstance(record, dict) else "?"
        except (ValueError, KeyError, TypeError):
            in_progress = "?"
    return MenderInstalled(name or None, text(GROUP_KEY) or "", provides, in_progress, record)


def _damaged(path: Path, reason: str) -> StateError:
    return StateError(f"Mender's store {path} cannot be read: {reason}",
                      hint="the storage may be damaged; see 'Coming from Mender' in pymender's documentation")


__all__ = ["STORE_FILE", "MenderInstalled", "read_mender_store"]
