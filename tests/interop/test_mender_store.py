"""pymender's LMDB reader against LMDB's own tools and Mender's real client.

- Mender's client (Debian's ``mender-client``) installs and commits an Artifact in standalone
  mode (``interop/mender_client.py``); pymender reads the installed Artifact from the store it
  wrote, at each moment, and each key and value the same as LMDB's ``mdb_dump`` does.
- LMDB's ``mdb_load`` writes a database far larger than Mender's (branch pages, values on
  overflow pages of every size); pymender reads back every key and value.

Debian packages: mender-client, mender-artifact, libubootenv-tool, u-boot-tools (the client's
environment), lmdb-utils (mdb_dump, mdb_load). Running the client needs root (loop devices, a
mount namespace).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from helpers import require_tool
from interop.mender_client import STORES, blocker, make_stores
from pymender.device.lmdb import read_main_db
from pymender.device.mender_store import MenderInstalled, read_mender_store

pytestmark = pytest.mark.interop


def mdb_dump(path: Path) -> dict[bytes, bytes]:
    """Every key and value of the main database, as LMDB's mdb_dump prints them (hex)."""
    out = subprocess.run([require_tool("mdb_dump"), "-n", str(path)], capture_output=True, text=True,
                         check=True).stdout
    lines = out.split("HEADER=END\n", 1)[1].split("DATA=END", 1)[0].split()
    return {bytes.fromhex(key): bytes.fromhex(value) for key, value in zip(lines[::2], lines[1::2], strict=True)}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    for tool in ("mender", "mender-artifact", "fw_printenv", "mkenvimage", "losetup", "unshare"):
        require_tool(tool)
    reason = blocker()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("mender-stores")
    return out, make_stores(out)


def test_the_client_s_stores_read_as_mdb_dump_reads_them(tmp_path: Path, stores: tuple[Path, dict[str, object]]
                                                          ) -> None:
    out, _ = stores
    for name in STORES:
        # mdb_dump opens the environment (it creates a lock file): it reads a copy.
        copy = tmp_path / f"{name}.mdb"
        copy.write_bytes((out / f"{name}.mender-store").read_bytes())
        assert read_main_db(out / f"{name}.mender-store") == mdb_dump(copy), name


def test_the_installed_artifact_as_the_client_recorded_it(stores: tuple[Path, dict[str, object]]) -> None:
    out, expected = stores
    assert read_mender_store(out / "empty.mender-store") == MenderInstalled(None, "", {}, None)
    assert read_mender_store(out / "installed.mender-store").in_progress == expected["artifact_name"]
    assert read_mender_store(out / "committed.mender-store") == MenderInstalled(
        str(expected["artifact_name"]), str(expected["artifact_group"]), expected["provides"], None)  # type: ignore[arg-type]


def test_a_large_database_written_by_lmdb_itself(tmp_path: Path) -> None:
    """Thousands of keys (branch pages, a tree three levels deep) and values of every size
    around the page and overflow limits."""
    entries = {f"key-{index:05}".encode(): (f"value {index} ".encode() * (index % 700)) for index in range(3000)}
    entries[b"big"] = bytes(range(256)) * 100
    dump = ["VERSION=3", "format=bytevalue", "type=btree", "mapsize=268435456", "HEADER=END"]
    for key, value in entries.items():
        dump += [" " + key.hex(), " " + value.hex()]
    dump.append("DATA=END")
    path = tmp_path / "data.mdb"
    subprocess.run([require_tool("mdb_load"), "-n", str(path)], input="\n".join(dump) + "\n", text=True, check=True)
    stat = subprocess.run([require_tool("mdb_stat"), "-n", str(path)], capture_output=True, text=True,
                          check=True).stdout
    assert "Tree depth: 1\n" not in stat and "Branch pages: 0\n" not in stat, stat
    assert read_main_db(path) == entries
