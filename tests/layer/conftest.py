"""Layer checks need bitbake-setup (the bb parser), oelint-adv and kas from the test extra."""

from __future__ import annotations

import importlib.util
import os

import pytest

_NEEDED = {"bb": "bitbake-setup", "oelint_adv": "oelint-adv", "kas": "kas"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/layer/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.layer)


@pytest.fixture(autouse=True, scope="session")
def _layer_tools() -> None:
    missing = [pkg for module, pkg in _NEEDED.items() if importlib.util.find_spec(module) is None]
    if missing:
        message = f"layer checks need {', '.join(missing)} (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
