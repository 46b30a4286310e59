"""Making the boot (FAT) and data (ext4) filesystems, and recognising filesystems for ``show``.

Both are made as regular files, without root and without loop devices: ``mkfs.vfat`` plus
``mcopy`` (mtools) for FAT, ``mkfs.ext4 -d`` for ext4. Ids and timestamps are fixed so the same
inputs give the same bytes, and ext4 gets a feature set pinned here rather than the build host's
``mke2fs.conf``, so an image does not change (or stop mounting on an older device kernel)
because the host's defaults changed.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pymender import sysio
from pymender.errors import ImageLayoutError, ToolError
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
    "mkfs.ext4": "e2fsprogs",
}


DEFAULT_EPOCH = 946684800
"""2000-01-01 00:00:00 UTC: the metadata time when ``SOURCE_DATE_EPOCH`` is unset or 0 (mke2fs
treats a fake time of 0 as "now", which would make every build differ)."""


def source_date_epoch() -> int:
    """Timestamp written into filesystem metadata: ``SOURCE_DATE_EPOCH`` or :data:`DEFAULT_EPOCH`
    (a value that is not a number of seconds is refused, see :func:`pymender.sysio.source_date_epoch`)."""
    return sysio.source_date_epoch() or DEFAULT_EPOCH


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
    """Make a FAT filesystem of ``size`` bytes at ``path`` holding the files of ``source_dir``."""
    _create(path, size)
    _run(
        [
            _program("mkfs.vfat"),
            "--invariant",
            "-i",
            f"{volume_id & 0xFFFFFFFF:08X}",
            "-n",
            label,
            str(path),
        ],
        {},
    )
    if source_dir is None:
        return
    names = sorted(str(child) for child in source_dir.iterdir())
    if not names:
        return

    def full(detail: str) -> ImageLayoutError:
        return ImageLayoutError(
            f"the boot files in {source_dir} do not fit in the {size // (1024 * 1024)} MiB "
            f"boot partition ({detail})",
            hint=raise_hint(BOOT_SIZE),
        )

    _run(
        [_program("mcopy"), "-i", str(path), "-s", "-m", "-Q", "-D", "o", *names, "::/"],
        {"MTOOLSRC": os.devnull, "MTOOLS_SKIP_CHECK": "1"},
        full=full,
    )


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

PROBE_SIZE = 4096


@dataclass(frozen=True)
class FilesystemInfo:
    """What ``show`` reports about a partition's content."""

    kind: str
    """``vfat``, ``ext4``, ``ext3``, ``ext2``, ``empty`` (all zero) or ``unknown``."""
    label: str = ""
    fs_id: str = ""
    """The ext UUID or the FAT volume serial (``ABCD-1234``)."""


def probe_filesystem(head: bytes) -> FilesystemInfo:
    """Recognise the filesystem whose first :data:`PROBE_SIZE` bytes are ``head``."""
    if len(head) >= 2048 and head[1080:1082] == b"\x53\xef":
        compat, incompat = struct.unpack_from("<II", head, 1024 + 0x5C)
        if incompat & (0x40 | 0x80 | 0x200):
            kind = "ext4"
        elif compat & 0x4:
            kind = "ext3"
        else:
            kind = "ext2"
        label = head[1024 + 0x78 : 1024 + 0x88].split(b"\0", 1)[0].decode("utf-8", "replace")
        fs_uuid = uuid.UUID(bytes=bytes(head[1024 + 0x68 : 1024 + 0x78]))
        return FilesystemInfo(kind, label, str(fs_uuid))
    if len(head) >= 512 and head[510:512] == b"\x55\xaa":
        for type_at, serial_at, label_at in ((0x52, 0x43, 0x47), (0x36, 0x27, 0x2B)):
            if head[type_at : type_at + 3] == b"FAT":
                (serial,) = struct.unpack_from("<I", head, serial_at)
                label = head[label_at : label_at + 11].decode("ascii", "replace").strip()
                if label == "NO NAME":
                    label = ""
                return FilesystemInfo("vfat", label, f"{serial >> 16:04X}-{serial & 0xFFFF:04X}")
    if not any(head):
        return FilesystemInfo("empty")
    return FilesystemInfo("unknown")
