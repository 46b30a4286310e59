from __future__ import annotations

import struct
import uuid
import zlib

import pytest

from pymender.image.gpt import (
    ENTRIES_SECTORS,
    ESP_TYPE,
    LINUX_FS_TYPE,
    SECTOR,
    GptEntry,
    backup_offset,
    decode_gpt,
    encode_gpt,
)

DISK = uuid.UUID("11111111-2222-4333-8444-555555555555")
TOTAL = 409600  # 200 MiB


def entries() -> list[GptEntry]:
    return [
        GptEntry(ESP_TYPE, uuid.UUID(int=1), 8192, 24575, "boot"),
        GptEntry(LINUX_FS_TYPE, uuid.UUID(int=2), 24576, 180223, "rootfs-a"),
        GptEntry(LINUX_FS_TYPE, uuid.UUID(int=3), 180224, 335871, "rootfs-b"),
        GptEntry(LINUX_FS_TYPE, uuid.UUID(int=4), 335872, 401407, "data"),
    ]


def disk_image() -> bytearray:
    image = bytearray(TOTAL * SECTOR)
    primary, backup = encode_gpt(DISK, TOTAL, entries())
    image[SECTOR : SECTOR + len(primary)] = primary
    image[backup_offset(TOTAL) : backup_offset(TOTAL) + len(backup)] = backup
    return image


def reader(image: bytearray):  # type: ignore[no-untyped-def]
    return lambda offset, length: bytes(image[offset : offset + length])


def test_headers_follow_the_uefi_layout() -> None:
    primary, backup = encode_gpt(DISK, TOTAL, entries())
    assert len(primary) == len(backup) == (1 + ENTRIES_SECTORS) * SECTOR
    header = primary[:SECTOR]
    (sig, rev, size, crc, _, my_lba, alt, first, last, guid, ent_lba, count, ent_size, ent_crc) = (
        struct.unpack_from("<8sIIIIQQQQ16sQIII", header)
    )
    assert (sig, rev, size) == (b"EFI PART", 0x00010000, 92)
    assert (my_lba, alt, first, last) == (1, TOTAL - 1, 34, TOTAL - 34)
    assert uuid.UUID(bytes_le=guid) == DISK
    assert (ent_lba, count, ent_size) == (2, 128, 128)
    table = primary[SECTOR:]
    assert ent_crc == zlib.crc32(table)
    blank = bytearray(header[:92])
    blank[16:20] = bytes(4)
    assert crc == zlib.crc32(blank)
    assert header[92:] == bytes(SECTOR - 92)
    # The backup: the same table, then a header pointing back at the primary.
    assert backup[:-SECTOR] == table
    b = struct.unpack_from("<8sIIIIQQQQ16sQIII", backup[-SECTOR:])
    assert (b[5], b[6], b[10], b[13]) == (TOTAL - 1, 1, TOTAL - 33, ent_crc)
    assert backup_offset(TOTAL) == (TOTAL - 33) * SECTOR


def test_entry_encoding() -> None:
    primary, _ = encode_gpt(DISK, TOTAL, entries())
    raw = primary[SECTOR : SECTOR + 128]
    assert raw[:16] == bytes.fromhex("28732ac11ff8d211ba4b00a0c93ec93b")  # ESP, mixed-endian
    assert struct.unpack_from("<QQQ", raw, 32) == (8192, 24575, 0)
    assert raw[56:64] == "boot".encode("utf-16-le")
    assert primary[SECTOR + 4 * 128 : 2 * SECTOR + 0] == bytes(SECTOR - 4 * 128)


def test_round_trip() -> None:
    table = decode_gpt(reader(disk_image()), TOTAL)
    assert table is not None
    assert table.disk_guid == DISK
    assert [e for _, e in table.entries] == entries()
    assert [n for n, _ in table.entries] == [1, 2, 3, 4]
    assert (table.first_usable, table.last_usable) == (34, TOTAL - 34)
    assert table.problems == ()


def test_damaged_primary_falls_back_to_backup_and_says_so() -> None:
    image = disk_image()
    image[SECTOR + 100] ^= 0xFF  # header padding is outside the CRC: damage the entries
    image[2 * SECTOR + 40] ^= 0xFF
    table = decode_gpt(reader(image), TOTAL)
    assert table is not None
    assert [e for _, e in table.entries] == entries()
    assert table.header_lba == TOTAL - 1
    assert any("primary" in p and "bad CRC" in p for p in table.problems)


def test_damaged_header_crc_is_noticed() -> None:
    image = disk_image()
    image[SECTOR + 40] ^= 0x01  # first usable LBA, inside the header CRC
    table = decode_gpt(reader(image), TOTAL)
    assert table is not None and table.header_lba == TOTAL - 1
    assert any("header at sector 1 has a bad CRC" in p for p in table.problems)


def test_no_valid_copy_is_none() -> None:
    image = disk_image()
    image[SECTOR] = 0
    image[(TOTAL - 1) * SECTOR] = 0
    assert decode_gpt(reader(image), TOTAL) is None


def test_missing_backup_is_reported() -> None:
    image = disk_image()
    image[backup_offset(TOTAL) :] = bytes(len(image) - backup_offset(TOTAL))
    table = decode_gpt(reader(image), TOTAL)
    assert table is not None and table.header_lba == 1
    assert table.problems == (f"backup: no GPT header at sector {TOTAL - 1}",)


def test_partition_outside_usable_sectors_is_refused() -> None:
    with pytest.raises(ValueError, match="outside the usable sectors"):
        encode_gpt(DISK, TOTAL, [GptEntry(LINUX_FS_TYPE, DISK, 33, 100)])
    with pytest.raises(ValueError, match="outside the usable sectors"):
        encode_gpt(DISK, TOTAL, [GptEntry(LINUX_FS_TYPE, DISK, 34, TOTAL - 33)])
    with pytest.raises(ValueError, match="longer than 36"):
        encode_gpt(DISK, TOTAL, [GptEntry(LINUX_FS_TYPE, DISK, 34, 100, "x" * 37)])
