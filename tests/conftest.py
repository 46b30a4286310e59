"""Fixtures shared by every test directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import REPO


@pytest.fixture
def repo_root() -> Path:
    return REPO
