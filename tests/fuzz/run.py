"""Run a fuzz target under atheris (libFuzzer), and keep a ledger of the runs.

    python tests/fuzz/run.py TARGET [--runs N | --seconds S] [--workdir DIR] [--seed N]
    python tests/fuzz/run.py TARGET --coverage [--workdir DIR]
    python tests/fuzz/run.py --ledger [--workdir DIR]

The driver (this process, without atheris) starts the fuzzer as a child at the lowest CPU
priority, one at a time, on the target's corpus ``DIR/TARGET/corpus`` (seeded by
:mod:`fuzz.seeds` when empty); inputs that fail land in ``DIR/TARGET/crashes/``. Each run
appends its executions, libFuzzer's coverage (``cov``: edges of pymender's code reached,
``ft``: features) and the corpus size to ``DIR/ledger.tsv``; ``--ledger`` sums it per target.
``--coverage`` replays the corpus under ``coverage`` and prints the line coverage of the modules
the target exercises. Limits of every run: 2048 MiB of memory, 10 s per input, inputs of
64 KiB at most. ``DIR`` defaults to ``build/fuzz``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
DEFAULT_WORKDIR = REPO / "build" / "fuzz"
RSS_LIMIT_MB = 2048
TIMEOUT_S = 10
MAX_LEN = 65536
#: The modules each target exercises (for --coverage).
MODULES = {
    "reader": ["pymender/artifact"],
    "reader_signed": ["pymender/artifact"],
    "header": ["pymender/artifact"],
    "grubenv": ["pymender/device/bootenv"],
    "ubootenv": ["pymender/device/bootenv"],
}
_DONE = re.compile(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)")
_RUNS = re.compile(r"stat::number_of_executed_units: (\d+)")


def _paths() -> None:
    for path in (str(TESTS), str(REPO / "src")):
        if path not in sys.path:
            sys.path.insert(0, path)


def child(target: str, workdir: Path, libfuzzer: list[str]) -> None:
    """In the fuzzer process: instrument pymender, set the target up, fuzz."""
    import atheris

    _paths()
    with atheris.instrument_imports(include=["pymender"]):
        import pymender.artifact.compression
        import pymender.artifact.manifest
        import pymender.artifact.model
        import pymender.artifact.reader
        import pymender.artifact.signing
        import pymender.artifact.tarstream
        import pymender.device.bootenv.grub
        import pymender.device.bootenv.uboot  # noqa: F401
    from fuzz.seeds import write_corpus
    from fuzz.targets import TARGETS

    corpus = workdir / target / "corpus"
    write_corpus(target, corpus, workdir / target / "scratch", workdir / "keys")
    one = TARGETS[target].setup(workdir / target / "scratch")
    crashes = workdir / target / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    atheris.Setup([sys.argv[0], *libfuzzer, f"-artifact_prefix={crashes}/", str(corpus)], one)
    atheris.Fuzz()


def drive(target: str, workdir: Path, runs: int | None, seconds: int | None, seed: int | None,
          log: Path | None = None) -> int:
    """Run the child fuzzer; append to the ledger; its exit code (0: nothing found)."""
    workdir.mkdir(parents=True, exist_ok=True)
    seed = seed if seed is not None else int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    flags = [f"-rss_limit_mb={RSS_LIMIT_MB}", f"-timeout={TIMEOUT_S}", f"-max_len={MAX_LEN}", f"-seed={seed}",
             "-print_final_stats=1", "-close_fd_mask=1"]
    if runs is not None:
        flags.append(f"-runs={runs}")
    if seconds is not None:
        flags.append(f"-max_total_time={seconds}")
    command = [sys.executable, str(Path(__file__).resolve()), target, "--child", "--workdir", str(workdir),
               "--", *flags]
    print(f"fuzz {target}: seed {seed}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    log_path = log or workdir / target / "last-run.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT,
                              preexec_fn=lambda: os.nice(19), cwd=REPO)
    elapsed = time.monotonic() - started
    text = log_path.read_text(errors="replace")
    executed = _RUNS.findall(text)
    final = _DONE.findall(text)
    cov, ft, corp = (final[-1][1:] if final else ("?", "?", "?"))
    crashes = sorted((workdir / target / "crashes").glob("*"))
    row = [datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), target, str(seed),
           f"{elapsed:.0f}", executed[-1] if executed else "0", cov, ft, corp, str(done.returncode),
           str(len(crashes))]
    ledger = workdir / "ledger.tsv"
    new = not ledger.exists()
    with ledger.open("a") as out:
        if new:
            out.write("when\ttarget\tseed\tseconds\texecutions\tcov\tft\tcorpus\texit\tcrash_files\n")
        out.write("\t".join(row) + "\n")
    print(f"fuzz {target}: exit {done.returncode}, {row[4]} executions in {row[3]} s, cov {cov} ft {ft}, "
          f"corpus {corp}; log {log_path}", flush=True)
    if done.returncode != 0:
        print(text[-4000:], flush=True)
    return done.returncode


def ledger(workdir: Path) -> None:
    totals: dict[str, list[int]] = {}
    path = workdir / "ledger.tsv"
    if not path.exists():
        print("no runs yet")
        return
    for line in path.read_text().splitlines()[1:]:
        fields = line.split("\t")
        entry = totals.setdefault(fields[1], [0, 0, 0])
        entry[0] += int(fields[4])
        entry[1] += int(fields[3])
        entry[2] += int(fields[8] != "0")
    grand = 0
    for target, (executions, seconds, failed) in sorted(totals.items()):
        grand += executions
        print(f"{target:14} {executions:>12,} executions {seconds:>8} s  failed runs: {failed}")
    print(f"{'total':14} {grand:>12,} executions")


def coverage(target: str, workdir: Path) -> None:
    import coverage as coverage_module

    _paths()
    include = [str(REPO / "src" / module / "*") for module in MODULES[target]]
    cov = coverage_module.Coverage(include=include, branch=False)
    cov.start()
    from fuzz.targets import replay

    replay(target, workdir / target / "scratch", sorted((workdir / target / "corpus").iterdir()))
    cov.stop()
    total = cov.report(show_missing=False, file=sys.stdout)
    print(f"{target}: {total:.1f}% of the lines of {', '.join(MODULES[target])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", nargs="?")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--runs", type=int)
    parser.add_argument("--seconds", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--coverage", action="store_true")
    parser.add_argument("--ledger", action="store_true")
    argv = sys.argv[1:]
    libfuzzer = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.ledger:
        ledger(args.workdir)
        return 0
    if args.target not in MODULES:
        parser.error(f"TARGET is one of {', '.join(MODULES)}")
    if args.child:
        child(args.target, args.workdir, libfuzzer)
        return 0
    if args.coverage:
        coverage(args.target, args.workdir)
        return 0
    return drive(args.target, args.workdir, args.runs, args.seconds, args.seed)


if __name__ == "__main__":
    sys.exit(main())
