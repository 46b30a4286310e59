"""pymender's bootloader environments against the real tools: grub-editenv and libubootenv.

Debian packages: grub-common (grub-editenv), libubootenv-tool (fw_printenv, fw_setenv).
libubootenv 0.3 needs ``-f <default env file>`` only when no valid copy exists yet; its lock
file is fixed (``/var/lock/fw_printenv.lock``), which is harmless here.
"""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from helpers import require_tool
from pymender.device.bootenv import GrubEnv, UBootEnv

pytestmark = pytest.mark.interop

SIZE = 0x4000
START = {"bootcount": "0", "mender_boot_part": "2", "mender_boot_part_hex": "2",
         "upgrade_available": "0"}
SWITCH = {"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1"}


def run(*args: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=False, cwd=cwd
    )
    assert result.returncode == 0, f"{args}: rc {result.returncode}: {result.stderr}"
    return result.stdout


def as_dict(listing: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in listing.splitlines() if "=" in line)


# --- GRUB ------------------------------------------------------------------------------------


def test_grub_editenv_lists_what_pymender_writes(tmp_path: Path) -> None:
    editenv = require_tool("grub-editenv")
    sha256sum = require_tool("sha256sum")
    env = GrubEnv(tmp_path, lock_file=None)
    env.initialize(START)
    env.write({**SWITCH, "bootcount": None, "note": "C:\\path with spaces"})
    expected = {k: v for k, v in {**START, **SWITCH}.items() if k != "bootcount"}
    expected["note"] = "C:\\path with spaces"
    for n in (1, 2):
        directory = tmp_path / f"mender_grubenv{n}"
        assert as_dict(run(editenv, directory / "env", "list")) == expected
        assert as_dict(run(editenv, directory / "lock", "list")) == {"editing": "0"}
        run(sha256sum, "--check", "--status", "lock.sha256sum", cwd=directory)
    assert env.read() == expected


def test_pymender_reads_what_grub_editenv_writes(tmp_path: Path) -> None:
    editenv = require_tool("grub-editenv")
    env = GrubEnv(tmp_path, lock_file=None)
    env.initialize(START)
    for n in (2, 1):  # GRUB's own save order
        run(editenv, tmp_path / f"mender_grubenv{n}" / "env", "set", "bootcount=1", "x=a\\b")
    assert env.read() == {**START, "bootcount": "1", "x": "a\\b"}
    env.write({"upgrade_available": None})
    listing = run(editenv, tmp_path / "mender_grubenv1" / "env", "list")
    assert as_dict(listing) == {k: v for k, v in START.items() if k != "upgrade_available"} | {
        "bootcount": "1", "x": "a\\b"
    }


# --- U-Boot ----------------------------------------------------------------------------------


def fw_config(tmp_path: Path, copies: int) -> Path:
    config = tmp_path / "fw_env.config"
    lines = [f"{tmp_path / f'env{i}'} 0x{0x200 * i:x} {SIZE:#x}" for i in range(1, copies + 1)]
    config.write_text("\n".join(lines) + "\n")
    for i in range(1, copies + 1):
        (tmp_path / f"env{i}").write_bytes(b"\0" * (0x200 * i + SIZE + 0x100))
    return config


@pytest.mark.parametrize("copies", [1, 2], ids=["single", "redundant"])
def test_fw_printenv_reads_what_pymender_writes(tmp_path: Path, copies: int) -> None:
    printenv = require_tool("fw_printenv")
    config = fw_config(tmp_path, copies)
    env = UBootEnv.from_config(config)
    env.initialize(START)
    assert as_dict(run(printenv, "-c", config)) == START
    env.write({**SWITCH, "bootcount": None})
    assert as_dict(run(printenv, "-c", config)) == {
        k: v for k, v in {**START, **SWITCH}.items() if k != "bootcount"
    }
    assert run(printenv, "-c", config, "-n", "mender_boot_part").strip() == "3"


@pytest.mark.parametrize("copies", [1, 2], ids=["single", "redundant"])
def test_pymender_reads_what_fw_setenv_writes(tmp_path: Path, copies: int) -> None:
    setenv = require_tool("fw_setenv")
    config = fw_config(tmp_path, copies)
    # Blank storage: libubootenv starts from the default environment file.
    defaults = tmp_path / "defaults.txt"
    defaults.write_text("".join(f"{k}={v}\n" for k, v in START.items()))
    run(setenv, "-c", config, "-f", defaults, "upgrade_available", "1")
    env = UBootEnv.from_config(config)
    assert env.read() == {**START, "upgrade_available": "1"}
    script = tmp_path / "script.txt"
    script.write_text("mender_boot_part=3\nmender_boot_part_hex=3\nbootcount=\n")  # "name=" unsets
    run(setenv, "-c", config, "-s", script)
    assert env.read() == {"mender_boot_part": "3", "mender_boot_part_hex": "3",
                          "upgrade_available": "1"}


def raw_redundant_copy(variables: dict[str, str], flags: int) -> bytes:
    data = b"".join(f"{k}={v}".encode() + b"\0" for k, v in sorted(variables.items())) + b"\0"
    data = data.ljust(SIZE - 5, b"\0")
    return struct.pack("<I", zlib.crc32(data)) + bytes([flags]) + data


def test_alternating_writers_agree_across_the_flags_wrap(tmp_path: Path) -> None:
    printenv = require_tool("fw_printenv")
    setenv = require_tool("fw_setenv")
    config = fw_config(tmp_path, 2)
    with open(tmp_path / "env1", "r+b") as f:
        f.seek(0x200)
        f.write(raw_redundant_copy(START, 0xFD))
    env = UBootEnv.from_config(config)
    flags_seen = []
    for step in range(6):
        if step % 2:
            run(setenv, "-c", config, "step", str(step))
        else:
            env.write({"step": str(step)})
        assert env.read()["step"] == str(step)
        assert as_dict(run(printenv, "-c", config))["step"] == str(step)
        first = (tmp_path / "env1").read_bytes()[0x200 + 4]
        second = (tmp_path / "env2").read_bytes()[0x400 + 4]
        flags_seen.append((first, second))
    assert (0xFF, 0x00) in flags_seen or (0x00, 0xFF) in flags_seen  # the counter wrapped
