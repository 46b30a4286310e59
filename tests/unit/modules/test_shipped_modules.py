"""pymender's Update Modules (``modules/``) installed on a simulated device, with Artifacts from
``pymender-artifact``'s generators: what each one installs, rolls back and refuses."""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from module_rig import SHIPPED, Rig
from pymender.cli.common import run_cli

#: Mender 5.x's line before the result of an install committed at once (actions.cpp).
AUTO_COMMIT = "Update Module doesn't support rollback. Committing immediately.\n"


@pytest.fixture
def rig(tmp_path: Path, no_host_configuration: Path, monkeypatch: pytest.MonkeyPatch) -> Rig:
    rig = Rig(tmp_path, no_host_configuration, monkeypatch)
    for name in ("single-file", "directory", "script", "deb"):
        rig.install_module(SHIPPED / name)
    return rig


def generate(*args: str) -> Path:
    from pymender.cli.artifact import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = run_cli("pymender-artifact", main, [*args, "--", "--compression", "none"])
    assert code == 0, err.getvalue()
    return Path(args[args.index("-o") + 1])


def single_file(rig: Rig, name: str, content: bytes, dest: Path, mode: int = 0o640) -> Path:
    source = rig.tmp / "src" / name / "app.conf"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(content)
    source.chmod(mode)
    return generate("single-file-artifact-gen", "-n", name, "-t", "qemux86-64", "-d", str(dest),
                    "-o", str(rig.tmp / f"{name}.mender"), str(source))


def directory(rig: Rig, name: str, files: dict[str, bytes], dest: Path) -> Path:
    tree = rig.tmp / "src" / name / "tree"
    for rel, content in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(content)
    return generate("directory-artifact-gen", "-n", name, "-t", "qemux86-64", "-d", str(dest),
                    "-o", str(rig.tmp / f"{name}.mender"), str(tree))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.parent.iterdir() if "pymender" in p.name) + \
        sorted(p.name for p in directory.iterdir() if "pymender" in p.name) if directory.is_dir() else []


# --- single-file ---------------------------------------------------------------------------------


def test_single_file_installs_waits_for_the_commit_and_keeps_the_mode(rig: Rig) -> None:
    dest = rig.tmp / "opt" / "app"
    artifact = single_file(rig, "app-1", b"v1", dest)
    code, out, _ = rig.device.mender_update("install", "--reboot-exit-code", str(artifact))
    assert code == 0 and "Installed, but not committed." in out and "reboot" not in out
    assert (dest / "app.conf").read_bytes() == b"v1"
    assert (dest / "app.conf").stat().st_mode & 0o777 == 0o640
    assert rig.device.mender_update("commit")[0] == 0
    assert leftovers(dest) == [] and rig.device.mender_update("show-artifact")[1] == "app-1\n"


def test_single_file_rollback_restores_the_previous_file(rig: Rig) -> None:
    dest = rig.tmp / "opt" / "app"
    rig.device.mender_update("install", str(single_file(rig, "app-1", b"v1", dest)))
    rig.device.mender_update("commit")
    rig.device.mender_update("install", str(single_file(rig, "app-2", b"v2" * 100_000, dest)))
    assert (dest / "app.conf").read_bytes() == b"v2" * 100_000
    assert rig.device.mender_update("rollback")[0] == 0
    assert (dest / "app.conf").read_bytes() == b"v1"
    assert leftovers(dest) == [] and rig.device.mender_update("show-artifact")[1] == "app-1\n"


def test_single_file_rollback_removes_a_file_that_was_not_there(rig: Rig) -> None:
    dest = rig.tmp / "opt" / "app"
    rig.device.mender_update("install", str(single_file(rig, "app-1", b"v1", dest)))
    assert rig.device.mender_update("rollback")[0] == 0
    assert not (dest / "app.conf").exists() and leftovers(dest) == []


def test_single_file_takes_its_payload_as_a_stream_straight_to_its_directory(rig: Rig) -> None:
    dest = rig.tmp / "opt" / "app"
    rig.device.mender_update("install", "--stop-before", "ArtifactInstall_Enter",
                             str(single_file(rig, "app-1", b"v1", dest)))
    assert (dest / ".app.conf.pymender-new").read_bytes() == b"v1"
    assert not (rig.tree / "files" / "app.conf").exists()
    assert rig.device.mender_update("rollback")[0] == 0  # Cleanup removes the streamed file
    assert leftovers(dest) == []


# --- directory -----------------------------------------------------------------------------------


def test_directory_replaces_the_directory_and_rolls_back(rig: Rig) -> None:
    dest = rig.tmp / "srv" / "www"
    rig.device.mender_update("install", str(directory(rig, "www-1", {"index.html": b"1", "a/b.txt": b"b"}, dest)))
    rig.device.mender_update("commit")
    rig.device.mender_update("install", str(directory(rig, "www-2", {"index.html": b"2", "new.txt": b"n"}, dest)))
    assert sorted(p.name for p in dest.iterdir()) == ["index.html", "new.txt"]
    assert rig.device.mender_update("rollback")[0] == 0
    assert (dest / "index.html").read_bytes() == b"1" and (dest / "a" / "b.txt").read_bytes() == b"b"
    assert not (dest / "new.txt").exists() and leftovers(dest) == []


def test_directory_refuses_a_tar_that_points_outside(rig: Rig, capfd: pytest.CaptureFixture[str]) -> None:
    dest = rig.tmp / "srv" / "www"
    dest.mkdir(parents=True)
    (dest / "keep").write_text("old")
    evil = rig.tmp / "evil"
    evil.mkdir()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("./ok", "../escaped"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    (evil / "update.tar").write_bytes(buffer.getvalue())
    (evil / "dest_dir").write_text(f"{dest}\n")
    from pymender.cli.artifact import main

    out = rig.tmp / "evil.mender"
    assert run_cli("pymender-artifact", main, ["write", "module-image", "-T", "directory", "-n", "evil", "-t",
                                               "qemux86-64", "-o", str(out), "-f", str(evil / "update.tar"),
                                               "-f", str(evil / "dest_dir")]) == 0
    code, _, err = rig.device.mender_update("install", str(out))
    assert code == 1 and "failed in ArtifactInstall" in err
    assert "update.tar holds '../escaped', which points outside the directory" in capfd.readouterr().err
    assert sorted(p.name for p in dest.iterdir()) == ["keep"] and not (rig.tmp / "srv" / "escaped").exists()
    assert rig.device.mender_update("show-artifact")[1] == "release-1\n"


def test_directory_generator_refuses_root(rig: Rig) -> None:
    tree = rig.tmp / "t"
    tree.mkdir()
    from pymender.cli.artifact import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = run_cli("pymender-artifact", main, ["directory-artifact-gen", "-n", "x", "-t", "d", "-d", "/",
                                                   str(tree)])
    assert code == 2 and "cannot be /" in err.getvalue()


# --- script and deb ------------------------------------------------------------------------------


def test_script_runs_every_script_in_order_and_commits_at_once(rig: Rig) -> None:
    trace = rig.tmp / "trace"
    scripts = []
    for name in ("10-first", "20-second"):
        script = rig.tmp / name
        script.write_text(f"#!/bin/sh\necho {name} >> {trace}\n")
        scripts += ["-f", str(script)]
    from pymender.cli.artifact import main

    out = rig.tmp / "script.mender"
    assert run_cli("pymender-artifact", main, ["write", "module-image", "-T", "script", "-n", "s-1", "-t",
                                               "qemux86-64", "-o", str(out), *scripts]) == 0
    code, stdout, _ = rig.device.mender_update("install", str(out))
    assert (code, stdout) == (0, "Installing artifact...\n" + AUTO_COMMIT + "Installed and committed.\n")
    assert trace.read_text() == "10-first\n20-second\n"


def test_a_failing_script_leaves_an_inconsistent_record(rig: Rig) -> None:
    script = rig.tmp / "fail"
    script.write_text("#!/bin/sh\nexit 3\n")
    from pymender.cli.artifact import main

    out = rig.tmp / "script.mender"
    run_cli("pymender-artifact", main, ["write", "module-image", "-T", "script", "-n", "s-1", "-t", "qemux86-64",
                                        "-o", str(out), "-f", str(script)])
    code, stdout, _ = rig.device.mender_update("install", str(out))
    assert code == 1 and "Update Module does not support rollback" in stdout
    assert rig.device.mender_update("show-artifact")[1] == "s-1_INCONSISTENT\n"


def test_deb_hands_every_package_to_one_dpkg_call(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = rig.tmp / "bin"
    bin_dir.mkdir()
    calls = rig.tmp / "dpkg-calls"
    (bin_dir / "dpkg").write_text(f"#!/bin/sh\nfor a in \"$@\"; do echo \"${{a##*/}}\"; done >> {calls}\n")
    (bin_dir / "dpkg").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    packages = []
    for name in ("hello_1.0_all.deb", "world_2.0_all.deb"):
        (rig.tmp / name).write_bytes(b"!<arch>\n")
        packages.append(str(rig.tmp / name))
    out = generate("deb-artifact-gen", "-n", "pkgs-1", "-t", "qemux86-64", "-o", str(rig.tmp / "d.mender"),
                   *packages)
    code, stdout, _ = rig.device.mender_update("install", str(out))
    assert (code, stdout) == (0, "Installing artifact...\n" + AUTO_COMMIT + "Installed and committed.\n")
    assert calls.read_text().split() == ["-i", "hello_1.0_all.deb", "world_2.0_all.deb"]
    assert rig.device.mender_update("show-provides")[1].splitlines() == [
        "artifact_name=pkgs-1", "rootfs-image.deb.version=pkgs-1"]


# --- the generators ------------------------------------------------------------------------------


def test_the_single_file_generator_writes_menders_payload(rig: Rig) -> None:
    from pymender.artifact.reader import ArtifactReader

    out = single_file(rig, "app-1", b"content", Path("/opt/app"), mode=0o755)
    with out.open("rb") as stream:
        reader = ArtifactReader(stream)
        header = reader.read_header()
        files = {f.name: f.read() for f in reader.payload_files()}
    assert header.payloads[0].type == "single-file"
    assert list(files) == ["dest_dir", "filename", "permissions", "app.conf"]
    assert files == {"dest_dir": b"/opt/app\n", "filename": b"app.conf\n", "permissions": b"755\n",
                     "app.conf": b"content"}
    assert header.payloads[0].provides == {"rootfs-image.single-file.version": "app-1"}
