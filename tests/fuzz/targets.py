"""The fuzz targets: functions of one input's bytes that must end without an unexpected error.

A target returns normally when the input was handled: accepted, or refused with one of
pymender's own errors (:class:`~pymender.errors.PymenderError`: the CLI turns those into one
line and an exit code). Anything else escaping (``IndexError``, ``RuntimeError``, a recursion
error, ...) is a finding, and so is a broken promise checked on accepted input:

- ``reader``: the streaming reader over a whole Artifact, no keys: header, then every payload
  file read in bounded chunks to its end (where its checksum is checked), then the end of the
  Artifact. No read returns more than it was asked for.
- ``reader_signed``: the same with an RSA and an ECDSA key configured and signatures required:
  whatever it accepts must be signed and verified.
- ``header``: only the header (``read_header``), keys configured but signatures reported, not
  required (``pymender-artifact read -k``), and the header's JSON form.
- ``grubenv``: six files (two GRUB copies: env, lock, lock.sha256sum) as a power cut or anything
  else may leave them. pymender's backend reads them or refuses with :class:`BootEnvError`; when
  it writes the A/B variables, the write must read back, and GRUB's script (modelled in
  :mod:`fault.bootloaders`) must then boot exactly what was written.
- ``ubootenv``: the same for an ``fw_env.config`` (one or two copies) and the two copies.

Memory stays bounded by the documented limits: the CI run and the long runs set libFuzzer's
``-rss_limit_mb`` and ``-timeout`` (see :mod:`fuzz.run`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from fault.bootloaders import grub_boot, uboot_boot
from fuzz.pack import unpack
from fuzz.seeds import SIGNING_KEYS, UBOOT_ENV_SIZE, keys
from pymender.artifact.reader import ArtifactReader, ReadOptions
from pymender.artifact.signing import load_verifier
from pymender.device.bootenv.grub import COPY_DIRS, GrubEnv
from pymender.device.bootenv.uboot import UBootEnv, parse_fw_env_config
from pymender.errors import BootEnvError, ConfigError, PymenderError

#: Largest read a payload consumer asks for.
CHUNK = 1 << 16
#: The A/B variables a fuzzed environment gets written with.
SWITCH = {"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1", "bootcount": "0"}


class Finding(AssertionError):
    """A promise the code under test broke on an input it accepted."""


class Target(NamedTuple):
    name: str
    #: Called with a work directory (keys, scratch files); returns the function of one input.
    setup: Callable[[Path], Callable[[bytes], None]]


# --- Artifacts ------------------------------------------------------------------------------------


def _read_all(data: bytes, options: ReadOptions) -> None:
    reader = ArtifactReader(io.BytesIO(data), options)
    try:
        header = reader.read_header()
        if options.verifiers and options.require_signature and not header.signature_verified:
            raise Finding("accepted an Artifact whose signature was not verified")
        for payload in reader.payload_files():
            while True:
                chunk = payload.read(CHUNK)
                if len(chunk) > CHUNK:
                    raise Finding(f"a read of {CHUNK} bytes returned {len(chunk)}")
                if not chunk:
                    break
            if not payload.complete:
                raise Finding(f"{payload.name} ended without its checksum being checked")
    except PymenderError:
        return


def _verifiers(workdir: Path) -> list[object]:
    pairs = keys(workdir / "keys")
    return [load_verifier(pairs[name].public) for name in SIGNING_KEYS]


def reader(workdir: Path) -> Callable[[bytes], None]:
    options = ReadOptions()
    return lambda data: _read_all(data, options)


def reader_signed(workdir: Path) -> Callable[[bytes], None]:
    options = ReadOptions(verifiers=_verifiers(workdir), require_signature=True)  # type: ignore[arg-type]
    return lambda data: _read_all(data, options)


def header(workdir: Path) -> Callable[[bytes], None]:
    options = ReadOptions(verifiers=_verifiers(workdir), require_signature=False)  # type: ignore[arg-type]

    def one(data: bytes) -> None:
        try:
            parsed = ArtifactReader(io.BytesIO(data), options).read_header()
        except PymenderError:
            return
        if parsed.signature_verified and not parsed.signed:
            raise Finding("verified a signature the Artifact does not have")
        json.dumps(parsed.to_dict())

    return one


# --- bootloader environments -------------------------------------------------------------------


def _put(path: Path, content: bytes | None) -> None:
    """``path`` holds ``content`` (None: does not exist), however the last input left it."""
    if content is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(content)


def grubenv(workdir: Path) -> Callable[[bytes], None]:
    names = [f"{copy}/{name}" for copy in COPY_DIRS for name in ("env", "lock", "lock.sha256sum")]
    env_dir = workdir / "grubenv"
    for copy in COPY_DIRS:
        (env_dir / copy).mkdir(parents=True, exist_ok=True)

    def one(data: bytes) -> None:
        for name, content in zip(names, unpack(data, len(names)), strict=True):
            _put(env_dir / name, content)
        env = GrubEnv(env_dir, lock_file=None)
        try:
            env.read()
            env.write(SWITCH)
        except BootEnvError:
            return
        if {k: env.read().get(k) for k in SWITCH} != SWITCH:
            raise Finding("the GRUB environment does not read back as written")
        files = {name: (env_dir / name).read_bytes() for name in names if (env_dir / name).exists()}
        booted = grub_boot(files)
        if booted.source is None or booted.partition != "3" or not booted.trial:
            raise Finding(f"GRUB would not try partition 3 after pymender wrote it: {booted}")

    return one


def ubootenv(workdir: Path) -> Callable[[bytes], None]:
    env_dir = workdir / "ubootenv"
    env_dir.mkdir(parents=True, exist_ok=True)
    paths = [env_dir / "uboot.env", env_dir / "uboot-redund.env"]

    def one(data: bytes) -> None:
        kind, first, second = unpack(data, 3)
        for path, content in zip(paths, (first, second), strict=True):
            _put(path, content)
        copies = 1 if kind is not None and kind.startswith(b"single") else 2
        config = "".join(f"{path} 0 {UBOOT_ENV_SIZE:#x}\n" for path in paths[:copies])
        if kind is not None and kind.startswith(b"config:"):
            config = kind[7:].decode("utf-8", "replace")
        try:
            locations = parse_fw_env_config(config)
            env = UBootEnv(locations, lock_file=None)
            env.read()
            env.write(SWITCH)
        except (BootEnvError, ConfigError):
            return
        except OSError as err:  # a fuzzed fw_env.config may name anything
            if kind is not None and kind.startswith(b"config:"):
                return
            raise Finding(f"unexpected {err!r}") from err
        if {k: env.read().get(k) for k in SWITCH} != SWITCH:
            raise Finding("the U-Boot environment does not read back as written")
        if copies == 2 and kind is not None and not kind.startswith(b"config:"):
            files = {path.name: path.read_bytes() for path in paths if path.exists()}
            booted = uboot_boot(files, UBOOT_ENV_SIZE)
            if booted.partition != "3" or not booted.trial:
                raise Finding(f"U-Boot would not try partition 3 after pymender wrote it: {booted}")

    return one


TARGETS = {target.name: target for target in (
    Target("reader", reader),
    Target("reader_signed", reader_signed),
    Target("header", header),
    Target("grubenv", grubenv),
    Target("ubootenv", ubootenv),
)}


def replay(target: str, workdir: Path, inputs: list[Path]) -> None:
    """Run ``target`` once on each file of ``inputs`` (no fuzzer): a regression check."""
    one = TARGETS[target].setup(workdir)
    for path in inputs:
        one(path.read_bytes())


__all__ = ["CHUNK", "TARGETS", "Finding", "Target", "replay"]
