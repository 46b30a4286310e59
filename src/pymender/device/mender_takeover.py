"""Taking over the update Mender's client installed and left waiting for its commit.

A device moves from Mender's client to pymender most simply by an update: Mender's client
installs an image that runs pymender, the device reboots into it, and there pymender's
``mender-update commit`` (or ``pymender commit``) must finish what Mender's client started.
Mender keeps that update in its store (``standalone-state``, :mod:`pymender.device.mender_store`);
:func:`pending_from_mender` turns it into the pending update pymender records in its own store,
in the state Mender left it: installed, waiting for the commit. From there commit, rollback and
resume work as for an update pymender installed, with the Artifact's state scripts Mender stored
in the data store. Mender's store itself is never written.

Only that state is taken over, and only for a ``rootfs-image`` payload: it is the one state in
which the partitions tell which one the update went to (the bootloader boots it, on trial, or
went back from it). An update Mender left in any other state (stopped, interrupted, failed) is
refused with a message that says to finish it with Mender's client.

The state record (Mender 3.x and 4.x write version 1, 5.x version 2; Mender's client code):
``Version``, ``ArtifactName``, ``ArtifactGroup``, ``ArtifactTypeInfoProvides`` (absent: none),
``ArtifactClearsProvides`` (absent: none), ``PayloadTypes`` (one), and from version 2 ``InState``,
``Failed``, ``RolledBack``; a version 1 record means "installed, waiting for the commit".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pymender.device.bootenv import BOOT_PART, BOOT_PART_HEX, BOOTCOUNT, UPGRADE_AVAILABLE
from pymender.device.partitions import PartitionSet
from pymender.device.store import INSTALLED_STATE, PendingUpdate
from pymender.errors import StateError

ROOTFS_IMAGE = "rootfs-image"


def pending_from_mender(record: Any, partitions: PartitionSet, env: dict[str, str], *, scripts_dir: Path,
                        store: Path) -> PendingUpdate:
    """The pending update for Mender's ``standalone-state`` ``record`` (found in ``store``), on
    a device with these ``partitions`` and bootloader ``env``; refused (StateError) when it is
    not an installed rootfs-image update waiting for its commit."""
    name = record.get("ArtifactName") if isinstance(record, dict) else None

    def refuse(why: str) -> StateError:
        return StateError(
            f"Mender's store {store} holds an update of {name or '(no name)'} that Mender's client started "
            f"and did not finish ({why}), which pymender cannot take over",
            hint="finish it with Mender's client ('commit' or 'rollback') before switching to pymender")

    if not isinstance(record, dict) or not isinstance(name, str) or not name:
        raise refuse("its record is not readable")
    version = record.get("Version")
    state: Any
    failed: Any
    rolled_back: Any
    if version == 1:
        state, failed, rolled_back = INSTALLED_STATE, False, False
    elif version == 2:
        state, failed, rolled_back = record.get("InState"), record.get("Failed"), record.get("RolledBack")
    else:
        raise refuse(f"its record has version {version!r}")
    if record.get("PayloadTypes") != [ROOTFS_IMAGE]:
        raise refuse(f"its payload is {record.get('PayloadTypes')!r}, not rootfs-image")
    if state != INSTALLED_STATE or failed is not False or rolled_back is not False:
        raise refuse(f"it is in state {state}{', failed' if failed else ''}{', rolled back' if rolled_back else ''}")
    provides = record.get("ArtifactTypeInfoProvides")
    clears = record.get("ArtifactClearsProvides")
    group = record.get("ArtifactGroup") or ""
    if provides is not None and not (isinstance(provides, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in provides.items())):
        raise refuse("its provides are not a map of strings")
    if clears is not None and not (isinstance(clears, list) and all(isinstance(c, str) for c in clears)):
        raise refuse("its clears_provides are not a list of strings")
    if not isinstance(group, str):
        raise refuse("its group is not a string")
    # Installed: the bootloader boots the new partition, on trial. Trial over (the bootloader
    # went back): it boots the previous one. Either way the other one is the update's.
    boots = partitions.env_partition(env)
    on_trial = env.get(UPGRADE_AVAILABLE, "0").strip() == "1"
    previous = (partitions.b if boots == partitions.a else partitions.a) if on_trial else boots
    new = partitions.b if previous == partitions.a else partitions.a
    return PendingUpdate(
        artifact_name=name,
        partition=new.path,
        artifact_group=group,
        provides=provides,
        clears_provides=None if clears is None else tuple(clears),
        payload_type=ROOTFS_IMAGE,
        previous_partition=previous.path,
        previous_env={BOOT_PART: str(previous.number), BOOT_PART_HEX: previous.number_hex,
                      UPGRADE_AVAILABLE: "0", BOOTCOUNT: "0"},
        scripts_dir=str(scripts_dir),
        state=INSTALLED_STATE,
    )


__all__ = ["pending_from_mender"]
