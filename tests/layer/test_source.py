"""Where the updater recipe takes pymender from: this repository, or a pinned git release.

The layer is often copied on its own (vendored, combined with other layers). Then the
repository it was part of is not there, and the recipe's local source must not break the parse
of the whole build: the recipe is skipped with a message saying what to set, and
PYMENDER_SOURCE = "git" fetches the pinned release instead. With the repository there, the
recipe fetches its files one by one, so a test run's __pycache__ does not rebuild pymender, and
an edit of a source file does.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import REPO, require_tool

pytest.importorskip("bb")
from layer.bbparse import LAYER, configuration, layer_files, local_conf, recipe  # noqa: I001

import bb.fetch2


def vendored_layer(tmp_path: Path) -> Path:
    """A copy of meta-pymender in a directory tree that is not pymender's repository."""
    copy = tmp_path / "vendor" / "layers" / "meta-pymender"
    shutil.copytree(LAYER, copy)
    return copy


@pytest.mark.parametrize("opt_in", [True, False], ids=["opted-in", "layer-only"])
def test_a_vendored_layer_parses(tmp_path: Path, opt_in: bool) -> None:
    layer = vendored_layer(tmp_path)
    d = configuration(tmp_path / "build", local_conf(opt_in=opt_in), layer=layer)
    for path in sorted(layer.rglob("*.bb")):
        variants = recipe(d, path)
        # BitBake keeps a skipped recipe's reason; asking to build it prints the reason.
        skipped = {variant: data.getVar("__SKIPPED") for variant, data in variants.items()}
        if path.name.startswith(("pymender_", "pymender-update-modules_")):
            # the recipes made from the pymender source tree: skipped, saying what to set
            assert set(skipped) == ({"", "native", "nativesdk"} if path.name.startswith("pymender_") else {""})
            for reason in skipped.values():
                assert reason and "PYMENDER_SRC_DIR" in reason and 'PYMENDER_SOURCE = "git"' in reason
        else:
            assert skipped == {"": None}, path.name


def test_a_vendored_layer_builds_the_pinned_release(tmp_path: Path) -> None:
    layer = vendored_layer(tmp_path)
    d = configuration(tmp_path / "build", local_conf('PYMENDER_SOURCE = "git"'), layer=layer)
    target = recipe(d, layer / "recipes-pymender" / "pymender" / "pymender_0.1.0.bb")[""]
    uris = target.getVar("SRC_URI").split()
    assert uris[0] == f"{target.getVar('PYMENDER_GIT_URI')};destsuffix={target.getVar('BP')}"
    assert target.getVar("SRCREV") == target.getVar("PYMENDER_GIT_SRCREV")
    assert len(target.getVar("SRCREV")) == 40
    assert [uri for uri in uris[1:] if not uri.startswith("file://pymender")] == []


def test_an_unknown_source_is_refused(tmp_path: Path) -> None:
    from layer.bbparse import FATAL_ERRORS, capture_warnings

    d = configuration(tmp_path, local_conf('PYMENDER_SOURCE = "svn"'))
    with pytest.raises(FATAL_ERRORS, match='PYMENDER_SOURCE must be "local" or "git"'), capture_warnings():
        recipe(d, layer_files("pymender_0.1.0.bb")[0])


def source_tree(tmp_path: Path) -> Path:
    """A copy of what the recipe builds from (the repository's package files), with the layer."""
    top = tmp_path / "pymender"
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (top / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, top / name)
    shutil.copytree(REPO / "src" / "pymender", top / "src" / "pymender",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(LAYER, top / "meta-pymender")
    return top


def fetch_checksums(tmp_path: Path, top: Path) -> tuple[list[str], list[tuple[str, str | None]]]:
    d = configuration(tmp_path / "build", local_conf(), layer=top / "meta-pymender")
    target = recipe(d, top / "meta-pymender" / "recipes-pymender" / "pymender" / "pymender_0.1.0.bb")[""]
    files = target.getVarFlag("do_fetch", "file-checksums")
    return files.split(), bb.fetch2.get_file_checksums(files, "pymender", [])


def test_local_source_is_every_package_file_and_no_bytecode(tmp_path: Path) -> None:
    top = source_tree(tmp_path)
    (top / "src" / "pymender" / "__pycache__").mkdir()
    (top / "src" / "pymender" / "__pycache__" / "errors.cpython-311.pyc").write_bytes(b"\0")
    listed, _ = fetch_checksums(tmp_path, top)
    names = {entry.rsplit(":", 1)[0] for entry in listed}
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    expected = {str(p) for p in (top / "src" / "pymender").rglob("*.py") if "__pycache__" not in p.parts}
    assert expected <= names
    assert {str(top / "pyproject.toml"), str(top / "LICENSE")} <= names


def test_bytecode_does_not_rebuild_and_an_edit_does(tmp_path: Path) -> None:
    top = source_tree(tmp_path)
    _, clean = fetch_checksums(tmp_path, top)
    cache = top / "src" / "pymender" / "device" / "__pycache__"
    cache.mkdir()
    (cache / "install.cpython-311.pyc").write_bytes(b"bytecode")
    _, with_bytecode = fetch_checksums(tmp_path, top)
    assert with_bytecode == clean
    (top / "src" / "pymender" / "errors.py").write_text("# edited\n", encoding="utf-8")
    _, edited = fetch_checksums(tmp_path, top)
    assert edited != clean


def test_two_checkouts_of_the_same_sources_build_the_same_pymender(tmp_path: Path) -> None:
    from layer.bbparse import task_hashes

    hashes = []
    for name in ("one", "two"):
        top = source_tree(tmp_path / name)
        d = configuration(tmp_path / name / "build", local_conf(), layer=top / "meta-pymender")
        hashes.append(task_hashes(recipe(d, top / "meta-pymender" / "recipes-pymender" / "pymender"
                                         / "pymender_0.1.0.bb")[""]))
    assert hashes[0] == hashes[1]


def test_git_release_is_fetched_and_unpacked_where_the_recipe_builds(tmp_path: Path) -> None:
    """The git mode with BitBake's own fetcher, against a local repository standing in for the
    public one."""
    git = require_tool("git")
    top = source_tree(tmp_path)
    release = tmp_path / "release.git"
    work = tmp_path / "release"
    shutil.copytree(top, work, ignore=shutil.ignore_patterns("meta-pymender"))
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "release"]):
        subprocess.run([git, *args], cwd=work, check=True, env=env)
    subprocess.run([git, "clone", "-q", "--bare", str(work), str(release)], check=True, env=env)
    commit = subprocess.run([git, "rev-parse", "HEAD"], cwd=work, check=True, capture_output=True,
                            text=True).stdout.strip()

    d = configuration(tmp_path / "build", local_conf(
        'PYMENDER_SOURCE = "git"', f'PYMENDER_GIT_URI = "git://{release};protocol=file;branch=main"',
        f'PYMENDER_GIT_SRCREV = "{commit}"', f'DL_DIR = "{tmp_path / "downloads"}"'), layer=top / "meta-pymender")
    target = recipe(d, top / "meta-pymender" / "recipes-pymender" / "pymender" / "pymender_0.1.0.bb")[""]
    unpack = Path(target.getVar("PYMENDER_UNPACKDIR"))
    unpack.mkdir(parents=True)
    fetcher = bb.fetch2.Fetch(target.getVar("SRC_URI").split(), target)
    fetcher.download()
    fetcher.unpack(str(unpack))
    source = Path(target.getVar("S"))
    assert (source / "pyproject.toml").read_text() == (REPO / "pyproject.toml").read_text()
    assert (source / "src" / "pymender" / "device" / "install.py").is_file()
    assert sorted(p.name for p in (source / "layer-files").iterdir()) == [
        "pymender-device-identity", "pymender-inventory-bootloader", "pymender-inventory-network",
        "pymender-inventory-os", "pymender-tmpfiles.conf", "pymender.service"]
