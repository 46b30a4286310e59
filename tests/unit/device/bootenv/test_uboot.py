"""The U-Boot backend: fw_env.config, the binary format, copy choice, power cuts."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from pymender import sysio
from pymender.device.bootenv import uboot
from pymender.device.bootenv.uboot import (
    EnvLocation,
    UBootEnv,
    decode_data,
    encode_data,
    newer_copy,
    parse_fw_env_config,
)
from pymender.errors import BootEnvError, ConfigError

SIZE = 0x2000
OLD = {"bootcount": "0", "mender_boot_part": "2", "mender_boot_part_hex": "2",
       "upgrade_available": "0"}
CHANGES = {"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1"}
NEW = {**OLD, **CHANGES}

pytestmark = pytest.mark.usefixtures("no_fsync")


def raw_copy(variables: dict[str, str], flags: int | None, size: int = SIZE) -> bytes:
    """A copy built independently of the code under test."""
    data = b"".join(f"{k}={v}".encode() + b"\0" for k, v in sorted(variables.items())) + b"\0"
    data = data.ljust(size - (4 if flags is None else 5), b"\0")
    head = struct.pack("<I", zlib.crc32(data))
    return head + (b"" if flags is None else bytes([flags])) + data


def redundant(scratch: Path, offsets: tuple[int, int] = (0, 0)) -> UBootEnv:
    config = scratch / "fw_env.config"
    config.write_text(
        f"# two copies\n{scratch / 'env1'} {offsets[0]:#x} {SIZE:#x}\n"
        f"{scratch / 'env2'} {offsets[1]:#x} {SIZE:#x}\n"
    )
    return UBootEnv.from_config(config, lock_file=None)


def single(scratch: Path) -> UBootEnv:
    config = scratch / "fw_env.config"
    config.write_text(f"{scratch / 'env'} 0x400 {SIZE:#x}\n")
    return UBootEnv.from_config(config, lock_file=None)


def flags_of(path: Path, offset: int = 0) -> int:
    return path.read_bytes()[offset + 4]


# --- fw_env.config ---------------------------------------------------------------------------


def test_config_numbers_are_read_as_libubootenv_reads_them() -> None:
    text = "# c\n\n/dev/mmcblk0 0x800000 0x4000\n  /dev/mmcblk0   010 4000 0x200 2  \n"
    first, second = parse_fw_env_config(text)
    assert first == EnvLocation(Path("/dev/mmcblk0"), 0x800000, 0x4000)
    # leading 0 = octal offset; the size is always hex even without 0x
    assert second == EnvLocation(Path("/dev/mmcblk0"), 8, 0x4000, 0x200, 2)
    assert parse_fw_env_config("/f 100 16384")[0] == EnvLocation(Path("/f"), 100, 0x16384)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "0 environment copies"),
        ("/a 0 0x1000\n/b 0 0x1000\n/c 0 0x1000\n", "3 environment copies"),
        ("/a 0\n", "line 1"),
        ("/a zz 0x1000\n", "number"),
        ("/a 0 0x1000\n/b 0 0x2000\n", "different sizes"),
        ("/a -4 0x1000\n", "negative"),
        ("/a 0 0x4\n", "too small"),
    ],
)
def test_config_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_fw_env_config(text)


def test_missing_config_is_a_config_error(scratch: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read") as info:
        UBootEnv.from_config(scratch / "none")
    assert info.value.hint and "UBootEnvConfig" in info.value.hint


# --- data format -------------------------------------------------------------------------------


def test_data_is_sorted_nul_terminated_and_zero_padded() -> None:
    data = encode_data({"b": "2", "a": "x=y", "e": ""}, 32)
    assert data == b"a=x=y\0b=2\0e=\0\0".ljust(32, b"\0")
    assert decode_data(data) == {"a": "x=y", "b": "2", "e": ""}


def test_data_allows_newlines_but_not_overflow() -> None:
    assert decode_data(encode_data({"script": "a\nb"}, 64)) == {"script": "a\nb"}
    encode_data({"k": "v" * 27}, 32)  # 1 + 1 + 27 + NUL + final NUL = 31
    with pytest.raises(BootEnvError, match="would need"):
        encode_data({"k": "v" * 30}, 32)


def test_decode_stops_at_the_empty_entry_and_skips_junk() -> None:
    assert decode_data(b"a=1\0junk\0b=2\0\0c=3\0\0") == {"a": "1", "b": "2"}


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [(0, 0, 0), (3, 3, 0), (5, 4, 0), (4, 5, 1), (0xFF, 0, 1), (0, 0xFF, 0), (254, 255, 1),
     (128, 0, 0), (0, 128, 1), (1, 0, 0)],
)
def test_newer_copy_rule_with_wrap_around(first: int, second: int, expected: int) -> None:
    assert newer_copy(first, second) == expected


# --- redundant copies --------------------------------------------------------------------------


def test_reads_the_copy_with_the_higher_flags(scratch: Path) -> None:
    (scratch / "env1").write_bytes(raw_copy(OLD, 7))
    (scratch / "env2").write_bytes(raw_copy(NEW, 8))
    assert redundant(scratch).read() == NEW
    (scratch / "env1").write_bytes(raw_copy(OLD, 9))
    assert redundant(scratch).read() == OLD


def test_zero_is_newer_than_255(scratch: Path) -> None:
    (scratch / "env1").write_bytes(raw_copy(OLD, 0xFF))
    (scratch / "env2").write_bytes(raw_copy(NEW, 0))
    env = redundant(scratch)
    assert env.read() == NEW
    env.write({"bootcount": "1"})  # goes to copy 1 with flags 1
    assert flags_of(scratch / "env1") == 1
    assert env.read() == {**NEW, "bootcount": "1"}


def test_write_goes_to_the_other_copy_with_flags_plus_one(scratch: Path) -> None:
    (scratch / "env1").write_bytes(raw_copy(OLD, 0xFE))
    (scratch / "env2").write_bytes(raw_copy({"stale": "1"}, 0x10))
    env = redundant(scratch)
    env.write(CHANGES)
    assert (scratch / "env1").read_bytes() == raw_copy(OLD, 0xFE)  # untouched
    assert (scratch / "env2").read_bytes() == raw_copy(NEW, 0xFF)
    env.write({"upgrade_available": "0", "bootcount": None})
    assert (scratch / "env1").read_bytes() == raw_copy(
        {k: v for k, v in {**NEW, "upgrade_available": "0"}.items() if k != "bootcount"}, 0
    )
    assert env.read() == {k: v for k, v in NEW.items() if k != "bootcount"} | {
        "upgrade_available": "0"
    }


def test_one_bad_crc_uses_the_other_copy(scratch: Path) -> None:
    (scratch / "env1").write_bytes(raw_copy(OLD, 1))
    broken = bytearray(raw_copy(NEW, 2))
    broken[100] ^= 0x01
    (scratch / "env2").write_bytes(bytes(broken))
    env = redundant(scratch)
    assert env.read() == OLD
    env.write(CHANGES)
    assert (scratch / "env2").read_bytes() == raw_copy(NEW, 2)


def test_short_file_counts_as_a_bad_copy(scratch: Path) -> None:
    (scratch / "env1").write_bytes(raw_copy(OLD, 1)[:100])
    (scratch / "env2").write_bytes(raw_copy(NEW, 0))
    assert redundant(scratch).read() == NEW


def test_no_valid_copy_explains_the_likely_cause(scratch: Path) -> None:
    (scratch / "env1").write_bytes(b"\0" * SIZE)
    (scratch / "env2").write_bytes(b"\0" * SIZE)
    with pytest.raises(BootEnvError, match="no valid U-Boot environment") as info:
        redundant(scratch).read()
    assert info.value.hint and "saveenv" in info.value.hint


def test_copies_at_offsets_leave_the_rest_of_the_device_alone(scratch: Path) -> None:
    disk = b"\xa5" * 0x1000 + raw_copy(OLD, 1) + b"\x5a" * 0x1000
    (scratch / "env1").write_bytes(disk)
    (scratch / "env2").write_bytes(b"\xee" * 0x3000)
    env = redundant(scratch, offsets=(0x1000, 0x800))
    assert env.read() == OLD
    env.write(CHANGES)
    assert (scratch / "env1").read_bytes() == disk
    second = (scratch / "env2").read_bytes()
    assert second[:0x800] == b"\xee" * 0x800
    assert second[0x800:0x800 + SIZE] == raw_copy(NEW, 2)
    assert second[0x800 + SIZE:] == b"\xee" * (0x3000 - 0x800 - SIZE)


def test_initialize_makes_copy_one_current(scratch: Path) -> None:
    env = redundant(scratch)
    env.initialize(OLD)
    assert (scratch / "env1").read_bytes() == raw_copy(OLD, 1)
    assert (scratch / "env2").read_bytes() == raw_copy(OLD, 0)
    assert env.read() == OLD


def test_unchanged_write_is_skipped(scratch: Path) -> None:
    env = redundant(scratch)
    env.initialize(OLD)
    env.write({"bootcount": "0"})
    assert flags_of(scratch / "env2") == 0


def test_character_devices_are_refused(scratch: Path) -> None:
    env = UBootEnv([EnvLocation(Path("/dev/null"), 0, SIZE)], lock_file=None)
    with pytest.raises(BootEnvError, match="character device"):
        env.read()


def test_missing_device_is_a_clear_error(scratch: Path) -> None:
    with pytest.raises(BootEnvError, match="does not exist"):
        redundant(scratch).read()


# --- single copy ---------------------------------------------------------------------------------


def test_single_copy_round_trip_in_place(scratch: Path) -> None:
    (scratch / "env").write_bytes(b"\x11" * 0x400 + raw_copy(OLD, None))
    env = single(scratch)
    assert not env.redundant
    assert env.read() == OLD
    env.write({**CHANGES, "bootcount": None})
    blob = (scratch / "env").read_bytes()
    assert blob[:0x400] == b"\x11" * 0x400
    assert blob[0x400:] == raw_copy({k: v for k, v in NEW.items() if k != "bootcount"}, None)
    assert "U-Boot environment at" in env.describe()


# --- power cuts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("torn", [False, True], ids=["clean-stop", "torn-write"])
@pytest.mark.parametrize("start_flags", [(5, 4), (0xFF, 0xFE), (0, 0xFF), (3, None)])
def test_power_cut_at_every_step_leaves_old_or_new(  # type: ignore[no-untyped-def]
    scratch: Path, monkeypatch: pytest.MonkeyPatch, crashing_os, power_cut,
    torn: bool, start_flags: tuple[int, int | None],
) -> None:
    seen = set()
    crash_at = 0
    while True:
        run = scratch  # reused: the copies are rewritten in place
        (run / "env1").write_bytes(raw_copy(OLD, start_flags[0]))
        second = raw_copy({"older": "1"}, start_flags[1]) if start_flags[1] is not None \
            else b"\xff" * SIZE  # second copy never written
        (run / "env2").write_bytes(second)
        env = redundant(run)
        fake = crashing_os(crash_at, torn=torn)
        finished = False
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(uboot, "os", fake)
            patch.setattr(sysio, "os", fake)
            try:
                env.write(CHANGES)
                finished = True
            except power_cut:
                pass
        result = redundant(run).read()
        assert result in (OLD, NEW), f"crash at step {crash_at} ({fake.crashed_in})"
        seen.add(result == NEW)
        redundant(run).write({"bootcount": "1"})
        assert redundant(run).read() == {**result, "bootcount": "1"}
        if finished:
            break
        crash_at += 1
    assert crash_at >= 3 and seen == {False, True}
