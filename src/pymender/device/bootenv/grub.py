"""GRUB backend: Mender's two-copy environment, written so a power cut never loses it.

Layout of the environment directory (the boot partition, often FAT)::

    mender_grubenv1/env             1024-byte GRUB environment block (the one GRUB boots from)
    mender_grubenv1/lock            GRUB environment block holding editing=0 (or 1 while writing)
    mender_grubenv1/lock.sha256sum  "<sha256 of lock>  lock": the lock's content at rest
    mender_grubenv2/...             the same, the second copy

A copy is *valid* when it is at rest as GRUB's boot script judges it (its ``lock.sha256sum``
passes GRUB's ``hashsum --check``, its lock says ``editing=0``) and its ``env`` is an
environment block as GRUB parses one (:func:`decode_block`). Writes go to copy 2 then copy 1
(a damaged copy first), each bracketed by ``editing=1`` ... the original lock bytes; so at any
instant at most one copy is mid-write and the other holds the complete old (during the first)
or new (during the second) environment. GRUB's boot script makes the same choice as
:meth:`GrubEnv.read`: copy 1 unless copy 1 is being edited or damaged. A damaged copy is
repaired by the next :meth:`GrubEnv.write` (it is written first, from the good copy's
environment with the changes applied), as Mender's ``grub-mender-grubenv-set`` restores a bad
copy before every change.

Where the directory is, when ``GrubEnvDir`` does not say: ``ENV_DIR=`` in
``/etc/mender_grubenv.config``, then the places Mender's GRUB integration uses
(:func:`find_grub_env_dir`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from pymender.device.bootenv.base import BootEnv, Where, advisory_lock, apply_changes, check_changes
from pymender.device.log import get_logger
from pymender.errors import BootEnvError
from pymender.sysio import fsync_dir, overwrite_file

log = get_logger(__name__)

HEADER = b"# GRUB Environment Block\n"
BLOCK_SIZE = 1024
COPY_DIRS = ("mender_grubenv1", "mender_grubenv2")
#: The lock file Mender's ``grub-mender-grubenv-set`` holds while it writes.
DEFAULT_LOCK_FILE = Path("/var/lock/grub-mender-grubenv-set.lock")
#: Where Mender's GRUB integration keeps its two environment copies, first match wins.
ENV_DIR_CANDIDATES = (
    Path("/boot/efi/grub-mender-grubenv"),
    Path("/boot/grub/grub-mender-grubenv"),
    Path("/boot/efi/EFI/BOOT"),
    Path("/boot/grub"),
)
#: The file in which Mender's GRUB tools may name the environment directory (``ENV_DIR=``).
ENV_DIR_CONFIG = Path("/etc/mender_grubenv.config")


def encode_block(variables: Mapping[str, str]) -> bytes:
    """A 1024-byte GRUB environment block holding ``variables`` (in their order).

    Backslashes are escaped as GRUB does. Refuses what the format cannot hold.
    """
    body = bytearray(HEADER)
    for name, value in variables.items():
        if not name or "=" in name or "\n" in name or "\\" in name or "\0" in name \
                or name.startswith("#"):
            raise BootEnvError(
                f"invalid GRUB environment variable name {name!r}",
                hint="names must not be empty, start with '#' or contain '=', '\\', "
                "newlines or NUL bytes",
            )
        if "\n" in value or "\0" in value:
            raise BootEnvError(
                f"the value of GRUB environment variable {name!r} contains a newline or NUL byte",
                hint="the GRUB environment block cannot hold it; use a single-line value",
            )
        escaped = value.replace("\\", "\\\\")
        body += f"{name}={escaped}\n".encode("utf-8", "surrogateescape")
    if len(body) > BLOCK_SIZE:
        raise BootEnvError(
            f"the GRUB environment would need {len(body)} bytes but its block holds {BLOCK_SIZE}",
            hint="remove unneeded variables or shorten values",
        )
    return bytes(body) + b"#" * (BLOCK_SIZE - len(body))


def decode_block(data: bytes) -> dict[str, str] | None:
    """The variables of a GRUB environment block, read exactly as GRUB reads them; None when it
    is not an environment block at all.

    GRUB (``load_env``, ``grub-editenv``) takes a block of any size that starts with the header;
    a line starting with ``#`` is skipped; a name runs to the next ``=`` (even across lines); a
    value runs to the next newline not escaped by a backslash; an entry without its ``=`` or its
    newline ends the block. Names and values end at a NUL byte, as C strings do.
    """
    if len(data) <= len(HEADER) or not data.startswith(HEADER):
        return None
    variables: dict[str, str] = {}
    pos, end = len(HEADER), len(data)
    while pos < end:
        if data[pos] == _HASH:
            pos = _next_line(data, pos)
            continue
        equals = data.find(b"=", pos)
        if equals < 0:
            break
        value = bytearray()
        i = equals + 1
        while i < end and data[i] != _NEWLINE:
            if data[i] == _BACKSLASH:
                i += 1
                if i >= end:
                    break
            value.append(data[i])
            i += 1
        if i >= end:  # no newline after the value: GRUB stops here
            break
        name = data[pos:equals].split(b"\0", 1)[0]
        variables[name.decode("utf-8", "surrogateescape")] = bytes(value).split(b"\0", 1)[0].decode(
            "utf-8", "surrogateescape"
        )
        pos = i + 1
    return variables


_HASH, _NEWLINE, _BACKSLASH = ord("#"), ord("\n"), ord("\\")


def _next_line(data: bytes, pos: int) -> int:
    newline = data.find(b"\n", pos)
    return len(data) if newline < 0 else newline + 1


def checksum_list_ok(listing: bytes, files: Mapping[str, bytes | None]) -> bool:
    """Whether GRUB's ``hashsum --hash sha256 --check`` accepts ``listing`` for a copy whose files
    are ``files`` (name -> content, None when missing).

    Every line must be a SHA-256 in hex, two blanks (spaces or tabs) and a file name, and that
    file must exist with that digest; carriage returns are ignored; an empty list passes.
    """
    lines = listing.replace(b"\r", b"").split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    for line in lines:
        text = line.lstrip(b" \t\n\v\f")
        digest, blanks, name = text[:64], text[64:66], text[66:].split(b"\0", 1)[0]
        if len(digest) != 64 or not all(c in _HEX for c in digest) or len(blanks) != 2 \
                or any(c not in b" \t" for c in blanks):
            return False
        content = files.get(name.decode("utf-8", "surrogateescape"))
        if content is None or hashlib.sha256(content).hexdigest() != digest.decode("ascii").lower():
            return False
    return True


_HEX = frozenset(b"0123456789abcdefABCDEF")


def lock_checksum_line(lock: bytes) -> bytes:
    """The content of ``lock.sha256sum`` for lock bytes ``lock`` (sha256sum's format)."""
    return f"{hashlib.sha256(lock).hexdigest()}  lock\n".encode("ascii")


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        log.warning("cannot read %s: %s", path, err.strerror)
        return None


class _Copy(NamedTuple):
    """One environment copy as found on disk."""

    directory: Path
    env: bytes | None
    lock: bytes | None
    checksum: bytes | None
    variables: dict[str, str] | None

    @property
    def lock_ok(self) -> bool:
        """The lock is at rest as GRUB's script decides it: ``lock.sha256sum`` passes GRUB's
        ``hashsum --check`` and the lock says ``editing=0``."""
        if self.lock is None or self.checksum is None:
            return False
        files = {"env": self.env, "lock": self.lock, "lock.sha256sum": self.checksum}
        if not checksum_list_ok(self.checksum, files):
            return False
        return (decode_block(self.lock) or {}).get("editing") == "0"

    @property
    def valid(self) -> bool:
        return self.lock_ok and self.variables is not None


class GrubEnv:
    """Mender's redundant GRUB environment in ``env_dir`` (see the module docstring)."""

    def __init__(self, env_dir: Path, *, lock_file: Path | None = DEFAULT_LOCK_FILE) -> None:
        self.env_dir = Path(env_dir)
        self.lock_file = lock_file

    def describe(self) -> str:
        return f"GRUB environment in {self.env_dir}"

    # --- reading -------------------------------------------------------------------------------

    def _load(self, index: int) -> _Copy:
        directory = self.env_dir / COPY_DIRS[index]
        env = _read(directory / "env")
        return _Copy(
            directory=directory,
            env=env,
            lock=_read(directory / "lock"),
            checksum=_read(directory / "lock.sha256sum"),
            variables=decode_block(env) if env is not None else None,
        )

    def _load_both(self) -> tuple[_Copy, _Copy]:
        if not self.env_dir.is_dir():
            raise BootEnvError(
                f"the GRUB environment directory {self.env_dir} does not exist",
                hint='check "GrubEnvDir" in the configuration',
            )
        return self._load(0), self._load(1)

    @staticmethod
    def _current(first: _Copy, second: _Copy) -> _Copy:
        """The copy GRUB boots from: copy 1 unless it is torn or mid-write, then copy 2."""
        for copy in (first, second):
            if copy.valid:
                return copy
        raise BootEnvError(
            "both copies of the GRUB environment are damaged "
            f"(in {first.directory.parent})",
            hint="restore mender_grubenv1/ and mender_grubenv2/ from the image",
        )

    def read(self) -> dict[str, str]:
        first, second = self._load_both()
        current = self._current(first, second)
        assert current.variables is not None
        return dict(current.variables)

    # --- writing -------------------------------------------------------------------------------

    def write(self, changes: Mapping[str, str | None]) -> None:
        check_changes(changes)
        with advisory_lock(self.lock_file):
            first, second = self._load_both()
            current = self._current(first, second)
            assert current.variables is not None
            new_env = encode_block(apply_changes(current.variables, changes))
            if all(c.valid and c.env == new_env for c in (first, second)):
                return
            lock, checksum = self._rest_lock(current)
            # Copy 2 then copy 1, as Mender's tools do; but a damaged copy always goes first,
            # so the one good copy is never the one being edited.
            order = (first, second) if not first.valid else (second, first)
            for copy in order:
                self._write_copy(copy.directory, new_env, lock, checksum, copy.checksum)

    def initialize(self, variables: Mapping[str, str]) -> None:
        check_changes(variables)
        new_env = encode_block(variables)
        lock = encode_block({"editing": "0"})
        checksum = lock_checksum_line(lock)
        with advisory_lock(self.lock_file):
            for name in reversed(COPY_DIRS):
                directory = self.env_dir / name
                if not directory.is_dir():
                    directory.mkdir(parents=True)
                    fsync_dir(directory.parent)
                self._write_copy(directory, new_env, lock, checksum, None)

    @staticmethod
    def _rest_lock(current: _Copy) -> tuple[bytes, bytes]:
        """The lock bytes of a copy at rest, reused verbatim for every copy, and their checksum
        line in sha256sum's form.

        Reusing the device's own lock bytes (not re-encoding ``editing=0``) keeps them right
        whatever tool created them; the checksum line is made afresh, since a list that also
        names another file (or names the lock in another way) would not hold for a new copy.
        """
        assert current.lock is not None
        return current.lock, lock_checksum_line(current.lock)

    def _write_copy(
        self, directory: Path, env: bytes, lock: bytes, checksum: bytes, old_checksum: bytes | None
    ) -> None:
        """Write one copy: mark it being edited, write env (and checksum), mark it at rest."""
        overwrite_file(directory / "lock", encode_block({"editing": "1"}))
        overwrite_file(directory / "env", env)
        if old_checksum != checksum:
            overwrite_file(directory / "lock.sha256sum", checksum)
        overwrite_file(directory / "lock", lock)
        written = self._load(COPY_DIRS.index(directory.name))
        if not written.valid or written.env != env:
            raise BootEnvError(
                f"the GRUB environment in {directory} is damaged right after writing it",
                hint="the boot partition may be failing; check the kernel log",
            )


# --- Finding it (the backend interface of :mod:`pymender.device.bootenv`) ----------------------


def find_grub_env_dir(root: Path = Path("/")) -> Path | None:
    """The directory holding ``mender_grubenv1/`` and ``mender_grubenv2/``, or None.

    Looks where Mender's GRUB integration puts it: ``ENV_DIR=`` in ``/etc/mender_grubenv.config``
    first, then the usual places on the boot partition. ``root`` prefixes every path (tests).
    """
    candidates: list[Path] = []
    config = root / ENV_DIR_CONFIG.relative_to("/")
    try:
        for line in config.read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == "ENV_DIR" and value.strip():
                named = Path(value.strip())
                candidates = [root / named.relative_to(named.anchor)]  # the last line wins
    except OSError:
        pass
    candidates += [root / c.relative_to("/") for c in ENV_DIR_CANDIDATES]
    for candidate in candidates:
        if (candidate / COPY_DIRS[0]).is_dir():
            return candidate
    return None


def detect(where: Where, root: Path) -> bool:
    """Whether this device has a GRUB environment: in ``GrubEnvDir`` when set, else found."""
    if where.grub_env_dir is not None:
        return (where.grub_env_dir / COPY_DIRS[0]).is_dir()
    return find_grub_env_dir(root) is not None


def looked_for(where: Where, root: Path) -> str:
    """What :func:`detect` looked for, for a message."""
    return f"no GRUB environment directory ({COPY_DIRS[0]}/)"


def open_env(where: Where) -> BootEnv:
    """The environment in ``GrubEnvDir``, or where Mender's integration puts it."""
    directory = where.grub_env_dir if where.grub_env_dir is not None else find_grub_env_dir()
    if directory is None:
        raise BootEnvError(
            f"cannot find the GRUB environment directory ({COPY_DIRS[0]}/)",
            hint='set "GrubEnvDir" in the configuration',
        )
    return GrubEnv(directory)
