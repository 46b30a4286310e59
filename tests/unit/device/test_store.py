"""The state store: Mender's provides rules, the pending update, and power cuts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pymender import sysio
from pymender.device.flow import UpdateState
from pymender.device.store import (
    DeviceState,
    PendingUpdate,
    StateStore,
    apply_update,
    clears_match,
)
from pymender.errors import NothingToDoError, StateError

OLD_PROVIDES = {
    "rootfs-image.version": "release-1",
    "rootfs-image.checksum": "aaa",
    "rootfs-image.trace.version": "app-1",
    "data.version": "7",
}
INSTALLED = DeviceState("release-1", "group-a", OLD_PROVIDES)

pytestmark = pytest.mark.usefixtures("no_fsync")


def update(**kwargs: object) -> PendingUpdate:
    base: dict[str, object] = {"artifact_name": "release-2", "partition": "/dev/mmcblk0p3"}
    base.update(kwargs)
    return PendingUpdate(**base)  # type: ignore[arg-type]


@pytest.fixture
def store(scratch: Path) -> StateStore:
    return StateStore(scratch / "data", artifact_info=scratch / "artifact_info")


# --- Mender's provides semantics ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("rootfs-image.*", "rootfs-image.version", True),
        ("rootfs-image.*", "rootfs-image.", True),
        ("rootfs-image.*", "rootfs_image.version", False),
        ("*", "anything", True),
        ("data.version", "data.version", True),
        ("data.version", "dataXversion", False),  # '.' is literal
        ("a?b", "axb", False),  # only '*' is special
        ("a?b", "a?b", True),
        ("*.trace.*", "rootfs-image.trace.version", True),
        ("rootfs-image.*", "x.rootfs-image.version", False),  # anchored
    ],
)
def test_clears_patterns(pattern: str, key: str, matches: bool) -> None:
    assert clears_match(pattern, key) is matches


def test_neither_provides_nor_clears_drops_every_provide() -> None:
    assert apply_update(INSTALLED, update()) == DeviceState("release-2", "", {})


def test_clears_only_removes_matching_provides() -> None:
    result = apply_update(INSTALLED, update(clears_provides=("rootfs-image.*",)))
    assert result.provides == {"data.version": "7"}


def test_provides_only_replace_everything() -> None:
    result = apply_update(INSTALLED, update(provides={"rootfs-image.version": "release-2"}))
    assert result.provides == {"rootfs-image.version": "release-2"}


def test_clears_and_provides_like_an_update_module() -> None:
    # A module Artifact that clears only its own namespace keeps the rootfs provides.
    result = apply_update(
        INSTALLED,
        update(
            artifact_group="group-b",
            provides={"rootfs-image.trace.version": "app-2"},
            clears_provides=("rootfs-image.trace.*",),
        ),
    )
    assert result == DeviceState(
        "release-2",
        "group-b",
        {
            "rootfs-image.version": "release-1",
            "rootfs-image.checksum": "aaa",
            "rootfs-image.trace.version": "app-2",
            "data.version": "7",
        },
    )


def test_empty_clears_with_provides_keeps_old_ones() -> None:
    result = apply_update(INSTALLED, update(provides={"new": "1"}, clears_provides=()))
    assert result.provides == {**OLD_PROVIDES, "new": "1"}


def test_name_and_group_never_enter_the_provides_map() -> None:
    result = apply_update(
        INSTALLED, update(provides={"artifact_name": "x", "artifact_group": "y", "k": "v"})
    )
    assert result.provides == {"k": "v"}
    assert result.all_provides() == {"k": "v", "artifact_name": "release-2"}


def test_inconsistent_suffix() -> None:
    assert apply_update(INSTALLED, update(), inconsistent=True).artifact_name == (
        "release-2_INCONSISTENT"
    )


# --- bootstrap ----------------------------------------------------------------------------------


def test_first_use_without_artifact_info_is_unknown(store: StateStore) -> None:
    assert store.current() == DeviceState("unknown")
    assert store.current().all_provides() == {"artifact_name": "unknown"}
    assert store.pending() is None
    assert not store.path.exists()  # reading never writes


def test_first_use_takes_the_name_from_artifact_info(store: StateStore, scratch: Path) -> None:
    (scratch / "artifact_info").write_text("# factory image\nartifact_name=factory-1\n"
                                           "artifact_group=lab\n")
    assert store.current() == DeviceState("factory-1", "lab")
    store.begin_pending(update())
    (scratch / "artifact_info").write_text("artifact_name=changed\n")
    assert store.current().artifact_name == "factory-1"  # the store is now the truth


def test_artifact_info_without_a_name_is_ignored(store: StateStore, scratch: Path) -> None:
    (scratch / "artifact_info").write_text("artifact_name=\n")
    assert store.current().artifact_name == "unknown"


# --- the pending update ------------------------------------------------------------------------


def test_full_cycle_install_commit(store: StateStore) -> None:
    store.set_current(INSTALLED)
    pending = update(
        provides={"rootfs-image.version": "release-2"},
        clears_provides=("rootfs-image.*",),
        previous_partition="/dev/mmcblk0p2",
        previous_env={"mender_boot_part": "2", "mender_boot_part_hex": "2",
                      "upgrade_available": "0"},
        scripts_dir="/var/lib/pymender/scripts",
        state=UpdateState.ARTIFACT_INSTALL_ENTER,
    )
    store.begin_pending(pending)
    assert StateStore(store.data_dir).pending() == pending
    assert store.current() == INSTALLED
    advanced = store.update_pending(state="Before_ArtifactCommit_Enter")
    assert advanced.state == UpdateState.BEFORE_ARTIFACT_COMMIT_ENTER
    assert store.pending() == advanced
    committed = store.commit_pending()
    assert committed == DeviceState(
        "release-2", "", {"rootfs-image.version": "release-2", "data.version": "7"}
    )
    assert store.current() == committed and store.pending() is None


def test_discard_keeps_the_installed_artifact(store: StateStore) -> None:
    store.set_current(INSTALLED)
    store.begin_pending(update(provides={"x": "1"}))
    store.update_pending(failed=True, rolled_back=True)
    store.discard_pending()
    assert store.current() == INSTALLED and store.pending() is None


def test_second_pending_update_is_refused(store: StateStore) -> None:
    store.begin_pending(update())
    with pytest.raises(StateError, match="already in progress") as info:
        store.begin_pending(update(artifact_name="release-3"))
    assert info.value.hint and "commit" in info.value.hint
    assert store.pending() == update()


def test_nothing_pending_is_nothing_to_do(store: StateStore) -> None:
    for action in (store.commit_pending, store.discard_pending,
                   lambda: store.update_pending(failed=True)):
        with pytest.raises(NothingToDoError):
            action()


def test_none_and_empty_survive_the_round_trip(store: StateStore) -> None:
    for pending in (update(), update(provides={}, clears_provides=())):
        store.begin_pending(pending)
        assert StateStore(store.data_dir).pending() == pending
        store.discard_pending()


def test_file_is_readable_json(store: StateStore) -> None:
    store.set_current(INSTALLED)
    store.begin_pending(update(clears_provides=("a*",)))
    document = json.loads(store.path.read_text())
    assert document["format"] == 1
    assert document["artifact_name"] == "release-1"
    assert document["pending"]["clears_provides"] == ["a*"]
    assert document["pending"]["state"] == "Before_ArtifactCommit_Enter"


@pytest.mark.parametrize(
    "content",
    ["", "{", "[]", '{"format": 99, "artifact_name": "x"}', '{"format": 1}',
     '{"format": 1, "artifact_name": "x", "provides": {"a": 1}}',
     '{"format": 1, "artifact_name": "x", "pending": {"artifact_name": "y"}}',
     b"\xff\xfe"],
)
def test_damaged_store_is_a_clear_error(store: StateStore, content: str | bytes) -> None:
    store.data_dir.mkdir()
    data = content if isinstance(content, bytes) else content.encode()
    store.path.write_bytes(data)
    with pytest.raises(StateError, match="cannot be read") as info:
        store.current()
    assert info.value.hint


# --- power cuts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("torn", [False, True], ids=["clean-stop", "torn-write"])
@pytest.mark.parametrize("operation", ["begin", "advance", "commit", "discard"])
def test_power_cut_at_every_step_leaves_old_or_new(  # type: ignore[no-untyped-def]
    scratch: Path, crashing_os, power_cut, torn: bool, operation: str
) -> None:
    pending = update(provides={"rootfs-image.version": "release-2"})
    data_dir = scratch / "data"

    def prepare() -> StateStore:
        fresh = StateStore(data_dir, artifact_info=None)
        fresh.path.unlink(missing_ok=True)
        fresh.set_current(INSTALLED)
        if operation != "begin":
            fresh.begin_pending(pending)
        return fresh

    def act(target: StateStore) -> None:
        if operation == "begin":
            target.begin_pending(pending)
        elif operation == "advance":
            target.update_pending(state=UpdateState.ARTIFACT_COMMIT_ENTER)
        elif operation == "commit":
            target.commit_pending()
        else:
            target.discard_pending()

    def snapshot(target: StateStore) -> tuple[DeviceState, PendingUpdate | None]:
        return target.current(), target.pending()

    old = snapshot(prepare())
    act(prepare())
    new = snapshot(StateStore(data_dir, artifact_info=None))
    assert old != new

    seen = set()
    crash_at = 0
    while True:
        target = prepare()
        fake = crashing_os(crash_at, torn=torn)
        finished = False
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sysio, "os", fake)
            try:
                act(target)
                finished = True
            except power_cut:
                pass
        after = snapshot(StateStore(data_dir, artifact_info=None))
        assert after in (old, new), f"crash at step {crash_at} ({fake.crashed_in})"
        seen.add(after == new)
        if finished:
            break
        crash_at += 1
    assert crash_at >= 4 and seen == {False, True}
    # A leftover temporary file never disturbs the next write.
    StateStore(data_dir, artifact_info=None).set_current(DeviceState("again"))
    assert StateStore(data_dir, artifact_info=None).current() == DeviceState("again")
