"""Making the boot (FAT) and data (ext4) filesystems, and recognising filesystems for ``show``.

Both are made as regular files, without root and without loop devices: ``mkfs.vfat`` plus
mtools for FAT, ``mkfs.ext4 -d`` for ext4. Ids and timestamps are fixed so the same inputs give
the same bytes, and ext4 gets a feature set pinned here rather than the build host's
``mke2fs.conf``, so an image does not change (or stop mounting on an older device kernel)
because the host's defaults changed.

A FAT filesystem depends only on the names and contents of the boot files and on
``SOURCE_DATE_EPOCH``: every directory entry carries that time (FAT stores local time, so
mtools runs with ``TZ=UTC``), and each directory is filled in name order by one ``mcopy`` call
from a staged copy, so neither the files' own times nor the order in which the build host's
filesystem lists a directory reach the image.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pymender import sysio
from pymender.errors import ImageLayoutError, InputError, ToolError
from pymender.image.layout import BOOT_SIZE, DATA_SIZE, raise_hint

BOOT_LABEL = "BOOT"
DATA_LABEL = "data"

_MKE2FS_CONF = """\
[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
"""

_PACKAGES = {
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "mlabel": "mtools",
    "mkfs.ext4": "e2fsprogs",
}


DEFAULT_EPOCH = 946684800
"""2000-01-01 00:00:00 UTC: the metadata time when ``SOURCE_DATE_EPOCH`` is unset or 0 (mke2fs
treats a fake time of 0 as "now", which would make every build differ)."""


def source_date_epoch() -> int:
    """Timestamp written into filesystem metadata: ``SOURCE_DATE_EPOCH`` or :data:`DEFAULT_EPOCH`
    (a value that is not a number of seconds is refused, see :func:`pymender.sysio.source_date_epoch`)."""
    return sysio.source_date_epoch() or DEFAULT_EPOCH


FAT_EARLIEST = 315532800
"""1980-01-01 00:00:00 UTC: the earliest time a FAT directory entry can hold."""
FAT_LATEST = 4354819198
"""2107-12-31 23:59:58 UTC: the latest one."""


def fat_time() -> int:
    """The time of every FAT directory entry: :func:`source_date_epoch`, clamped to FAT's range."""
    return min(max(source_date_epoch(), FAT_EARLIEST), FAT_LATEST)


def _mtools_env(epoch: int) -> dict[str, str]:
    return {
        "MTOOLSRC": os.devnull,
        "MTOOLS_SKIP_CHECK": "1",
        # FAT stores local time: UTC makes the bytes independent of the build host's zone.
        "TZ": "UTC",
        # mtools' "now" (the volume label, and anything not copied with -m).
        "SOURCE_DATE_EPOCH": str(epoch),
        # Long names are converted from the locale's character set: UTF-8, on any host.
        "LC_ALL": "C.UTF-8",
    }


def _program(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not path:
        raise ToolError(
            f"{name} is not installed", hint=f"install the {_PACKAGES.get(name, name)} package"
        )
    return path


def _run(
    argv: Sequence[str],
    env: dict[str, str],
    *,
    full: Callable[[str], ImageLayoutError] | None = None,
) -> None:
    """Run a filesystem tool; on failure raise one line built from its last error line."""
    proc = subprocess.run(
        list(argv),
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0:
        return
    lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    detail = lines[-1] if lines else f"exit status {proc.returncode}"
    text = " ".join(lines).lower()
    if full is not None and any(w in text for w in ("disk full", "no space", "could not allocate")):
        raise full(detail)
    raise ToolError(f"{Path(argv[0]).name} failed: {detail}")


def _create(path: Path, size: int) -> None:
    with open(path, "wb") as file:
        file.truncate(size)


def make_fat(
    path: Path,
    size: int,
    source_dir: Path | None,
    *,
    volume_id: int,
    label: str = BOOT_LABEL,
) -> None:
    """Make a FAT filesystem of ``size`` bytes at ``path`` holding the files of ``source_dir``.

    The bytes depend only on the arguments, the names and contents of the files, and
    ``SOURCE_DATE_EPOCH`` (see the module docstring).
    """
    _create(path, size)
    env = _mtools_env(fat_time())
    volume = f"{volume_id & 0xFFFFFFFF:08X}"
    _run([_program("mkfs.vfat"), "--invariant", "-i", volume, str(path)], {})
    # mlabel rather than mkfs.vfat -n: mkfs.vfat dates the label entry with a fixed time of its
    # own, mlabel with SOURCE_DATE_EPOCH like every other entry.
    _run([_program("mlabel"), "-i", str(path), f"::{label}"], env)
    if source_dir is None:
        return

    def full(detail: str) -> ImageLayoutError:
        return ImageLayoutError(
            f"the boot files in {source_dir} do not fit in the {size // (1024 * 1024)} MiB "
            f"boot partition ({detail})",
            hint=raise_hint(BOOT_SIZE),
        )

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.stage.") as stage:
        _FatFiller(path, Path(stage), env, full).fill(source_dir, "", frozenset())


class _FatFiller:
    """Copies a directory tree into a FAT image one directory at a time, in name order.

    For each directory, its files (copied) and subdirectories (empty) are staged with the
    entry time, then one ``mcopy -s -m`` puts them all into the matching FAT directory; the
    subdirectories follow, each in the same way.
    """

    def __init__(
        self, image: Path, stage: Path, env: dict[str, str], full: Callable[[str], ImageLayoutError]
    ) -> None:
        self.image = image
        self.stage = stage
        self.env = env
        self.full = full
        self.epoch = int(env["SOURCE_DATE_EPOCH"])
        self.mcopy = _program("mcopy")

    def fill(self, directory: Path, fat_path: str, ancestors: frozenset[tuple[int, int]]) -> None:
        info = directory.stat()
        here = ancestors | {(info.st_dev, info.st_ino)}
        if len(here) == len(ancestors):
            raise InputError(f"boot directory {directory} links back to a directory that holds it")
        children = _sorted_children(directory)
        if not children:
            return
        level = self.stage / "level"
        level.mkdir()
        staged = [self._stage(child, level / child.name) for child in children]
        _run(
            [self.mcopy, "-i", str(self.image), "-s", "-m", "-Q", "-D", "o", *staged,
             f"::{fat_path}/"],
            self.env,
            full=self.full,
        )
        shutil.rmtree(level)
        for child in children:
            if child.is_dir():
                self.fill(child, f"{fat_path}/{child.name}", here)

    def _stage(self, source: Path, staged: Path) -> str:
        if source.is_dir():
            staged.mkdir()
        else:
            _copy_content(source, staged)
        os.utime(staged, (self.epoch, self.epoch))
        return str(staged)


def _sorted_children(directory: Path) -> list[Path]:
    """The entries of ``directory`` in name order; only files and directories (links followed)."""
    try:
        children = sorted(directory.iterdir(), key=lambda child: child.name)
    except PermissionError:
        raise InputError(f"boot directory {directory} cannot be read (permission denied)") from None
    for child in children:
        try:
            mode = child.stat().st_mode
        except FileNotFoundError:
            raise InputError(f"boot file {child} is a link to nothing") from None
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise InputError(
                f"boot file {child} is neither a regular file nor a directory",
                hint="a FAT filesystem holds only files and directories; remove it from the tree",
            )
    return children


def _copy_content(source: Path, target: Path) -> None:
    try:
        shutil.copyfile(source, target)
    except PermissionError:
        raise InputError(f"boot file {source} cannot be read (permission denied)") from None


def make_ext4(
    path: Path,
    size: int,
    source_dir: Path | None,
    *,
    fs_uuid: uuid.UUID,
    label: str = DATA_LABEL,
    work_dir: Path,
) -> None:
    """Make an ext4 filesystem of ``size`` bytes at ``path``, populated from ``source_dir``."""
    _create(path, size)
    conf = work_dir / "mke2fs.conf"
    conf.write_text(_MKE2FS_CONF)
    options = f"hash_seed={fs_uuid},nodiscard,root_owner=0:0"
    argv = [_program("mkfs.ext4"), "-q", "-F", "-t", "ext4", "-T", "default"]
    argv += ["-L", label, "-U", str(fs_uuid), "-E", options]
    if source_dir is not None:
        argv += ["-d", str(source_dir)]
    argv.append(str(path))
    epoch = str(source_date_epoch())

    def full(detail: str) -> ImageLayoutError:
        return ImageLayoutError(
            f"the data files in {source_dir} do not fit in the {size // (1024 * 1024)} MiB "
            f"data partition ({detail})",
            hint=raise_hint(DATA_SIZE),
        )

    _run(
        argv,
        {"MKE2FS_CONFIG": str(conf), "E2FSPROGS_FAKE_TIME": epoch, "SOURCE_DATE_EPOCH": epoch},
        full=full,
    )


# --- Recognising filesystems ---------------------------------------------------------------

BTRFS_SUPERBLOCK = 0x10000
"""btrfs keeps its first superblock 64 KiB into the device."""

PROBE_SIZE = BTRFS_SUPERBLOCK + 4096
"""How much of a partition :func:`probe_filesystem` looks at: up to and with btrfs's superblock."""

SQUASHFS_MAGIC = b"hsqs"
BTRFS_MAGIC = b"_BHRfS_M"


@dataclass(frozen=True)
class FilesystemInfo:
    """What ``show`` reports about a partition's content."""

    kind: str
    """``vfat``, ``ext4``, ``ext3``, ``ext2``, ``btrfs``, ``squashfs``, ``empty`` (all zero) or
    ``unknown``."""
    label: str = ""
    fs_id: str = ""
    """The ext or btrfs UUID or the FAT volume serial (``ABCD-1234``); squashfs has none."""


def probe_filesystem(head: bytes) -> FilesystemInfo:
    """Recognise the filesystem whose first :data:`PROBE_SIZE` bytes (or fewer) are ``head``."""
    for probe in (_probe_ext, _probe_squashfs, _probe_btrfs, _probe_fat):
        info = probe(head)
        if info is not None:
            return info
    if not any(head):
        return FilesystemInfo("empty")
    return FilesystemInfo("unknown")


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _probe_ext(head: bytes) -> FilesystemInfo | None:
    if len(head) < 2048 or head[1080:1082] != b"\x53\xef":
        return None
    compat, incompat = struct.unpack_from("<II", head, 1024 + 0x5C)
    if incompat & (0x40 | 0x80 | 0x200):
        kind = "ext4"
    elif compat & 0x4:
        kind = "ext3"
    else:
        kind = "ext2"
    fs_uuid = uuid.UUID(bytes=bytes(head[1024 + 0x68 : 1024 + 0x78]))
    return FilesystemInfo(kind, _text(head[1024 + 0x78 : 1024 + 0x88]), str(fs_uuid))


def _probe_squashfs(head: bytes) -> FilesystemInfo | None:
    # Version 4 (little-endian, the only one Linux has mounted since 2.6.29): no label, no id.
    if len(head) < 96 or head[:4] != SQUASHFS_MAGIC:
        return None
    return FilesystemInfo("squashfs")


def _probe_btrfs(head: bytes) -> FilesystemInfo | None:
    sb = BTRFS_SUPERBLOCK
    if len(head) < sb + 0x22B or head[sb + 0x40 : sb + 0x48] != BTRFS_MAGIC:
        return None
    fsid = uuid.UUID(bytes=bytes(head[sb + 0x20 : sb + 0x30]))
    return FilesystemInfo("btrfs", _text(head[sb + 0x12B : sb + 0x22B]), str(fsid))


def _probe_fat(head: bytes) -> FilesystemInfo | None:
    if len(head) < 512 or head[510:512] != b"\x55\xaa":
        return None
    for type_at, serial_at, label_at in ((0x52, 0x43, 0x47), (0x36, 0x27, 0x2B)):
        if head[type_at : type_at + 3] == b"FAT":
            (serial,) = struct.unpack_from("<I", head, serial_at)
            label = head[label_at : label_at + 11].decode("ascii", "replace").strip()
            if label == "NO NAME":
                label = ""
            return FilesystemInfo("vfat", label, f"{serial >> 16:04X}-{serial & 0xFFFF:04X}")
    return None
