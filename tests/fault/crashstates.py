"""The states a power cut can leave on disk, built from a trace of :mod:`fault.iotrace`.

The model is the one of the crash-consistency studies of file systems (ALICE, CrashMonkey):

- A power cut falls between two operations of the trace: at *crash point* ``p``, operations
  ``0 .. p-1`` were issued and nothing after.
- What is certainly on disk: the snapshot the trace starts from; every write and truncate of a
  file followed (before ``p``) by an fsync or fdatasync of that file; every change of a
  directory's entries (create, mkdir, rename, unlink, rmdir) followed by an fsync of that
  directory.
- Anything else issued before ``p`` may or may not have reached the disk. Writes are cut into
  *pieces* at the sector boundaries of their file (:data:`SECTOR`; :data:`PARTITION_PIECE` for
  the partitions, whose pieces only decide whether an image is complete), and any subset of the
  pieces may persist, between files and within a file, in any combination: a torn write is one
  in which some of its sectors persisted and others did not.
- Directory changes persist in the order they were made (a journaled file system such as ext4
  commits its metadata in order), so the changes that persist are a prefix of the unsynced
  ones; a rename (or unlink, or create) not followed by a directory fsync may or may not have
  happened, and so may every later one.

For each crash point, :func:`crash_states` gives: nothing unsynced persisted; everything
(what a SIGKILL leaves); each prefix of the unsynced operations; the last unsynced write torn
at each of its piece boundaries; each unsynced operation lost alone while all later ones
persisted; and seeded random subsets of the pieces. :func:`build` applies a choice to the
snapshot; the result is a :class:`Disk`, deduplicated by content by the caller.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from fault.iotrace import (
    CREATE,
    DATA,
    DIRSYNC,
    FSYNC,
    METADATA,
    MKDIR,
    RENAME,
    RMDIR,
    TRUNCATE,
    UNLINK,
    WRITE,
    Op,
    Snapshot,
)

#: The unit a disk writes atomically (a torn write keeps or loses whole sectors).
SECTOR = 512
#: Pieces of the root filesystem partitions' writes.
PARTITION_PIECE = 4 << 10


class Piece(NamedTuple):
    """Part of an operation that persists or not on its own: a sector of a write, or a whole
    other operation."""

    op: int
    #: For a write: the range of the op's data this piece covers.
    start: int = 0
    end: int = 0


class Disk(NamedTuple):
    """One state of the device's files: name -> content, and the directories."""

    files: dict[str, bytes]
    dirs: frozenset[str]

    def digest(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.files):
            h.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        for name in sorted(self.dirs):
            h.update(b"d" + name.encode() + b"\0")
        return h.hexdigest()

    def materialize(self, root: Path) -> None:
        """Write this state into the empty directory ``root``."""
        for name in sorted(self.dirs):
            (root / name).mkdir(parents=True, exist_ok=True)
        for name, content in self.files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)


class Trace(NamedTuple):
    snapshot: Snapshot
    #: The inode of each file of the snapshot.
    inodes: dict[str, int]
    ops: list[Op]


class CrashState(NamedTuple):
    point: int
    #: How the subset was chosen (for reports): "none", "all", "prefix 3", "torn 5/8", ...
    how: str
    disk: Disk


def _piece_size(trace: Trace, op: Op) -> int:
    names = [name for name, inode in trace.inodes.items() if inode == op.inode]
    return PARTITION_PIECE if any(name.startswith("rootfs-") for name in names) else SECTOR


def pieces_of(trace: Trace, op: Op) -> list[Piece]:
    if op.kind != WRITE or not op.data:
        return [Piece(op.index)]
    size = _piece_size(trace, op)
    cuts = [0]
    boundary = (op.offset // size + 1) * size
    while boundary < op.offset + len(op.data):
        cuts.append(boundary - op.offset)
        boundary += size
    cuts.append(len(op.data))
    return [Piece(op.index, a, b) for a, b in zip(cuts, cuts[1:], strict=False)]


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else "."


def synced(trace: Trace, point: int) -> set[int]:
    """Indices of the operations before ``point`` that are certainly on disk."""
    ops = trace.ops[:point]
    sure: set[int] = set()
    synced_inodes: dict[int, int] = {}  # inode -> index of its last sync before point
    synced_dirs: dict[str, int] = {}
    for op in ops:
        if op.kind == FSYNC and op.inode is not None:
            synced_inodes[op.inode] = op.index
        elif op.kind == DIRSYNC and op.path is not None:
            synced_dirs[op.path] = op.index
    metadata_sure = -1
    for op in ops:
        if op.kind in DATA and op.inode is not None and synced_inodes.get(op.inode, -1) > op.index:
            sure.add(op.index)
        elif op.kind in METADATA:
            dirs = {_parent(op.path or "")} | ({_parent(op.target)} if op.target else set())
            if all(synced_dirs.get(d, -1) > op.index for d in dirs):
                metadata_sure = op.index
        elif op.kind in (FSYNC, DIRSYNC):
            sure.add(op.index)
    # Metadata persists in order: everything up to the last surely persisted change is there.
    sure |= {op.index for op in ops if op.kind in METADATA and op.index <= metadata_sure}
    return sure


class IncompleteTrace(AssertionError):
    """A directory change names an entry the model does not have: something changed the files
    without going through the calls the shim records (a missing wrapper, or a write through
    Python's ``open``)."""


def build(trace: Trace, point: int, chosen: set[Piece]) -> Disk:
    """The disk after the certainly persisted operations before ``point`` and ``chosen`` pieces,
    applied in program order (the directory changes among them must be a prefix of the unsynced
    ones; see :func:`_metadata_prefix`)."""
    sure = synced(trace, point)
    names = dict(trace.inodes)
    contents: dict[int, bytearray] = {inode: bytearray(trace.snapshot.files[name])
                                      for name, inode in trace.inodes.items()}
    dirs = set(trace.snapshot.dirs)
    by_op: dict[int, list[Piece]] = {}
    for piece in chosen:
        by_op.setdefault(piece.op, []).append(piece)
    for op in trace.ops[:point]:
        if op.index in sure:
            parts = [Piece(op.index, 0, len(op.data))] if op.kind == WRITE else [Piece(op.index)]
        else:
            parts = by_op.get(op.index, [])
        if not parts:
            continue
        if op.kind == WRITE:
            assert op.inode is not None
            content = contents.setdefault(op.inode, bytearray())
            for piece in parts:
                start = op.offset + piece.start
                if len(content) < start:
                    content.extend(bytes(start - len(content)))
                content[start:op.offset + piece.end] = op.data[piece.start:piece.end]
        elif op.kind == TRUNCATE:
            assert op.inode is not None
            content = contents.setdefault(op.inode, bytearray())
            if len(content) > op.length:
                del content[op.length:]
            else:
                content.extend(bytes(op.length - len(content)))
        elif op.kind == CREATE:
            assert op.path is not None and op.inode is not None
            if _parent(op.path) not in dirs and _parent(op.path) != ".":
                raise IncompleteTrace(f"{op.describe()}: {op.path} is not in the model")
            names[op.path] = op.inode
            contents.setdefault(op.inode, bytearray())
        elif op.kind == MKDIR:
            assert op.path is not None
            dirs.add(op.path)
        elif op.kind == UNLINK:
            if op.path not in names:
                raise IncompleteTrace(f"{op.describe()}: {op.path} is not in the model")
            del names[op.path]
        elif op.kind == RMDIR:
            assert op.path is not None
            if any(n.startswith(op.path + "/") for n in names):
                raise IncompleteTrace(f"{op.describe()}: {op.path} is not in the model")
            dirs.discard(op.path)
        elif op.kind == RENAME:
            assert op.path is not None and op.target is not None
            old, new = op.path, op.target
            if old in dirs:
                if any(n.startswith(new + "/") for n in names):
                    raise IncompleteTrace(f"{op.describe()}: {new} is not empty")
                moved = {d for d in dirs if d == old or d.startswith(old + "/")}
                dirs -= moved
                dirs |= {new + d[len(old):] for d in moved}
                for name in [n for n in names if n.startswith(old + "/")]:
                    names[new + name[len(old):]] = names.pop(name)
            elif old in names:
                names[new] = names.pop(old)
            else:
                raise IncompleteTrace(f"{op.describe()}: {op.path} is not in the model")
    return Disk({name: bytes(contents[inode]) for name, inode in names.items()}, frozenset(dirs))


def _metadata_prefix(trace: Trace, point: int, chosen: set[Piece]) -> set[Piece]:
    """``chosen`` with the unsynced directory changes cut down to a prefix (they persist in
    order): after the first one left out, every later one is left out too."""
    sure = synced(trace, point)
    kept = {piece for piece in chosen if trace.ops[piece.op].kind not in METADATA}
    for op in trace.ops[:point]:
        if op.kind not in METADATA or op.index in sure:
            continue
        if Piece(op.index) not in chosen:
            break
        kept.add(Piece(op.index))
    return kept


def choices(trace: Trace, point: int, rng: random.Random, randoms: int) -> Iterator[tuple[str, set[Piece]]]:
    """The subsets of the unsynced pieces before ``point`` (see the module docstring)."""
    sure = synced(trace, point)
    unsynced_ops = [op for op in trace.ops[:point] if op.index not in sure and op.kind in DATA | METADATA]
    pieces = [piece for op in unsynced_ops for piece in pieces_of(trace, op)]
    everything = set(pieces)
    yield "none", set()
    yield "all", everything
    for n in range(1, len(unsynced_ops)):
        upto = unsynced_ops[n - 1].index
        yield f"prefix {n}/{len(unsynced_ops)}", {p for p in pieces if p.op <= upto}
    writes = [op for op in unsynced_ops if op.kind == WRITE]
    if writes:
        last = writes[-1]
        own = pieces_of(trace, last)
        before = {p for p in pieces if p.op < last.index}
        for n in range(1, len(own)):
            yield f"torn {n}/{len(own)} of #{last.index}", before | set(own[:n])
        # The sectors of the last write persisted in another order: only the later ones.
        for n in range(1, len(own)):
            yield f"torn tail {n}/{len(own)} of #{last.index}", before | set(own[n:])
    if len(unsynced_ops) > 1:
        for op in unsynced_ops:
            yield f"lost #{op.index}", {p for p in pieces if p.op != op.index}
    for n in range(randoms):
        yield f"random {n}", {p for p in pieces if rng.random() < 0.5}


def crash_states(trace: Trace, *, seed: int = 0, randoms: int = 6,
                 points: Callable[[int], bool] | None = None) -> Iterator[CrashState]:
    """Every distinct crash state of the trace (see the module docstring), once each."""
    seen: set[str] = set()
    rng = random.Random(seed)
    for point in range(len(trace.ops) + 1):
        if points is not None and not points(point):
            continue
        for how, chosen in choices(trace, point, rng, randoms):
            disk = build(trace, point, _metadata_prefix(trace, point, chosen))
            digest = disk.digest()
            if digest in seen:
                continue
            seen.add(digest)
            yield CrashState(point, how, disk)


__all__ = ["PARTITION_PIECE", "SECTOR", "CrashState", "Disk", "Piece", "Trace", "build", "choices",
           "crash_states", "IncompleteTrace", "pieces_of", "synced"]
