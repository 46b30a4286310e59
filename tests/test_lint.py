"""The code style and type checks, as tests: ruff over everything, mypy --strict over src/ and the
layer's QEMU script (a Python file without an extension, which the tools only check when named)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import REPO

#: Python programs without a .py name, checked like the package.
SCRIPTS = ["meta-pymender/scripts/pymender-qemu"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True)


def test_ruff() -> None:
    pytest.importorskip("ruff")
    result = _run("ruff", "check", "--output-format", "concise", "src", "tests", "benchmarks", "scripts", *SCRIPTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    pytest.importorskip("mypy")
    result = _run("mypy", "src/pymender", *SCRIPTS)
    assert result.returncode == 0, result.stdout + result.stderr
