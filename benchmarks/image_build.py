#!/usr/bin/env python3
"""Benchmark: build a 4 GiB .sdimg around a 1 GiB rootfs, against the physical limit.

The physical limit is what any builder must at least do: copy the rootfs, boot and data
filesystem images once into a sparse file of the image's size (data extents only, with the
kernel's ``copy_file_range``, as ``cp`` does). Both are measured in the same run, on the same
files, with the page cache in the same state. By default no ``fsync`` is timed (the page cache
absorbs the writes, so the numbers show the builder's own cost); ``--fsync`` adds it, and then
the disk dominates. Reported: the best of ``--runs`` wall times, the
bytes allocated in the output, and the ratio build / limit (target: at most 1.2).

Two build variants are timed: with prebuilt boot and data images (``--boot-image`` /
``--data-image``, the same work as the limit) and from directories (adds mkfs.vfat, mcopy and
mkfs.ext4).

    python benchmarks/image_build.py [--workdir DIR] [--runs 5] [--rootfs-mb 1024] [--fsync]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pymender.image import ImageKind, ImageSpec, SizeRequest, build_image, plan_layout
from pymender.image.filesystems import make_ext4, make_fat
from pymender.image.layout import MIB, PartitionRole
from pymender.image.sparse import data_ranges

TOTAL_MB = 4096
BOOT_MB = 16
DATA_MB = 128


def make_tree(root: Path, total_bytes: int, file_size: int, seed: int) -> None:
    """A directory of incompressible files (what a rootfs mostly is), reproducibly."""
    root.mkdir(parents=True, exist_ok=True)
    block = os.urandom(file_size)
    count = max(1, total_bytes // file_size)
    for index in range(count):
        sub = root / f"d{index % 16:02d}"
        sub.mkdir(exist_ok=True)
        # Vary each file so nothing deduplicates; rotating the block is enough.
        shift = (index * 4099 + seed) % file_size
        (sub / f"f{index:05d}.bin").write_bytes(block[shift:] + block[:shift])


def copy_limit(
    sources: list[tuple[Path, int]], output: Path, size: int, kernel: bool = True
) -> int:
    """Copy each source's data extents to ``output`` at its offset; returns bytes copied.

    ``kernel``: with ``copy_file_range`` (no user-space copy); otherwise plain reads and
    writes of 1 MiB with no zero check. The faster of the two is the limit.
    """
    if not kernel:
        return copy_plain(sources, output, size)
    copied = 0
    dst = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(dst, size)
        for path, offset in sources:
            src = os.open(path, os.O_RDONLY)
            try:
                for start, end in data_ranges(src, os.fstat(src).st_size):
                    pos = start
                    while pos < end:
                        done = os.copy_file_range(src, dst, end - pos, pos, offset + pos)
                        if done <= 0:
                            raise OSError("copy_file_range made no progress")
                        pos += done
                        copied += done
            finally:
                os.close(src)
        if SYNC[0]:
            os.fsync(dst)
    finally:
        os.close(dst)
    return copied


def copy_plain(sources: list[tuple[Path, int]], output: Path, size: int) -> int:
    copied = 0
    buffer = bytearray(MIB)
    dst = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(dst, size)
        for path, offset in sources:
            src = os.open(path, os.O_RDONLY)
            try:
                for start, end in data_ranges(src, os.fstat(src).st_size):
                    for pos in range(start, end, MIB):
                        n = os.preadv(src, [memoryview(buffer)[: min(MIB, end - pos)]], pos)
                        copied += os.pwrite(dst, memoryview(buffer)[:n], offset + pos)
            finally:
                os.close(src)
        if SYNC[0]:
            os.fsync(dst)
    finally:
        os.close(dst)
    return copied


SYNC = [False]


def fsync_path(path: Path) -> None:
    if not SYNC[0]:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def best_of(runs: int, output: Path, action: Callable[[], None]) -> float:
    """Best wall time of ``action``; before each run (untimed) the old output is removed and
    every dirty page is flushed, so no run pays for the previous one's writeback."""
    times = []
    for _ in range(runs):
        for stale in (output, output.with_name(output.name + ".bmap")):
            stale.unlink(missing_ok=True)
        os.sync()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="where to put the files (default: a temp dir)")
    parser.add_argument("--runs", type=int, default=5, help="take the best of this many runs")
    parser.add_argument("--rootfs-mb", type=int, default=1024, help="rootfs image size in MiB")
    parser.add_argument("--fill", type=float, default=0.75, help="share of the rootfs holding data")
    parser.add_argument("--fsync", action="store_true",
                        help="fsync every output inside the timing (measures the disk, not us)")
    args = parser.parse_args()
    SYNC[0] = args.fsync
    if not shutil.which("mkfs.ext4") and not shutil.which("mkfs.ext4", path="/usr/sbin:/sbin"):
        print("mkfs.ext4 is needed (e2fsprogs)", file=sys.stderr)
        return 1

    own_tmp = None
    if args.workdir is None:
        own_tmp = tempfile.TemporaryDirectory(prefix="pymender-image-bench-", dir=".")
        work = Path(own_tmp.name)
    else:
        work = args.workdir
        work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"preparing a {args.rootfs_mb} MiB rootfs ({args.fill:.0%} full) in {work} ...")
        tree = work / "rootfs-tree"
        make_tree(tree, int(args.rootfs_mb * MIB * args.fill), 4 * MIB, 1)
        rootfs = work / "rootfs.ext4"
        with open(rootfs, "wb") as file:
            file.truncate(args.rootfs_mb * MIB)
        mkfs = shutil.which("mkfs.ext4") or "/usr/sbin/mkfs.ext4"
        subprocess.run([mkfs, "-q", "-F", "-d", str(tree), str(rootfs)], check=True)
        shutil.rmtree(tree)
        boot_dir = work / "boot"
        make_tree(boot_dir, 8 * MIB, 2 * MIB, 2)
        data_dir = work / "data"
        make_tree(data_dir, 4 * MIB, 1 * MIB, 3)

        sizes = SizeRequest(total_mb=TOTAL_MB, boot_mb=BOOT_MB, data_mb=DATA_MB)
        layout = plan_layout(ImageKind.SDIMG, sizes)
        boot_img, data_img = work / "boot.vfat", work / "data.ext4"
        make_fat(boot_img, layout.partition(PartitionRole.BOOT).size, boot_dir,
                 volume_id=layout.ids.boot_volume_id)
        make_ext4(data_img, layout.partition(PartitionRole.DATA).size, data_dir,
                  fs_uuid=layout.ids.data_fs_uuid, work_dir=work)

        limit_out = work / "limit.img"
        sources = [
            (boot_img, layout.partition(PartitionRole.BOOT).start),
            (rootfs, layout.partition(PartitionRole.ROOTFS_A).start),
            (data_img, layout.partition(PartitionRole.DATA).start),
        ]
        copied = [0]

        def limit() -> None:
            copied[0] = copy_limit(sources, limit_out, layout.total_size)

        def limit_plain() -> None:
            copied[0] = copy_limit(sources, limit_out, layout.total_size, kernel=False)

        prebuilt = ImageSpec(ImageKind.SDIMG, rootfs, work / "prebuilt.sdimg", sizes,
                             boot_image=boot_img, data_image=data_img)
        from_dirs = ImageSpec(ImageKind.SDIMG, rootfs, work / "dirs.sdimg", sizes,
                              boot_dir=boot_dir, data_dir=data_dir)
        written = {}

        def build(spec: ImageSpec) -> Callable[[], None]:
            def action() -> None:
                written[spec.output] = build_image(spec).bytes_written
                fsync_path(spec.output)
            return action

        # Warm the page cache for everyone alike.
        limit()
        rows = [
            ("limit: copy_file_range of extents", best_of(args.runs, limit_out, limit), limit_out,
             copied[0]),
            ("limit: read/write of extents", best_of(args.runs, limit_out, limit_plain), limit_out,
             copied[0]),
            ("build, prebuilt boot/data images", best_of(args.runs, prebuilt.output, build(prebuilt)),
             prebuilt.output, written.get(prebuilt.output, 0)),
            ("build, boot/data from directories", best_of(args.runs, from_dirs.output, build(from_dirs)),
             from_dirs.output, written.get(from_dirs.output, 0)),
        ]
        bmap_spec = ImageSpec(ImageKind.SDIMG, rootfs, work / "bmap.sdimg", sizes,
                              boot_image=boot_img, data_image=data_img, bmap=True)
        rows.append(("build + .bmap, prebuilt images", best_of(args.runs, bmap_spec.output, build(bmap_spec)),
                     bmap_spec.output, written.get(bmap_spec.output, 0)))

        base_time = min(rows[0][1], rows[1][1])
        print(f"\nimage {TOTAL_MB} MiB .sdimg, rootfs {args.rootfs_mb} MiB "
              f"({allocated(rootfs) // MIB} MiB allocated), best of {args.runs} runs, "
              f"{'with' if args.fsync else 'without'} fsync\n")
        print(f"| {'step':<36} | {'time s':>7} | {'ratio':>5} | {'bytes written':>13} | "
              f"{'allocated':>13} |")
        print(f"|{'-' * 38}|{'-' * 9}|{'-' * 7}|{'-' * 15}|{'-' * 15}|")
        for name, seconds, output, count in rows:
            print(f"| {name:<36} | {seconds:>7.2f} | {seconds / base_time:>5.2f} | "
                  f"{count:>13} | {allocated(output):>13} |")
    finally:
        if own_tmp is not None:
            own_tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
