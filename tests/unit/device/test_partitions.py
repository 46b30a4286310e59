"""Which partition runs, which one an update goes to, and the cross-check with the bootloader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pymender.device.config import DeviceConfig
from pymender.device.partitions import (
    Partition,
    find_partitions,
    partition_numbers,
    root_from_cmdline,
    root_from_mountinfo,
)
from pymender.errors import ConfigError, DeviceError


def _files(tmp: Path, *names: str) -> list[Path]:
    paths = []
    for name in names:
        path = tmp / name
        path.write_bytes(b"x" * 4096)
        paths.append(path)
    return paths


def _config(a: Path, b: Path, root: Path | str | None = None) -> DeviceConfig:
    return DeviceConfig(rootfs_part_a=str(a), rootfs_part_b=str(b),
                        root_device=None if root is None else str(root))


def test_regular_files_use_a2_b3_and_the_pinned_root(tmp_path: Path) -> None:
    a, b = _files(tmp_path, "rootfs-a.img", "rootfs-b.img")
    parts = find_partitions(_config(a, b, root=b), proc=tmp_path / "noproc")
    assert (parts.a.number, parts.b.number) == (2, 3)
    assert parts.active == parts.b and parts.inactive == parts.a
    assert parts.found_by == "RootDevice in the configuration"
    assert not parts.a.is_block_device


def test_regular_files_with_numbers_in_their_names(tmp_path: Path) -> None:
    a, b = _files(tmp_path, "part5.img", "part11.img")
    assert partition_numbers(str(a), str(b)) == (5, 11)
    same = _files(tmp_path, "disk1.img", "other1.img")
    assert partition_numbers(str(same[0]), str(same[1])) == (2, 3)


def test_hex_number_is_lowercase() -> None:
    assert Partition("/dev/sda10", 10, "A", True).number_hex == "a"
    assert Partition("/dev/mmcblk0p3", 3, "B", True).number_hex == "3"


def test_pinned_root_through_a_symlink(tmp_path: Path) -> None:
    a, b = _files(tmp_path, "a.img", "b.img")
    link = tmp_path / "root-link"
    link.symlink_to(a)
    assert find_partitions(_config(a, b, root=link)).active.slot == "A"


def test_pinned_root_that_is_neither_is_refused(tmp_path: Path) -> None:
    a, b, c = _files(tmp_path, "a.img", "b.img", "c.img")
    with pytest.raises(DeviceError, match="RootDevice .* is neither RootfsPartA"):
        find_partitions(_config(a, b, root=c))


def test_missing_configuration_and_partitions(tmp_path: Path) -> None:
    a, b = _files(tmp_path, "a.img", "b.img")
    with pytest.raises(ConfigError, match="RootfsPartA and RootfsPartB must both be set"):
        find_partitions(DeviceConfig(rootfs_part_a=str(a)))
    with pytest.raises(DeviceError, match="does not exist"):
        find_partitions(_config(a, tmp_path / "missing.img", root=a))
    link = tmp_path / "alias.img"
    link.symlink_to(a)
    with pytest.raises(ConfigError, match="are the same partition"):
        find_partitions(_config(a, link, root=a))


def test_character_device_is_refused(tmp_path: Path) -> None:
    a = _files(tmp_path, "a.img")[0]
    with pytest.raises(DeviceError, match="character device"):
        partition_numbers(str(a), "/dev/null")


def _mountinfo(proc: Path, source: str, majmin: str = "8:2") -> None:
    (proc / "self").mkdir(parents=True, exist_ok=True)
    (proc / "self" / "mountinfo").write_text(
        "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
        f"25 1 {majmin} / / rw,relatime shared:1 - ext4 {source} rw\n"
        "30 25 0:25 / /tmp rw - tmpfs tmpfs rw\n"
    )


def test_discovery_from_mountinfo_source(tmp_path: Path) -> None:
    a, b = _files(tmp_path, "a.img", "b.img")
    proc = tmp_path / "proc"
    _mountinfo(proc, str(b))
    parts = find_partitions(_config(a, b), proc=proc, dev=tmp_path / "dev")
    assert parts.active.slot == "B" and parts.found_by.endswith("mountinfo")


def test_mountinfo_parsing_keeps_the_last_root_and_device_number(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    _mountinfo(proc, "/dev/with\\040space", "179:3")
    found = root_from_mountinfo(proc)
    assert found is not None
    assert found.path == "/dev/with space" and found.rdev == os.makedev(179, 3)
    assert root_from_mountinfo(tmp_path / "nothing") is None


@pytest.mark.parametrize("word, expected", [
    ("root=PARTUUID=ABCD-02", "disk/by-partuuid/abcd-02"),
    ("root=UUID=1234", "disk/by-uuid/1234"),
    ("root=LABEL=rootfs", "disk/by-label/rootfs"),
    ("root=PARTLABEL=primary", "disk/by-partlabel/primary"),
    ("root=/dev/mmcblk0p2", "mmcblk0p2"),
])
def test_cmdline_root_forms(tmp_path: Path, word: str, expected: str) -> None:
    proc, dev = tmp_path / "proc", tmp_path / "dev"
    proc.mkdir()
    (proc / "cmdline").write_text(f"console=ttyS0 root=/dev/old {word} rw\n")
    found = root_from_cmdline(proc, dev)
    assert found is not None and found.path == str(dev / expected)


def test_cmdline_hex_device_number(tmp_path: Path) -> None:
    (tmp_path / "cmdline").write_text("root=b302\n")
    found = root_from_cmdline(tmp_path, tmp_path)
    assert found is not None and found.rdev == os.makedev(0xB3, 2)


def test_discovery_falls_back_to_cmdline_partuuid(tmp_path: Path) -> None:
    a, b = _files(tmp_path, "a.img", "b.img")
    proc, dev = tmp_path / "proc", tmp_path / "dev"
    _mountinfo(proc, "overlay")  # an overlay root says nothing about the partition
    (proc / "cmdline").write_text("quiet root=PARTUUID=CAFE-03\n")
    (dev / "disk" / "by-partuuid").mkdir(parents=True)
    (dev / "disk" / "by-partuuid" / "cafe-03").symlink_to(b)
    parts = find_partitions(_config(a, b), proc=proc, dev=dev)
    assert parts.active.slot == "B" and "cmdline" in parts.found_by


def test_undiscoverable_root_says_what_was_found(tmp_path: Path) -> None:
    a, b = _files(tmp_path, "a.img", "b.img")
    proc = tmp_path / "proc"
    _mountinfo(proc, "/dev/sdz9")
    with pytest.raises(DeviceError) as caught:
        find_partitions(_config(a, b), proc=proc, dev=tmp_path / "dev")
    assert "/dev/sdz9 (8:2)" in caught.value.one_line() and "RootDevice" in caught.value.one_line()


# --- the cross-check with the bootloader environment -------------------------------------------


def test_env_agreeing_with_the_running_partition(tmp_path: Path) -> None:
    a, b = _files(tmp_path, "a.img", "b.img")
    parts = find_partitions(_config(a, b, root=a))
    parts.check_env_agrees({"mender_boot_part": "2", "upgrade_available": "0"})
    assert parts.env_partition({"mender_boot_part": "3"}) == parts.b


@pytest.mark.parametrize("env, message", [
    ({"mender_boot_part": "3", "upgrade_available": "0"}, "will boot partition 3"),
    ({"mender_boot_part": "2", "upgrade_available": "1"}, "no update in progress"),
    ({}, "has no mender_boot_part"),
    ({"mender_boot_part": "7"}, "neither RootfsPartA"),
    ({"mender_boot_part": "two"}, "neither RootfsPartA"),
])
def test_env_disagreeing_is_refused(tmp_path: Path, env: dict[str, str], message: str) -> None:
    a, b = _files(tmp_path, "a.img", "b.img")
    parts = find_partitions(_config(a, b, root=a))
    with pytest.raises(DeviceError, match=message):
        parts.check_env_agrees(env)

