from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pymender.errors import InputError
from pymender.image import gpt, mbr
from pymender.image.build import partition_tables
from pymender.image.layout import ImageKind, SizeRequest, plan_layout
from pymender.image.show import read_image, render_text

MIB = 1024 * 1024
SIZES = SizeRequest(total_mb=64, boot_mb=4, data_mb=8, alignment=MIB)


def table_only_image(path: Path, kind: ImageKind, disk_id: str = "0x0badcafe") -> Path:
    """An image holding only the partition table(s): enough for ``show``, instant to make."""
    layout = plan_layout(kind, SIZES, disk_id)
    with open(path, "wb") as file:
        file.truncate(layout.total_size)
        for offset, blob in partition_tables(layout):
            file.seek(offset)
            file.write(blob)
        # A fake ext4 superblock in the data partition, labelled.
        data = layout.partitions[3].start
        file.seek(data + 1024 + 0x38)
        file.write(b"\x53\xef")
        file.seek(data + 1024 + 0x60)
        file.write((0x40).to_bytes(4, "little"))
        file.seek(data + 1024 + 0x78)
        file.write(b"data")
    return path


def test_show_sdimg(tmp_path: Path) -> None:
    shown = read_image(table_only_image(tmp_path / "a.sdimg", ImageKind.SDIMG))
    assert shown.table == "mbr"
    assert shown.disk_id == "0x0badcafe"
    assert shown.size == 64 * MIB
    assert [(p.number, p.start, p.size) for p in shown.partitions] == [
        (1, 1 * MIB, 4 * MIB),
        (2, 5 * MIB, 25 * MIB),
        (3, 30 * MIB, 25 * MIB),
        (4, 55 * MIB, 8 * MIB),
    ]
    assert [(p.type_id, p.type_name, p.bootable) for p in shown.partitions] == [
        ("0xef", "EFI System", True),
        ("0x83", "Linux", False),
        ("0x83", "Linux", False),
        ("0x83", "Linux", False),
    ]
    assert [p.partuuid for p in shown.partitions][1] == "0badcafe-02"
    assert [p.filesystem for p in shown.partitions] == ["empty", "empty", "empty", "ext4"]
    assert shown.partitions[3].label == "data"
    text = render_text(shown)
    assert text.splitlines()[0].endswith("MBR, 64 MiB (67108864 bytes), disk id 0x0badcafe")
    assert " 1       1048576       4194304      4 MiB  EFI System *" in text
    assert "0badcafe-04" in text


def test_show_uefiimg_json(tmp_path: Path) -> None:
    image = table_only_image(tmp_path / "a.uefiimg", ImageKind.UEFIIMG, "my-board")
    layout = plan_layout(ImageKind.UEFIIMG, SIZES, "my-board")
    data = json.loads(json.dumps(read_image(image).to_dict()))
    assert data["table"] == "gpt"
    assert data["disk_id"] == str(layout.ids.disk_guid)
    assert [p["partuuid"] for p in data["partitions"]] == [p.partuuid for p in layout.partitions]
    assert [p["name"] for p in data["partitions"]] == ["boot", "rootfs-a", "rootfs-b", "data"]
    assert data["partitions"][0]["type_id"] == str(gpt.ESP_TYPE)
    assert data["partitions"][0]["type_name"] == "EFI System"
    assert data["partitions"][3]["end"] == 63 * MIB
    assert data["problems"] == []


def test_show_reports_a_damaged_gpt_copy(tmp_path: Path) -> None:
    image = table_only_image(tmp_path / "a.uefiimg", ImageKind.UEFIIMG)
    with open(image, "r+b") as file:
        file.seek(512 + 24)  # my_lba in the primary header
        file.write(b"\x07")
    shown = read_image(image)
    assert len(shown.partitions) == 4
    assert shown.problems == ("primary: GPT header at sector 1 has a bad CRC",)
    assert "warning: primary: GPT header at sector 1 has a bad CRC" in render_text(shown)


def test_show_reports_partitions_past_the_end(tmp_path: Path) -> None:
    image = table_only_image(tmp_path / "a.sdimg", ImageKind.SDIMG)
    os.truncate(image, 60 * MIB)
    shown = read_image(image)
    assert shown.problems == (
        f"partition 4 ends at byte {63 * MIB}, past the end of the image ({60 * MIB})",
    )


def test_show_of_non_images_is_one_clear_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"hello")
    with pytest.raises(InputError, match="has no MBR or GPT partition table"):
        read_image(plain)
    with pytest.raises(InputError, match="does not exist"):
        read_image(tmp_path / "missing")
    with pytest.raises(InputError, match="is a directory"):
        read_image(tmp_path)
    broken = tmp_path / "broken"
    with open(broken, "wb") as file:
        file.write(mbr.protective_mbr(2048))
        file.truncate(MIB)
    with pytest.raises(InputError, match="no valid GPT"):
        read_image(broken)


def test_show_lists_foreign_mbr_types(tmp_path: Path) -> None:
    image = tmp_path / "foreign"
    entries = [mbr.MbrEntry(0x0C, 2048, 2048), mbr.MbrEntry(0x00, 0, 0), mbr.MbrEntry(0x42, 4096, 8)]
    with open(image, "wb") as file:
        file.write(mbr.encode_mbr(entries, 1))
        file.truncate(4 * MIB)
    shown = read_image(image)
    assert [(p.number, p.type_name) for p in shown.partitions] == [
        (1, "W95 FAT32 (LBA)"),
        (3, "unknown"),
    ]


def test_plain_images_show_no_boot_code_and_no_raw_data(tmp_path: Path) -> None:
    for kind in ImageKind:
        shown = read_image(table_only_image(tmp_path / f"a.{kind.value}", kind))
        assert (shown.boot_code, shown.raw_data) == (False, ())
        text = render_text(shown)
        assert "boot code" not in text and "before partition 1" not in text
        assert shown.to_dict()["raw_data"] == []


@pytest.mark.parametrize(("kind", "first_free"), [(ImageKind.SDIMG, 1), (ImageKind.UEFIIMG, 34)])
def test_show_reports_boot_code_and_data_before_partition_one(
    tmp_path: Path, kind: ImageKind, first_free: int
) -> None:
    image = table_only_image(tmp_path / "a.img", kind)
    with open(image, "r+b") as file:
        file.write(b"\xeb\x63\x90")  # boot code
        for sector, blob in (
            (first_free, b"\x01" * 700),  # two sectors
            (first_free + 100, b"\x02"),  # 50 KiB further: still the same range
            (1500, b"\x03" * 512),  # far away: a range of its own
            (2047, b"\x04"),  # the last sector before partition 1 (at 1 MiB)
        ):
            file.seek(sector * 512)
            file.write(blob)
    shown = read_image(image)
    assert shown.boot_code
    assert shown.raw_data == (
        (first_free * 512, (first_free + 101) * 512),
        (1500 * 512, 1501 * 512),
        (2047 * 512, 2048 * 512),
    )
    lines = render_text(shown).splitlines()
    assert lines[-2:] == [
        "sector 0 holds boot code",
        f"data before partition 1 in sectors {first_free}-{first_free + 100} (50.5 KiB), "
        "1500-1500 (512 B), 2047-2047 (512 B)",
    ]
    assert json.loads(json.dumps(shown.to_dict()))["raw_data"][1] == {"start": 768000, "end": 768512}
    assert shown.partitions == read_image(table_only_image(tmp_path / "b.img", kind)).partitions
