#!/usr/bin/env python3
"""Benchmark: ``pymender-artifact`` against ``mender-artifact``, side by side in one run.

Both tools write a rootfs-image Artifact of the same ext4 image (default 512 MiB) in every
compression, then each tool validates both tools' Artifacts. Reported per run: wall time, the
ratio pymender / peer (below 1 means pymender is faster), the peak resident set size of each
process (GNU ``time``'s ``%M``, which also covers any process the child waited for) and the
size of the output.

Targets: pymender at least as fast as the peer in every compression, and a peak RSS under
100 MB whatever the image size.

Peers: ``mender-artifact write rootfs-image ... --compression X`` for none, gzip and lzma. Where
upstream has no zstd, the peer is the ``zstd`` command line at the level pymender uses, run
over the bare image with all cores (``zstd -T0 -3``); that is a lower bound, not an equal
task: it neither hashes the payload nor builds the tar around it. Likewise ``zstd -t`` stands
in for validating a zstd Artifact. So a second zstd write row (not a target) sets pymender
against the same job done by native tools: ``zstd -T0 -3`` with ``openssl dgst -sha256`` of the
image running beside it (the SHA-256 the manifest needs, on the fastest implementation here)
and ``sync`` of the output afterwards (pymender makes its output durable).

The image is built reproducibly without root: ``mkfs.ext4 -d`` from a directory holding real
system files copied from ``/usr/bin``, ``/usr/lib`` and ``/usr/share`` (chosen by a hash of
their path, so the pick is spread over the whole tree and is the same on every run on the same
host) plus seeded pseudo-random blobs (standing in for already-compressed assets), filled to
about 75 % of the filesystem. Fixed UUID, hash seed and timestamps make the image the same
bytes for the same ``/usr``; its SHA-256 is printed so runs can be compared.

Cache state: the image is read once before the first run, so every run reads it from the page
cache; dirty pages are flushed before each run (untimed) so no run pays for another's
writeback. pymender fsyncs its output inside its own time, mender-artifact does not; the
cost of one fsync of an image-sized file is printed. Each command runs ``--runs`` times
(default 3), alternating pymender and peer, and the median wall and CPU time is kept, with the
highest peak RSS; the lzma writes run once each (upstream's takes minutes). CPU time (user +
system) is printed too: on a shared machine it is steadier than wall time.

Start-up: an installed Python program runs from compiled bytecode (pip compiles it at install
time). With ``PYTHONDONTWRITEBYTECODE`` set, as on some build machines, every run would compile
every module again, a cost no user pays; so pymender runs without it, with its bytecode cache
in the work directory (``PYTHONPYCACHEPREFIX``), filled by one untimed warm-up of every command.

    python benchmarks/artifact.py [--size-mib 512] [--workdir DIR] [--skip-lzma] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024
MB = 1000 * 1000
RSS_TARGET = 100 * MB
EPOCH = 1_700_000_000  # fixed timestamp of every file and of the filesystem
FS_UUID = "5e1f0000-0000-4000-8000-00000000a001"
ZSTD_LEVEL = 3  # the level of pymender's "zstd" compression
COMPRESSIONS = ("none", "gzip", "lzma", "zstd")
UPSTREAM_COMPRESSIONS = ("none", "gzip", "lzma")
ARTIFACT_NAME = "bench-release-1"
DEVICE_TYPE = "bench-device"

# Share of the data put into the image, per source. Sums to 1.
MIX = (("usr/bin", 0.15), ("usr/lib", 0.50), ("usr/share", 0.20), ("random", 0.15))
MAX_FILE = 8 * MIB  # larger system files are left out so the mix stays varied
BLOCK = 4096


# --- The image ---------------------------------------------------------------------------------


@dataclass
class Part:
    name: str
    files: int = 0
    size: int = 0


def _allocated(size: int) -> int:
    return max(BLOCK, -(-size // BLOCK) * BLOCK)


def _candidates(top: Path) -> list[tuple[str, Path, int]]:
    """Regular files under ``top``, ordered by a hash of their path (reproducible, spread)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath, name)
            try:
                st = path.lstat()
            except OSError:
                continue
            if not path.is_symlink() and path.is_file() and 0 < st.st_size <= MAX_FILE \
                    and os.access(path, os.R_OK):
                rel = str(path.relative_to("/"))
                found.append((hashlib.sha256(rel.encode()).hexdigest(), path, st.st_size))
    found.sort()
    return [(digest, path, size) for digest, path, size in found]


def _copy_system_files(top: str, budget: int, tree: Path) -> Part:
    part = Part(f"/{top}")
    made: set[Path] = set()
    for _, path, size in _candidates(Path("/", top)):
        if part.size + _allocated(size) > budget:
            continue
        dest = tree / path.relative_to("/")
        new_dirs = [p for p in dest.relative_to(tree).parents if p not in made and p != Path(".")]
        cost = _allocated(size) + BLOCK * len(new_dirs)  # a directory takes at least a block
        if part.size + cost > budget:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(path, dest)
        except OSError:
            continue
        os.chmod(dest, path.stat().st_mode & 0o755)
        made.update(new_dirs)
        part.files += 1
        part.size += cost
    return part


def _random_blobs(budget: int, tree: Path) -> Part:
    part = Part("pseudo-random blobs")
    rng = random.Random(20240601)
    folder = tree / "var" / "lib" / "assets"
    folder.mkdir(parents=True, exist_ok=True)
    index = 0
    while part.size < budget:
        size = min(rng.randint(64 * 1024, 4 * MIB), budget - part.size)
        if size < BLOCK:
            break
        (folder / f"asset-{index:04d}.bin").write_bytes(rng.randbytes(size))
        part.files += 1
        part.size += _allocated(size)
        index += 1
    return part


def _mkfs(image: Path, size: int, tree: Path | None) -> None:
    mkfs = shutil.which("mkfs.ext4") or shutil.which("mkfs.ext4", path="/usr/sbin:/sbin")
    if mkfs is None:
        raise SystemExit("mkfs.ext4 is needed (Debian package e2fsprogs)")
    image.unlink(missing_ok=True)
    with open(image, "wb") as file:
        file.truncate(size)
    cmd = [mkfs, "-q", "-F", "-t", "ext4", "-b", str(BLOCK), "-L", "rootfs", "-U", FS_UUID,
           "-E", f"hash_seed={FS_UUID},root_owner=0:0"]
    if tree is not None:
        cmd += ["-d", str(tree)]
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(EPOCH), SOURCE_DATE_EPOCH=str(EPOCH))
    subprocess.run(cmd + [str(image)], check=True, env=env)


def _fs_usage(image: Path) -> tuple[int, int]:
    """(used, total) bytes of the ext4 filesystem in ``image``."""
    dumpe2fs = shutil.which("dumpe2fs") or shutil.which("dumpe2fs", path="/usr/sbin:/sbin") or "dumpe2fs"
    out = subprocess.run([dumpe2fs, "-h", str(image)], check=True, capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    count = int(fields["Block count"])
    free = int(fields["Free blocks"])
    size = int(fields["Block size"])
    return (count - free) * size, count * size


def _stamp_tree(tree: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(tree, topdown=False):
        for name in filenames + dirnames:
            os.utime(Path(dirpath, name), (EPOCH, EPOCH), follow_symlinks=False)
    os.utime(tree, (EPOCH, EPOCH))


def _pin_ctimes(image: Path, tree: Path) -> None:
    """Set every inode's change time to EPOCH: ``mkfs.ext4 -d`` copies the source files' ctime,
    which nobody can set, and that is the only thing that would differ between two builds."""
    debugfs = shutil.which("debugfs") or shutil.which("debugfs", path="/usr/sbin:/sbin") or "debugfs"
    paths = ["/", "/lost+found"]
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in sorted(dirnames + filenames):
            paths.append("/" + str(Path(dirpath, name).relative_to(tree)))
    commands = []
    for path in paths:
        if '"' in path or "\n" in path:
            raise SystemExit(f"unexpected file name {path!r}")
        for field_name, value in (("ctime", f"@{EPOCH}"), ("ctime_extra", "0"), ("crtime", f"@{EPOCH}"),
                                  ("crtime_extra", "0")):
            commands.append(f'sif "{path}" {field_name} {value}\n')
    script = image.with_name("pin-ctimes.debugfs")
    script.write_text("".join(commands))
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(EPOCH))  # the superblock's write time
    subprocess.run([debugfs, "-w", "-f", str(script), str(image)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    script.unlink()


def build_image(image: Path, size: int, fill: float, work: Path) -> list[Part]:
    """Build the ext4 image; returns what went into it."""
    _mkfs(image, size, None)
    overhead, _ = _fs_usage(image)  # journal, inode tables, bitmaps of an empty filesystem
    data = max(0, int(size * fill) - overhead)
    tree = work / "rootfs-tree"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir()
    parts = []
    for source, share in MIX:
        budget = int(data * share)
        if source == "random":
            parts.append(_random_blobs(budget, tree))
        else:
            parts.append(_copy_system_files(source, budget, tree))
    _stamp_tree(tree)
    _mkfs(image, size, tree)
    _pin_ctimes(image, tree)
    shutil.rmtree(tree)
    return parts


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


# --- Running and measuring ---------------------------------------------------------------------


@dataclass
class Run:
    seconds: float  # wall
    cpu: float  # user + system, all threads and children
    max_rss: int  # bytes
    ok: bool
    output_size: int | None = None
    error: str = ""


GNU_TIME = "/usr/bin/time"
#: The environment of every measured command (see the module docstring on bytecode).
CHILD_ENV: dict[str, str] = dict(os.environ)


def bytecode_env(work: Path) -> dict[str, str]:
    """The environment with compiled bytecode cached under ``work``, as an install would have."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def run_under_time(cmd: list[str], fmt: str, env: dict[str, str]) -> tuple[float, int, str, list[str]]:
    """Run ``cmd`` under GNU time with its ``-f`` format ``fmt``: wall seconds (our clock), exit
    code, standard error, and the fields GNU time reported."""
    with tempfile.TemporaryFile() as errors, tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        proc = subprocess.run([GNU_TIME, "-q", "-o", report.name, "-f", fmt, *cmd],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                              check=False, env=env)
        seconds = time.perf_counter() - start
        errors.seek(0)
        text = errors.read().decode(errors="replace").strip()
        fields = report.read().split()
    return seconds, proc.returncode, text, fields


def measure(cmd: list[str], output: Path | None = None) -> Run:
    """Run ``cmd`` once under GNU time: our wall clock; CPU time and peak RSS from time.

    The RSS cannot come from this process's own ``wait4``: a child's high-water mark starts
    with the memory of the process that forked it (this interpreter), so the small ``time``
    program does the forking. Dirty pages of earlier runs are flushed first (untimed), so no
    run pays for another's writeback.
    """
    if output is not None:
        output.unlink(missing_ok=True)
    os.sync()
    seconds, returncode, text, fields = run_under_time(cmd, "%M %U %S", CHILD_ENV)
    fields = fields[-3:]
    ok = returncode == 0
    try:
        max_rss, cpu = int(fields[0]) * 1024, float(fields[1]) + float(fields[2])
    except (IndexError, ValueError):
        max_rss, cpu = 0, 0.0
    size = output.stat().st_size if output is not None and ok and output.exists() else None
    run = Run(seconds, cpu, max_rss, ok, size, "" if ok else (text.splitlines() or [""])[-1])
    state = "ok" if ok else f"FAILED (exit {returncode}): {run.error}"
    print(f"  {seconds:7.2f} s wall {cpu:7.2f} s CPU {run.max_rss / MB:6.1f} MB  {state}  <- {' '.join(cmd)}",
          file=sys.stderr, flush=True)
    return run


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def summary(runs: list[Run]) -> Run:
    """Median wall and CPU time of several runs of one command; the highest peak RSS."""
    return Run(_median([r.seconds for r in runs]), _median([r.cpu for r in runs]),
               max(r.max_rss for r in runs), all(r.ok for r in runs), runs[-1].output_size,
               next((r.error for r in runs if not r.ok), ""))


def side_by_side(ours: tuple[list[str], Path | None], peer: tuple[list[str], Path | None] | None,
                 runs: int) -> tuple[Run, Run | None]:
    """Run pymender's and the peer's command alternately ``runs`` times each."""
    mine: list[Run] = []
    theirs: list[Run] = []
    for _ in range(runs):
        mine.append(measure(*ours))
        if peer is not None:
            theirs.append(measure(*peer))
    return summary(mine), summary(theirs) if theirs else None


def with_sha256_beside(openssl: str, path: Path, command: str) -> list[str]:
    """The shell ``command`` with ``openssl dgst -sha256`` of ``path`` running beside it (the
    fastest SHA-256 on the machine); fails when either fails."""
    return ["sh", "-c", f'"$1" dgst -sha256 "$2" >/dev/null & hashing=$!; {command} && wait "$hashing"',
            "with-sha256", openssl, str(path)]


def same_job_zstd(zstd: str, openssl: str, image: Path, out: Path) -> list[str]:
    """The work of a zstd ``write`` with native tools: compress on all cores, the image's SHA-256
    on the side (both read the image from the page cache), then make the output durable."""
    image_arg, out_arg = shlex.quote(str(image)), shlex.quote(str(out))
    return with_sha256_beside(openssl, image, f"{shlex.quote(zstd)} -q -f -T0 -{ZSTD_LEVEL} {image_arg} "
                                              f"-o {out_arg} && sync {out_arg}")


def warm_up(tool: str, work: Path) -> None:
    """Fill pymender's bytecode cache: every command once, on a small file (untimed)."""
    small = work / "warm-up.bin"
    small.write_bytes(bytes(range(256)) * 4096)
    for comp in COMPRESSIONS:
        out = work / f"warm-up-{comp}.mender"
        for cmd in ([tool, "write", "rootfs-image", "-n", "warm-up", "-t", DEVICE_TYPE, "-f", str(small),
                     "-o", str(out), "--compression", comp, "--no-progress"],
                    [tool, "validate", str(out)]):
            subprocess.run(cmd, env=CHILD_ENV, check=True, stdout=subprocess.DEVNULL)
        out.unlink()
    small.unlink()


def fsync_cost(work: Path, image: Path) -> float:
    """Seconds to fsync a freshly written copy of the image: what a durable write costs here."""
    probe = work / "fsync-probe"
    os.sync()
    shutil.copyfile(image, probe)
    start = time.perf_counter()
    fd = os.open(probe, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - start
    probe.unlink()
    return seconds


@dataclass
class Row:
    operation: str
    compression: str
    ours: Run | None
    peer: Run | None
    peer_note: str = ""
    sizes: list[str] = field(default_factory=list)
    #: False for rows shown for insight only: the targets are not checked on them.
    target: bool = True


def fmt_time(run: Run | None) -> str:
    if run is None:
        return "–"
    return f"{run.seconds:.2f} s" if run.ok else "failed"


def fmt_cpu(run: Run | None) -> str:
    return "–" if run is None or not run.ok else f"{run.cpu:.2f} s"


def fmt_rss(run: Run | None) -> str:
    return "–" if run is None else f"{run.max_rss / MB:.0f} MB"


def fmt_size(size: int | None) -> str:
    return "–" if size is None else f"{size / MIB:.1f} MiB"


def ratio(ours: Run | None, peer: Run | None) -> str:
    if ours is None or peer is None or not (ours.ok and peer.ok) or peer.seconds <= 0:
        return "–"
    return f"{ours.seconds / peer.seconds:.2f}"


def table(rows: list[Row]) -> str:
    head = ["operation", "compression", "peer", "pymender wall", "peer wall", "ratio",
            "pymender CPU", "peer CPU", "pymender peak RSS", "peer peak RSS",
            "output / input size (pymender; peer)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        cells = [row.operation, row.compression, row.peer_note, fmt_time(row.ours), fmt_time(row.peer),
                 ratio(row.ours, row.peer), fmt_cpu(row.ours), fmt_cpu(row.peer), fmt_rss(row.ours),
                 fmt_rss(row.peer), "; ".join(row.sizes)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tool_path(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is not installed")
    return found


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError:
        return "not installed"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --- The benchmark -----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=512, help="ext4 image size (default 512)")
    parser.add_argument("--fill", type=float, default=0.75, help="share of the filesystem in use")
    parser.add_argument("--workdir", type=Path, help="where to put the files (default: a temp dir)")
    parser.add_argument("--skip-lzma", action="store_true",
                        help="skip upstream's lzma write (single-threaded, minutes) and its validation")
    parser.add_argument("--runs", type=int, default=3,
                        help="runs per command, median taken (default 3; lzma writes run once)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    ours_tool = tool_path("pymender-artifact")
    upstream = shutil.which("mender-artifact")
    zstd = shutil.which("zstd")
    openssl = shutil.which("openssl")
    if upstream is None:
        raise SystemExit("mender-artifact is not installed (Debian package mender-artifact)")
    if not os.access(GNU_TIME, os.X_OK):
        raise SystemExit(f"{GNU_TIME} is needed to measure peak RSS (Debian package time)")

    own_tmp = None
    if args.workdir is None:
        own_tmp = tempfile.TemporaryDirectory(prefix="pymender-artifact-bench-")
        work = Path(own_tmp.name)
    else:
        work = args.workdir.resolve()
        work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        image = work / "rootfs.ext4"
        print(f"building a {args.size_mib} MiB ext4 image in {work} ...", file=sys.stderr, flush=True)
        parts = build_image(image, args.size_mib * MIB, args.fill, work)
        used, total = _fs_usage(image)
        image_digest = sha256_file(image)  # also warms the page cache
        CHILD_ENV.clear()
        CHILD_ENV.update(bytecode_env(work))
        warm_up(ours_tool, work)

        def write_cmd(tool: str, comp: str, out: Path) -> list[str]:
            cmd = [tool, "write", "rootfs-image", "-n", ARTIFACT_NAME, "-t", DEVICE_TYPE,
                   "-f", str(image), "-o", str(out), "--compression", comp]
            return cmd + ["--no-progress"] if tool == ours_tool else cmd

        load_before = os.getloadavg()
        print("fsync probe ...", file=sys.stderr, flush=True)
        sync_seconds = fsync_cost(work, image)
        rows: list[Row] = []
        ours_out: dict[str, Path] = {}
        peer_out: dict[str, Path] = {}
        for comp in COMPRESSIONS:
            print(f"write, {comp}:", file=sys.stderr, flush=True)
            repeat = 1 if comp == "lzma" else args.runs  # minutes per run
            out = work / f"pymender-{comp}.mender"
            peer_cmd: tuple[list[str], Path | None] | None = None
            note = "mender-artifact"
            if comp in UPSTREAM_COMPRESSIONS:
                if comp == "lzma" and args.skip_lzma:
                    note = "mender-artifact (skipped)"
                else:
                    peer_cmd = (write_cmd(upstream, comp, work / f"upstream-{comp}.mender"),
                                work / f"upstream-{comp}.mender")
            elif zstd is not None:
                note = f"`zstd -T0 -{ZSTD_LEVEL}` (lower bound)"
                pout = work / "image.ext4.zst"
                peer_cmd = ([zstd, "-q", "-f", "-T0", f"-{ZSTD_LEVEL}", str(image), "-o", str(pout)], pout)
            else:
                note = "zstd not installed"
            ours, peer = side_by_side((write_cmd(ours_tool, comp, out), out), peer_cmd, repeat)
            if ours.ok:
                ours_out[comp] = out
            if peer is not None and peer.ok and peer_cmd is not None and peer_cmd[1] is not None:
                peer_out[comp] = peer_cmd[1]
            rows.append(Row("write", comp, ours, peer, note,
                            [fmt_size(ours.output_size), fmt_size(peer.output_size if peer else None)]))
            if comp not in UPSTREAM_COMPRESSIONS and zstd is not None and openssl is not None:
                print(f"write, {comp}, against the same job with native tools:", file=sys.stderr, flush=True)
                same_out = work / "image-same-job.ext4.zst"
                ours, peer = side_by_side((write_cmd(ours_tool, comp, out), out),
                                          (same_job_zstd(zstd, openssl, image, same_out), same_out), repeat)
                rows.append(Row("write (same job, not a target)", comp, ours, peer,
                                f"`zstd -T0 -{ZSTD_LEVEL}` + `openssl dgst -sha256` beside it + `sync`",
                                [fmt_size(ours.output_size), fmt_size(peer.output_size if peer else None)],
                                target=False))

        for comp in COMPRESSIONS:
            print(f"validate, {comp}:", file=sys.stderr, flush=True)
            if comp in UPSTREAM_COMPRESSIONS:
                for maker, artifacts in (("pymender's", ours_out), ("upstream's", peer_out)):
                    artifact = artifacts.get(comp)
                    if artifact is None:
                        continue
                    ours, peer = side_by_side(([ours_tool, "validate", str(artifact)], None),
                                              ([upstream, "validate", str(artifact)], None), args.runs)
                    rows.append(Row(f"validate {maker} Artifact", comp, ours, peer, "mender-artifact",
                                    [fmt_size(artifact.stat().st_size)]))
            else:
                artifact = ours_out.get(comp)
                if artifact is None:
                    continue
                note = "zstd not installed"
                sizes = [fmt_size(artifact.stat().st_size)]
                zstd_check: tuple[list[str], Path | None] | None = None
                if zstd is not None and comp in peer_out:
                    note = "`zstd -t` of the bare image (lower bound)"
                    zstd_check = ([zstd, "-q", "-t", str(peer_out[comp])], None)
                    sizes.append(fmt_size(peer_out[comp].stat().st_size))
                ours, peer = side_by_side(([ours_tool, "validate", str(artifact)], None), zstd_check,
                                          args.runs)
                rows.append(Row("validate pymender's Artifact", comp, ours, peer, note, sizes))
        load_after = os.getloadavg()

        elapsed = time.perf_counter() - started
        print()
        print(f"Machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), {cpu_model()}; "
              f"Python {platform.python_version()}")
        print(f"Tools: {tool_version([ours_tool, '--version'])}; {tool_version([upstream, '--version'])}; "
              f"{tool_version([zstd, '--version']) if zstd else 'zstd not installed'}; "
              f"{tool_version([openssl, 'version']) if openssl else 'openssl not installed'}")
        print(f"Image: {args.size_mib} MiB ext4, {used / MIB:.0f} MiB in use ({used / total:.0%}), "
              f"sha256 {image_digest[:16]}…; contents:")
        for part in parts:
            print(f"- {part.name}: {part.files} files, {part.size / MIB:.0f} MiB")
        print(f"Runs: median wall and CPU time of {args.runs} alternating runs per command (lzma writes: "
              f"one each), highest peak RSS; image in the page cache; dirty pages flushed before "
              f"each run; pymender runs from a bytecode cache. pymender fsyncs its output inside its "
              f"time, mender-artifact does not: "
              f"fsync of {args.size_mib} MiB here takes {sync_seconds:.2f} s.")
        print(f"Load average (1 min) before: {load_before[0]:.2f}, after: {load_after[0]:.2f}\n")
        print(table(rows))
        print()
        misses = []
        for row in rows:
            if not row.target:
                continue
            if row.ours is not None and row.ours.ok and row.ours.max_rss >= RSS_TARGET:
                misses.append(f"{row.operation} {row.compression}: peak RSS {row.ours.max_rss / MB:.0f} MB")
            if row.operation == "write" and row.ours and row.peer and row.ours.ok and row.peer.ok \
                    and row.ours.seconds > row.peer.seconds:
                misses.append(f"write {row.compression}: {row.ours.seconds / row.peer.seconds:.2f}x the peer's time")
            if (row.ours is not None and not row.ours.ok) or (row.peer is not None and not row.peer.ok):
                misses.append(f"{row.operation} {row.compression}: a run failed")
        print("Targets: " + ("all met" if not misses else "missed: " + "; ".join(misses)))
        print(f"Total benchmark time: {elapsed / 60:.1f} min")
    finally:
        if own_tmp is not None and not args.keep:
            own_tmp.cleanup()
        elif own_tmp is not None:
            print(f"kept {work}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
