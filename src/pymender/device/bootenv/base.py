"""What every bootloader environment backend offers: the variables, the interface, shared rules.

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
from typing import NamedTuple, Protocol, runtime_checkable

from pymender.device.log import get_logger
from pymender.errors import BootEnvError

log = get_logger(__name__)

BOOT_PART = "mender_boot_part"
BOOT_PART_HEX = "mender_boot_part_hex"
UPGRADE_AVAILABLE = "upgrade_available"
BOOTCOUNT = "bootcount"


class Where(NamedTuple):
    """Where the configuration says the environment is; None lets the backend look for it."""

    #: ``GrubEnvDir``: the directory holding ``mender_grubenv1/`` and ``mender_grubenv2/``.
    grub_env_dir: Path | None = None
    #: ``UBootEnvConfig``: the ``fw_env.config`` naming the U-Boot environment's copies.
    uboot_config: Path | None = None


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
