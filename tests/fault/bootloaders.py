"""What the layer's boot scripts do with the environment they find: GRUB's and U-Boot's, modelled
byte for byte from the scripts and the bootloader code they call, independently of pymender's
backends (which these models check).

- GRUB (``meta-pymender/recipes-bsp/pymender-grubenv/files/pymender-grub.cfg``): a copy is usable
  when ``hashsum --check`` accepts its ``lock.sha256sum`` (GRUB's list format: every line a hex
  digest, two blanks, a name; an empty list passes), its ``lock`` loads and says ``editing=0``,
  and its ``env`` loads with valid values. ``load_env`` is GRUB's environment block parser
  (``grub_envblk_iterate``: a block of any size starting with the signature; a name runs to the
  next ``=`` even across lines; a value to the next unescaped newline; a broken entry ends the
  parse). Copy 1 first, else copy 2; the other copy is repaired (``save_env`` into it, as the
  script does), then the trial logic; writes go to the other copy, then the trusted one.
- U-Boot (``.../pymender-ubootenv/files/pymender-boot.cmd``): a copy counts when its file holds
  at least the environment size (its first that many bytes are loaded, as libubootenv reads
  them), its CRC-32 matches, ``env import`` accepts it (U-Boot's ``himport_r``: leading blanks
  skipped, ``#`` lines skipped, ``name`` or ``name=`` deletes, an empty name fails the import,
  backslash escapes) and its values are valid; of two, the larger flags byte wins, 0 beats 255,
  equal flags pick copy 1. The trial or rollback writes the other copy with flags + 1 (a file of
  exactly the environment size).

:func:`grub_boot` and :func:`uboot_boot` return what the boot chose and the files it wrote; the
callers apply those writes to their own picture of the disk.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Mapping
from typing import NamedTuple

SIGNATURE = b"# GRUB Environment Block\n"
VARIABLES = ("mender_boot_part", "mender_boot_part_hex", "upgrade_available", "bootcount")
COPY_FILES = ("env", "lock", "lock.sha256sum")


class Boot(NamedTuple):
    """One boot: the partition booted, the variables it booted with, what it wrote."""

    partition: str
    #: The copy the script trusted (1 or 2), None when both were unusable.
    source: int | None
    #: The four variables as the trusted copy holds them (what the updater must read too).
    found: dict[str, str]
    #: The four variables as the script ended up with them (missing ones absent).
    env: dict[str, str]
    #: Files written, by name (``mender_grubenv1/env``, ``uboot.env`` ...) -> whole new content.
    writes: dict[str, bytes]
    #: Whether this boot is the trial boot of an update.
    trial: bool


# --- GRUB ---------------------------------------------------------------------------------------


def grub_envblk_parse(data: bytes) -> dict[str, str] | None:
    """The variables ``load_env`` sees in ``data`` (None: not an environment block)."""
    if len(data) < len(SIGNATURE) + 1 or not data.startswith(SIGNATURE):
        return None
    variables: dict[str, str] = {}
    p, end = len(SIGNATURE), len(data)
    while p < end:
        if data[p] == ord("#"):
            newline = data.find(b"\n", p)
            p = end + 1 if newline < 0 else newline + 1
            continue
        name_start = p
        while p < end and data[p] != ord("="):
            p += 1
        if p == end:
            break
        name_end = p
        p += 1
        value_start = p
        while p < end:
            if data[p] == ord("\n"):
                break
            if data[p] == ord("\\"):
                p += 1
            p += 1
        if p >= end:
            break
        value = bytearray()
        q = value_start
        while data[q] != ord("\n"):
            if data[q] == ord("\\"):
                q += 1
            value.append(data[q])
            q += 1
        name = data[name_start:name_end].split(b"\0", 1)[0]
        variables[name.decode("utf-8", "surrogateescape")] = bytes(value).split(b"\0", 1)[0].decode(
            "utf-8", "surrogateescape")
        newline = data.find(b"\n", p)
        p = end + 1 if newline < 0 else newline + 1
    return variables


def grub_hashsum_ok(listing: bytes | None, files: Mapping[str, bytes | None]) -> bool:
    """``hashsum --hash sha256 --check LIST --prefix DIR``: every listed file has its digest."""
    if listing is None:
        return False
    lines = listing.replace(b"\r", b"").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for line in lines:
        text = line.lstrip(b" \t\n\v\f\r")
        digest = text[:64]
        if len(digest) < 64 or any(c not in b"0123456789abcdefABCDEF" for c in digest):
            return False
        if len(text) < 66 or text[64:65] not in (b" ", b"\t") or text[65:66] not in (b" ", b"\t"):
            return False
        name = text[66:].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        content = files.get(name)
        if content is None or hashlib.sha256(content).hexdigest() != digest.decode().lower():
            return False
    return True


def grub_envblk_set(block: bytes, changes: Mapping[str, str | None]) -> bytes | None:
    """``save_env`` of ``changes`` into an existing block (None: GRUB cannot: no block, or no
    room). The block keeps its size; a variable that is not set is deleted."""
    variables = grub_envblk_parse(block)
    if variables is None:
        return None
    for name, value in changes.items():
        if value is None:
            variables.pop(name, None)
        else:
            variables[name] = value
    body = bytearray(SIGNATURE)
    for name, value in variables.items():
        escaped = value.replace("\\", "\\\\").replace("\n", "\\\n")
        body += f"{name}={escaped}\n".encode("utf-8", "surrogateescape")
    if len(body) > len(block):
        return None
    return bytes(body) + b"#" * (len(block) - len(body))


def _grub_valid(env: dict[str, str], parts: tuple[str, str]) -> bool:
    env.setdefault("upgrade_available", "0")
    env.setdefault("bootcount", "0")
    return (env.get("mender_boot_part") in parts and env["upgrade_available"] in ("0", "1")
            and env["bootcount"] in ("0", "1"))


def grub_copy_at_rest(files: Mapping[str, bytes | None], copy: int) -> bool:
    prefix = f"mender_grubenv{copy}/"
    own = {name: files.get(prefix + name) for name in COPY_FILES}
    if not grub_hashsum_ok(own["lock.sha256sum"], own):
        return False
    lock = own["lock"]
    loaded = grub_envblk_parse(lock) if lock is not None else None
    return loaded is not None and loaded.get("editing") == "0"


def grub_load_copy(files: Mapping[str, bytes | None], copy: int, parts: tuple[str, str]) -> dict[str, str] | None:
    env_bytes = files.get(f"mender_grubenv{copy}/env")
    loaded = grub_envblk_parse(env_bytes) if env_bytes is not None else None
    if loaded is None:
        return None
    env = {name: loaded[name] for name in VARIABLES if name in loaded}
    return env if _grub_valid(env, parts) else None


def grub_boot(files: Mapping[str, bytes | None], parts: tuple[str, str] = ("2", "3")) -> Boot:
    """One run of the GRUB script over the environment ``files`` (names relative to the
    environment directory; None or absent: no such file)."""
    current = dict(files)
    writes: dict[str, bytes] = {}
    source: int | None = None
    env: dict[str, str] = {}
    for copy in (1, 2):
        if grub_copy_at_rest(current, copy):
            loaded = grub_load_copy(current, copy, parts)
            if loaded is not None:
                source, env = copy, loaded
                break

    def save(copy: int) -> None:
        prefix = f"mender_grubenv{copy}/"
        lock = current.get(prefix + "lock")
        marked = grub_envblk_set(lock, {"editing": "1"}) if lock is not None else None
        if marked is None:
            return
        current[prefix + "lock"] = writes[prefix + "lock"] = marked
        old_env = current.get(prefix + "env")
        new_env = grub_envblk_set(old_env, {name: env.get(name) for name in VARIABLES}) \
            if old_env is not None else None
        if new_env is None:
            return
        current[prefix + "env"] = writes[prefix + "env"] = new_env
        rested = grub_envblk_set(marked, {"editing": "0"})
        assert rested is not None
        current[prefix + "lock"] = writes[prefix + "lock"] = rested

    if source is None:
        return Boot(parts[0], None, {}, {"mender_boot_part": parts[0], "upgrade_available": "0", "bootcount": "0"},
                    writes, False)
    found = dict(env)
    other = 2 if source == 1 else 1
    if source == 2 or not grub_copy_at_rest(current, 2):
        save(other)
    trial = False
    if env["upgrade_available"] == "1":
        if env["bootcount"] != "0":
            back = parts[1] if env["mender_boot_part"] == parts[0] else parts[0]
            env["mender_boot_part"] = back
            if env.get("mender_boot_part_hex"):
                env["mender_boot_part_hex"] = format(int(back), "x")
            env["upgrade_available"], env["bootcount"] = "0", "0"
        else:
            env["bootcount"] = "1"
            trial = True
        save(other)
        save(source)
    return Boot(env["mender_boot_part"], source, found, env, writes, trial)


# --- U-Boot -------------------------------------------------------------------------------------

_CRC = struct.Struct("<I")


def uboot_import(data: bytes) -> dict[str, str] | None:
    """U-Boot's ``env import`` (``himport_r``, separator NUL) of a data area; None: refused."""
    variables: dict[str, str] = {}
    p, end = 0, len(data)

    def at(i: int) -> int:
        return data[i] if i < end else 0

    while True:
        while at(p) in (0x20, 0x09):
            p += 1
        if at(p) == ord("#"):
            while at(p) not in (0,):
                p += 1
            p += 1
        else:
            name_start = p
            while at(p) not in (ord("="), 0):
                p += 1
            name = data[name_start:p]
            if at(p) == 0 or at(p + 1) == 0:
                variables.pop(name.decode("utf-8", "surrogateescape"), None)
                p += 2 if at(p) == ord("=") else 1
            else:
                p += 1
                value = bytearray()
                while at(p) != 0:
                    if at(p) == ord("\\") and at(p + 1):
                        p += 1
                    value.append(at(p))
                    p += 1
                p += 1
                if not name:
                    return None
                variables[name.decode("utf-8", "surrogateescape")] = bytes(value).decode(
                    "utf-8", "surrogateescape")
        if not (p < end and at(p)):
            break
    return variables


class UBootCopy(NamedTuple):
    ok: bool
    flags: int
    env: dict[str, str]


def uboot_copy(blob: bytes | None, size: int, parts: tuple[str, str]) -> UBootCopy:
    """One copy as the script judges it (the four variables only)."""
    if blob is None or len(blob) < size:
        return UBootCopy(False, 0, {})
    blob = blob[:size]
    (crc,) = _CRC.unpack_from(blob)
    if zlib.crc32(blob[5:]) != crc:
        return UBootCopy(False, blob[4], {})
    imported = uboot_import(blob[5:])
    if imported is None:
        return UBootCopy(False, blob[4], {})
    env = {name: imported[name] for name in VARIABLES if name in imported}
    env.setdefault("upgrade_available", "0")
    env.setdefault("bootcount", "0")
    ok = (env.get("mender_boot_part") in parts and env["upgrade_available"] in ("0", "1")
          and env["bootcount"] in ("0", "1"))
    return UBootCopy(ok, blob[4], env)


def uboot_newer(flags1: int, flags2: int) -> int:
    if flags1 == 0xFF and flags2 == 0:
        return 2
    if flags2 == 0xFF and flags1 == 0:
        return 1
    return 1 if flags1 >= flags2 else 2


def uboot_export(variables: Mapping[str, str], flags: int, size: int) -> bytes | None:
    """``env export -c`` of ``variables``, moved into the redundant layout with ``flags``."""
    body = b"".join(f"{k}={v}".encode("utf-8", "surrogateescape") + b"\0" for k, v in sorted(variables.items()))
    body += b"\0"
    if len(body) + 1 > size - 5:
        return None
    data = body + bytes(size - 5 - len(body))
    return _CRC.pack(zlib.crc32(data)) + bytes([flags]) + data


def uboot_boot(files: Mapping[str, bytes | None], size: int, parts: tuple[str, str] = ("2", "3"),
               names: tuple[str, str] = ("uboot.env", "uboot-redund.env")) -> Boot:
    """One run of the U-Boot script over the two environment files."""
    copies = [uboot_copy(files.get(name), size, parts) for name in names]
    if copies[0].ok and copies[1].ok:
        source: int | None = uboot_newer(copies[0].flags, copies[1].flags)
    elif copies[0].ok:
        source = 1
    elif copies[1].ok:
        source = 2
    else:
        source = None
    if source is None:
        return Boot(parts[0], None, {}, {"mender_boot_part": parts[0], "upgrade_available": "0", "bootcount": "0"},
                    {}, False)
    chosen = copies[source - 1]
    env = dict(chosen.env)
    found = dict(env)
    part = env["mender_boot_part"]
    other = parts[1] if part == parts[0] else parts[0]
    writes: dict[str, bytes] = {}
    trial = False
    if env["upgrade_available"] == "1":
        if env["bootcount"] != "0":
            part, other = other, part
            env.update(upgrade_available="0", bootcount="0")
        else:
            env["bootcount"] = "1"
            trial = True
        env["mender_boot_part"] = part
        env["mender_boot_part_hex"] = format(int(part), "x")
        blob = files.get(names[source - 1])
        assert blob is not None
        everything = uboot_import(blob[5:size]) or {}
        everything.update(env)
        written = uboot_export(everything, (chosen.flags + 1) & 0xFF, size)
        if written is None:
            if trial:
                part, trial = other, False
        else:
            writes[names[2 - source]] = written
    env["mender_boot_part"] = part
    env["mender_boot_part_hex"] = format(int(part), "x")
    return Boot(part, source, found, env, writes, trial)


__all__ = [
    "COPY_FILES",
    "SIGNATURE",
    "VARIABLES",
    "Boot",
    "UBootCopy",
    "grub_boot",
    "grub_copy_at_rest",
    "grub_envblk_parse",
    "grub_envblk_set",
    "grub_hashsum_ok",
    "grub_load_copy",
    "uboot_boot",
    "uboot_copy",
    "uboot_export",
    "uboot_import",
    "uboot_newer",
]
