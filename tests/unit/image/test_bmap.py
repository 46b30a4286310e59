from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from pymender.image.bmap import mapped_block_ranges, render_bmap, write_bmap

MIB = 1024 * 1024


def test_rendered_bmap_is_bmaptool_2_0_with_a_valid_self_checksum() -> None:
    text = render_bmap(10 * 4096 + 100, 4096, [(0, 1, "a" * 64), (5, 5, "b" * 64)])
    root = ET.fromstring(text)
    assert root.tag == "bmap" and root.attrib["version"] == "2.0"
    assert root.findtext("ImageSize").strip() == str(10 * 4096 + 100)  # type: ignore[union-attr]
    assert root.findtext("BlockSize").strip() == "4096"  # type: ignore[union-attr]
    assert root.findtext("BlocksCount").strip() == "11"  # type: ignore[union-attr]
    assert root.findtext("MappedBlocksCount").strip() == "3"  # type: ignore[union-attr]
    assert root.findtext("ChecksumType").strip() == "sha256"  # type: ignore[union-attr]
    ranges = [(r.text.strip(), r.attrib["chksum"]) for r in root.iter("Range")]  # type: ignore[union-attr]
    assert ranges == [("0-1", "a" * 64), ("5", "b" * 64)]
    own = root.findtext("BmapFileChecksum").strip()  # type: ignore[union-attr]
    zeroed = text.replace(own, "0" * 64, 1)
    assert hashlib.sha256(zeroed.encode()).hexdigest() == own


def test_write_bmap_maps_data_blocks_with_checksums(tmp_path: Path) -> None:
    image = tmp_path / "img"
    first = os.urandom(8192)
    second = os.urandom(4096)
    with open(image, "wb") as file:
        file.write(first)
        file.seek(2 * MIB)
        file.write(second)
        file.truncate(4 * MIB)
    summary = write_bmap(image, tmp_path / "img.bmap")
    assert summary.blocks == 1024
    root = ET.parse(tmp_path / "img.bmap").getroot()
    ranges = {}
    for element in root.iter("Range"):
        span = element.text.strip()  # type: ignore[union-attr]
        a, _, b = span.partition("-")
        ranges[(int(a), int(b or a))] = element.attrib["chksum"]
    data = image.read_bytes()
    covered: set[int] = set()
    for (a, b), checksum in ranges.items():
        assert hashlib.sha256(data[a * 4096 : (b + 1) * 4096]).hexdigest() == checksum
        covered.update(range(a, b + 1))
    # Every block holding data is mapped; where the filesystem keeps holes, they are not.
    assert {0, 1, 512} <= covered
    assert summary.mapped_blocks == len(covered) <= 1024
    assert not (tmp_path / "img.bmap.partial").exists()


def test_touching_ranges_merge(tmp_path: Path) -> None:
    image = tmp_path / "img"
    image.write_bytes(os.urandom(3 * 4096 + 10))
    fd = os.open(image, os.O_RDONLY)
    try:
        assert mapped_block_ranges(fd, 3 * 4096 + 10) == [(0, 3)]
    finally:
        os.close(fd)
