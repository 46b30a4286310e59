"""Bootloader environment backends (GRUB, U-Boot) behind one small interface.

The backends are loaded on first use (:func:`open_bootenv` imports only the configured one), so
a GRUB device does not pay the start-up time of the U-Boot module, nor a U-Boot device that of
the GRUB one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pymender.device.bootenv.base import (
    BOOT_PART,
    BOOT_PART_HEX,
    BOOTCOUNT,
    UPGRADE_AVAILABLE,
    BootEnv,
    detect_bootloader,
    find_grub_env_dir,
    open_bootenv,
)

if TYPE_CHECKING:
    from pymender.device.bootenv.grub import GrubEnv
    from pymender.device.bootenv.uboot import EnvLocation, UBootEnv, parse_fw_env_config

_BACKENDS = {
    "GrubEnv": "grub",
    "EnvLocation": "uboot",
    "UBootEnv": "uboot",
    "parse_fw_env_config": "uboot",
}

__all__ = [
    "BOOT_PART",
    "BOOT_PART_HEX",
    "BOOTCOUNT",
    "UPGRADE_AVAILABLE",
    "BootEnv",
    "EnvLocation",
    "GrubEnv",
    "UBootEnv",
    "detect_bootloader",
    "find_grub_env_dir",
    "open_bootenv",
    "parse_fw_env_config",
]


def __getattr__(name: str) -> Any:
    module = _BACKENDS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
