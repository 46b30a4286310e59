"""Helpers shared by the tests (import them with ``from helpers import ...``).

Peer tools (mender-artifact, grub-editenv, fw_printenv, sfdisk, ...) are installed by
``ci/install-deps``. A test that needs one calls :func:`require_tool`: outside CI a missing tool
skips the test, in CI (``CI=true``) it fails it, so a broken install step cannot hide a test.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def require_tool(name: str) -> str:
    """The path of program ``name``; skip (locally) or fail (in CI) when it is absent."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path:
        return path
    message = f"{name} is not installed (ci/install-deps installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_file(path: Path, package: str) -> Path:
    """``path``, a data file that Debian package ``package`` installs; skip or fail like
    :func:`require_tool` when it is absent."""
    if path.is_file():
        return path
    message = f"{path} is not installed (the {package} package; ci/install-deps installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def read_bounded(reader: Any, chunk: int) -> bytes:
    """Everything ``reader.read(chunk)`` returns until it is empty, checking that no call
    returns more than ``chunk`` bytes (the readers' promise against decompression bombs)."""
    parts: list[bytes] = []
    while True:
        part = reader.read(chunk)
        assert len(part) <= chunk
        if not part:
            return b"".join(parts)
        parts.append(part)


def load_script(path: Path, name: str) -> types.ModuleType:
    """The Python program at ``path`` (a script without a .py name) as module ``name``."""
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: dataclasses look their module up while they are defined.
    sys.modules[name] = module
    loader.exec_module(module)
    return module
