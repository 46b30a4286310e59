#!/usr/bin/env python3
"""Benchmark: ``pymender install`` against the physical limit and Debian's ``mender-client`` 3.4.

One run installs a rootfs-image Artifact (default 512 MiB ext4 image; compressions none, gzip
and zstd) into a preallocated regular file standing in for the inactive partition, and reports
side by side:

- **pymender**: ``pymender -c CONFIG install --no-progress ARTIFACT`` in a subprocess, on a
  simulated host device (regular files as partitions, a GRUB environment directory, the running
  partition pinned with ``RootDevice``). Wall time of the whole command (interpreter start,
  header checks, payload write, fsync, bootloader switch, state store), and its peak RSS.
- **limit**: the fastest way this machine has to put the same payload bytes into the same file
  and make them durable: the compressed data member is extracted from the Artifact beforehand,
  then only decompression + write + fsync are timed, with the native tools (``pigz -dc``, which
  decompresses faster than ``gzip -dc``, or ``gzip -dc`` without pigz; ``zstd -dc``) piped into
  ``dd ... conv=fsync``; for ``none`` a single ``dd`` copies the image bytes out of the
  Artifact. Each is run with a plain ``dd`` of 4 MiB blocks, with ``dd oflag=nocache`` (which
  starts the writeback during the copy, as pymender does) of 4 MiB blocks, and with
  ``oflag=nocache`` of 1 MiB blocks (the fastest of the three on some disks); all are measured as
  often as pymender, and the one with the best median counts (not the fastest in each round,
  which would pit the minimum of noisy samples against one). It neither parses the Artifact
  nor hashes anything, so it is a bound, not an equal task.
- **limit + SHA-256** (not a target): the limit's job plus the SHA-256 of what it writes, with
  native tools: for ``none`` the 1 MiB ``dd oflag=nocache`` copy with ``openssl dgst -sha256``
  hashing the same bytes beside it; compressed, the decompressor's output goes through ``tee``
  to ``openssl dgst -sha256`` and to the 1 MiB ``dd oflag=nocache``. That is the least an
  installer that verifies what it writes has to do: the gap between it and the limit is the
  price of the verification on this machine, the gap between pymender and it is pymender's own.
- **mender-client** 3.4 (Debian's ``mender-client`` package), ``mender install`` in standalone
  mode on the same Artifact. It refuses regular files as partitions ("Failed to read size of
  block device ...: not a block device"), so it is driven on loop devices attached to the same
  files; to compare like with like, pymender and the limit are run on those loop devices as
  well. Its environment: RootfsPartA/B naming the loop devices, a ``device_type`` file in its
  data directory, the U-Boot environment in two regular files through ``fw_printenv``/``fw_setenv``
  wrappers that pass a private ``fw_env.config``, a ``mount`` wrapper that reports loop device A
  mounted on ``/`` (how 3.x finds the running partition), and, since 3.4 reads the current
  Artifact name from the hard-coded ``/etc/mender/artifact_info`` before its database has one,
  a private mount namespace (``unshare -m``) in which a scratch directory is bind-mounted on
  ``/etc/mender``. Needs root, ``losetup`` and ``unshare``; otherwise those rows are left out and
  the reason is printed. mender-client 3.4 cannot read zstd Artifacts.

Each measurement runs ``--runs`` times (default 3), interleaved, in an order that rotates from
round to round, and the median wall time is reported; throughput is payload (image) bytes /
wall time, in MiB/s. Peak RSS is GNU ``time``'s ``%M`` (maximum over the runs). Before every
run the state (store, bootloader environment) is reset, the first 4 KiB of every MiB of the target
overwritten (mender-client skips writing 1 MiB frames that already hold the same bytes, and the
run before left the image there), the target's page cache written back and
dropped (``fsync``, ``posix_fadvise(DONTNEED)``), ``sync`` called and the disk left idle for
``--settle`` seconds (default 1), so no run pays for the writeback of the one before; the
Artifact and the extracted member are read once beforehand, so every run reads them from the
page cache. The start-up cost of the ``pymender`` command (``show-artifact``: interpreter,
imports, configuration) is printed too: it is part of every install and the limit has none.
Python's byte-code cache is enabled for the measured ``pymender`` (in the work directory) and
filled before the first run, as a device ships compiled modules.

lzma (``--compressions lzma``, not a default compression of the writer): the limit is
``xz -T0 -dc``, which decodes the blocks of pymender's xz streams on every core.

RSS flatness: pymender additionally installs Artifacts of a ``--small-mib`` (default 128 MiB)
image; its peak RSS is printed next to that of the full-size install.

Targets: pymender at least 90 % of the limit, faster than mender-client, peak RSS under 40 MB
and the same for both image sizes.

    python benchmarks/install.py [--size-mib 512] [--small-mib 128] [--runs 3] [--workdir DIR]
                                 [--no-mender-client] [--compressions none,gzip,zstd] [--settle 1]

The image is built by ``build_image`` of ``benchmarks/artifact.py`` (real files from ``/usr``
plus seeded pseudo-random blobs, about 75 % full, reproducible); images and Artifacts in
``--workdir`` are reused when present.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import artifact as artifact_bench  # noqa: E402  (benchmarks/artifact.py: image builder, tool lookup)

MIB = 1024 * 1024
MB = 1000 * 1000
RSS_TARGET = 40 * MB
RATIO_TARGET = 0.90
DEVICE_TYPE = "bench-device"
COMPRESSIONS = ("none", "gzip", "zstd")
#: Measured only when asked for (``--compressions lzma``): not a default of the writer.
OPTIONAL_COMPRESSIONS = ("lzma",)
MENDER_CLIENT_COMPRESSIONS = ("none", "gzip", "lzma")  # 3.4 has no zstd
GNU_TIME = "/usr/bin/time"
PARTITION_SLACK = 8 * MIB
#: The limit's ``dd`` variants: (block size, ``oflag=nocache``).
DD_VARIANTS = (("4M", False), ("4M", True), ("1M", True))


# --- Running and measuring ---------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    max_rss: int  # bytes
    ok: bool
    error: str = ""


#: The environment of every measured command. Python's byte-code cache is on (a device ships
#: compiled modules), kept in the work directory rather than next to the sources.
CHILD_ENV = dict(os.environ)


def use_bytecode_cache(work: Path) -> None:
    CHILD_ENV.clear()
    CHILD_ENV.update(artifact_bench.bytecode_env(work))
    # compile once, outside every measurement
    subprocess.run([sys.executable, "-c", "import pymender.cli.device"], env=CHILD_ENV, check=True)


def measure(cmd: list[str], label: str) -> Run:
    """Run ``cmd`` once under GNU time (see benchmarks/artifact.py for why not wait4 here)."""
    seconds, returncode, text, lines = artifact_bench.run_under_time(cmd, "%M", CHILD_ENV)
    ok = returncode == 0
    max_rss = int(lines[-1]) * 1024 if lines and lines[-1].isdigit() else 0
    run = Run(seconds, max_rss, ok, "" if ok else (text.splitlines() or [""])[-1])
    state = "ok" if ok else f"FAILED (exit {returncode}): {run.error}"
    print(f"  {seconds:7.2f} s {max_rss / MB:6.1f} MB  {state}  <- {label}", file=sys.stderr, flush=True)
    return run


@dataclass
class Series:
    runs: list[Run] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(run.ok for run in self.runs)

    @property
    def seconds(self) -> float:
        return statistics.median(run.seconds for run in self.runs)

    @property
    def max_rss(self) -> int:
        return max(run.max_rss for run in self.runs)

    def throughput(self, size: int) -> float | None:
        return size / MIB / self.seconds if self.ok else None


def drop_cache(path: Path | str) -> None:
    """Write back and forget ``path``'s cached pages, so every run starts from the same state."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


#: mender-client reads every 1 MiB frame of the target first and skips writing the frames that
#: already hold the same bytes, so a target left holding the image by the run before would turn
#: its install into a read; every run starts from a target that differs in every frame.
STALE_FRAME = 1 << 20


def make_stale(target: str, size: int) -> None:
    """Overwrite the first 4 KiB of every :data:`STALE_FRAME` of ``target`` (up to ``size``)
    with bytes no image holds there, so no writer finds a frame it may skip."""
    pattern = b"stale frame\0" * 341 + b"\0" * 4
    fd = os.open(target, os.O_WRONLY)
    try:
        for offset in range(0, size, STALE_FRAME):
            os.pwrite(fd, pattern, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def warm(path: Path) -> None:
    with open(path, "rb") as file:
        while file.read(4 * MIB):
            pass


# --- Inputs --------------------------------------------------------------------------------------


tool_path = artifact_bench.tool_path


def build_image(work: Path, size_mib: int) -> Path:
    image = work / f"rootfs-{size_mib}.ext4"
    if image.exists() and image.stat().st_size == size_mib * MIB:
        return image
    print(f"building a {size_mib} MiB ext4 image ...", file=sys.stderr, flush=True)
    partial = image.with_suffix(".partial")
    artifact_bench.build_image(partial, size_mib * MIB, 0.75, work)
    partial.replace(image)
    return image


def write_artifact(image: Path, compression: str, size_mib: int, work: Path) -> Path:
    out = work / f"bench-{size_mib}-{compression}.mender"
    if out.exists() and out.stat().st_mtime >= image.stat().st_mtime:
        return out
    print(f"writing {out.name} ...", file=sys.stderr, flush=True)
    partial = out.with_suffix(".partial")
    subprocess.run([tool_path("pymender-artifact"), "write", "rootfs-image", "-n", f"bench-{compression}",
                    "-t", DEVICE_TYPE, "-f", str(image), "-o", str(partial), "--compression", compression,
                    "--no-progress"], check=True)
    partial.replace(out)
    return out


@dataclass(frozen=True)
class DataMember:
    """Where the payload sits: the data member of the outer tar and the image inside it."""

    offset: int  # of the data member's content in the Artifact
    size: int  # of the data member (compressed)
    image_offset: int  # of the image inside the decompressed data member
    image_size: int


def locate_payload(artifact: Path) -> DataMember:
    with tarfile.open(artifact, "r:") as outer:
        member = next(m for m in outer.getmembers() if m.name.startswith("data/0000.tar"))
        file = outer.extractfile(member)
        assert file is not None
        head = file.read(64 * 1024)
    if member.name.endswith(".gz"):
        head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 4096)
    elif member.name.endswith(".xz"):
        import lzma

        head = lzma.LZMADecompressor().decompress(head, 4096)
    elif member.name.endswith(".zst"):
        import zstandard

        head = zstandard.ZstdDecompressor().decompressobj().decompress(head)[:4096]
    inner = tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
    if inner.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise SystemExit(f"unexpected first entry in {member.name}: {inner.name}")
    return DataMember(member.offset_data, member.size, 512, inner.size)


def extract_member(artifact: Path, where: DataMember, out: Path) -> None:
    with open(artifact, "rb") as src, open(out, "wb") as dst:
        src.seek(where.offset)
        left = where.size
        while left:
            chunk = src.read(min(left, 4 * MIB))
            dst.write(chunk)
            left -= len(chunk)


# --- The devices ---------------------------------------------------------------------------------


class PymenderDevice:
    """A host device for ``pymender``: partitions A/B (files or loop devices), GRUB env, store."""

    def __init__(self, root: Path, part_a: str, part_b: str, running_number: int | None) -> None:
        self.root = root
        self.part_a = part_a
        self.part_b = part_b
        self.number = running_number
        self.config = root / "pymender.conf"

    def reset(self) -> None:
        from pymender.device.bootenv import BOOT_PART, BOOT_PART_HEX, BOOTCOUNT, UPGRADE_AVAILABLE, GrubEnv

        shutil.rmtree(self.root, ignore_errors=True)
        (self.root / "data").mkdir(parents=True)
        (self.root / "grubenv").mkdir()
        (self.root / "scripts").mkdir()
        (self.root / "data" / "device_type").write_text(f"device_type={DEVICE_TYPE}\n")
        (self.root / "artifact_info").write_text("artifact_name=bench-factory\n")
        number = str(self.number if self.number is not None else 2)
        GrubEnv(self.root / "grubenv", lock_file=None).initialize(
            {BOOT_PART: number, BOOT_PART_HEX: format(int(number), "x"), UPGRADE_AVAILABLE: "0", BOOTCOUNT: "0"})
        self.config.write_text(json.dumps({
            "RootfsPartA": self.part_a, "RootfsPartB": self.part_b, "RootDevice": self.part_a,
            "Bootloader": "grub", "GrubEnvDir": "grubenv", "DataDir": "data", "ScriptsDir": "scripts",
            "ArtifactInfoFile": "artifact_info",
        }, indent=1))

    def command(self, artifact: Path) -> list[str]:
        return [tool_path("pymender"), "-c", str(self.config), "-l", "warning", "install", "--no-progress",
                str(artifact)]

    def start_up_command(self) -> list[str]:
        return [tool_path("pymender"), "-c", str(self.config), "show-artifact"]


class MenderClientDevice:
    """Debian's mender-client 3.4 on loop devices (see the module docstring for every piece)."""

    def __init__(self, root: Path, loop_a: str, loop_b: str, number: int) -> None:
        self.root = root
        self.loop_a = loop_a
        self.loop_b = loop_b
        self.number = number

    def reset(self) -> None:
        from pymender.device.bootenv import UBootEnv

        shutil.rmtree(self.root, ignore_errors=True)
        bin_dir = self.root / "bin"
        for folder in (bin_dir, self.root / "data", self.root / "etc-mender"):
            folder.mkdir(parents=True)
        fw_config = self.root / "fw_env.config"
        fw_config.write_text(f"{self.root / 'env1'} 0 0x4000\n{self.root / 'env2'} 0 0x4000\n")
        UBootEnv.from_config(fw_config, lock_file=None).initialize({
            "mender_boot_part": str(self.number), "mender_boot_part_hex": format(self.number, "x"),
            "upgrade_available": "0", "bootcount": "0"})
        for tool in ("fw_printenv", "fw_setenv"):
            real = shutil.which(tool) or f"/usr/bin/{tool}"
            script = bin_dir / tool
            script.write_text(f'#!/bin/sh\nexec {real} -c "{fw_config}" "$@"\n')
            script.chmod(0o755)
        mount = bin_dir / "mount"
        mount.write_text(f'#!/bin/sh\necho "{self.loop_a} on / type ext4 (rw,relatime)"\n')
        mount.chmod(0o755)
        (self.root / "etc-mender" / "artifact_info").write_text("artifact_name=bench-factory\n")
        (self.root / "data" / "device_type").write_text(f"device_type={DEVICE_TYPE}\n")
        (self.root / "mender.conf").write_text(json.dumps({"RootfsPartA": self.loop_a, "RootfsPartB": self.loop_b}))
        runner = self.root / "run-mender"
        runner.write_text(
            "#!/bin/sh\n"
            f'mount --bind "{self.root / "etc-mender"}" /etc/mender || exit 99\n'
            f'PATH="{bin_dir}:$PATH" exec mender -no-syslog -config "{self.root / "mender.conf"}" '
            f'-data "{self.root / "data"}" "$@"\n')
        runner.chmod(0o755)

    def command(self, artifact: Path) -> list[str]:
        return ["unshare", "-m", str(self.root / "run-mender"), "install", str(artifact)]


def mender_client_blocker() -> str | None:
    """Why mender-client cannot be driven here, or None."""
    if shutil.which("mender") is None:
        return "mender-client is not installed (apt-get install --no-install-recommends mender-client)"
    if os.geteuid() != 0:
        return "needs root (loop devices, a private mount namespace)"
    for tool in ("losetup", "unshare", "fw_printenv"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    if probe.returncode:
        return "cannot create a mount namespace (unshare -m)"
    return None


def attach(path: Path) -> str:
    out = subprocess.run(["losetup", "-f", "--show", str(path)], capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(out.stderr.strip() or "losetup failed")
    return out.stdout.strip()


def detach(device: str) -> None:
    subprocess.run(["losetup", "-d", device], check=False)


def _nothing() -> None:
    pass


def trailing_number(device: str) -> int:
    digits = ""
    for char in reversed(device):
        if not char.isdigit():
            break
        digits = char + digits
    return int(digits)


# --- The limit -----------------------------------------------------------------------------------


def limit_commands(compression: str, artifact: Path, member_file: Path, where: DataMember,
                   target: str) -> dict[str, list[str]]:
    """Candidate commands for the limit: name -> command (the fastest of them counts).

    Each decompressor is tried with the :data:`DD_VARIANTS`: a plain ``dd``, and ``dd
    oflag=nocache``, which starts writing back (and drops) what it wrote after every block, so
    the disk works during the decompression rather than only at the final fsync (the same thing
    pymender does), with 4 MiB and with 1 MiB blocks.
    """
    commands = {}
    for block, nocache in DD_VARIANTS:
        suffix = (f" bs={block}" if block != DD_VARIANTS[0][0] else "") + (" (nocache)" if nocache else "")
        if compression == "none":
            commands[f"dd{suffix}"] = ["sh", "-c", copy_dd(artifact, where, target, block, nocache)]
            continue
        tool = decompressor(compression)
        commands[f"{tool} -dc + dd{suffix}"] = [
            "sh", "-c", f"{tool} -dc {member_file} | {image_dd(where, target, block, nocache)}"]
    return commands


def decompressor(compression: str) -> str:
    """The fastest native decompressor of ``compression``: pigz decompresses faster than gzip
    (zlib's inflate, with the checksum on its own thread); ``xz -T0`` decodes the blocks of a
    multi-block stream on every core."""
    tool = {"gzip": "pigz" if shutil.which("pigz") else "gzip", "zstd": "zstd", "lzma": "xz"}[compression]
    if shutil.which(tool) is None:
        raise SystemExit(f"{tool} is needed for the limit of {compression}")
    return "xz -T0" if tool == "xz" else tool


def image_dd(where: DataMember, target: str, block: str, nocache: bool) -> str:
    """``dd`` writing the image out of a decompressed data member on stdin into ``target``."""
    oflag = " oflag=nocache" if nocache else ""
    return (f"dd of={target} bs={block} iflag=fullblock,skip_bytes,count_bytes "
            f"skip={where.image_offset} count={where.image_size}{oflag} conv=fsync,notrunc status=none")


def copy_dd(artifact: Path, where: DataMember, target: str, block: str, nocache: bool) -> str:
    """``dd`` copying the image bytes out of an uncompressed Artifact into ``target``, then fsync."""
    oflag = " oflag=nocache" if nocache else ""
    return (f"dd if={artifact} of={target} bs={block} iflag=skip_bytes,count_bytes"
            f" skip={where.offset + where.image_offset} count={where.image_size}{oflag}"
            " conv=fsync,notrunc status=none")


def verified_command(compression: str, artifact: Path, member_file: Path, where: DataMember, target: str,
                     image: Path, openssl: str) -> list[str]:
    """The limit's job plus the SHA-256 of what is written, with native tools; fails when any of
    them fails.

    ``none``: the 1 MiB ``dd oflag=nocache`` copy, and ``openssl dgst -sha256`` of the same bytes
    (the image file, in the page cache) running beside it. Compressed: the decompressor's output
    goes through ``tee -p`` to ``openssl dgst -sha256`` and to the 1 MiB ``dd oflag=nocache``
    (``-p`` because that ``dd`` stops at the end of the image and leaves the tar's end unread,
    which must not fail the command).
    """
    if compression == "none":
        return artifact_bench.with_sha256_beside(openssl, image, copy_dd(artifact, where, target, "1M", True))
    return ["bash", "-c", f'set -o pipefail; {decompressor(compression)} -dc {member_file}'
            f' | tee -p >("$1" dgst -sha256 >/dev/null) | {image_dd(where, target, "1M", True)}; status=$?;'
            ' wait $! && exit $status', "decompress-hash-write", openssl]


# --- Reporting -----------------------------------------------------------------------------------


@dataclass
class Row:
    target: str
    compression: str
    size: int
    ours: Series
    #: Each candidate of the limit (tool name -> its runs); the one with the best median counts.
    candidates: dict[str, Series] = field(default_factory=dict)
    peer: Series | None = None
    peer_note: str = ""
    #: The limit's job plus the SHA-256 of what it writes, with native tools (not a target).
    verified: Series | None = None

    @property
    def limit_tool(self) -> str:
        done = {name: series for name, series in self.candidates.items() if series.ok}
        if not done:
            return next(iter(self.candidates), "")
        return min(done, key=lambda name: done[name].seconds)

    @property
    def limit(self) -> Series:
        return self.candidates.get(self.limit_tool, Series())


def mibs(series: Series | None, size: int) -> str:
    if series is None or not series.runs:
        return "–"
    value = series.throughput(size)
    return "failed" if value is None else f"{value:.0f}"


def rss(series: Series | None) -> str:
    return "–" if series is None or not series.runs else f"{series.max_rss / MB:.1f} MB"


def table(rows: list[Row]) -> str:
    head = ["target", "compression", "pymender MiB/s", "limit MiB/s", "ratio", "mender-client MiB/s",
            "pymender peak RSS", "mender-client peak RSS", "limit tool"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        ours, limit = row.ours.throughput(row.size), row.limit.throughput(row.size)
        ratio = f"{ours / limit:.2f}" if ours and limit else "–"
        peer = mibs(row.peer, row.size) if row.peer is not None else (row.peer_note or "–")
        cells = [row.target, row.compression, mibs(row.ours, row.size), mibs(row.limit, row.size), ratio,
                 peer, rss(row.ours), rss(row.peer) if row.peer is not None else "–",
                 row.limit_tool]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- The benchmark -------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=512, help="image size (default 512)")
    parser.add_argument("--small-mib", type=int, default=128,
                        help="smaller image for the RSS flatness check (default 128; 0 skips it)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement (median; default 3)")
    parser.add_argument("--workdir", type=Path, help="keep images, Artifacts and partitions here")
    parser.add_argument("--compressions", default=",".join(COMPRESSIONS),
                        help=f"comma list of {', '.join(COMPRESSIONS + OPTIONAL_COMPRESSIONS)} "
                        f"(default {','.join(COMPRESSIONS)})")
    parser.add_argument("--no-mender-client", action="store_true", help="leave out the loop-device rows")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds of an idle disk before every measurement (default 1)")
    args = parser.parse_args()
    compressions = [c for c in args.compressions.split(",") if c]
    unknown = sorted(set(compressions) - set(COMPRESSIONS + OPTIONAL_COMPRESSIONS))
    if unknown:
        raise SystemExit(f"unknown compression(s): {', '.join(unknown)}")
    if not Path(GNU_TIME).exists():
        raise SystemExit("GNU time (/usr/bin/time, Debian package time) is needed for the peak RSS")

    own_tmp = None
    if args.workdir is None:
        own_tmp = tempfile.TemporaryDirectory(prefix="pymender-install-bench-")
        work = Path(own_tmp.name)
    else:
        work = args.workdir.resolve()
        work.mkdir(parents=True, exist_ok=True)
    loops: list[str] = []
    try:
        return _run(args, compressions, work, loops)
    finally:
        for device in loops:
            detach(device)
        if own_tmp is not None:
            own_tmp.cleanup()


def _run(args: argparse.Namespace, compressions: list[str], work: Path, loops: list[str]) -> int:
    size_mib = args.size_mib
    use_bytecode_cache(work)
    image = build_image(work, size_mib)
    image_size = image.stat().st_size
    artifacts = {c: write_artifact(image, c, size_mib, work) for c in compressions}

    part_size = image_size + PARTITION_SLACK
    part_a, part_b = work / "rootfs-a.img", work / "rootfs-b.img"
    for part in (part_a, part_b):
        if not part.exists() or part.stat().st_size != part_size:
            part.unlink(missing_ok=True)
            with open(part, "wb") as file:
                if part is part_b:
                    os.posix_fallocate(file.fileno(), 0, part_size)  # preallocated, like a real partition
                else:
                    file.truncate(part_size)  # never written: sparse is enough

    file_device = PymenderDevice(work / "dev-file", str(part_a), str(part_b), None)
    openssl = shutil.which("openssl")
    if openssl is None:
        print("the limit + SHA-256 runs are left out: openssl is not installed", file=sys.stderr)

    blocker = None if not args.no_mender_client else "left out (--no-mender-client)"
    if blocker is None:
        blocker = mender_client_blocker()
    loop_a = loop_b = ""
    if blocker is None:
        try:
            loop_a = attach(part_a)
            loops.append(loop_a)
            loop_b = attach(part_b)
            loops.append(loop_b)
        except RuntimeError as err:
            blocker = f"cannot attach loop devices: {err}"
    if blocker is not None:
        print(f"mender-client rows left out: {blocker}", file=sys.stderr)
    loop_device = mc_device = None
    if blocker is None:
        number = trailing_number(loop_a)
        loop_device = PymenderDevice(work / "dev-loop", loop_a, loop_b, number)
        mc_device = MenderClientDevice(work / "dev-mender-client", loop_a, loop_b, number)

    def settle(*targets: str) -> None:
        """The same start for every measurement: the targets' cache dropped, the disk idle."""
        for target in targets:
            drop_cache(target)
        os.sync()
        time.sleep(args.settle)

    rows: list[Row] = []
    for comp in compressions:
        artifact = artifacts[comp]
        where = locate_payload(artifact)
        assert where.image_size == image_size, (where, image_size)
        member_file = work / f"member-{comp}.bin"
        if comp != "none":
            extract_member(artifact, where, member_file)
            warm(member_file)
        warm(artifact)
        print(f"{comp}: {artifact.name} ({artifact.stat().st_size / MIB:.1f} MiB)", file=sys.stderr)
        # Every measurement of this compression, as (label, reset, targets, command, series).
        jobs: list[tuple[str, Callable[[], None], tuple[str, ...], list[str], Series]] = []
        file_row = Row("file", comp, image_size, Series())
        rows.append(file_row)
        jobs.append(("pymender (file)", file_device.reset, (str(part_b),), file_device.command(artifact),
                     file_row.ours))
        for name, cmd in limit_commands(comp, artifact, member_file, where, str(part_b)).items():
            file_row.candidates[name] = Series()
            jobs.append((f"limit (file): {name}", _nothing, (str(part_b),), cmd, file_row.candidates[name]))
        if openssl is not None:
            if comp == "none":
                warm(image)
            file_row.verified = Series()
            jobs.append(("limit + SHA-256 (file)", _nothing, (str(part_b),),
                         verified_command(comp, artifact, member_file, where, str(part_b), image, openssl),
                         file_row.verified))
        if loop_device is not None and mc_device is not None:
            loop_row = Row("loop device", comp, image_size, Series())
            rows.append(loop_row)
            both = (loop_b, str(part_b))
            jobs.append(("pymender (loop)", loop_device.reset, both, loop_device.command(artifact), loop_row.ours))
            for name, cmd in limit_commands(comp, artifact, member_file, where, loop_b).items():
                loop_row.candidates[name] = Series()
                jobs.append((f"limit (loop): {name}", _nothing, both, cmd, loop_row.candidates[name]))
            if openssl is not None:
                loop_row.verified = Series()
                jobs.append(("limit + SHA-256 (loop)", _nothing, both,
                             verified_command(comp, artifact, member_file, where, loop_b, image, openssl),
                             loop_row.verified))
            if comp in MENDER_CLIENT_COMPRESSIONS:
                loop_row.peer = Series()
                jobs.append(("mender-client (loop)", mc_device.reset, both, mc_device.command(artifact),
                             loop_row.peer))
            else:
                loop_row.peer_note = "cannot read zstd"
        for index in range(args.runs):
            # a different order in every round, so no command always follows the same one
            shift = index % len(jobs)
            for label, reset, targets, cmd, series in jobs[shift:] + jobs[:shift]:
                reset()
                make_stale(targets[0], image_size)
                settle(*targets)
                series.runs.append(measure(cmd, f"{comp} run {index + 1}: {label}"))
        member_file.unlink(missing_ok=True)

    flat: list[tuple[str, Series, Series]] = []
    if args.small_mib:
        small = build_image(work, args.small_mib)
        for comp in compressions:
            artifact = write_artifact(small, comp, args.small_mib, work)
            warm(artifact)
            series = Series()
            for index in range(args.runs):
                file_device.reset()
                series.runs.append(measure(file_device.command(artifact),
                                           f"{comp} {args.small_mib} MiB run {index + 1}: pymender (file)"))
            big = next(row.ours for row in rows if row.target == "file" and row.compression == comp)
            flat.append((comp, series, big))

    file_device.reset()
    startup = Series([measure(file_device.start_up_command(), f"start-up run {index + 1}: pymender show-artifact")
                      for index in range(args.runs)])

    print()
    print("Command: " + " ".join(["python", "benchmarks/install.py", *sys.argv[1:]]))
    print(f"Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    peer = artifact_bench.tool_version(["mender", "--version"]).split()[0] if shutil.which("mender") else "none"
    print(f"Machine: {os.cpu_count()} CPUs ({artifact_bench.cpu_model()}), Python {sys.version.split()[0]}, "
          f"mender-client {peer}")
    print(f"Image: {image_size // MIB} MiB ext4, SHA-256 {artifact_bench.sha256_file(image)[:16]}...; "
          f"median of {args.runs} runs")
    print()
    print(table(rows))
    verified = [row for row in rows if row.verified is not None and row.verified.runs]
    if verified:
        print("\nWhat verifying costs (not a target): the limit above, the same job with the SHA-256 of what "
              "it writes computed by `openssl dgst -sha256` (none: beside the 1 MiB copy; compressed: "
              "through `tee` between the decompressor and the 1 MiB `dd`), and pymender:\n")
        print("| target | compression | limit MiB/s | limit + SHA-256 MiB/s | pymender MiB/s | "
              "(limit + SHA-256) / limit | pymender / (limit + SHA-256) |")
        print("|---|---|---|---|---|---|---|")
        for row in verified:
            assert row.verified is not None
            limit, hashed, ours = (row.limit.throughput(row.size), row.verified.throughput(row.size),
                                 row.ours.throughput(row.size))
            print(f"| {row.target} | {row.compression} | {mibs(row.limit, row.size)} | "
                  f"{mibs(row.verified, row.size)} | "
                  f"{mibs(row.ours, row.size)} | {f'{hashed / limit:.2f}' if hashed and limit else '–'} | "
                  f"{f'{ours / hashed:.2f}' if ours and hashed else '–'} |")
    print(f"\npymender start-up (show-artifact: interpreter, imports, configuration, store): "
          f"{startup.seconds:.2f} s, median of {len(startup.runs)}")
    if blocker is not None:
        print(f"\nmender-client: {blocker}")
    if flat:
        print()
        print(f"| compression | pymender peak RSS, {args.small_mib} MiB image | "
              f"pymender peak RSS, {size_mib} MiB image |")
        print("|---|---|---|")
        for comp, small_series, big_series in flat:
            print(f"| {comp} | {rss(small_series)} | {rss(big_series)} |")

    failures = []
    for row in rows:
        ours, limit = row.ours.throughput(row.size), row.limit.throughput(row.size)
        if not ours:
            failures.append(f"{row.target}/{row.compression}: pymender failed")
            continue
        if row.target == "file" and limit and ours / limit < RATIO_TARGET:
            failures.append(f"{row.target}/{row.compression}: {ours / limit:.2f} of the limit (< {RATIO_TARGET})")
        theirs = row.peer.throughput(row.size) if row.peer is not None else None
        if theirs and ours <= theirs:
            failures.append(f"{row.target}/{row.compression}: not faster than mender-client")
        if row.ours.max_rss >= RSS_TARGET:
            failures.append(f"{row.target}/{row.compression}: peak RSS {row.ours.max_rss / MB:.1f} MB")
    print()
    print("Targets met." if not failures else "Targets missed: " + "; ".join(failures))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
