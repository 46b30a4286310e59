"""Bootloader environment backends (GRUB, U-Boot) behind one small interface."""

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
from pymender.device.bootenv.grub import GrubEnv
from pymender.device.bootenv.uboot import EnvLocation, UBootEnv, parse_fw_env_config

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
