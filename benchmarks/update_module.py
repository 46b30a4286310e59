#!/usr/bin/env python3
"""Benchmark: an Update Module's payload through the stream FIFO, and the cost of a module call.

1. Streaming (target: ratio >= 0.9). A payload file (default 200 MiB, seeded pseudo-random, so
   it does not compress away in the page cache) goes to pymender's ``single-file`` module the
   way an install streams it: ProvidePayloadFileSizes, then Download with the bytes written
   into ``streams/<file>`` through ``stream-next``, the module copying them with ``cat`` next
   to their destination. The peer is ``cat <file> > <destination>``: the same bytes into the
   same kind of file, with no protocol at all. Reported: the median wall time of each, and
   the ratio peer / pymender (1.0: the FIFO costs nothing; the target is 0.9 or more), and the
   CPU time of each (pymender, the module and its ``cat`` together), steadier than wall time
   on a shared machine. The source is read from the page cache in both (read once before the
   runs); dirty pages are flushed (untimed) before every run.

   The limit of any FIFO protocol is measured in the same runs: the same bytes through one
   pipe hop into the same file with native tools only, ``cat FILE | cat > DEST`` (an anonymous
   pipe) and ``cat FILE > FIFO`` with ``cat FIFO > DEST`` (a named FIFO, as ``streams/<file>``).
   Every hop copies the bytes twice (into the pipe, out of it) where ``cat`` alone copies them
   once, whatever speaks the protocol. pymender's ratio is reported against ``cat`` (the
   issue's target) and against that limit (1.0: pymender costs nothing beyond the hop). The
   four are interleaved, in a rotating order, run after run, so that a change in the machine's
   load falls on all of them.

   For information (not a target) the whole ``mender-update install`` of the same payload as
   a single-file Artifact is timed too: it also reads the Artifact's tar, checks the payload's
   SHA-256 and runs ArtifactInstall, NeedsArtifactReboot and SupportsRollback.

2. Per-state overhead (target: under 20 ms). The mean time of one module call made by pymender
   (``UpdateModule.call`` for a state, ``UpdateModule.query`` for a query) with a module that
   does nothing (``#!/bin/sh`` and ``exit 0``), against the same program started with
   ``subprocess.run`` alone: the difference is pymender's own cost per state, the total what a
   state costs a module that does nothing.

    python benchmarks/update_module.py [--size-mib 200] [--runs 5] [--calls 200] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from pymender.device.payloads.update_module import UpdateModule  # noqa: E402

CHUNK = 1 << 20


class FilePayload:
    """A payload file as the Artifact reader gives it (name, size, readinto), read from disk."""

    def __init__(self, path: Path) -> None:
        self.name = path.name
        self.size = path.stat().st_size
        self._file = path.open("rb", buffering=0)

    def readinto(self, buffer: bytearray) -> int:
        return self._file.readinto(buffer) or 0

    def close(self) -> None:
        self._file.close()


def make_payload(path: Path, size: int) -> None:
    rng = random.Random(15)
    with path.open("wb") as out:
        block = rng.randbytes(CHUNK)
        for index in range(size // CHUNK):
            out.write(block[index % 7:] + block[:index % 7])


def flush() -> None:
    os.sync()


def cpu() -> float:
    """CPU seconds (user + system) of this process and of its waited-for children so far."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


CPU: dict[str, list[float]] = {"fifo": [], "cat": [], "pipe": [], "native-fifo": []}


def stream_once(work: Path, payload: Path, module: Path, dest: Path) -> float:
    tree = work / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "tmp").mkdir(parents=True)
    files = tree / "files"
    files.mkdir()
    (files / "dest_dir").write_text(f"{dest}\n")
    (files / "filename").write_text(f"{payload.name}\n")
    source = FilePayload(payload)
    flush()
    started, used = time.perf_counter(), cpu()
    UpdateModule(module, tree, timeout=600).download([source])
    elapsed = time.perf_counter() - started
    CPU["fifo"].append(cpu() - used)
    source.close()
    landed = dest / f".{payload.name}.pymender-new"
    assert landed.stat().st_size == payload.stat().st_size, "the module did not get the whole payload"
    landed.unlink()
    return elapsed


def cat_once(payload: Path, dest: Path) -> float:
    target = dest / payload.name
    flush()
    started, used = time.perf_counter(), cpu()
    with target.open("wb") as out:
        subprocess.run(["cat", str(payload)], stdout=out, check=True)
    elapsed = time.perf_counter() - started
    CPU["cat"].append(cpu() - used)
    target.unlink()
    return elapsed


def pipe_once(payload: Path, dest: Path) -> float:
    """``cat FILE | cat > DEST``: one anonymous pipe hop, native tools only."""
    target = dest / payload.name
    flush()
    started, used = time.perf_counter(), cpu()
    with target.open("wb") as out:
        reader = subprocess.Popen(["cat", str(payload)], stdout=subprocess.PIPE)
        assert reader.stdout is not None
        writer = subprocess.Popen(["cat"], stdin=reader.stdout, stdout=out)
        reader.stdout.close()
        if writer.wait() or reader.wait():
            raise RuntimeError("cat | cat failed")
    elapsed = time.perf_counter() - started
    CPU["pipe"].append(cpu() - used)
    assert target.stat().st_size == payload.stat().st_size
    target.unlink()
    return elapsed


def native_fifo_once(work: Path, payload: Path, dest: Path) -> float:
    """``cat FILE > FIFO`` and ``cat FIFO > DEST``: one named FIFO hop, native tools only."""
    target = dest / payload.name
    fifo = work / "native-fifo"
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo, 0o600)
    flush()
    started, used = time.perf_counter(), cpu()
    with target.open("wb") as out:
        writer = subprocess.Popen(["cat", str(fifo)], stdout=out)
        with fifo.open("wb") as into:
            reader = subprocess.Popen(["cat", str(payload)], stdout=into)
        if reader.wait() or writer.wait():
            raise RuntimeError("cat > FIFO, cat FIFO failed")
    elapsed = time.perf_counter() - started
    CPU["native-fifo"].append(cpu() - used)
    assert target.stat().st_size == payload.stat().st_size
    target.unlink()
    fifo.unlink()
    return elapsed


def install_once(work: Path, artifact: Path, host: Path) -> float:
    from pymender.cli.common import run_cli
    from pymender.cli.mender_update import main

    datastore = host / "var-lib-mender"
    shutil.rmtree(datastore, ignore_errors=True)
    datastore.mkdir(parents=True)
    (datastore / "device_type").write_text("device_type=bench\n")
    flush()
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = run_cli("mender-update", main, ["install", str(artifact)])
    elapsed = time.perf_counter() - started
    assert code == 0, "the install failed"
    return elapsed


def call_overhead(work: Path, calls: int) -> dict[str, float]:
    module = work / "nothing"
    module.write_text("#!/bin/sh\nexit 0\n")
    module.chmod(0o755)
    tree = work / "call-tree"
    tree.mkdir(exist_ok=True)
    um = UpdateModule(module, tree, timeout=60)
    results = {}
    for label, run in (
        ("bare subprocess.run", lambda: subprocess.run([str(module), "ArtifactCommit", str(tree)], cwd=tree)),
        ("state (UpdateModule.call)", lambda: um.call("ArtifactCommit")),
        ("query (UpdateModule.query)", lambda: um.query("SupportsRollback")),
    ):
        run()
        started = time.perf_counter()
        for _ in range(calls):
            run()
        results[label] = (time.perf_counter() - started) / calls * 1000
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--skip-install", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="um-bench-", dir=args.workdir))
    try:
        payload = work / "payload.bin"
        make_payload(payload, args.size_mib * CHUNK)
        payload.read_bytes()  # into the page cache
        dest = work / "dest"
        dest.mkdir()
        module = REPO / "modules" / "single-file"
        runs: dict[str, list[float]] = {name: [] for name in CPU}
        contenders: dict[str, Callable[[], float]] = {
            "fifo": lambda: stream_once(work, payload, module, dest),
            "cat": lambda: cat_once(payload, dest),
            "pipe": lambda: pipe_once(payload, dest),
            "native-fifo": lambda: native_fifo_once(work, payload, dest),
        }
        order = list(contenders)
        for run in range(args.runs):
            for name in order[run % len(order):] + order[:run % len(order)]:
                runs[name].append(contenders[name]())
        size = args.size_mib
        wall = {name: statistics.median(times) for name, times in runs.items()}
        used = {name: statistics.median(times) for name, times in CPU.items()}
        limit = min(wall["pipe"], wall["native-fifo"])
        limit_cpu = min(used["pipe"], used["native-fifo"])
        print(f"payload: {size} MiB, {args.runs} runs each, interleaved (median); load average "
              f"{os.getloadavg()[0]:.2f} at the end")
        for name, label in (("cat", "cat into the file"), ("pipe", "cat | cat (one pipe hop)"),
                            ("native-fifo", "cat > FIFO, cat FIFO (one hop)"),
                            ("fifo", "stream-next FIFO (single-file)")):
            print(f"  {label + ':':32s}{wall[name]:7.3f} s  ({size / wall[name]:5.0f} MiB/s)  "
                  f"CPU {used[name]:.3f} s")
        print(f"  ratio cat / FIFO:               {wall['cat'] / wall['fifo']:7.2f}  (target >= 0.9); "
              f"CPU {used['cat'] / used['fifo']:.2f}")
        print(f"  ratio one-hop limit / FIFO:     {limit / wall['fifo']:7.2f}  (1.0: nothing beyond the hop); "
              f"CPU {limit_cpu / used['fifo']:.2f}")
        print(f"  ratio cat / one-hop limit:      {wall['cat'] / limit:7.2f}  (the best any FIFO protocol gets)")
        if not args.skip_install:
            installs = []
            host = work / "host"
            os.environ.update(MENDER_CONF_DIR=str(host / "etc-mender"), MENDER_DATA_DIR=str(host / "usr-share"),
                              MENDER_DATASTORE_DIR=str(host / "var-lib-mender"))
            modules = host / "usr-share" / "modules" / "v3"
            modules.mkdir(parents=True)
            shutil.copy(module, modules / "single-file")
            from pymender.cli.artifact import main as artifact_main
            from pymender.cli.common import run_cli

            artifact = work / "app.mender"
            with contextlib.redirect_stderr(io.StringIO()):
                run_cli("pymender-artifact", artifact_main, [
                    "single-file-artifact-gen", "-n", "app-1", "-t", "bench", "-d", str(dest), "-o", str(artifact),
                    str(payload), "--", "--compression", "none"])
            artifact.read_bytes()
            for _ in range(args.runs):
                installs.append(install_once(work, artifact, host))
                (dest / payload.name).unlink()
                for leftover in dest.iterdir():
                    leftover.unlink()
            print(f"  whole mender-update install:    {statistics.median(installs):7.3f} s  "
                  f"({size / statistics.median(installs):7.0f} MiB/s; also SHA-256, tar, 5 more states; "
                  "not a target)")
        print(f"per-state overhead, mean of {args.calls} calls of a module that does nothing:")
        for label, ms in call_overhead(work, args.calls).items():
            print(f"  {label:28s} {ms:6.2f} ms")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
