"""U-Boot backend: the binary environment libubootenv (``fw_printenv``/``fw_setenv``) uses.

Where the environment lives is read from ``fw_env.config``: one line per copy,
``<device or file> <offset> <env size> [<sector size> [<sector count>]]``. One line means a single
copy, two lines mean redundant copies. Numbers are read as libubootenv 0.3 reads them: the offset
in C notation (``0x`` hex, leading ``0`` octal, else decimal), sizes always in hex (``4000`` and
``0x4000`` both mean 16 KiB).

A copy is ``crc32 (4 bytes, native order) [flags (1 byte, redundant only)] data``; the CRC-32
covers the whole data area; data is ``name=value\\0`` entries sorted by name, an extra ``\\0``,
then zero padding.

Which copy is current, as libubootenv decides it: the one whose CRC is right; when both are, the
larger flags byte, except that 0 is newer than 255 (the counter wrapped); equal flags pick the
first. Writing goes to the *other* copy with flags + 1, then fsync: until that write is complete
its CRC is wrong and the old copy stays current, so a power cut never loses the environment.
A single copy is rewritten in place; a power cut in the middle leaves a bad CRC and U-Boot falls
back to its built-in default environment (use redundant copies on real devices).
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from pymender.device.bootenv.base import BootEnv, Where, advisory_lock, apply_changes, check_changes
from pymender.device.log import get_logger
from pymender.errors import BootEnvError, ConfigError
from pymender.sysio import pwrite_all

log = get_logger(__name__)

#: The lock file ``fw_printenv``/``fw_setenv`` hold while they work.
DEFAULT_LOCK_FILE = Path("/var/lock/fw_printenv.lock")
#: Where libubootenv's tools read ``fw_env.config`` when not told otherwise.
DEFAULT_CONFIG = Path("/etc/fw_env.config")
_CRC = struct.Struct("=I")


class EnvLocation(NamedTuple):
    """One copy of the environment: a device or file, where in it, and how large."""

    device: Path
    offset: int
    size: int
    sector_size: int | None = None
    sector_count: int | None = None


def _c_integer(text: str) -> int:
    """An integer as C's ``strtoll(text, NULL, 0)`` reads it."""
    body = text[1:] if text[:1] in "+-" else text
    if body.lower().startswith("0x"):
        value = int(body[2:], 16)
    elif len(body) > 1 and body.startswith("0"):
        value = int(body[1:], 8)
    else:
        value = int(body, 10)
    return -value if text.startswith("-") else value


def _hex(text: str) -> int:
    return int(text[2:] if text.lower().startswith("0x") else text, 16)


def parse_fw_env_config(text: str, *, source: str = "fw_env.config") -> tuple[EnvLocation, ...]:
    """The environment copies named by the text of an ``fw_env.config`` file."""
    locations: list[EnvLocation] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"{source} line {number}"
        if len(fields) < 3:
            raise ConfigError(
                f"{where}: expected '<device> <offset> <env size> [<sector size> [<sectors>]]'",
                hint="see the fw_env.config format of libubootenv",
            )
        try:
            offset = _c_integer(fields[1])
            size = _hex(fields[2])
            sector_size = _hex(fields[3]) if len(fields) > 3 else None
            sector_count = _hex(fields[4]) if len(fields) > 4 else None
        except ValueError:
            raise ConfigError(f"{where}: a number cannot be read: {line!r}") from None
        if offset < 0:
            raise ConfigError(f"{where}: negative offsets are not supported")
        if size < 16:
            raise ConfigError(f"{where}: environment size {size:#x} is too small")
        locations.append(EnvLocation(Path(fields[0]), offset, size, sector_size, sector_count))
    if len(locations) not in (1, 2):
        raise ConfigError(
            f"{source} names {len(locations)} environment copies; expected 1 or 2"
        )
    if len(locations) == 2 and locations[0].size != locations[1].size:
        raise ConfigError(f"{source}: the two environment copies have different sizes")
    return tuple(locations)


def encode_data(variables: Mapping[str, str], data_size: int) -> bytes:
    """The data area for ``variables``: sorted ``name=value\\0`` entries, ``\\0``, zero padding."""
    body = bytearray()
    for name in sorted(variables):
        body += name.encode("utf-8", "surrogateescape") + b"="
        body += variables[name].encode("utf-8", "surrogateescape") + b"\0"
    body += b"\0"
    if len(body) > data_size:
        raise BootEnvError(
            f"the U-Boot environment would need {len(body)} bytes but holds {data_size}",
            hint="remove unneeded variables, or enlarge the environment in U-Boot and "
            "fw_env.config together",
        )
    return bytes(body) + b"\0" * (data_size - len(body))


def decode_data(data: bytes) -> dict[str, str]:
    """The variables of a data area (up to the empty entry that ends the list)."""
    variables: dict[str, str] = {}
    for entry in data.split(b"\0"):
        if not entry:
            break
        name, sep, value = entry.partition(b"=")
        if sep and name:
            variables[name.decode("utf-8", "surrogateescape")] = value.decode(
                "utf-8", "surrogateescape"
            )
    return variables


class _Copy(NamedTuple):
    """One copy as read: valid when its CRC matches."""

    valid: bool
    flags: int
    data: bytes


def newer_copy(flags_first: int, flags_second: int) -> int:
    """Index (0 or 1) of the current copy when both are valid, by libubootenv's rule."""
    if flags_first == 0xFF and flags_second == 0:
        return 1
    if flags_second == 0xFF and flags_first == 0:
        return 0
    return 0 if flags_first >= flags_second else 1


class UBootEnv:
    """A U-Boot environment at the places ``fw_env.config`` names (see the module docstring)."""

    def __init__(
        self,
        locations: Sequence[EnvLocation],
        *,
        lock_file: Path | None = DEFAULT_LOCK_FILE,
        source: str | None = None,
    ) -> None:
        if len(locations) not in (1, 2):
            raise ConfigError(f"expected 1 or 2 U-Boot environment copies, got {len(locations)}")
        self.locations = tuple(locations)
        self.lock_file = lock_file
        self.source = source

    @classmethod
    def from_config(cls, path: Path, *, lock_file: Path | None = DEFAULT_LOCK_FILE) -> UBootEnv:
        """The environment named by the ``fw_env.config`` at ``path``."""
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            raise ConfigError(
                f"cannot read the U-Boot environment configuration {path}: {err.strerror}",
                hint='check "UBootEnvConfig" in the configuration',
            ) from None
        return cls(parse_fw_env_config(text, source=str(path)), lock_file=lock_file,
                   source=str(path))

    @property
    def redundant(self) -> bool:
        return len(self.locations) == 2

    @property
    def data_size(self) -> int:
        return self.locations[0].size - (5 if self.redundant else 4)

    def describe(self) -> str:
        places = " and ".join(f"{loc.device}@{loc.offset:#x}" for loc in self.locations)
        kind = "redundant " if self.redundant else ""
        origin = f" (from {self.source})" if self.source else ""
        return f"{kind}U-Boot environment at {places}{origin}"

    # --- reading -------------------------------------------------------------------------------

    def _check_device(self, location: EnvLocation) -> None:
        try:
            mode = os.stat(location.device).st_mode
        except FileNotFoundError:
            raise BootEnvError(
                f"the U-Boot environment device {location.device} does not exist",
                hint=f"check {self.source or 'fw_env.config'}",
            ) from None
        if stat.S_ISCHR(mode):
            raise BootEnvError(
                f"{location.device} is a character device (MTD or UBI); pymender writes U-Boot "
                "environments only on block devices and files",
                hint="use fw_setenv on raw flash",
            )

    def _read_copy(self, index: int) -> _Copy:
        location = self.locations[index]
        self._check_device(location)
        try:
            fd = os.open(location.device, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            raise BootEnvError(
                f"cannot open the U-Boot environment device {location.device}: {err.strerror}"
            ) from None
        try:
            blob = os.pread(fd, location.size, location.offset)
        finally:
            os.close(fd)
        header = 5 if self.redundant else 4
        if len(blob) != location.size:
            return _Copy(False, 0, b"")
        data = blob[header:]
        (crc,) = _CRC.unpack_from(blob)
        flags = blob[4] if self.redundant else 0
        return _Copy(crc == zlib.crc32(data), flags, data)

    def _current(self) -> tuple[int, list[_Copy]]:
        copies = [self._read_copy(i) for i in range(len(self.locations))]
        valid = [i for i, copy in enumerate(copies) if copy.valid]
        if not valid:
            raise BootEnvError(
                f"no valid U-Boot environment in {self.describe()} (bad CRC)",
                hint="U-Boot has never saved its environment there, or fw_env.config points to "
                "the wrong device or offset; run 'saveenv' in U-Boot or fix fw_env.config",
            )
        if len(valid) == 1:
            return valid[0], copies
        return newer_copy(copies[0].flags, copies[1].flags), copies

    def read(self) -> dict[str, str]:
        with advisory_lock(self.lock_file):
            index, copies = self._current()
        return decode_data(copies[index].data)

    # --- writing -------------------------------------------------------------------------------

    def write(self, changes: Mapping[str, str | None]) -> None:
        check_changes(changes)
        with advisory_lock(self.lock_file):
            index, copies = self._current()
            current = copies[index]
            data = encode_data(apply_changes(decode_data(current.data), changes), self.data_size)
            if data == current.data:
                return
            if self.redundant:
                target, flags = 1 - index, (current.flags + 1) & 0xFF
            else:
                target, flags = 0, 0
            self._put(target, self._blob(data, flags))
            written = self._read_copy(target)
            if not written.valid or written.data != data:
                raise BootEnvError(
                    f"the U-Boot environment at {self.locations[target].device} does not read "
                    "back as written",
                    hint="the storage may be failing, or another program wrote at the same time",
                )

    def initialize(self, variables: Mapping[str, str]) -> None:
        check_changes(variables)
        data = encode_data(variables, self.data_size)
        with advisory_lock(self.lock_file):
            # Copy 2 first with the lower flags, so copy 1 is current once both are written.
            for index in reversed(range(len(self.locations))):
                self._put(index, self._blob(data, 1 if index == 0 else 0), create=True)

    def _blob(self, data: bytes, flags: int) -> bytes:
        head = _CRC.pack(zlib.crc32(data))
        return head + (bytes([flags]) if self.redundant else b"") + data

    def _put(self, index: int, blob: bytes, *, create: bool = False) -> None:
        """Write one whole copy at its offset and make it durable (one write step)."""
        location = self.locations[index]
        flags = os.O_RDWR | os.O_CLOEXEC
        if create and not location.device.exists():
            flags |= os.O_CREAT
        else:
            self._check_device(location)
        try:
            fd = os.open(location.device, flags, 0o644)
        except OSError as err:
            raise BootEnvError(
                f"cannot open {location.device} for writing: {err.strerror}"
            ) from None
        try:
            pwrite_all(fd, blob, location.offset)
            os.fsync(fd)
        finally:
            os.close(fd)


# --- Finding it (the backend interface of :mod:`pymender.device.bootenv`) ----------------------


def _config(where: Where, root: Path = Path("/")) -> Path:
    return where.uboot_config if where.uboot_config is not None else root / DEFAULT_CONFIG.relative_to("/")


def detect(where: Where, root: Path) -> bool:
    """Whether this device has a U-Boot environment: its ``fw_env.config`` exists."""
    return _config(where, root).is_file()


def looked_for(where: Where, root: Path) -> str:
    """What :func:`detect` looked for, for a message."""
    return f"no {_config(where, root)}"


def open_env(where: Where) -> BootEnv:
    """The environment the ``fw_env.config`` in ``UBootEnvConfig`` (or the default) names."""
    return UBootEnv.from_config(_config(where))
