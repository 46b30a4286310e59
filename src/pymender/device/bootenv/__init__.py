"""Bootloader environments (GRUB, U-Boot) behind one small interface, chosen in one registry.

:data:`BACKENDS` names, for each kind the ``Bootloader`` configuration key accepts, the module
that implements it, in the order :func:`detect_bootloader` tries them. Each backend module
offers the same three functions, and keeps its own discovery and defaults:

- ``detect(where, root) -> bool``: whether this device has that environment;
- ``looked_for(where, root) -> str``: what ``detect`` looked for (for the message when no
  backend is found);
- ``open_env(where) -> BootEnv``: the environment (:class:`~.base.BootEnv`), ready to use.

Only the backend a device uses is imported (:func:`open_bootenv`), so a GRUB device does not
pay the start-up time of the U-Boot module, nor a U-Boot device that of the GRUB one. The
environment classes (``GrubEnv``, ``UBootEnv``) are attributes of this package too, loaded the
same way on first use.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from pymender.device.bootenv.base import (
    BOOT_PART,
    BOOT_PART_HEX,
    BOOTCOUNT,
    UPGRADE_AVAILABLE,
    BootEnv,
    Where,
)
from pymender.errors import BootEnvError

#: Kind -> (module, environment class), in the order detection tries them.
BACKENDS: dict[str, tuple[str, str]] = {
    "grub": ("pymender.device.bootenv.grub", "GrubEnv"),
    "uboot": ("pymender.device.bootenv.uboot", "UBootEnv"),
}
#: The values the ``Bootloader`` configuration key and :func:`open_bootenv` accept.
KINDS = tuple(BACKENDS)

__all__ = [
    "BACKENDS",
    "BOOT_PART",
    "BOOT_PART_HEX",
    "BOOTCOUNT",
    "KINDS",
    "UPGRADE_AVAILABLE",
    "BootEnv",
    "GrubEnv",
    "UBootEnv",
    "Where",
    "detect_bootloader",
    "open_bootenv",
]


def backend(kind: str) -> ModuleType:
    """The module implementing ``kind``, imported now if it was not yet."""
    if kind not in BACKENDS:
        raise BootEnvError(f"unknown bootloader {kind!r}", hint=f"use one of: {', '.join(KINDS)}")
    return importlib.import_module(BACKENDS[kind][0])


def detect_bootloader(
    *, grub_env_dir: Path | None = None, uboot_config: Path | None = None, root: Path = Path("/")
) -> str:
    """Which bootloader this device uses, when the ``Bootloader`` config key is absent.

    The first backend whose environment is there (GRUB's directory, given or found where
    Mender puts it; else U-Boot's ``fw_env.config``). Never guesses beyond that.
    """
    where = Where(grub_env_dir, uboot_config)
    for kind in BACKENDS:
        if backend(kind).detect(where, root):
            return kind
    missing = " and ".join(backend(kind).looked_for(where, root) for kind in BACKENDS)
    choices = " or ".join(f'"{kind}"' for kind in KINDS)
    raise BootEnvError(
        f"cannot tell which bootloader this device uses: {missing}",
        hint=f'set "Bootloader" ({choices}) and "GrubEnvDir" or "UBootEnvConfig" in the configuration',
    )


def open_bootenv(
    kind: str | None,
    *,
    grub_env_dir: Path | None = None,
    uboot_config: Path | None = None,
) -> BootEnv:
    """The environment of ``kind`` (a :data:`KINDS` value; ``None`` detects it)."""
    if kind is None:
        kind = detect_bootloader(grub_env_dir=grub_env_dir, uboot_config=uboot_config)
    env: BootEnv = backend(kind).open_env(Where(grub_env_dir, uboot_config))
    return env


def __getattr__(name: str) -> Any:
    for module, cls in BACKENDS.values():
        if name == cls:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
