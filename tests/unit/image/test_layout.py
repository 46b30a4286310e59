from __future__ import annotations

import pytest

from pymender.errors import ImageLayoutError
from pymender.image.layout import (
    GPT_RESERVED_SECTORS,
    MIB,
    SECTOR,
    ImageKind,
    PartitionRole,
    SizeRequest,
    alignment_problems,
    minimum_total_mb,
    plan_layout,
    rootfs_partition_size,
)


def test_defaults_match_meta_menders_calculated_rootfs_size() -> None:
    # meta-mender's defaults (1024 total, 16 boot, 128 data, 8 MiB alignment) give 442368 KiB.
    assert rootfs_partition_size(SizeRequest()) // 1024 == 442368


@pytest.mark.parametrize(
    ("total", "boot", "data", "align", "reserved", "expected"),
    [
        # (total - boot - data - 2*align - reserved) / 2, rounded down to the alignment.
        (200, 8, 32, 4 * MIB, 0, 76 * MIB),
        (201, 8, 32, 4 * MIB, 0, 76 * MIB),  # the spare MiB is lost to rounding
        (4096, 16, 128, 8 * MIB, 0, 1968 * MIB),
        (1024, 16, 128, 8 * MIB, 16 * MIB, 424 * MIB),
        # boot 5 and data 3 MiB round up to 8 and 4 MiB with a 4 MiB alignment.
        (64, 5, 3, 4 * MIB, 0, 20 * MIB),
        (64, 8, 8, 1 * MIB, 0, 23 * MIB),
        # An alignment that is no power of two: boot and data round up to 3414 * 3072 bytes,
        # (104857600 - 2 * 10487808 - 6144) / 2 = 41937920 rounds down to 13651 * 3072.
        (100, 10, 10, 3 * 1024, 0, 13651 * 3072),
    ],
)
def test_rootfs_size_formula(
    total: int, boot: int, data: int, align: int, reserved: int, expected: int
) -> None:
    request = SizeRequest(total, boot, data, align, reserved)
    assert rootfs_partition_size(request) == expected


def test_layout_places_partitions_contiguously_from_one_alignment() -> None:
    request = SizeRequest(200, 8, 32, 4 * MIB)
    layout = plan_layout(ImageKind.SDIMG, request)
    assert [(p.number, p.role, p.start, p.size) for p in layout.partitions] == [
        (1, PartitionRole.BOOT, 4 * MIB, 8 * MIB),
        (2, PartitionRole.ROOTFS_A, 12 * MIB, 76 * MIB),
        (3, PartitionRole.ROOTFS_B, 88 * MIB, 76 * MIB),
        (4, PartitionRole.DATA, 164 * MIB, 32 * MIB),
    ]
    assert layout.total_size == 200 * MIB
    # At least one alignment is left at the end (room for a GPT backup).
    assert layout.total_size - layout.partitions[-1].end >= request.alignment
    assert alignment_problems([(p.start, p.size) for p in layout.partitions], request) == []


def test_reserved_bootloader_space_moves_partition_one() -> None:
    request = SizeRequest(1024, 16, 128, 8 * MIB, 16 * MIB)
    layout = plan_layout(ImageKind.UEFIIMG, request)
    assert layout.partitions[0].start == 24 * MIB
    assert alignment_problems([(p.start, p.size) for p in layout.partitions], request) == []


def test_partuuids_follow_the_table_kind() -> None:
    sd = plan_layout(ImageKind.SDIMG, SizeRequest(), "0x1234abcd")
    assert [p.partuuid for p in sd.partitions] == [f"1234abcd-0{n}" for n in range(1, 5)]
    assert sd.disk_id == "0x1234abcd"
    uefi = plan_layout(ImageKind.UEFIIMG, SizeRequest(), "0x1234abcd")
    assert len({p.partuuid for p in uefi.partitions}) == 4
    assert all(len(p.partuuid) == 36 for p in uefi.partitions)


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        (SizeRequest(alignment=1000), "not a positive multiple of 1024"),
        (SizeRequest(alignment=0), "not a positive multiple of 1024"),
        (SizeRequest(alignment=-4096), "not a positive multiple of 1024"),
        (SizeRequest(total_mb=0), "--total-size-mb must be a positive"),
        (SizeRequest(boot_mb=0), "--boot-size-mb must be a positive"),
        (SizeRequest(data_mb=-1), "--data-size-mb must be a positive"),
        (SizeRequest(reserved_bytes=MIB), "not a multiple of the alignment"),
        (SizeRequest(total_mb=160), "sizes do not add up"),
    ],
)
def test_bad_sizes_are_refused_with_one_line(request_: SizeRequest, fragment: str) -> None:
    with pytest.raises(ImageLayoutError) as caught:
        plan_layout(ImageKind.SDIMG, request_)
    line = caught.value.one_line()
    assert fragment in line
    assert "\n" not in line


def test_sizes_that_do_not_add_up_name_the_total_and_its_minimum() -> None:
    request = SizeRequest(total_mb=160, boot_mb=16, data_mb=128)
    with pytest.raises(ImageLayoutError) as caught:
        rootfs_partition_size(request)
    assert "--total-size-mb" in caught.value.one_line()
    assert "PYMENDER_STORAGE_TOTAL_SIZE_MB" in caught.value.one_line()
    needed = minimum_total_mb(request, request.alignment)
    assert f"at least {needed}" in caught.value.one_line()
    assert rootfs_partition_size(SizeRequest(needed, 16, 128)) == request.alignment


@pytest.mark.parametrize("rootfs_bytes", [1, 4096, 7 * MIB + 1, 100 * MIB, 999 * MIB + 12345])
@pytest.mark.parametrize("align", [1024, MIB, 4 * MIB, 8 * MIB])
def test_minimum_total_is_tight(rootfs_bytes: int, align: int) -> None:
    base = SizeRequest(1, 16, 128, align)
    needed = minimum_total_mb(base, rootfs_bytes)
    fits = SizeRequest(needed, 16, 128, align)
    assert rootfs_partition_size(fits) >= rootfs_bytes
    smaller = SizeRequest(needed - 1, 16, 128, align)
    try:
        assert rootfs_partition_size(smaller) < rootfs_bytes
    except ImageLayoutError:
        pass  # too small to have any rootfs at all: also "does not fit"


def test_uefiimg_needs_room_for_the_gpt_before_partition_one() -> None:
    with pytest.raises(ImageLayoutError, match="inside the GPT"):
        plan_layout(ImageKind.UEFIIMG, SizeRequest(64, 8, 8, 16 * 1024))
    # The same alignment is fine behind an MBR, and 17 KiB is the GPT's own minimum.
    plan_layout(ImageKind.SDIMG, SizeRequest(64, 8, 8, 16 * 1024))
    assert GPT_RESERVED_SECTORS * SECTOR == 17 * 1024
    plan_layout(ImageKind.UEFIIMG, SizeRequest(64, 8, 8, 17 * 1024))


def test_sdimg_larger_than_mbr_limit_is_refused() -> None:
    with pytest.raises(ImageLayoutError, match="too large for an MBR"):
        plan_layout(ImageKind.SDIMG, SizeRequest(total_mb=3 * 1024 * 1024))
    layout = plan_layout(ImageKind.UEFIIMG, SizeRequest(total_mb=3 * 1024 * 1024))
    assert layout.total_sectors > 0xFFFFFFFF


def test_alignment_problems_reports_each_broken_rule() -> None:
    request = SizeRequest(200, 8, 32, 4 * MIB)
    good = [(4 * MIB, 8 * MIB), (12 * MIB, 76 * MIB), (88 * MIB, 76 * MIB), (164 * MIB, 32 * MIB)]
    assert alignment_problems(good, request) == []
    assert alignment_problems([], request) == ["the image has no partitions"]
    late_start = [(8 * MIB, 8 * MIB), *good[1:]]
    assert any("partition 1 starts at" in p for p in alignment_problems(late_start, request))
    gap = [*good[:2], (92 * MIB, 72 * MIB), good[3]]
    assert any("not right after partition 2" in p for p in alignment_problems(gap, request))
    unaligned = [*good[:3], (164 * MIB + 512, 32 * MIB)]
    assert any("start" in p and "multiple" in p for p in alignment_problems(unaligned, request))
    short_boot = [(4 * MIB, 4 * MIB), (8 * MIB, 80 * MIB), *good[2:]]
    assert any("boot partition is" in p for p in alignment_problems(short_boot, request))
    big_data = [*good[:3], (164 * MIB, 36 * MIB)]
    assert any("data partition is" in p for p in alignment_problems(big_data, request))


def test_to_dict_describes_the_layout() -> None:
    data = plan_layout(ImageKind.UEFIIMG, SizeRequest()).to_dict()
    assert data["layout"] == "uefiimg"
    assert data["table"] == "gpt"
    assert data["rootfs_size_kib"] == 442368
    assert [p["role"] for p in data["partitions"]] == ["boot", "rootfs-a", "rootfs-b", "data"]
    assert data["partitions"][0]["start"] == 8 * MIB
