"""The code style, type and import checks, as tests: ruff over everything, mypy --strict over
src/ and the layer's QEMU script (a Python file without an extension, which the tools only check
when named), and no import cycle in src/."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

#: Python programs without a .py name, checked like the package.
SCRIPTS = ["meta-pymender/scripts/pymender-qemu"]
#: The host scripts' modules (their launchers in scripts/ are a few lines), checked like the
#: package; they use the test tooling in tests/ (the layer's parser, the QEMU harness).
SCRIPT_MODULES = ["scripts/build_test_image.py", "scripts/demo_qemu.py", "scripts/power_cut.py"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_ruff() -> None:
    pytest.importorskip("ruff")
    result = _run("ruff", "check", "--output-format", "concise", "src", "tests", "benchmarks", "scripts", *SCRIPTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    pytest.importorskip("mypy")
    result = _run("mypy", "src/pymender", *SCRIPTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_scripts() -> None:
    pytest.importorskip("mypy")
    result = _run("mypy", "--strict", *SCRIPT_MODULES, env={"MYPYPATH": "src:tests:scripts"})
    assert result.returncode == 0, result.stdout + result.stderr


# --- import cycles -----------------------------------------------------------------------------
# No import cycles in ``src/``: every module can be read, tested and replaced on its own.
#
# The graph has an edge for every ``import`` statement of a module, wherever it stands: at the
# top, inside functions (an import deferred for start-up time is still a dependency), in ``try``
# blocks and under ``if TYPE_CHECKING:`` (a type named from another module is a dependency too,
# even if it costs nothing at run time). ``from package import name`` points at the submodule
# when ``name`` is one, else at the package. A module's implicit import of its parent package is
# not an edge: a package's ``__init__`` may import its own submodules without that being a
# cycle, as long as they do not import it back.

SRC = REPO / "src"


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the first-party modules it imports."""
    files = {module_name(path, src): path for path in src.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base
                           for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:  # ``import a.b.c`` of a package a.b
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_src_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "pymender.device.install" in graph and graph["pymender.cli.device"]  # the graph was built
    assert cycles(graph) == []


def test_the_check_finds_cycles_through_deferred_and_type_only_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from pkg import a\n")
    (package / "a.py").write_text("from pkg.b import helper\n")
    (package / "b.py").write_text("def helper():\n    from . import a\n")
    (package / "c.py").write_text("import pkg.d.e\n")
    (package / "d").mkdir()
    (package / "d" / "__init__.py").write_text("")
    (package / "d" / "e.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..c import x\n")
    graph = import_graph(tmp_path)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.d.e"},
                     "pkg.d": set(), "pkg.d.e": {"pkg.c"}}
    assert cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d.e"]]
