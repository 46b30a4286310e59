"""The crash-state machinery itself: the I/O shim, the states it builds, the bootloaders' models."""

from __future__ import annotations

import hashlib
import os
import random
import zlib
from pathlib import Path

import pytest

from fault.bootloaders import (
    grub_boot,
    grub_envblk_parse,
    grub_hashsum_ok,
    uboot_boot,
    uboot_export,
    uboot_import,
)
from fault.crashstates import SECTOR, Trace, build, choices, crash_states, synced
from fault.iotrace import DIRSYNC, FSYNC, RENAME, WRITE, Recorder
from pymender import sysio
from pymender.device.bootenv.grub import GrubEnv, encode_block, lock_checksum_line


def _trace(root: Path, action: object) -> Trace:
    recorder = Recorder(root)
    snapshot = recorder.snapshot()
    with recorder.recording():
        action()  # type: ignore[operator]
    return Trace(snapshot, dict(recorder.initial_inodes), list(recorder.ops))


def _contents(trace: Trace, name: str) -> set[bytes | None]:
    return {state.disk.files.get(name) for state in crash_states(trace)}


def test_the_shim_follows_files_by_inode_through_a_replace(tmp_path: Path) -> None:
    (tmp_path / "store.json").write_bytes(b"old")
    trace = _trace(tmp_path, lambda: sysio.replace_file(tmp_path / "store.json", b"new"))
    kinds = [op.kind for op in trace.ops]
    assert kinds == ["create", "truncate", WRITE, FSYNC, RENAME, DIRSYNC]
    write, rename = trace.ops[2], trace.ops[4]
    assert write.inode == trace.ops[0].inode != trace.inodes["store.json"]
    assert (rename.path, rename.target) == (".store.json.tmp", "store.json")
    assert _contents(trace, "store.json") == {b"old", b"new"}  # never empty, never torn


def test_a_rename_without_the_file_synced_first_can_leave_it_empty(tmp_path: Path) -> None:
    (tmp_path / "store.json").write_bytes(b"old")

    def unsafe() -> None:
        fd = os.open(tmp_path / ".tmp", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"new")
        os.close(fd)
        os.replace(tmp_path / ".tmp", tmp_path / "store.json")

    assert _contents(_trace(tmp_path, unsafe), "store.json") == {b"old", b"new", b""}


def test_only_synced_writes_are_certain(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(bytes(2 * SECTOR))

    def two_writes() -> None:
        fd = os.open(tmp_path / "f", os.O_WRONLY)
        os.pwrite(fd, b"a" * SECTOR, 0)
        os.fsync(fd)
        os.pwrite(fd, b"b" * 2 * SECTOR, 0)
        os.close(fd)

    trace = _trace(tmp_path, two_writes)
    assert synced(trace, len(trace.ops)) == {0, 1}
    states = {state.disk.files["f"] for state in crash_states(trace, points=lambda p: p == len(trace.ops))}
    a, b, zero = b"a" * SECTOR, b"b" * SECTOR, bytes(SECTOR)
    # The unsynced write may persist whole, not at all, or torn either way; the synced one stays.
    assert states == {a + zero, b + b, b + zero, a + b}


def test_directory_changes_persist_in_order(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).write_bytes(name.encode())

    def renames() -> None:
        os.rename(tmp_path / "a", tmp_path / "x")
        os.rename(tmp_path / "b", tmp_path / "y")

    trace = _trace(tmp_path, renames)
    names = {tuple(sorted(state.disk.files)) for state in crash_states(trace)}
    assert names == {("a", "b"), ("b", "x"), ("x", "y")}  # never the second without the first


def test_every_subset_kind_is_offered(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(bytes(4 * SECTOR))

    def write() -> None:
        fd = os.open(tmp_path / "f", os.O_WRONLY)
        os.pwrite(fd, b"y" * SECTOR, 0)
        os.pwrite(fd, b"x" * 4 * SECTOR, 0)
        os.close(fd)

    trace = _trace(tmp_path, write)
    kinds = {how.split()[0] for how, _ in choices(trace, len(trace.ops), random.Random(0), 3)}
    assert kinds == {"none", "all", "prefix", "torn", "lost", "random"}
    for how, chosen in choices(trace, len(trace.ops), random.Random(0), 3):
        assert build(trace, len(trace.ops), chosen).files["f"] is not None, how


# --- the bootloaders' models ----------------------------------------------------------------------


def _grub_files(tmp_path: Path) -> dict[str, bytes | None]:
    return {f"mender_grubenv{c}/{n}": (tmp_path / f"mender_grubenv{c}" / n).read_bytes()
            for c in (1, 2) for n in ("env", "lock", "lock.sha256sum")}


def test_grub_model_trusts_copy_one_unless_it_is_being_edited(tmp_path: Path) -> None:
    env = GrubEnv(tmp_path, lock_file=None)
    env.initialize({"mender_boot_part": "2", "upgrade_available": "0", "bootcount": "0"})
    files = _grub_files(tmp_path)
    boot = grub_boot(files)
    assert (boot.source, boot.partition, boot.writes) == (1, "2", {})
    files["mender_grubenv1/lock"] = encode_block({"editing": "1"})
    files["mender_grubenv1/env"] = encode_block({"mender_boot_part": "3", "upgrade_available": "1"})
    boot = grub_boot(files)
    assert (boot.source, boot.partition) == (2, "2")
    assert set(boot.writes) == {"mender_grubenv1/lock", "mender_grubenv1/env"}  # copy 1 repaired
    assert grub_envblk_parse(boot.writes["mender_grubenv1/lock"]) == {"editing": "0"}


def test_grub_model_tries_once_then_rolls_back(tmp_path: Path) -> None:
    env = GrubEnv(tmp_path, lock_file=None)
    env.initialize({"mender_boot_part": "3", "upgrade_available": "1", "bootcount": "0"})
    files = _grub_files(tmp_path)
    boot = grub_boot(files)
    assert (boot.partition, boot.trial, boot.env["bootcount"]) == ("3", True, "1")
    files.update(boot.writes)
    boot = grub_boot(files)
    assert (boot.partition, boot.trial, boot.env["upgrade_available"]) == ("2", False, "0")


@pytest.mark.parametrize(("listing", "ok"), [
    (lock_checksum_line(b"L"), True),
    (b"", True),
    (lock_checksum_line(b"L").replace(b"  ", b" "), False),
    (lock_checksum_line(b"other"), False),
    (hashlib.sha256(b"L").hexdigest().encode() + b"  nope\n", False),
])
def test_grub_hashsum_check(listing: bytes, ok: bool) -> None:
    assert grub_hashsum_ok(listing, {"lock": b"L"}) is ok


def test_uboot_import_is_himport() -> None:
    assert uboot_import(b"a=1\0 b=2\0#c=3\0d\0e=\\x\0\0junk=1\0") == {"a": "1", "b": "2", "e": "x"}
    assert uboot_import(b"=1\0\0") is None  # an empty name fails the whole import


def test_uboot_model_picks_by_flags_and_writes_the_other_copy() -> None:
    size = 0x400
    trial = uboot_export({"mender_boot_part": "3", "upgrade_available": "1", "bootcount": "0"}, 0, size)
    old = uboot_export({"mender_boot_part": "2", "upgrade_available": "0", "bootcount": "0"}, 0xFF, size)
    assert trial is not None and old is not None
    boot = uboot_boot({"uboot.env": old, "uboot-redund.env": trial}, size)  # 0 is newer than 255
    assert (boot.source, boot.partition, boot.trial) == (2, "3", True)
    written = boot.writes["uboot.env"]
    assert written[4] == 1 and int.from_bytes(written[:4], "little") == zlib.crc32(written[5:])
    torn = trial[:300] + b"\xff" * (size - 300)  # the rest of the sectors kept what was there
    boot = uboot_boot({"uboot.env": old, "uboot-redund.env": torn}, size)
    assert (boot.source, boot.partition, boot.writes) == (1, "2", {})
