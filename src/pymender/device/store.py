"""The persistent state store: what is installed, and the update in progress if any.

One small JSON document, ``<DataDir>/store.json``, replaced as a whole on every change: written
to a temporary file, fsynced, renamed over the old one, and the directory fsynced. A rename is
atomic, so after a power cut at any instant the store holds the complete old document or the
complete new one. JSON with write-rename rather than SQLite because it needs nothing beyond the
standard library's ``os`` (embedded Python builds often leave out ``sqlite3``), its durability
does not depend on journal settings, and a person can read it with ``cat``.

Callers serialise writers (the updater's lock); the store itself does not lock. What the state
of a pending update means, and which changes are allowed, is :mod:`pymender.device.flow`'s
business; the store keeps the name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from pymender.device.log import get_logger
from pymender.errors import NothingToDoError, StateError
from pymender.sysio import replace_file

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pymender.device.mender_store import MenderInstalled

log = get_logger(__name__)

STORE_FILE = "store.json"
FORMAT_VERSION = 1
UNKNOWN_ARTIFACT = "unknown"
INCONSISTENT_SUFFIX = "_INCONSISTENT"
DEFAULT_ARTIFACT_INFO_FILE = Path("/etc/mender/artifact_info")
#: The default of the mappings below: shared by every instance, so it must never change.
_NOTHING: Mapping[str, str] = MappingProxyType({})
#: The state of a pending update recorded without one (installed, waiting for the commit).
INSTALLED_STATE = "Before_ArtifactCommit_Enter"


# The records below are named tuples, not dataclasses: importing dataclasses costs every
# ``pymender`` command start-up time. Immutable; ``_replace`` makes a changed copy.


class DeviceState(NamedTuple):
    """The installed Artifact: its name, group and provides."""

    artifact_name: str
    artifact_group: str = ""
    #: Provides other than ``artifact_name``/``artifact_group`` (``rootfs-image.version``, ...).
    provides: Mapping[str, str] = _NOTHING

    def all_provides(self) -> dict[str, str]:
        """Every provide, including ``artifact_name`` and ``artifact_group`` (when set)."""
        result = dict(self.provides)
        result["artifact_name"] = self.artifact_name
        if self.artifact_group:
            result["artifact_group"] = self.artifact_group
        return result


class PendingUpdate(NamedTuple):
    """An update installed (or being installed) but not yet committed or rolled back."""

    artifact_name: str
    #: The partition (device or file) the payload was written to.
    partition: str
    artifact_group: str = ""
    #: The Artifact's type-info provides; None when its header has none.
    provides: Mapping[str, str] | None = None
    #: The Artifact's ``clears_artifact_provides`` globs; None when its header has none.
    clears_provides: tuple[str, ...] | None = None
    payload_type: str = "rootfs-image"
    #: The partition that was running when the update was installed.
    previous_partition: str = ""
    #: Bootloader variables as they were before the switch (to restore them on rollback).
    previous_env: Mapping[str, str] = _NOTHING
    #: Where this Artifact's state scripts were stored, if it had any.
    scripts_dir: str | None = None
    #: How far it got: a state name of :class:`pymender.device.flow.UpdateState`.
    state: str = INSTALLED_STATE
    failed: bool = False
    rolled_back: bool = False


# --- Mender's provides semantics ------------------------------------------------------------------


def clears_match(pattern: str, key: str) -> bool:
    """Whether a ``clears_artifact_provides`` pattern matches ``key`` (only ``*`` is special)."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, key, flags=re.DOTALL) is not None


def apply_update(
    current: DeviceState, update: PendingUpdate, *, inconsistent: bool = False
) -> DeviceState:
    """The device state after committing ``update``, with Mender's rules for provides.

    - neither provides nor clears in the Artifact: every old provide is dropped;
    - clears only: old provides matching a clears pattern are dropped, the rest kept;
    - provides only: they replace every old provide (as if clears were ``["*"]``);
    - both: old provides matching a clears pattern are dropped, then the new ones added.
    """
    old = dict(current.provides)
    if update.clears_provides is None:  # covers "neither" and "provides only"
        result: dict[str, str] = {}
    else:
        patterns = update.clears_provides
        result = {k: v for k, v in old.items() if not any(clears_match(p, k) for p in patterns)}
    result.update(update.provides or {})
    result.pop("artifact_name", None)
    result.pop("artifact_group", None)
    name = update.artifact_name + (INCONSISTENT_SUFFIX if inconsistent else "")
    return DeviceState(artifact_name=name, artifact_group=update.artifact_group, provides=result)


# --- the store ------------------------------------------------------------------------------------


def read_artifact_info(path: Path) -> tuple[str, str] | None:
    """``artifact_name`` and ``artifact_group`` from an ``artifact_info`` file, if it names one."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    name = values.get("artifact_name", "")
    return (name, values.get("artifact_group", "")) if name else None


class StateStore:
    """The store in ``data_dir`` (see the module docstring).

    Before pymender's own store exists, the installed Artifact comes from, in this order:
    Mender's store ``mender_store`` (a device moved from Mender's client; read only, see
    :mod:`pymender.device.mender_store`), when it names one; else ``artifact_info``; else
    ``unknown``. The first change writes pymender's store, which from then on is the only one
    read.
    """

    def __init__(
        self, data_dir: Path, *, artifact_info: Path | None = DEFAULT_ARTIFACT_INFO_FILE,
        mender_store: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.artifact_info = artifact_info
        self.mender_store = mender_store
        self._imported: MenderInstalled | None = None

    @property
    def path(self) -> Path:
        return self.data_dir / STORE_FILE

    # --- reading ---------------------------------------------------------------------------------

    def current(self) -> DeviceState:
        """The installed Artifact (before the first update: see the class docstring)."""
        return self._load()[0]

    def pending(self) -> PendingUpdate | None:
        """The update in progress, or None. Before pymender's own store exists, an update in
        progress in Mender's store must be taken over first (:meth:`take_over`)."""
        state, pending = self._load()
        if pending is None and not self.path.exists():
            imported = self._mender()
            if imported is not None and imported.in_progress is not None:
                raise StateError(
                    f"Mender's store {self.mender_store} holds an update of {imported.in_progress} that "
                    "pymender has not taken over", hint="run 'pymender commit' or 'pymender rollback'")
        return pending

    def mender_update(self) -> Any:
        """The record of the update in progress in Mender's store (``standalone-state``), before
        pymender has its own store; None when there is none. ``{}`` when the record is not
        readable (it cannot be taken over)."""
        if self.path.exists():
            return None
        imported = self._mender()
        if imported is None or imported.in_progress is None:
            return None
        return imported.standalone if imported.standalone is not None else {}

    def take_over(self, update: PendingUpdate) -> None:
        """Record the installed Artifact (as read before pymender's own store exists) and
        ``update``, the update Mender's client left in progress, in pymender's first store."""
        if self.path.exists():
            raise StateError(f"the state store {self.path} exists: there is nothing to take over")
        self._save(self._bootstrap(), update)

    def has_name(self) -> bool:
        """Whether the installed Artifact's name is recorded: in pymender's store, or in
        Mender's (``artifact_info`` does not count: a bootstrap Artifact takes precedence)."""
        if self.path.exists():
            return True
        imported = self._mender()
        return imported is not None and imported.artifact_name is not None

    def _mender(self) -> MenderInstalled | None:
        """What Mender's store holds (read once), or None without one."""
        if self.mender_store is None or not self.mender_store.exists():
            return None
        if self._imported is None:
            from pymender.device.mender_store import read_mender_store

            self._imported = read_mender_store(self.mender_store)
            log.info("read the installed Artifact %s from Mender's store %s",
                     self._imported.artifact_name or "(none)", self.mender_store)
        return self._imported

    def _bootstrap(self) -> DeviceState:
        imported = self._mender()
        if imported is not None and imported.artifact_name is not None:
            return DeviceState(imported.artifact_name, imported.artifact_group, dict(imported.provides))
        info = read_artifact_info(self.artifact_info) if self.artifact_info else None
        if info is None:
            return DeviceState(artifact_name=UNKNOWN_ARTIFACT)
        return DeviceState(artifact_name=info[0], artifact_group=info[1])

    def _load(self) -> tuple[DeviceState, PendingUpdate | None]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return self._bootstrap(), None
        except (OSError, UnicodeDecodeError) as err:
            raise self._damaged(getattr(err, "strerror", None) or str(err)) from None
        try:
            return _decode(json.loads(text))
        except (ValueError, TypeError, KeyError) as err:
            raise self._damaged(str(err)) from None

    def _damaged(self, reason: str) -> StateError:
        return StateError(
            f"the state store {self.path} cannot be read: {reason}",
            hint="the storage may be damaged; move the file away to start from 'unknown'",
        )

    # --- changing --------------------------------------------------------------------------------

    def _save(self, state: DeviceState, pending: PendingUpdate | None) -> None:
        if not self.data_dir.is_dir():
            self.data_dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps(_encode(state, pending), indent=1, sort_keys=True) + "\n"
        try:
            replace_file(self.path, data.encode("utf-8"))
        except OSError as err:
            raise StateError(
                f"cannot write the state store {self.path}: {err.strerror or err}"
            ) from None

    def set_current(self, state: DeviceState) -> None:
        """Record ``state`` as installed (provisioning, tests); a pending update is kept."""
        self._save(state, self._load()[1])

    def begin_pending(self, update: PendingUpdate) -> None:
        """Record ``update`` as in progress; refused when another one is."""
        if not update.artifact_name:
            raise StateError("an update without an Artifact name cannot be recorded")
        state, pending = self._load()
        if pending is not None:
            raise StateError(
                f"an update ({pending.artifact_name}) is already in progress",
                hint="run 'pymender commit' or 'pymender rollback' first",
            )
        self._save(state, update)

    def update_pending(self, **changes: Any) -> PendingUpdate:
        """Change fields of the pending update (``state=...``, ``failed=True``, ...)."""
        state, pending = self._load()
        if pending is None:
            raise NothingToDoError("no update in progress")
        updated = pending._replace(**changes)
        self._save(state, updated)
        return updated

    def commit_pending(self, *, inconsistent: bool = False) -> DeviceState:
        """Make the pending update current (provides applied) and forget it, in one write.

        ``inconsistent`` records the name with ``_INCONSISTENT`` appended, as Mender does when an
        update failed and could not be rolled back.
        """
        state, pending = self._load()
        if pending is None:
            raise NothingToDoError("there is nothing to commit: no update in progress")
        new_state = apply_update(state, pending, inconsistent=inconsistent)
        self._save(new_state, None)
        return new_state

    def discard_pending(self) -> None:
        """Forget the pending update; the installed Artifact stays as it was."""
        state, pending = self._load()
        if pending is None:
            raise NothingToDoError("no update in progress")
        self._save(state, None)


# --- the JSON document ----------------------------------------------------------------------------


def _encode(state: DeviceState, pending: PendingUpdate | None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "artifact_name": state.artifact_name,
        "artifact_group": state.artifact_group,
        "provides": dict(state.provides),
        "pending": None,
    }
    if pending is not None:
        record = pending._asdict()
        record["provides"] = None if pending.provides is None else dict(pending.provides)
        record["previous_env"] = dict(pending.previous_env)
        record["clears_provides"] = (
            None if pending.clears_provides is None else list(pending.clears_provides)
        )
        document["pending"] = record
    return document


def _strings(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"{what} is not a map of strings")
    return dict(value)


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} is not a non-empty string")
    return value


def _decode(document: Any) -> tuple[DeviceState, PendingUpdate | None]:
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    if document.get("format") != FORMAT_VERSION:
        raise ValueError(f"unsupported format {document.get('format')!r}")
    name, group = document["artifact_name"], document.get("artifact_group", "")
    if not isinstance(name, str) or not isinstance(group, str):
        raise ValueError("artifact_name/artifact_group are not strings")
    state = DeviceState(name, group, _strings(document.get("provides", {}), "provides"))
    raw = document.get("pending")
    if raw is None:
        return state, None
    if not isinstance(raw, dict):
        raise ValueError("pending is not an object")
    clears = raw.get("clears_provides")
    if clears is not None and not (
        isinstance(clears, list) and all(isinstance(c, str) for c in clears)
    ):
        raise ValueError("clears_provides is not a list of strings")
    provides = raw.get("provides")
    pending = PendingUpdate(
        artifact_name=str(raw["artifact_name"]),
        partition=str(raw["partition"]),
        artifact_group=str(raw.get("artifact_group", "")),
        provides=None if provides is None else _strings(provides, "pending provides"),
        clears_provides=None if clears is None else tuple(clears),
        payload_type=str(raw.get("payload_type", "rootfs-image")),
        previous_partition=str(raw.get("previous_partition", "")),
        previous_env=_strings(raw.get("previous_env", {}), "previous_env"),
        scripts_dir=None if raw.get("scripts_dir") is None else str(raw["scripts_dir"]),
        state=_string(raw.get("state", INSTALLED_STATE), "state"),
        failed=bool(raw.get("failed", False)),
        rolled_back=bool(raw.get("rolled_back", False)),
    )
    return state, pending
