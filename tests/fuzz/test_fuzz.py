"""The fuzz targets in CI: the seeds and every input a finding left pass, the targets can fail,
and a short coverage-guided run of each target finds nothing.

The short runs are bounded by executions, not time, and use a fresh seed each CI run (printed,
and given to libFuzzer, so a failure can be replayed with ``tests/fuzz/run.py TARGET --seed N``;
``PYMENDER_FUZZ_SEED`` fixes it). Longer runs, their executions and coverage: docs/fuzzing.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fault import bootloaders
from fuzz import run
from fuzz.seeds import write_corpus
from fuzz.targets import TARGETS, Finding, replay
from pymender.artifact import manifest
from pymender.device.bootenv import grub

REGRESSIONS = Path(__file__).with_name("regressions")
#: Executions of each target in the CI run (a few minutes for all five on a busy 2-CPU machine).
CI_RUNS = {"reader": 150_000, "reader_signed": 60_000, "header": 150_000, "grubenv": 15_000, "ubootenv": 15_000}

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _inputs(target: str, workdir: Path) -> list[Path]:
    corpus = workdir / target / "seeds"
    write_corpus(target, corpus, workdir / target / "scratch", workdir / "keys")
    found = sorted((REGRESSIONS / target).glob("*")) if (REGRESSIONS / target).is_dir() else []
    return sorted(corpus.iterdir()) + found


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_seeds_and_past_findings_pass(target: str, workdir: Path) -> None:
    inputs = _inputs(target, workdir)
    assert len(inputs) >= 5
    replay(target, workdir / target / "scratch", inputs)


def test_a_target_fails_on_an_error_that_is_not_the_librarys_own(workdir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise IndexError("a parser bug")

    monkeypatch.setattr(manifest.Manifest, "parse", broken)
    with pytest.raises(IndexError):
        replay("reader", workdir / "reader" / "scratch", _inputs("reader", workdir)[:1])


def test_the_grub_target_finds_a_write_grub_would_not_boot(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The finding of the grubenv target, with the fix undone: pymender judged a copy by the
    digest in its checksum list alone, and copied a list GRUB refuses into the other copy."""
    monkeypatch.setattr(grub, "checksum_list_ok", lambda listing, files: listing.split()[0].decode()
                        == grub.hashlib.sha256(files["lock"] or b"").hexdigest())
    monkeypatch.setattr(grub.GrubEnv, "_rest_lock", staticmethod(lambda current: (current.lock, current.checksum)))
    with pytest.raises(Finding, match="GRUB would not try partition 3"):
        replay("grubenv", workdir / "grubenv" / "scratch", sorted((REGRESSIONS / "grubenv").glob("*")))


def test_the_uboot_target_finds_a_copy_the_script_and_pymender_judge_apart(workdir: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The finding of the ubootenv target, with the fix undone: U-Boot's script called a copy in a
    file longer than the environment damaged, where pymender (as libubootenv) reads its first
    bytes; pymender's write made that copy current, and the script booted the other one."""
    judge = bootloaders.uboot_copy

    def exact_size_only(blob: bytes | None, size: int, parts: tuple[str, str]) -> bootloaders.UBootCopy:
        return judge(blob if blob is None or len(blob) == size else b"", size, parts)

    monkeypatch.setattr(bootloaders, "uboot_copy", exact_size_only)
    with pytest.raises(Finding, match="U-Boot would not try partition 3"):
        replay("ubootenv", workdir / "ubootenv" / "scratch", sorted((REGRESSIONS / "ubootenv").glob("*")))


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_short_fuzzing_run_finds_nothing(target: str, workdir: Path) -> None:
    fixed = os.environ.get("PYMENDER_FUZZ_SEED")
    seed = int(fixed) if fixed else int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    print(f"fuzz {target}: seed {seed} (replay: tests/fuzz/run.py {target} --runs {CI_RUNS[target]} "
          f"--seed {seed})")
    code = run.drive(target, workdir / "runs", CI_RUNS[target], None, seed)
    crashes = sorted((workdir / "runs" / target / "crashes").glob("*"))
    assert code == 0 and not crashes, (
        f"fuzz {target} (seed {seed}) found {[c.name for c in crashes]}; log: "
        f"{(workdir / 'runs' / target / 'last-run.log').read_text(errors='replace')[-3000:]}")
