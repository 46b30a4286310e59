"""Byte compatibility with upstream: Debian's mender-artifact reads what pymender writes, and
pymender reads what mender-artifact writes, for every compression both support, signed and not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from artifact_factory import KeyPair, make_image, make_keys, read_all
from helpers import require_tool

pytestmark = pytest.mark.interop

UPSTREAM_COMPRESSIONS = ["none", "gzip", "lzma"]


@pytest.fixture(scope="module")
def upstream() -> str:
    return require_tool("mender-artifact")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyPair]:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("inputs")
    script = tmp / "ArtifactInstall_Enter_10_check"
    script.write_text("#!/bin/sh\necho checking\n")
    script.chmod(0o755)
    commit = tmp / "ArtifactCommit_Leave_50"
    commit.write_text("#!/bin/sh\nexit 0\n")
    commit.chmod(0o755)
    (tmp / "file1.txt").write_text("file one\n")
    (tmp / "file2.bin").write_bytes(bytes(range(256)) * 40)
    (tmp / "meta.json").write_text(json.dumps({"dest_dir": "/opt/app", "count": 2, "list": ["a", "b"]}))
    return {
        "image": make_image(tmp / "rootfs.ext4", size=600_000),
        "script": script,
        "commit": commit,
        "file1": tmp / "file1.txt",
        "file2": tmp / "file2.bin",
        "meta": tmp / "meta.json",
    }


def ours(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pymender.cli.artifact", *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": "src"})


def theirs(upstream: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([upstream, *map(str, args)], capture_output=True, text=True)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# --- upstream reads what pymender writes ---------------------------------------------------------


@pytest.mark.parametrize("compression", UPSTREAM_COMPRESSIONS)
def test_upstream_reads_our_rootfs_image(upstream: str, files: dict[str, Path], tmp_path: Path,
                                         compression: str) -> None:
    out = tmp_path / "ours.mender"
    ok(ours("write", "rootfs-image", "-n", "release-1", "-t", "qemux86-64", "-t", "raspberrypi4",
            "-f", files["image"], "-o", out, "--compression", compression,
            "-s", files["script"], "-s", files["commit"],
            "-p", "custom.key:value", "-d", "custom.dep:dep1", "-N", "release-0", "-g", "groupA",
            "-G", "groupB", "--clears-provides", "custom.*"))
    ok(theirs(upstream, "validate", out))
    text = ok(theirs(upstream, "read", "--no-progress", out))
    for expected in ["Name: release-1", "qemux86-64 raspberrypi4", "Provides group: groupA",
                     "[release-0]", "[groupB]", "Type:   rootfs-image", "custom.key: value",
                     "custom.dep: dep1", "rootfs-image.version: release-1",
                     "ArtifactInstall_Enter_10_check", "ArtifactCommit_Leave_50", "name:     rootfs.ext4",
                     '"custom.*", "artifact_group", "rootfs_image_checksum", "rootfs-image.*"']:
        assert expected in text, expected


@pytest.mark.parametrize("label", ["rsa-pkcs1", "rsa-pkcs8", "ec-sec1", "ec-pkcs8"])
def test_upstream_verifies_our_signatures(upstream: str, files: dict[str, Path], keys: dict[str, KeyPair],
                                          tmp_path: Path, label: str) -> None:
    out = tmp_path / "signed.mender"
    ok(ours("write", "rootfs-image", "-n", "signed-1", "-t", "d", "-f", files["image"], "-o", out,
            "-k", keys[label].private))
    ok(theirs(upstream, "validate", "-k", keys[label].public, out))
    other = "ec-other" if label.startswith("rsa") else "rsa-pkcs1"
    assert theirs(upstream, "validate", "-k", keys[other].public, out).returncode == 4
    assert "signed and verified correctly" in ok(theirs(upstream, "read", "-k", keys[label].public, out))


def test_upstream_reads_our_module_image(upstream: str, files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "module.mender"
    ok(ours("write", "module-image", "-n", "mod-1", "-t", "d", "-T", "single-file", "-f", files["file1"],
            "-f", files["file2"], "-m", files["meta"], "-o", out, "-s", files["script"]))
    ok(theirs(upstream, "validate", out))
    text = ok(theirs(upstream, "read", out))
    assert "Type:   single-file" in text and "rootfs-image.single-file.version: mod-1" in text
    assert "name:     file1.txt" in text and "name:     file2.bin" in text
    assert '"dest_dir": "/opt/app"' in text


def test_upstream_reads_our_bootstrap_and_v2(upstream: str, files: dict[str, Path], tmp_path: Path) -> None:
    boot = tmp_path / "boot.mender"
    ok(ours("write", "bootstrap-artifact", "-n", "boot-1", "-t", "d", "-p", "k:v", "-o", boot))
    ok(theirs(upstream, "validate", boot))
    assert "Empty type" in ok(theirs(upstream, "read", boot))
    v2 = tmp_path / "v2.mender"
    ok(ours("write", "rootfs-image", "-v", "2", "-n", "old-1", "-t", "d", "-f", files["image"], "-o", v2))
    ok(theirs(upstream, "validate", v2))
    assert "Version: 2" in ok(theirs(upstream, "read", v2))


def test_upstream_signs_ours_and_we_sign_theirs(upstream: str, files: dict[str, Path],
                                                keys: dict[str, KeyPair], tmp_path: Path) -> None:
    mine = tmp_path / "mine.mender"
    ok(ours("write", "rootfs-image", "-n", "a", "-t", "d", "-f", files["image"], "-o", mine))
    ok(theirs(upstream, "sign", "-k", keys["ec-sec1"].private, "-o", tmp_path / "mine-signed.mender", mine))
    ok(ours("validate", "-k", keys["ec-sec1"].public, tmp_path / "mine-signed.mender"))
    upstream_made = tmp_path / "theirs.mender"
    ok(theirs(upstream, "write", "rootfs-image", "-n", "b", "-t", "d", "-f", files["image"], "-o", upstream_made))
    ok(ours("sign", "-k", keys["rsa-pkcs1"].private, "-o", tmp_path / "theirs-signed.mender", upstream_made))
    ok(theirs(upstream, "validate", "-k", keys["rsa-pkcs1"].public, tmp_path / "theirs-signed.mender"))


# --- pymender reads what upstream writes ---------------------------------------------------------


@pytest.mark.parametrize("compression", UPSTREAM_COMPRESSIONS)
def test_we_read_upstream_rootfs_image(upstream: str, files: dict[str, Path], tmp_path: Path,
                                       compression: str) -> None:
    out = tmp_path / "theirs.mender"
    ok(theirs(upstream, "write", "rootfs-image", "-n", "release-2", "-t", "qemux86-64", "-f", files["image"],
              "-o", out, "--compression", compression, "-s", files["script"], "-p", "custom.key:value",
              "-d", "custom.dep:dep1", "-N", "release-1", "-g", "gA", "-G", "gB", "--no-progress"))
    header, payload = read_all(out)
    assert payload == {"rootfs.ext4": files["image"].read_bytes()}
    summary = header.to_dict()  # type: ignore[attr-defined]
    assert summary["name"] == "release-2" and summary["group"] == "gA"
    assert summary["depends"] == {"artifact_name": ["release-1"], "artifact_group": ["gB"]}
    assert summary["scripts"] == ["ArtifactInstall_Enter_10_check"]
    payload_info = summary["payloads"][0]
    assert payload_info["type"] == "rootfs-image"  # upstream 3.9 writes "" in type-info
    assert payload_info["provides"]["custom.key"] == "value"
    assert payload_info["provides"]["rootfs-image.version"] == "release-2"
    assert payload_info["depends"] == {"custom.dep": "dep1"}
    ok(ours("validate", out))


@pytest.mark.parametrize("label", ["rsa-pkcs1", "ec-sec1"])
def test_we_verify_upstream_signatures(upstream: str, files: dict[str, Path], keys: dict[str, KeyPair],
                                       tmp_path: Path, label: str) -> None:
    out = tmp_path / "theirs-signed.mender"
    ok(theirs(upstream, "write", "rootfs-image", "-n", "s", "-t", "d", "-f", files["image"], "-o", out,
              "-k", keys[label].private))
    header, _ = read_all(out, [keys[label].public])
    assert header.signature_verified  # type: ignore[attr-defined]
    wrong_key = keys["ec-other" if label.startswith("ec") else "ec-sec1"].public
    wrong = ours("validate", "-k", wrong_key, out)
    assert wrong.returncode == 4 and "signature" in wrong.stderr


def test_we_read_upstream_module_augmented_bootstrap_v2(upstream: str, files: dict[str, Path],
                                                        tmp_path: Path) -> None:
    module = tmp_path / "module.mender"
    ok(theirs(upstream, "write", "module-image", "-n", "mod-1", "-t", "d", "-T", "single-file",
              "-f", files["file1"], "-f", files["file2"], "-m", files["meta"], "-o", module))
    header, payload = read_all(module)
    assert header.payloads[0].meta_data == {"count": 2, "dest_dir": "/opt/app", "list": ["a", "b"]}  # type: ignore[attr-defined]
    assert set(payload) == {"file1.txt", "file2.bin"}

    augmented = tmp_path / "augmented.mender"
    ok(theirs(upstream, "write", "module-image", "-n", "mod-2", "-t", "d", "-T", "single-file",
              "-f", files["file1"], "--augment-type", "aug-type", "--augment-file", files["file2"],
              "--augment-provides", "aug.key:aug1", "--augment-depends", "aug.dep:d1", "-o", augmented))
    header, payload = read_all(augmented)
    assert header.augmented and set(payload) == {"file1.txt", "file2.bin"}  # type: ignore[attr-defined]
    merged = header.payloads[0]  # type: ignore[attr-defined]
    assert merged.type == "aug-type" and merged.provides["aug.key"] == "aug1" and merged.depends == {"aug.dep": "d1"}

    boot = tmp_path / "boot.mender"
    ok(theirs(upstream, "write", "bootstrap-artifact", "-n", "boot-1", "-t", "d", "-p", "k:v", "-o", boot))
    header, payload = read_all(boot)
    assert header.payloads[0].type is None and payload == {}  # type: ignore[attr-defined]

    v2 = tmp_path / "v2.mender"
    ok(theirs(upstream, "write", "rootfs-image", "-v", "2", "-n", "old-1", "-t", "d", "-f", files["image"],
              "-o", v2))
    header, payload = read_all(v2)
    assert header.format_version == 2 and payload == {"rootfs.ext4": files["image"].read_bytes()}  # type: ignore[attr-defined]


def test_upstream_refuses_what_we_refuse(upstream: str, files: dict[str, Path], tmp_path: Path) -> None:
    """A corrupted payload is refused by both tools (same Artifact, same verdict)."""
    out = tmp_path / "ours.mender"
    ok(ours("write", "rootfs-image", "-n", "c", "-t", "d", "-f", files["image"], "-o", out, "--compression", "none"))
    raw = bytearray(out.read_bytes())
    position = raw.find(files["image"].read_bytes()[300_000:300_040])
    raw[position] ^= 0x01
    out.write_bytes(bytes(raw))
    assert theirs(upstream, "validate", out).returncode != 0
    assert ours("validate", out).returncode == 4
