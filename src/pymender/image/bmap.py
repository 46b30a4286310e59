"""Block maps in bmaptool's XML format (version 2.0), so flashing copies only data.

The mapped blocks are the image's data extents as the filesystem reports them
(``SEEK_DATA``/``SEEK_HOLE``), each range with its SHA-256 so ``bmaptool copy`` can verify what
it writes; the file carries a SHA-256 of itself, computed with that field set to zeros.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from pymender.image.sparse import data_ranges

BLOCK_SIZE = 4096
VERSION = "2.0"
_CHECKSUM_TYPE = "sha256"
_CHECKSUM_PLACEHOLDER = "0" * 64
_READ_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class BmapSummary:
    path: Path
    image_size: int
    block_size: int
    blocks: int
    mapped_blocks: int


def mapped_block_ranges(fd: int, size: int, block_size: int = BLOCK_SIZE) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` block numbers holding data, merged where they touch."""
    ranges: list[tuple[int, int]] = []
    for start, end in data_ranges(fd, size):
        first, last = start // block_size, (end - 1) // block_size
        if ranges and first <= ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], max(last, ranges[-1][1]))
        else:
            ranges.append((first, last))
    return ranges


def _range_checksum(fd: int, start: int, end: int) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(_READ_CHUNK)
    view = memoryview(buffer)
    pos = start
    while pos < end:
        want = min(_READ_CHUNK, end - pos)
        got = os.preadv(fd, [view[:want]], pos)
        if got <= 0:
            raise OSError(f"image ended at byte {pos} while computing its block map")
        digest.update(view[:got])
        pos += got
    return digest.hexdigest()


def render_bmap(
    image_size: int, block_size: int, ranges: list[tuple[int, int, str]]
) -> str:
    """The complete bmap text for ``(first, last, sha256)`` ranges, its own checksum filled in."""
    blocks = -(-image_size // block_size)
    mapped = sum(last - first + 1 for first, last, _ in ranges)
    lines = [
        '<?xml version="1.0" ?>',
        "<!-- Block map of a disk image written by pymender-image. Only the blocks listed",
        "     below hold data; 'bmaptool copy IMAGE DEVICE' writes just those. -->",
        f'<bmap version="{VERSION}">',
        f"    <ImageSize> {image_size} </ImageSize>",
        f"    <BlockSize> {block_size} </BlockSize>",
        f"    <BlocksCount> {blocks} </BlocksCount>",
        f"    <MappedBlocksCount> {mapped} </MappedBlocksCount>",
        f"    <ChecksumType> {_CHECKSUM_TYPE} </ChecksumType>",
        f"    <BmapFileChecksum> {_CHECKSUM_PLACEHOLDER} </BmapFileChecksum>",
        "    <BlockMap>",
    ]
    for first, last, checksum in ranges:
        span = f"{first}-{last}" if last != first else f"{first}"
        lines.append(f'        <Range chksum="{checksum}"> {span} </Range>')
    lines += ["    </BlockMap>", "</bmap>", ""]
    text = "\n".join(lines)
    own = hashlib.sha256(text.encode()).hexdigest()
    return text.replace(
        f"<BmapFileChecksum> {_CHECKSUM_PLACEHOLDER} <", f"<BmapFileChecksum> {own} <", 1
    )


def write_bmap(image: Path, bmap: Path, block_size: int = BLOCK_SIZE) -> BmapSummary:
    """Write the block map of ``image`` to ``bmap`` (replacing it atomically)."""
    fd = os.open(image, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        ranges = []
        for first, last in mapped_block_ranges(fd, size, block_size):
            end = min((last + 1) * block_size, size)
            ranges.append((first, last, _range_checksum(fd, first * block_size, end)))
    finally:
        os.close(fd)
    text = render_bmap(size, block_size, ranges)
    partial = bmap.with_name(bmap.name + ".partial")
    partial.write_text(text)
    os.replace(partial, bmap)
    return BmapSummary(
        bmap,
        size,
        block_size,
        -(-size // block_size),
        sum(last - first + 1 for first, last, _ in ranges),
    )
