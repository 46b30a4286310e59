from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from artifact_factory import make_image, make_keys
from pymender.cli.artifact import main
from pymender.cli.common import run_cli


def cli(*args: str) -> int:
    return run_cli("pymender-artifact", main, list(args))


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return make_image(tmp_path / "rootfs.ext4")


def test_write_read_validate_cat(tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.mender"
    assert cli("write", "rootfs-image", "-n", "release-1", "-t", "qemux86-64", "-t", "rpi4", "-f", str(image),
               "-o", str(out), "-p", "custom.key:value", "-N", "release-0", "-g", "grp",
               "--compression", "lzma", "--no-progress") == 0
    assert cli("read", str(out)) == 0
    text = capsys.readouterr().out
    assert "Name: release-1" in text and "custom.key: value" in text and "qemux86-64, rpi4" in text
    assert cli("read", "--json", str(out)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["payloads"][0]["files"][0]["name"] == "rootfs.ext4"
    assert summary["depends"]["artifact_name"] == ["release-0"] and summary["group"] == "grp"
    assert cli("validate", str(out)) == 0
    assert "is valid" in capsys.readouterr().out
    capsys.readouterr()


def test_cat_writes_payload(tmp_path: Path, image: Path) -> None:
    out = tmp_path / "r.mender"
    assert cli("write", "rootfs-image", "-n", "r", "-t", "d", "-f", str(image), "-o", str(out)) == 0
    result = subprocess.run([sys.executable, "-m", "pymender.cli.artifact", "cat", str(out)],
                            capture_output=True, check=True)
    assert result.stdout == image.read_bytes()


def test_global_compression_option(tmp_path: Path, image: Path) -> None:
    out = tmp_path / "r.mender"
    assert cli("--compression", "none", "write", "rootfs-image", "-n", "r", "-t", "d", "-f", str(image),
               "-o", str(out)) == 0
    import tarfile

    with tarfile.open(out) as tar:
        assert "header.tar" in tar.getnames()


def test_sign_then_validate_with_key(tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = make_keys(tmp_path / "keys")
    out = tmp_path / "r.mender"
    assert cli("write", "rootfs-image", "-n", "r", "-t", "d", "-f", str(image), "-o", str(out)) == 0
    assert cli("validate", "-k", str(keys["rsa-pkcs1"].public), str(out)) == 4  # unsigned
    assert cli("sign", "-k", str(keys["rsa-pkcs8"].private), str(out)) == 0
    assert cli("validate", "-k", str(keys["rsa-pkcs1"].public), str(out)) == 0
    assert cli("validate", "-k", str(keys["ec-sec1"].public), str(out)) == 4
    assert cli("sign", "-k", str(keys["ec-sec1"].private), str(out)) == 2  # already signed: needs --force
    assert cli("sign", "-f", "-k", str(keys["ec-sec1"].private), "-o", str(tmp_path / "s2.mender"), str(out)) == 0
    assert cli("validate", "-k", str(keys["ec-sec1"].public), str(tmp_path / "s2.mender")) == 0
    assert cli("read", "-k", str(keys["rsa-pkcs1"].public), str(tmp_path / "s2.mender")) == 0
    assert "verification using the given key failed" in capsys.readouterr().out


def test_module_and_bootstrap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    meta = tmp_path / "meta.json"
    meta.write_text('{"dest": "/opt"}')
    out = tmp_path / "m.mender"
    assert cli("write", "module-image", "-n", "m1", "-t", "d", "-T", "directory", "-f", str(tmp_path / "a.txt"),
               "-f", str(tmp_path / "b.txt"), "-m", str(meta), "-o", str(out)) == 0
    assert cli("cat", str(out)) == 2  # two files: must name one
    assert "name one" in capsys.readouterr().err
    boot = tmp_path / "b.mender"
    assert cli("write", "bootstrap-artifact", "-n", "b1", "-t", "d", "-p", "k:v", "-o", str(boot)) == 0
    assert cli("read", str(boot)) == 0
    assert "empty (bootstrap)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["write", "rootfs-image", "-n", "r", "-t", "d"], 2, "required"),
        (["write", "rootfs-image", "-n", "has space", "-t", "d", "-f", "x"], 2, "whitespace"),
        (["write", "rootfs-image", "-n", "r", "-t", "d", "-f", "/nonexistent.ext4"], 3, "cannot read"),
        (["write", "rootfs-image", "-n", "r", "-t", "d", "-f", "x", "--compression", "bz2"], 2, "unknown compression"),
        (["read", "/nonexistent.mender"], 3, "cannot open"),
        (["validate", "-k", "/nonexistent.pem", "x"], 3, "cannot read key"),
        (["frobnicate"], 2, "invalid choice"),
        (["write"], 2, "needs a kind"),
    ],
)
def test_errors_are_one_line_with_exit_codes(args: list[str], code: int, message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(*args) == code
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("pymender-artifact: error: ")


def test_invalid_artifact_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.mender"
    bad.write_bytes(b"not a tar" * 100)
    assert cli("validate", str(bad)) == 4
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["write"], ["write", "rootfs-image"], ["write", "module-image"],
                                     ["write", "bootstrap-artifact"], ["read"], ["validate"], ["sign"], ["cat"]])
def test_help_for_every_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(command + ["--help"])
    assert exit_info.value.code == 0
    assert "usage: pymender-artifact" in capsys.readouterr().out


def test_console_script_never_shows_traceback(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pymender.cli.artifact", "read", str(tmp_path / "none")],
                            capture_output=True, text=True)
    assert result.returncode == 3
    assert result.stderr.strip().startswith("pymender-artifact: error: cannot open")
    assert "Traceback" not in result.stderr


def test_validate_from_a_pipe(tmp_path: Path, image: Path) -> None:
    out = tmp_path / "r.mender"
    assert cli("write", "rootfs-image", "-n", "r", "-t", "d", "-f", str(image), "-o", str(out)) == 0
    with open(out, "rb") as artifact:
        cat = subprocess.Popen(["cat"], stdin=artifact, stdout=subprocess.PIPE)
        result = subprocess.run([sys.executable, "-m", "pymender.cli.artifact", "validate", "-"],
                                stdin=cat.stdout, capture_output=True, text=True)
        cat.wait()
    assert result.returncode == 0, result.stderr
