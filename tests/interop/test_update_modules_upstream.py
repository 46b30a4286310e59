"""Update Modules with Mender's own tools and modules (Debian's mender-client and mender-artifact).

- Mender's modules (``/usr/share/mender/modules/v3``) run under pymender, and pymender's
  modules (``modules/``) run on the same Artifacts, made by Mender's generator scripts and
  ``mender-artifact write module-image``; both leave the same end state.
- pymender's generators make Artifacts that upstream ``mender-artifact validate`` accepts, with
  the header fields and payload files Mender's generators give.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from helpers import require_tool
from module_rig import MENDERS, SHIPPED, Rig

pytestmark = pytest.mark.interop

EXAMPLES = Path("/usr/share/doc/mender-client/examples")
IMPLEMENTATIONS = ["mender", "pymender"]

#: Mender 5.x's line before the result of an install committed at once (actions.cpp).
AUTO_COMMIT = "Update Module doesn't support rollback. Committing immediately.\n"


@pytest.fixture(autouse=True)
def upstream() -> str:
    if not (MENDERS / "single-file").exists():
        pytest.skip("Debian's mender-client package (Mender's Update Modules) is not installed")
    return require_tool("mender-artifact")


def rig_with(tmp: Path, host: Path, monkeypatch: pytest.MonkeyPatch, implementation: str) -> Rig:
    rig = Rig(tmp, host, monkeypatch)
    for name in ("single-file", "directory", "script", "deb"):
        rig.install_module((MENDERS if implementation == "mender" else SHIPPED) / name)
    return rig


def upstream_gen(script: str, *args: str, cwd: Path) -> Path:
    subprocess.run(["sh" if script == "single-file-artifact-gen" else "bash", str(EXAMPLES / script), *args],
                   check=True, cwd=cwd, capture_output=True)
    return cwd / args[args.index("-o") + 1]


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mode & 0o777)
            for p in sorted(directory.rglob("*")) if p.is_file() and "pymender" not in p.name}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_single_file_from_menders_generator_same_end_state(
        tmp_path: Path, no_host_configuration: Path, monkeypatch: pytest.MonkeyPatch, implementation: str) -> None:
    rig = rig_with(tmp_path, no_host_configuration, monkeypatch, implementation)
    dest = tmp_path / "opt" / "app"
    work = tmp_path / "work"
    work.mkdir()
    artifacts = []
    for version, content in (("1", b"one\n"), ("2", b"two\n" * 5000)):
        (work / "app.conf").write_bytes(content)
        (work / "app.conf").chmod(0o640)
        artifacts.append(upstream_gen("single-file-artifact-gen", "-n", f"app-{version}", "-t", "qemux86-64",
                                      "-d", str(dest), "-o", f"app-{version}.mender", "app.conf", cwd=work))
    assert rig.device.mender_update("install", str(artifacts[0]))[:2] == (
        0, "Installing artifact...\nInstalled, but not committed.\n"
           "Use 'commit' to update, or 'rollback' to roll back the update.\n")
    assert rig.device.mender_update("commit")[0] == 0
    assert snapshot(dest) == {"app.conf": (b"one\n", 0o640)}
    assert rig.device.mender_update("install", str(artifacts[1]))[0] == 0
    assert snapshot(dest) == {"app.conf": (b"two\n" * 5000, 0o640)}
    assert rig.device.mender_update("rollback")[0] == 0
    assert snapshot(dest) == {"app.conf": (b"one\n", 0o640)}
    assert rig.device.mender_update("show-provides")[1].splitlines() == [
        "artifact_name=app-1", "rootfs-image.single-file.version=app-1"]
    assert not rig.tree.exists()


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_directory_from_menders_generator_same_end_state(
        tmp_path: Path, no_host_configuration: Path, monkeypatch: pytest.MonkeyPatch, implementation: str) -> None:
    rig = rig_with(tmp_path, no_host_configuration, monkeypatch, implementation)
    dest = tmp_path / "srv" / "www"
    artifacts = []
    for version, files in (("1", {"index.html": b"1", "css/site.css": b"c"}), ("2", {"index.html": b"2"})):
        work = tmp_path / f"work-{version}"
        for rel, content in files.items():
            (work / "tree" / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / "tree" / rel).write_bytes(content)
        artifacts.append(upstream_gen("directory-artifact-gen", "-n", f"www-{version}", "-t", "qemux86-64",
                                      "-d", str(dest), "-o", f"www-{version}.mender", "tree", cwd=work))
    assert rig.device.mender_update("install", str(artifacts[0]))[0] == 0
    assert rig.device.mender_update("commit")[0] == 0
    first = snapshot(dest)
    assert set(first) == {"index.html", "css/site.css"}
    assert rig.device.mender_update("install", str(artifacts[1]))[0] == 0
    assert set(snapshot(dest)) == {"index.html"}
    assert rig.device.mender_update("rollback")[0] == 0
    assert snapshot(dest) == first


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_script_and_deb_from_mender_artifact_same_end_state(
        tmp_path: Path, no_host_configuration: Path, monkeypatch: pytest.MonkeyPatch, implementation: str,
        upstream: str) -> None:
    rig = rig_with(tmp_path, no_host_configuration, monkeypatch, implementation)
    trace = tmp_path / "trace"
    script = tmp_path / "10-hello"
    script.write_text(f"#!/bin/sh\necho hello >> {trace}\n")
    out = tmp_path / "script.mender"
    subprocess.run([upstream, "write", "module-image", "-T", "script", "-n", "s-1", "-t", "qemux86-64",
                    "-o", str(out), "-f", str(script)], check=True, capture_output=True)
    installed = rig.device.mender_update("install", str(out))
    assert installed[:2] == (0, "Installing artifact...\n" + AUTO_COMMIT + "Installed and committed.\n")
    assert trace.read_text() == "hello\n"

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dpkg").write_text(f"#!/bin/sh\nfor a in \"$@\"; do echo \"${{a##*/}}\"; done >> {trace}\n")
    (bin_dir / "dpkg").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    package = tmp_path / "hello_1.0_all.deb"
    package.write_bytes(b"!<arch>\n")
    out = tmp_path / "deb.mender"
    subprocess.run([upstream, "write", "module-image", "-T", "deb", "-n", "d-1", "-t", "qemux86-64",
                    "-o", str(out), "-f", str(package)], check=True, capture_output=True)
    assert rig.device.mender_update("install", str(out))[0] == 0
    assert trace.read_text().split() == ["hello", "-i", "hello_1.0_all.deb"]
    assert rig.device.mender_update("show-artifact")[1] == "d-1\n"


# --- pymender's generators against Mender's -------------------------------------------------------


def fields(upstream: str, artifact: Path, *, skip: tuple[str, ...] = ()) -> list[str]:
    """``mender-artifact read``'s lines, without the times and the files named in ``skip``."""
    out = subprocess.run([upstream, "read", str(artifact)], check=True, capture_output=True, text=True).stdout
    lines, skipping = [], False
    for line in out.splitlines():
        stripped = line.strip()
        if stripped.startswith("name:"):
            skipping = stripped.split(":", 1)[1].strip() in skip
        if stripped.startswith("modified:") or (skipping and not stripped.startswith("name:")):
            continue
        lines.append(line)
    return lines


@pytest.fixture
def pymender_artifact() -> Path:
    import shutil
    import sys

    found = Path(sys.executable).parent / "pymender-artifact"
    return found if found.exists() else Path(shutil.which("pymender-artifact") or "pymender-artifact")


@pytest.mark.parametrize("extra", [["--software-name", "app", "--software-version", "1.0"],
                                   ["--", "-p", "extra:1", "--compression", "none"]])
@pytest.mark.parametrize("generator", ["single-file-artifact-gen", "directory-artifact-gen"])
def test_pymenders_generators_match_menders(tmp_path: Path, upstream: str, generator: str, extra: list[str],
                                            pymender_artifact: Path) -> None:
    work = tmp_path / "work"
    (work / "tree" / "sub").mkdir(parents=True)
    (work / "tree" / "sub" / "x").write_text("x")
    (work / "app.conf").write_text("conf\n")
    (work / "app.conf").chmod(0o600)
    what = "app.conf" if generator.startswith("single") else "tree"
    # (Mender's generators drop the --software-* options when '--' follows: not combined here)
    common = ["-n", "app-1", "-t", "qemux86-64", "-t", "other", "-d", "/opt/app"]
    theirs = upstream_gen(generator, *common, "-o", "theirs.mender", what, *extra, cwd=work)
    ours = work / "ours.mender"
    subprocess.run([str(pymender_artifact), generator, *common, "-o", str(ours), what, *extra],
                   check=True, capture_output=True, cwd=work)
    subprocess.run([upstream, "validate", str(ours)], check=True, capture_output=True)
    skip = ("update.tar",)  # the same tree, archived by another tar
    assert fields(upstream, ours, skip=skip) == fields(upstream, theirs, skip=skip)


def test_pymenders_deb_generator_is_valid_upstream(tmp_path: Path, upstream: str, pymender_artifact: Path) -> None:
    package = tmp_path / "hello_1.0_all.deb"
    package.write_bytes(b"!<arch>\n")
    ours = tmp_path / "ours.mender"
    subprocess.run([str(pymender_artifact), "deb-artifact-gen", "-n", "d-1", "-t", "qemux86-64", "-o", str(ours),
                    str(package)], check=True, capture_output=True)
    theirs = tmp_path / "theirs.mender"
    subprocess.run([upstream, "write", "module-image", "-T", "deb", "-n", "d-1", "-t", "qemux86-64",
                    "-o", str(theirs), "-f", str(package)], check=True, capture_output=True)
    subprocess.run([upstream, "validate", str(ours)], check=True, capture_output=True)
    assert fields(upstream, ours) == fields(upstream, theirs)
