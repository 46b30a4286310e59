"""The read-only LMDB reader, on stores Mender's real client wrote (tests/fixtures/mender-store),
and on those stores damaged in one place each."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from helpers import REPO
from pymender.device.lmdb import LmdbError, read_main_db

STORES = REPO / "tests" / "fixtures" / "mender-store"
EXPECTED = json.loads((STORES / "expected.json").read_text())
PAGE = 4096


def test_an_empty_store_has_no_keys() -> None:
    assert read_main_db(STORES / "empty.mender-store") == {}


def test_a_committed_store_holds_name_group_and_provides() -> None:
    entries = read_main_db(STORES / "committed.mender-store")
    assert set(entries) == {b"artifact-name", b"artifact-group", b"artifact-provides"}
    assert entries[b"artifact-name"] == EXPECTED["artifact_name"].encode()
    assert entries[b"artifact-group"] == EXPECTED["artifact_group"].encode()
    # About 5 KiB: the value lies on overflow pages, which the reader follows.
    assert len(entries[b"artifact-provides"]) > PAGE
    assert json.loads(entries[b"artifact-provides"]) == EXPECTED["provides"]


def test_a_store_with_an_update_in_progress_holds_the_standalone_state() -> None:
    entries = read_main_db(STORES / "installed.mender-store")
    state = json.loads(entries[b"standalone-state"])
    assert state["ArtifactName"] == EXPECTED["artifact_name"]
    assert state["PayloadTypes"] == ["rootfs-image"]


def test_the_file_is_only_read(tmp_path: Path) -> None:
    store = tmp_path / "mender-store"
    store.write_bytes((STORES / "committed.mender-store").read_bytes())
    store.chmod(0o444)
    before = store.stat()
    read_main_db(store)
    after = store.stat()
    assert (before.st_mtime_ns, before.st_size) == (after.st_mtime_ns, after.st_size)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mender-store"]  # no lock file made


def damaged(tmp_path: Path, name: str, change: object) -> Path:
    data = bytearray((STORES / name).read_bytes())
    assert callable(change)
    change(data)
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


def leaf_page(data: bytearray) -> int:
    """The number of the committed store's root (leaf) page, from its newest meta page."""
    metas = []
    for offset in (0, PAGE):
        txnid = struct.unpack_from("<Q", data, offset + 16 + 24 + 2 * 48 + 8)[0]
        root = struct.unpack_from("<Q", data, offset + 16 + 24 + 48 + 40)[0]
        metas.append((txnid, root))
    return max(metas)[1]


def overflow_page(data: bytearray) -> int:
    """The first overflow page of the committed store's one big value (``artifact-provides``)."""
    leaf = leaf_page(data) * PAGE
    lower = struct.unpack_from("<H", data, leaf + 12)[0]
    for index in range((lower - 16) // 2):
        node = leaf + struct.unpack_from("<H", data, leaf + 16 + 2 * index)[0]
        _, flags, key_size = struct.unpack_from("<IHH", data, node)
        if flags & 1:
            return int(struct.unpack_from("<Q", data, node + 8 + key_size)[0])
    raise AssertionError("no value on overflow pages")


def cut(length: int) -> object:
    def change(data: bytearray) -> None:
        del data[length:]
    return change


@pytest.mark.parametrize(("name", "change", "message"), [
    ("committed.mender-store", cut(0), "no LMDB meta page"),
    ("committed.mender-store", cut(100), "no LMDB meta page"),
    ("committed.mender-store", cut(PAGE + 100), "shorter than its two meta pages"),
    ("committed.mender-store", cut(3 * PAGE), "outside the file"),
    ("committed.mender-store", lambda d: d.__setitem__(slice(16, 20), b"\0\0\0\0"), "no LMDB meta page"),
    ("committed.mender-store", lambda d: d.__setitem__(slice(20, 24), struct.pack("<I", 2)), "version 2"),
    ("committed.mender-store", lambda d: d.__setitem__(slice(40, 44), struct.pack("<I", 1000)), "page size 1000"),
    # The root page's header: its page number, then its flags (neither branch nor leaf).
    ("committed.mender-store", lambda d: d.__setitem__(
        slice(leaf_page(d) * PAGE, leaf_page(d) * PAGE + 8), struct.pack("<Q", 7)), "says it is page 7"),
    ("committed.mender-store", lambda d: d.__setitem__(
        slice(leaf_page(d) * PAGE + 10, leaf_page(d) * PAGE + 12), struct.pack("<H", 0x10)), "neither a branch"),
    # lower/upper of the root page out of order.
    ("committed.mender-store", lambda d: d.__setitem__(
        slice(leaf_page(d) * PAGE + 12, leaf_page(d) * PAGE + 16), struct.pack("<HH", 4000, 20)), "broken header"),
    ("committed.mender-store", lambda d: d.__delitem__(slice((overflow_page(d) + 1) * PAGE + 100, None)),
     "runs past its 2 overflow page"),
    ("committed.mender-store", lambda d: d.__setitem__(
        slice(overflow_page(d) * PAGE + 10, overflow_page(d) * PAGE + 12), struct.pack("<H", 2)),
     "does not start an overflow page"),
])
def test_damage_is_refused_with_the_reason(tmp_path: Path, name: str, change: object, message: str) -> None:
    path = damaged(tmp_path, name, change)
    with pytest.raises(LmdbError, match=message) as info:
        read_main_db(path)
    assert str(path) in str(info.value)


def test_an_unreadable_file_says_why(tmp_path: Path) -> None:
    with pytest.raises(LmdbError, match="cannot read"):
        read_main_db(tmp_path)  # a directory
    with pytest.raises(LmdbError, match="cannot read"):
        read_main_db(tmp_path / "missing")


@pytest.mark.parametrize(("header", "order", "what"), [(12, "<", "32-bit"), (16, ">", "big-endian 64-bit")])
def test_stores_of_other_machines_are_named(tmp_path: Path, header: int, order: str, what: str) -> None:
    path = tmp_path / "mender-store"
    data = bytearray(2 * PAGE)
    struct.pack_into(order + "I", data, header, 0xBEEFC0DE)
    path.write_bytes(bytes(data))
    with pytest.raises(LmdbError, match=f"written on a {what} machine"):
        read_main_db(path)
