"""What every bootloader environment backend offers, and how the right one is chosen.

The updater talks to the bootloader only through a handful of variables (Mender's names, so
pymender can drive a device that already has Mender's boot integration):

``mender_boot_part``      partition number the bootloader boots (decimal)
``mender_boot_part_hex``  the same number in hexadecimal (U-Boot uses it for ``mmc`` arguments)
``upgrade_available``     ``1`` while a new system is on trial and not yet committed
``bootcount``             boots since ``upgrade_available`` was set; the bootloader rolls back
                          when the trial boot comes round a second time

A backend reads the whole environment and applies several changes at once, so a power cut
never leaves the bootloader pointing at the new partition without the trial flag set.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from pymender.device.log import get_logger
from pymender.errors import BootEnvError

log = get_logger(__name__)

BOOT_PART = "mender_boot_part"
BOOT_PART_HEX = "mender_boot_part_hex"
UPGRADE_AVAILABLE = "upgrade_available"
BOOTCOUNT = "bootcount"

#: The values :func:`open_bootenv` accepts as ``kind``.
KINDS = ("grub", "uboot")

#: Where Mender's GRUB integration keeps its two environment copies, first match wins.
GRUB_ENV_DIR_CANDIDATES = (
    Path("/boot/efi/grub-mender-grubenv"),
    Path("/boot/grub/grub-mender-grubenv"),
    Path("/boot/efi/EFI/BOOT"),
    Path("/boot/grub"),
)
#: The file in which Mender's GRUB tools may name the environment directory (``ENV_DIR=``).
GRUB_ENV_CONFIG = Path("/etc/mender_grubenv.config")
DEFAULT_UBOOT_CONFIG = Path("/etc/fw_env.config")


@runtime_checkable
class BootEnv(Protocol):
    """A bootloader environment: a flat map of string variables, changed all at once."""

    def read(self) -> dict[str, str]:
        """Every variable of the environment the bootloader would use right now."""
        ...

    def write(self, changes: Mapping[str, str | None]) -> None:
        """Set (value) or unset (``None``) several variables in one crash-safe step.

        After a power cut at any instant, the bootloader and a later :meth:`read` see either
        the whole old environment or the whole new one. Values the format cannot hold are
        refused with :class:`BootEnvError` before anything is written.
        """
        ...

    def initialize(self, variables: Mapping[str, str]) -> None:
        """Write a fresh environment holding exactly ``variables``, whatever is there now.

        For provisioning an image and for tests; not crash-safe against the old content.
        """
        ...

    def describe(self) -> str:
        """A short human description (kind and location) for messages."""
        ...


def check_changes(changes: Mapping[str, str | None]) -> None:
    """Refuse names and values no environment format can hold (shared rules)."""
    for name, value in changes.items():
        if not isinstance(name, str) or not name:
            raise BootEnvError(f"invalid bootloader variable name {name!r}: it is empty")
        if "=" in name or "\0" in name or "\n" in name:
            raise BootEnvError(
                f"invalid bootloader variable name {name!r}",
                hint="names cannot contain '=', newlines or NUL bytes",
            )
        if value is not None and (not isinstance(value, str) or "\0" in value):
            raise BootEnvError(f"invalid value for bootloader variable {name!r}: {value!r}")


def apply_changes(current: Mapping[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    """The environment after setting/unsetting ``changes`` on ``current``."""
    result = dict(current)
    for name, value in changes.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


@contextlib.contextmanager
def advisory_lock(path: Path | None) -> Iterator[None]:
    """Hold ``flock`` on ``path`` so pymender and the vendor tools never write at once.

    The lock is a courtesy to other tools using the same lock file; when the lock file cannot
    be created (no ``/var/lock`` on a host, no permission), pymender goes on without it.
    """
    if path is None:
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:
        log.debug("not taking lock %s: %s", path, err.strerror)
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def find_grub_env_dir(root: Path = Path("/")) -> Path | None:
    """The directory holding ``mender_grubenv1/`` and ``mender_grubenv2/``, or None.

    Looks where Mender's GRUB integration puts it: ``ENV_DIR=`` in ``/etc/mender_grubenv.config``
    first, then the usual places on the boot partition. ``root`` prefixes every path (tests).
    """
    candidates: list[Path] = []
    config = root / GRUB_ENV_CONFIG.relative_to("/")
    try:
        for line in config.read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == "ENV_DIR" and value.strip():
                named = Path(value.strip())
                candidates = [root / named.relative_to(named.anchor)]  # the last line wins
    except OSError:
        pass
    candidates += [root / c.relative_to("/") for c in GRUB_ENV_DIR_CANDIDATES]
    for candidate in candidates:
        if (candidate / "mender_grubenv1").is_dir():
            return candidate
    return None


def detect_bootloader(
    *, grub_env_dir: Path | None = None, uboot_config: Path | None = None, root: Path = Path("/")
) -> str:
    """Which bootloader this device uses, when the ``Bootloader`` config key is absent.

    GRUB when its environment directory exists (given, or found where Mender puts it), else
    U-Boot when ``fw_env.config`` exists. Never guesses beyond that.
    """
    if grub_env_dir is not None:
        if (grub_env_dir / "mender_grubenv1").is_dir():
            return "grub"
    elif find_grub_env_dir(root) is not None:
        return "grub"
    config = uboot_config if uboot_config is not None else root / "etc/fw_env.config"
    if config.is_file():
        return "uboot"
    raise BootEnvError(
        "cannot tell which bootloader this device uses: no GRUB environment directory "
        f"(mender_grubenv1/) and no {config}",
        hint='set "Bootloader" ("grub" or "uboot") and "GrubEnvDir" or "UBootEnvConfig" '
        "in the configuration",
    )


def open_bootenv(
    kind: str | None,
    *,
    grub_env_dir: Path | None = None,
    uboot_config: Path | None = None,
) -> BootEnv:
    """The backend for ``kind`` (``"grub"``, ``"uboot"``; ``None`` detects it)."""
    if kind is None:
        kind = detect_bootloader(grub_env_dir=grub_env_dir, uboot_config=uboot_config)
    if kind == "grub":
        from pymender.device.bootenv.grub import GrubEnv

        directory = grub_env_dir if grub_env_dir is not None else find_grub_env_dir()
        if directory is None:
            raise BootEnvError(
                "cannot find the GRUB environment directory (mender_grubenv1/)",
                hint='set "GrubEnvDir" in the configuration',
            )
        return GrubEnv(directory)
    if kind == "uboot":
        from pymender.device.bootenv.uboot import UBootEnv

        return UBootEnv.from_config(uboot_config or DEFAULT_UBOOT_CONFIG)
    raise BootEnvError(
        f"unknown bootloader {kind!r}", hint=f"use one of: {', '.join(KINDS)}"
    )
