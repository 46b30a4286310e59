"""Reading the installed Artifact from Mender's store, written by Mender's real client
(tests/fixtures/mender-store), and the refusals of a store pymender cannot take over."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import REPO
from pymender.device.mender_store import MenderInstalled, read_mender_store
from pymender.device.store import DeviceState, PendingUpdate, StateStore
from pymender.errors import StateError

STORES = REPO / "tests" / "fixtures" / "mender-store"
EXPECTED = json.loads((STORES / "expected.json").read_text())


def test_a_committed_store_gives_name_group_and_provides() -> None:
    assert read_mender_store(STORES / "committed.mender-store") == MenderInstalled(
        EXPECTED["artifact_name"], EXPECTED["artifact_group"], EXPECTED["provides"], None)


def test_a_new_device_has_no_name() -> None:
    assert read_mender_store(STORES / "empty.mender-store") == MenderInstalled(None, "", {}, None)


def test_an_update_in_progress_is_reported() -> None:
    installed = read_mender_store(STORES / "installed.mender-store")
    assert installed.in_progress == EXPECTED["artifact_name"]
    assert installed.artifact_name is None  # the factory name was only in artifact_info


def test_provides_that_are_not_json_are_damage(tmp_path: Path) -> None:
    data = bytearray((STORES / "committed.mender-store").read_bytes())
    start = data.find(b'{"app.')
    while start >= 0:  # the current value and the copies older transactions left
        data[start] = ord("x")
        start = data.find(b'{"app.', start)
    (tmp_path / "mender-store").write_bytes(bytes(data))
    with pytest.raises(StateError, match="artifact-provides is not JSON"):
        read_mender_store(tmp_path / "mender-store")


# --- the state store reads it before it has its own ------------------------------------------------


def mender_device(tmp_path: Path, store: str) -> StateStore:
    data = tmp_path / "var-lib-mender"
    data.mkdir()
    shutil.copyfile(STORES / store, data / "mender-store")
    info = tmp_path / "artifact_info"
    info.write_text("artifact_name=from-artifact-info\n")
    return StateStore(data, artifact_info=info, mender_store=data / "mender-store")


def test_before_its_own_store_pymender_reads_menders(tmp_path: Path) -> None:
    store = mender_device(tmp_path, "committed.mender-store")
    assert store.has_name()
    assert store.current() == DeviceState(EXPECTED["artifact_name"], EXPECTED["artifact_group"],
                                          EXPECTED["provides"])
    assert store.pending() is None
    assert not store.path.exists()  # reading changes nothing


def test_then_its_own_store_only(tmp_path: Path) -> None:
    store = mender_device(tmp_path, "committed.mender-store")
    mender_bytes = (store.data_dir / "mender-store").read_bytes()
    store.set_current(store.current()._replace(artifact_name="release-3"))
    (store.data_dir / "mender-store").write_bytes(b"damaged later")
    fresh = StateStore(store.data_dir, mender_store=store.data_dir / "mender-store")
    assert fresh.current().artifact_name == "release-3"
    assert fresh.current().provides == EXPECTED["provides"]
    assert mender_bytes == (STORES / "committed.mender-store").read_bytes()


def test_a_store_without_a_name_leaves_it_to_the_bootstrap_artifact(tmp_path: Path) -> None:
    store = mender_device(tmp_path, "empty.mender-store")
    assert not store.has_name()
    assert store.current() == DeviceState("from-artifact-info")


def test_an_update_mender_left_unfinished_must_be_taken_over_first(tmp_path: Path) -> None:
    store = mender_device(tmp_path, "installed.mender-store")
    assert store.current() == DeviceState("from-artifact-info")  # Mender's store has no name yet
    record = store.mender_update()
    assert record["Version"] == 1 and record["ArtifactName"] == EXPECTED["artifact_name"]
    with pytest.raises(StateError, match="holds an update of release-2 that pymender has not taken over"):
        store.pending()
    update = PendingUpdate("release-2", "/dev/b", previous_partition="/dev/a")
    store.take_over(update)
    assert store.pending() == update and store.mender_update() is None
    assert store.current() == DeviceState("from-artifact-info")
    with pytest.raises(StateError, match="nothing to take over"):
        store.take_over(update)


def test_a_damaged_store_is_an_error_not_unknown(tmp_path: Path) -> None:
    store = mender_device(tmp_path, "committed.mender-store")
    (store.data_dir / "mender-store").write_bytes(b"\0" * 8192)
    with pytest.raises(StateError, match="not a readable LMDB store"):
        store.current()
