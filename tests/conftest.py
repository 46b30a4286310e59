"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import REPO


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture(autouse=True)
def no_host_configuration(tmp_path_factory: pytest.TempPathFactory,
                          monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Keep the host's own Mender and pymender files out of every test: Mender's directories
    (``MENDER_CONF_DIR``, ``MENDER_DATA_DIR``, ``MENDER_DATASTORE_DIR``, as Mender's client
    reads them) and pymender's default configuration file and data directory point into an
    empty directory. A test that wants them there puts its files in the returned directory
    (``etc-mender``, ``usr-share-mender``, ``var-lib-mender``, ``etc-pymender``,
    ``var-lib-pymender``)."""
    root = tmp_path_factory.mktemp("host")
    monkeypatch.setenv("MENDER_CONF_DIR", str(root / "etc-mender"))
    monkeypatch.setenv("MENDER_DATA_DIR", str(root / "usr-share-mender"))
    monkeypatch.setenv("MENDER_DATASTORE_DIR", str(root / "var-lib-mender"))
    from pymender.device import config

    monkeypatch.setattr(config, "DEFAULT_CONFIG_FILE", root / "etc-pymender" / "pymender.conf")
    monkeypatch.setattr(config, "DEFAULT_DATA_DIR", root / "var-lib-pymender")
    yield root
