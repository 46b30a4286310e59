"""Which data directory is in use: pymender's, Mender's, or the one named, decided in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from pymender.device.layout import GIVEN, MENDER, PYMENDER, Layout, MenderPaths, decide_layout


@pytest.fixture
def places(tmp_path: Path) -> tuple[MenderPaths, Path]:
    mender = MenderPaths(tmp_path / "etc-mender", tmp_path / "usr-share-mender", tmp_path / "var-lib-mender")
    own = tmp_path / "var-lib-pymender"
    mender.datastore.mkdir()
    own.mkdir()
    return mender, own


def decide(places: tuple[MenderPaths, Path], **options: object) -> Layout:
    mender, own = places
    return decide_layout(mender=mender, own=own, **options)  # type: ignore[arg-type]


def test_mender_s_variables_as_mender_reads_them() -> None:
    assert MenderPaths.from_environ({}) == MenderPaths(Path("/etc/mender"), Path("/usr/share/mender"),
                                                       Path("/var/lib/mender"))
    paths = MenderPaths.from_environ({"MENDER_CONF_DIR": "/c", "MENDER_DATA_DIR": "/d",
                                      "MENDER_DATASTORE_DIR": "/s"})
    assert (paths.main_config, paths.fallback_config) == (Path("/c/mender.conf"), Path("/s/mender.conf"))
    assert (paths.rootfs_scripts, paths.modules) == (Path("/c/scripts"), Path("/d/modules/v3"))


def test_nothing_set_up_is_pymender_s_layout(places: tuple[MenderPaths, Path]) -> None:
    layout = decide(places)
    assert (layout.data_dir, layout.kind) == (places[1], PYMENDER)
    assert "holds a device_type yet" in layout.why


@pytest.mark.parametrize("mark", ["device_type", "mender-store", "bootstrap.mender"])
def test_a_mender_device_is_found_by_what_mender_keeps(places: tuple[MenderPaths, Path], mark: str) -> None:
    mender, _ = places
    (mender.datastore / mark).write_text("x")
    layout = decide(places)
    assert (layout.data_dir, layout.kind) == (mender.datastore, MENDER)
    assert f"{mender.datastore / mark} exists" in layout.describe()


def test_a_link_into_data_counts(places: tuple[MenderPaths, Path], tmp_path: Path) -> None:
    """meta-mender's /var/lib/mender is a link to /data/mender."""
    mender, _ = places
    data = tmp_path / "data-mender"
    data.mkdir()
    (data / "device_type").write_text("device_type=x\n")
    mender.datastore.rmdir()
    mender.datastore.symlink_to(data)
    assert decide(places).kind == MENDER


@pytest.mark.parametrize("mark", ["store.json", "device_type"])
def test_pymender_s_own_data_wins_over_mender_s(places: tuple[MenderPaths, Path], mark: str) -> None:
    mender, own = places
    (mender.datastore / "mender-store").write_text("x")
    (own / mark).write_text("x")
    layout = decide(places)
    assert (layout.data_dir, layout.kind) == (own, PYMENDER)


def test_named_directories_win(places: tuple[MenderPaths, Path], tmp_path: Path) -> None:
    mender, own = places
    (own / "store.json").write_text("{}")
    configured = decide(places, configured=(tmp_path / "conf-dir", tmp_path / "pymender.conf"))
    assert (configured.data_dir, configured.kind) == (tmp_path / "conf-dir", GIVEN)
    assert "DataDir in" in configured.why
    given = decide(places, given=tmp_path / "cli-dir", configured=(tmp_path / "conf-dir", tmp_path / "p.conf"))
    assert (given.data_dir, given.kind) == (tmp_path / "cli-dir", GIVEN)
