"""Taking over the update Mender's client left waiting for its commit: which records are taken
over, and which partition the update went to. (The whole path, with a store the real client
wrote, is in tests/unit/cli/test_mender_update_cli.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pymender.device.mender_takeover import pending_from_mender
from pymender.device.partitions import Partition, PartitionSet
from pymender.errors import StateError

A = Partition("/dev/mmcblk0p2", 2, "A", True)
B = Partition("/dev/mmcblk0p3", 3, "B", True)
#: A record as Mender 3.x and 4.x write it after an install (version 1).
V1 = {"Version": 1, "ArtifactName": "release-2", "ArtifactGroup": "fleet",
      "ArtifactTypeInfoProvides": {"rootfs-image.version": "release-2"},
      "ArtifactClearsProvides": ["rootfs-image.*"], "PayloadTypes": ["rootfs-image"]}
V2 = {**V1, "Version": 2, "InState": "Before_ArtifactCommit_Enter", "Failed": False, "RolledBack": False}


def take_over(record: Any, active: Partition, env: dict[str, str]) -> object:
    return pending_from_mender(record, PartitionSet(A, B, active, "test"), env,
                               scripts_dir=Path("/var/lib/mender/scripts"), store=Path("/var/lib/mender/mender-store"))


@pytest.mark.parametrize(("record", "active", "env"), [
    (V1, B, {"mender_boot_part": "3", "upgrade_available": "1", "bootcount": "1"}),  # rebooted into it
    (V1, A, {"mender_boot_part": "3", "upgrade_available": "1", "bootcount": "0"}),  # not yet rebooted
    (V2, A, {"mender_boot_part": "2", "upgrade_available": "0", "bootcount": "0"}),  # the bootloader went back
])
def test_an_installed_update_is_taken_over_with_the_partition_it_went_to(
        record: dict[str, Any], active: Partition, env: dict[str, str]) -> None:
    pending = take_over(record, active, env)
    assert pending._asdict() == {  # type: ignore[attr-defined]
        "artifact_name": "release-2", "partition": B.path, "artifact_group": "fleet",
        "provides": {"rootfs-image.version": "release-2"}, "clears_provides": ("rootfs-image.*",),
        "payload_type": "rootfs-image", "previous_partition": A.path,
        "previous_env": {"mender_boot_part": "2", "mender_boot_part_hex": "2", "upgrade_available": "0",
                         "bootcount": "0"},
        "scripts_dir": "/var/lib/mender/scripts", "state": "Before_ArtifactCommit_Enter",
        "failed": False, "rolled_back": False}


def test_missing_provides_and_clears_stay_missing() -> None:
    record = {key: value for key, value in V1.items() if not key.startswith("Artifact") or key == "ArtifactName"}
    pending = take_over(record, B, {"mender_boot_part": "3", "upgrade_available": "1"})
    assert (pending.provides, pending.clears_provides, pending.artifact_group) == (None, None, "")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("record", "why"), [
    ({**V2, "InState": "ArtifactCommit_Enter"}, "in state ArtifactCommit_Enter"),
    ({**V2, "InState": "Before_ArtifactInstall_Enter"}, "in state Before_ArtifactInstall_Enter"),
    ({**V2, "Failed": True}, "failed"),
    ({**V2, "RolledBack": True}, "rolled back"),
    ({**V1, "PayloadTypes": ["single-file"]}, "its payload is ['single-file']"),
    ({**V1, "Version": 3}, "version 3"),
    ({**V1, "ArtifactTypeInfoProvides": {"a": 1}}, "provides are not a map of strings"),
    ({**V1, "ArtifactName": ""}, "its record is not readable"),
    ({}, "its record is not readable"),
])
def test_anything_else_is_refused_with_the_reason(record: dict[str, Any], why: str) -> None:
    with pytest.raises(StateError, match="that Mender's client started and did not finish") as caught:
        take_over(record, B, {"mender_boot_part": "3", "upgrade_available": "1"})
    assert why in caught.value.message
    assert "finish it with Mender's client" in (caught.value.hint or "")
