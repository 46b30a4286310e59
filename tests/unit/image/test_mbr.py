from __future__ import annotations

import struct

import pytest

from pymender.image.mbr import (
    TYPE_EFI_SYSTEM,
    TYPE_GPT_PROTECTIVE,
    TYPE_LINUX,
    MbrEntry,
    chs,
    decode_mbr,
    encode_mbr,
    protective_mbr,
    with_boot_code,
)


def test_encode_places_every_field_at_its_offset() -> None:
    entries = [
        MbrEntry(TYPE_EFI_SYSTEM, 2048, 4096, bootable=True),
        MbrEntry(TYPE_LINUX, 6144, 8192),
    ]
    sector = encode_mbr(entries, 0xDEADBEEF)
    assert len(sector) == 512
    assert sector[:440] == bytes(440)  # no boot code
    assert struct.unpack_from("<I", sector, 440)[0] == 0xDEADBEEF
    assert sector[444:446] == b"\0\0"
    first = sector[446:462]
    assert first[0] == 0x80 and first[4] == 0xEF
    assert struct.unpack_from("<II", first, 8) == (2048, 4096)
    second = sector[462:478]
    assert second[0] == 0x00 and second[4] == 0x83
    assert struct.unpack_from("<II", second, 8) == (6144, 8192)
    assert sector[478:510] == bytes(32)  # slots 3 and 4 stay empty
    assert sector[510:] == b"\x55\xaa"


@pytest.mark.parametrize(
    ("lba", "expected"),
    [
        (0, b"\x00\x01\x00"),
        (62, b"\x00\x3f\x00"),
        (63, b"\x01\x01\x00"),
        (2048, b"\x20\x21\x00"),  # cylinder 0, head 32, sector 33
        (16065, b"\x00\x01\x01"),  # first sector of cylinder 1
        (256 * 16065, b"\x00\x41\x00"),  # cylinder 256: its high bits live in the sector byte
        (1024 * 16065, b"\xfe\xff\xff"),  # past cylinder 1023: the maximum
    ],
)
def test_chs(lba: int, expected: bytes) -> None:
    assert chs(lba) == expected


def test_decode_round_trip_keeps_slots() -> None:
    entries = [
        MbrEntry(TYPE_EFI_SYSTEM, 16384, 32768, bootable=True),
        MbrEntry(TYPE_LINUX, 49152, 100),
        MbrEntry(TYPE_LINUX, 49252, 100),
        MbrEntry(TYPE_LINUX, 49352, 100),
    ]
    table = decode_mbr(encode_mbr(entries, 7))
    assert table is not None
    assert table.disk_signature == 7
    assert table.entries == tuple(entries)
    assert not table.is_protective


def test_protective_mbr_covers_the_disk_capped_at_32_bits() -> None:
    table = decode_mbr(protective_mbr(409600))
    assert table is not None and table.is_protective
    assert table.entries[0] == MbrEntry(TYPE_GPT_PROTECTIVE, 1, 409599)
    huge = decode_mbr(protective_mbr(1 << 40))
    assert huge is not None and huge.entries[0].num_sectors == 0xFFFFFFFF


def test_sector_without_boot_signature_is_not_an_mbr() -> None:
    assert decode_mbr(bytes(512)) is None
    assert decode_mbr(b"\x55\xaa") is None


def test_more_than_four_entries_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        encode_mbr([MbrEntry(TYPE_LINUX, 1, 1)] * 5, 1)


def test_boot_code_replaces_only_the_code_area() -> None:
    sector = encode_mbr([MbrEntry(TYPE_EFI_SYSTEM, 2048, 4096, bootable=True)], 0xDEADBEEF)
    code = bytes(range(1, 201)) * 3  # 600 bytes; at most 440 of them fit
    full = with_boot_code(sector, code[:440])
    assert full[:440] == code[:440]
    assert full[440:] == sector[440:]  # signature, table and 55 AA untouched
    assert decode_mbr(full) == decode_mbr(sector)
    short = with_boot_code(sector, b"\xeb\x63\x90")
    assert short[:3] == b"\xeb\x63\x90" and short[3:] == sector[3:]
    assert with_boot_code(sector, b"") == sector
    with pytest.raises(ValueError):
        with_boot_code(sector, code[:441])
