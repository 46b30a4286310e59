"""Which root filesystem partition is running, which one an update goes to, and their numbers.

An update must never be written to the partition the system runs from, so the *active* partition
is found from the running system itself, not taken on trust from the bootloader environment:

1. ``RootDevice`` from the configuration, when set (host tests and benchmarks, where the
   "partitions" are regular files, pin it there);
2. else the device mounted on ``/``, from ``/proc/self/mountinfo``: its ``major:minor`` compared
   with the ``st_rdev`` of ``RootfsPartA``/``RootfsPartB``, or its source path compared with them;
3. else ``root=`` on ``/proc/cmdline``: a path, or ``PARTUUID=``/``UUID=``/``LABEL=``/
   ``PARTLABEL=`` resolved through ``/dev/disk/by-*`` (needed when ``/`` is an overlay or comes
   from an initramfs).

Two names are the same partition when they are the same block device (equal ``st_rdev``, so
``/dev/root``, ``/dev/disk/by-partuuid/...`` and ``/dev/mmcblk0p2`` all match) or the same file.
The *inactive* partition is simply the other one of A and B.

The bootloader environment (``mender_boot_part``) says which partition boots next;
:meth:`PartitionSet.check_env_agrees` cross-checks it against the running one, and the installer
refuses to write anything when they disagree: a disagreement means an update is already switched
in, or the configuration names the wrong devices.

Partition numbers (``mender_boot_part``, and ``mender_boot_part_hex`` in lowercase hexadecimal)
come from the trailing digits of the device name (``/dev/mmcblk0p3`` -> 3, ``/dev/sda10`` -> 10,
hex ``a``), after resolving symbolic links. Regular files stand in for partitions on a host; for
them the trailing digits of the file name without its extension are used when both names have
different ones (``part2.img``/``part3.img``), otherwise the convention A = 2, B = 3 (the layout
of Mender's and pymender's disk images).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import NamedTuple

from pymender.device.bootenv import BOOT_PART, UPGRADE_AVAILABLE
from pymender.device.config import DeviceConfig
from pymender.device.log import get_logger
from pymender.errors import ConfigError, DeviceError

log = get_logger(__name__)

#: Numbers used for regular files whose names do not carry distinct numbers (see module docstring).
FILE_NUMBER_A = 2
FILE_NUMBER_B = 3
_TRAILING_DIGITS = re.compile(r"([0-9]+)$")
_BY_TAG = {"PARTUUID": "by-partuuid", "UUID": "by-uuid", "LABEL": "by-label", "PARTLABEL": "by-partlabel"}


# Named tuples rather than dataclasses: importing dataclasses costs every command start-up time.


class Partition(NamedTuple):
    """One of the two root filesystem partitions."""

    #: The name as configured (``RootfsPartA``/``RootfsPartB``).
    path: str
    #: The number the bootloader knows it by (``mender_boot_part``).
    number: int
    #: ``"A"`` or ``"B"``.
    slot: str
    #: Whether it is a block device (else a regular file standing in for one).
    is_block_device: bool

    @property
    def number_hex(self) -> str:
        """``mender_boot_part_hex``: the number in lowercase hexadecimal (10 -> ``a``)."""
        return format(self.number, "x")

    def __str__(self) -> str:
        return self.path


class PartitionSet(NamedTuple):
    """Both partitions and which of them runs the current system."""

    a: Partition
    b: Partition
    #: The partition the running system was booted from.
    active: Partition
    #: Where the running root device was found (for messages).
    found_by: str

    @property
    def inactive(self) -> Partition:
        return self.b if self.active is self.a else self.a

    def by_path(self, path: str) -> Partition | None:
        """The partition configured as ``path``, or None."""
        for part in (self.a, self.b):
            if part.path == path:
                return part
        return None

    def named(self, path: str, what: str) -> Partition:
        """The partition a pending update names as ``what`` ("new", "previous"); refused when
        the configuration no longer has it."""
        part = self.by_path(path)
        if part is None:
            raise DeviceError(
                f"the {what} partition of the pending update ({path}) is neither RootfsPartA ({self.a.path}) "
                f"nor RootfsPartB ({self.b.path})",
                hint="the configuration changed since the install; restore RootfsPartA/RootfsPartB",
            )
        return part

    def by_number(self, number: int) -> Partition | None:
        for part in (self.a, self.b):
            if part.number == number:
                return part
        return None

    def env_partition(self, env: dict[str, str]) -> Partition:
        """The partition the bootloader environment boots next (``mender_boot_part``)."""
        raw = env.get(BOOT_PART)
        if raw is None or not raw.strip():
            raise DeviceError(
                f"the bootloader environment has no {BOOT_PART}",
                hint="the boot integration (Mender's GRUB scripts or U-Boot patches) is missing, "
                "or the environment was never saved; set it to the running partition's number "
                f"({self.active.number})",
            )
        try:
            number = int(raw.strip(), 10)
        except ValueError:
            number = -1
        part = self.by_number(number)
        if part is None:
            raise DeviceError(
                f"the bootloader environment has {BOOT_PART}={raw}, which is neither RootfsPartA "
                f"({self.a.path}, {self.a.number}) nor RootfsPartB ({self.b.path}, {self.b.number})",
                hint="check RootfsPartA/RootfsPartB in the configuration",
            )
        return part

    def check_env_agrees(self, env: dict[str, str]) -> None:
        """Refuse unless the bootloader boots the running partition next and no trial is open."""
        booted_next = self.env_partition(env)
        if booted_next != self.active:
            raise DeviceError(
                f"the running root filesystem is {self.active.path} (partition {self.active.number},"
                f" found by {self.found_by}), but the bootloader environment will boot partition "
                f"{booted_next.number} ({booted_next.path}) next",
                hint="an update is switched in but not booted yet: reboot first; if this persists, "
                "the configuration (RootfsPartA/B, RootDevice) names the wrong partitions",
            )
        if env.get(UPGRADE_AVAILABLE, "0").strip() not in ("", "0"):
            raise DeviceError(
                f"the bootloader is trying out the running system ({UPGRADE_AVAILABLE}="
                f"{env.get(UPGRADE_AVAILABLE)}) but pymender has no update in progress",
                hint="another tool switched it in; reboot to let the bootloader return to the other "
                f"partition, or set {UPGRADE_AVAILABLE}=0 to keep the running system",
            )


# --- identities ------------------------------------------------------------------------------


def _identity(path: str | Path) -> tuple[str, int, int] | None:
    """What makes two names the same partition: the device number, or the file's inode."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if stat.S_ISBLK(info.st_mode):
        return ("block", info.st_rdev, 0)
    if stat.S_ISREG(info.st_mode):
        return ("file", info.st_dev, info.st_ino)
    return ("other", info.st_dev, info.st_ino)


def _number_from_name(name: str) -> int | None:
    match = _TRAILING_DIGITS.search(name)
    return int(match.group(1)) if match else None


def _describe_kind(path: str) -> tuple[bool, str]:
    """(is block device, resolved path); refuses what cannot hold a root filesystem."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise DeviceError(
            f"the root filesystem partition {path} does not exist",
            hint="check RootfsPartA/RootfsPartB in the configuration",
        ) from None
    except OSError as err:
        raise DeviceError(f"cannot examine {path}: {err.strerror}") from None
    if stat.S_ISBLK(info.st_mode):
        return True, os.path.realpath(path)
    if stat.S_ISREG(info.st_mode):
        return False, os.path.realpath(path)
    if stat.S_ISCHR(info.st_mode):
        raise DeviceError(
            f"{path} is a character device (raw flash or a UBI volume); pymender writes only to "
            "block devices and, for testing, regular files",
        )
    raise DeviceError(f"{path} is neither a block device nor a regular file")


def partition_numbers(part_a: str, part_b: str) -> tuple[int, int]:
    """The bootloader numbers of A and B (see the module docstring for the rules)."""
    block_a, real_a = _describe_kind(part_a)
    block_b, real_b = _describe_kind(part_b)
    if block_a != block_b:
        raise DeviceError(
            f"RootfsPartA ({part_a}) and RootfsPartB ({part_b}) must both be block devices or both "
            "regular files",
        )
    if block_a:
        numbers = []
        for configured, real in ((part_a, real_a), (part_b, real_b)):
            number = _number_from_name(os.path.basename(real))
            if number is None:
                raise DeviceError(
                    f"cannot tell the partition number of {configured} ({real})",
                    hint="name a partition whose device name ends in its number, such as /dev/mmcblk0p2",
                )
            numbers.append(number)
        number_a, number_b = numbers
    else:
        number_a_file = _number_from_name(Path(real_a).stem)
        number_b_file = _number_from_name(Path(real_b).stem)
        if number_a_file is not None and number_b_file is not None and number_a_file != number_b_file:
            number_a, number_b = number_a_file, number_b_file
        else:
            number_a, number_b = FILE_NUMBER_A, FILE_NUMBER_B
    if number_a == number_b:
        raise DeviceError(
            f"RootfsPartA ({part_a}) and RootfsPartB ({part_b}) have the same partition number {number_a}",
            hint="name two different partitions",
        )
    return number_a, number_b


# --- the running root device -----------------------------------------------------------------


class RootCandidate(NamedTuple):
    """One guess of the running root device: a path and/or a device number."""

    path: str | None
    rdev: int | None
    found_by: str


def _unescape_mountinfo(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def root_from_mountinfo(proc: Path) -> RootCandidate | None:
    """The device mounted on ``/`` according to ``<proc>/self/mountinfo`` (the last mount wins)."""
    try:
        text = (proc / "self" / "mountinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found: RootCandidate | None = None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10 or fields[4] != "/" or "-" not in fields[6:]:
            continue
        try:
            major, minor = (int(x) for x in fields[2].split(":"))
        except ValueError:
            continue
        source = _unescape_mountinfo(fields[fields.index("-", 6) + 2])
        found = RootCandidate(
            path=source if source.startswith("/") else None,
            rdev=os.makedev(major, minor),
            found_by=f"{proc}/self/mountinfo",
        )
    return found


def root_from_cmdline(proc: Path, dev: Path) -> RootCandidate | None:
    """The device named by ``root=`` on ``<proc>/cmdline``, resolved in ``dev``."""
    try:
        words = (proc / "cmdline").read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return None
    value = None
    for word in words:
        if word.startswith("root="):
            value = word[len("root="):]  # the last one wins, as for the kernel
    if not value:
        return None
    where = f"root={value} on {proc}/cmdline"
    tag, sep, ident = value.partition("=")
    if sep and tag in _BY_TAG:
        if tag == "PARTUUID":
            ident = ident.lower()
        return RootCandidate(path=str(dev / "disk" / _BY_TAG[tag] / ident), rdev=None, found_by=where)
    if value.startswith("/dev/"):
        return RootCandidate(path=str(dev / value[len("/dev/"):]), rdev=None, found_by=where)
    if re.fullmatch(r"[0-9a-fA-F]{3,4}", value):  # major/minor in hex, as the kernel accepts
        number = int(value, 16)
        return RootCandidate(path=None, rdev=os.makedev(number >> 8, number & 0xFF), found_by=where)
    return None


def find_partitions(
    config: DeviceConfig, *, proc: Path = Path("/proc"), dev: Path = Path("/dev")
) -> PartitionSet:
    """A and B with their numbers, and which one is running (see the module docstring)."""
    part_a, part_b = config.rootfs_part_a, config.rootfs_part_b
    if not part_a or not part_b:
        raise ConfigError(
            "RootfsPartA and RootfsPartB must both be set in the configuration",
            hint=f"add them to {config.source or '/etc/pymender/pymender.conf'}",
        )
    number_a, number_b = partition_numbers(part_a, part_b)
    is_block = _describe_kind(part_a)[0]
    a = Partition(part_a, number_a, "A", is_block)
    b = Partition(part_b, number_b, "B", is_block)
    id_a, id_b = _identity(part_a), _identity(part_b)
    if id_a == id_b:
        raise ConfigError(f"RootfsPartA ({part_a}) and RootfsPartB ({part_b}) are the same partition")

    candidates: list[RootCandidate] = []
    if config.root_device:
        candidates.append(RootCandidate(config.root_device, None, "RootDevice in the configuration"))
    else:
        for candidate in (root_from_mountinfo(proc), root_from_cmdline(proc, dev)):
            if candidate is not None:
                candidates.append(candidate)
    for candidate in candidates:
        for part, ident in ((a, id_a), (b, id_b)):
            if candidate.rdev is not None and ident is not None and ident[0] == "block" \
                    and ident[1] == candidate.rdev:
                return PartitionSet(a, b, part, candidate.found_by)
            if candidate.path is not None and ident is not None and _identity(candidate.path) == ident:
                return PartitionSet(a, b, part, candidate.found_by)
    if config.root_device:
        raise DeviceError(
            f"RootDevice ({config.root_device}) is neither RootfsPartA ({part_a}) nor RootfsPartB ({part_b})",
            hint="fix RootDevice or RootfsPartA/RootfsPartB in the configuration",
        )
    seen = ", ".join(
        f"{c.path or ''}{'' if c.rdev is None else f' ({os.major(c.rdev)}:{os.minor(c.rdev)})'} from {c.found_by}"
        for c in candidates
    ) or "nothing (no mountinfo, no root= on the kernel command line)"
    raise DeviceError(
        f"the running root filesystem is neither RootfsPartA ({part_a}) nor RootfsPartB ({part_b}); found: {seen}",
        hint="fix RootfsPartA/RootfsPartB, or set RootDevice in the configuration",
    )


def mounted_at(partition: Partition, *, proc: Path = Path("/proc")) -> str | None:
    """Where ``partition`` (a block device) is mounted, if it is; None for regular files."""
    ident = _identity(partition.path)
    if ident is None or ident[0] != "block":
        return None
    try:
        text = (proc / "self" / "mountinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        try:
            major, minor = (int(x) for x in fields[2].split(":"))
        except ValueError:
            continue
        if os.makedev(major, minor) == ident[1]:
            return _unescape_mountinfo(fields[4])
    return None


__all__ = [
    "FILE_NUMBER_A",
    "FILE_NUMBER_B",
    "Partition",
    "PartitionSet",
    "find_partitions",
    "mounted_at",
    "partition_numbers",
    "root_from_cmdline",
    "root_from_mountinfo",
]
