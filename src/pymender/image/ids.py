"""Fixed, reproducible identifiers of a disk image: MBR disk signature, GPT GUIDs, filesystem ids.

A device's boot configuration and ``fstab`` may name partitions by PARTUUID, so the ids must be
known before the image is built and must not change between builds of the same inputs. Every id is
therefore derived from one ``disk id`` text (a default constant unless the user gives one) with
SHA-256, never drawn at random.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

from pymender.errors import UsageError

DEFAULT_DISK_ID = "pymender"
"""The disk id used when none is given; any build without ``--disk-id`` shares these ids."""

PARTITION_COUNT = 4

_MBR_HEX = re.compile(r"0x([0-9a-fA-F]{1,8})")


@dataclass(frozen=True)
class DiskIds:
    """Every identifier written into one image, derived from one disk id text."""

    seed: str
    mbr_signature: int
    disk_guid: uuid.UUID
    partition_guids: tuple[uuid.UUID, ...]
    boot_volume_id: int
    data_fs_uuid: uuid.UUID

    def mbr_partuuid(self, number: int) -> str:
        """The PARTUUID Linux gives MBR partition ``number``: ``<signature>-<number>``."""
        return f"{self.mbr_signature:08x}-{number:02x}"

    def gpt_partuuid(self, number: int) -> str:
        return str(self.partition_guids[number - 1])


def _digest(seed: str, purpose: str) -> bytes:
    return hashlib.sha256(f"pymender-image\0{purpose}\0{seed}".encode()).digest()


def _derived_uuid(seed: str, purpose: str) -> uuid.UUID:
    return uuid.UUID(bytes=_digest(seed, purpose)[:16], version=4)


def derive_ids(disk_id: str = DEFAULT_DISK_ID) -> DiskIds:
    """Derive every id from ``disk_id``.

    ``0x`` and up to 8 hex digits sets the MBR disk signature exactly; a GUID sets the GPT disk
    GUID exactly; any other text is only a seed. The remaining ids are derived from the
    canonical form, so ``0xABCD`` and ``0x0000abcd`` give the same image.
    """
    text = disk_id.strip()
    if not text or not text.isprintable():
        raise UsageError(
            f"disk id {disk_id!r} is empty or not printable",
            hint="give --disk-id a GUID, 0x plus up to 8 hex digits, or any other text",
        )
    mbr_signature: int | None = None
    disk_guid: uuid.UUID | None = None
    hex_match = _MBR_HEX.fullmatch(text)
    if hex_match:
        mbr_signature = int(hex_match.group(1), 16)
        if mbr_signature == 0:
            raise UsageError(
                f"disk id {text} is not allowed",
                hint="an MBR disk signature of zero means 'none'; pick any other value",
            )
        seed = f"0x{mbr_signature:08x}"
    else:
        try:
            disk_guid = uuid.UUID(text)
        except ValueError:
            seed = text
        else:
            seed = str(disk_guid)
    if mbr_signature is None:
        mbr_signature = int.from_bytes(_digest(seed, "mbr")[:4], "little") or 1
    if disk_guid is None:
        disk_guid = _derived_uuid(seed, "gpt-disk")
    return DiskIds(
        seed=seed,
        mbr_signature=mbr_signature,
        disk_guid=disk_guid,
        partition_guids=tuple(
            _derived_uuid(seed, f"gpt-partition-{n}") for n in range(1, PARTITION_COUNT + 1)
        ),
        boot_volume_id=int.from_bytes(_digest(seed, "boot-fat")[:4], "little"),
        data_fs_uuid=_derived_uuid(seed, "data-ext4"),
    )
