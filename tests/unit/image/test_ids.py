from __future__ import annotations

import uuid

import pytest

from pymender.errors import UsageError
from pymender.image.ids import DEFAULT_DISK_ID, derive_ids


def test_same_disk_id_gives_same_ids_and_different_ids_differ() -> None:
    assert derive_ids("board-42") == derive_ids("board-42")
    a, b = derive_ids("board-42"), derive_ids("board-43")
    assert a.mbr_signature != b.mbr_signature
    assert a.disk_guid != b.disk_guid
    assert set(a.partition_guids).isdisjoint(b.partition_guids)
    assert a.data_fs_uuid != b.data_fs_uuid
    assert derive_ids() == derive_ids(DEFAULT_DISK_ID)


def test_every_id_in_one_image_is_distinct_and_a_valid_v4_guid() -> None:
    ids = derive_ids()
    guids = [ids.disk_guid, *ids.partition_guids, ids.data_fs_uuid]
    assert len(set(guids)) == len(guids) == 6
    assert all(g.version == 4 and g.variant == uuid.RFC_4122 for g in guids)
    assert ids.mbr_signature != 0


def test_hex_disk_id_sets_the_mbr_signature_exactly() -> None:
    ids = derive_ids("0x1234ABcd")
    assert ids.mbr_signature == 0x1234ABCD
    assert ids.mbr_partuuid(2) == "1234abcd-02"
    # Canonical: leading zeros and case do not change any id.
    assert derive_ids("0xabcd") == derive_ids("0x0000ABCD")


def test_guid_disk_id_sets_the_gpt_disk_guid_exactly() -> None:
    text = "0B9C7A70-3B53-4F0E-A1D5-2A2E7A8B1C11"
    ids = derive_ids(text)
    assert ids.disk_guid == uuid.UUID(text)
    assert derive_ids(text.lower()) == ids
    assert ids.gpt_partuuid(1) == str(ids.partition_guids[0])


@pytest.mark.parametrize("bad", ["", "   ", "0x0", "0x00000000", "tab\there"])
def test_bad_disk_ids_are_refused(bad: str) -> None:
    with pytest.raises(UsageError):
        derive_ids(bad)


def test_text_that_only_looks_hex_is_a_seed() -> None:
    # Nine hex digits cannot be an MBR signature: treated as plain text, not truncated.
    ids = derive_ids("0x123456789")
    assert ids.seed == "0x123456789"
