from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from artifact_factory import make_image, read_all, split_members, write_rootfs
from pymender.artifact import builders
from pymender.artifact.writer import write_artifact
from pymender.errors import ArtifactFormatError, InputError, UnsafeArtifactError, UsageError


def _names(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


@pytest.mark.parametrize("compression, suffix", [("none", ""), ("gzip", ".gz"), ("lzma", ".xz"), ("zstd", ".zst")])
def test_member_order(workdir: Path, keys: dict, compression: str, suffix: str) -> None:
    plain = write_rootfs(workdir, compression=compression)
    assert _names(plain) == ["version", "manifest", f"header.tar{suffix}", f"data/0000.tar{suffix}"]
    signed = write_rootfs(workdir, compression=compression, key=keys["ec-sec1"].private, out="s.mender")
    assert _names(signed) == ["version", "manifest", "manifest.sig", f"header.tar{suffix}",
                              f"data/0000.tar{suffix}"]


def test_manifest_and_provides(workdir: Path) -> None:
    image = make_image(workdir / "rootfs.ext4")
    artifact = write_rootfs(workdir, image=image)
    members = {m.name: m.data for m in split_members(artifact.read_bytes())}
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert members["manifest"].decode().splitlines() == [
        f"{digest}  data/0000/rootfs.ext4",
        f"{hashlib.sha256(members['header.tar.gz']).hexdigest()}  header.tar.gz",
        "96bcd965947569404798bcbdb614f103db5a004eb6e364cfc162c146890ea35b  version",
    ]
    header, files = read_all(artifact)
    assert header.payloads[0].provides["rootfs-image.checksum"] == digest  # type: ignore[attr-defined]
    assert files == {"rootfs.ext4": image.read_bytes()}


def test_reproducible_with_source_date_epoch(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = make_image(workdir / "rootfs.ext4", size=3_000_000)
    def spec() -> builders.ArtifactSpec:  # type: ignore[name-defined]
        return builders.rootfs_image(builders.CommonOptions(name="r", device_types=["d"]), image,
                                     builders.SoftwareOptions())
    for compression in ("gzip", "lzma", "zstd", "none"):
        write_artifact(spec(), workdir / "a.mender", compression_name=compression, threads=1)
        write_artifact(spec(), workdir / "b.mender", compression_name=compression, threads=2)
        assert (workdir / "a.mender").read_bytes() == (workdir / "b.mender").read_bytes(), compression
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1800000000")
    write_artifact(spec(), workdir / "c.mender", threads=2)
    assert (workdir / "c.mender").read_bytes() != (workdir / "a.mender").read_bytes()


def test_bad_source_date_epoch(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH"):
        write_rootfs(workdir)


def test_missing_input_leaves_nothing(workdir: Path) -> None:
    with pytest.raises(InputError):
        write_rootfs(workdir, image=workdir / "absent.ext4", out="x.mender")
    assert list(workdir.glob("x.mender*")) == []


def test_module_image_files_meta_data_scripts(workdir: Path) -> None:
    (workdir / "file1.txt").write_text("hello")
    (workdir / "file2.bin").write_bytes(bytes(range(256)) * 10)
    script = workdir / "ArtifactInstall_Enter_10_check"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    spec = builders.module_image(
        builders.CommonOptions(name="mod-1", device_types=["a", "b"], scripts=[script],
                               depends=[("custom.dep", "dep1")]),
        "single-file", [workdir / "file1.txt", workdir / "file2.bin"],
        {"dest_dir": "/opt/app", "html": "<a&b>", "count": 2}, builders.SoftwareOptions())
    write_artifact(spec, workdir / "m.mender")
    header, files = read_all(workdir / "m.mender")
    payload = header.payloads[0]  # type: ignore[attr-defined]
    assert payload.type == "single-file"
    assert payload.files == ["file1.txt", "file2.bin"]
    assert payload.meta_data == {"dest_dir": "/opt/app", "html": "<a&b>", "count": 2}
    assert payload.depends == {"custom.dep": "dep1"}
    assert files["file1.txt"] == b"hello"
    assert [(s.name, s.mode) for s in header.scripts] == [("ArtifactInstall_Enter_10_check", 0o755)]  # type: ignore[attr-defined]
    members = {m.name: m.data for m in split_members((workdir / "m.mender").read_bytes())}
    with tarfile.open(fileobj=io.BytesIO(members["header.tar.gz"])) as tar:
        meta = tar.extractfile("headers/0000/meta-data").read()  # type: ignore[union-attr]
    assert meta == b'{"count":2,"dest_dir":"/opt/app","html":"\\u003ca\\u0026b\\u003e"}'


def test_bootstrap(workdir: Path) -> None:
    spec = builders.bootstrap_artifact(builders.CommonOptions(name="boot", device_types=["d"],
                                                              provides=[("k", "v")]))
    write_artifact(spec, workdir / "b.mender")
    members = {m.name: m.data for m in split_members((workdir / "b.mender").read_bytes())}
    assert len(members["manifest"].decode().splitlines()) == 2
    header, files = read_all(workdir / "b.mender")
    assert header.payloads[0].type is None and files == {}  # type: ignore[attr-defined]
    assert header.payloads[0].provides == {"k": "v"}  # type: ignore[attr-defined]


def test_version_2(workdir: Path) -> None:
    image = make_image(workdir / "rootfs.ext4")
    spec = builders.rootfs_image(builders.CommonOptions(name="v2", device_types=["d"], format_version=2),
                                 image, builders.SoftwareOptions())
    write_artifact(spec, workdir / "v2.mender")
    members = {m.name: m.data for m in split_members((workdir / "v2.mender").read_bytes())}
    assert json.loads(members["version"]) == {"format": "mender", "version": 2}
    header, files = read_all(workdir / "v2.mender")
    assert header.format_version == 2 and files["rootfs.ext4"] == image.read_bytes()  # type: ignore[attr-defined]


def test_refuses_bad_payload_names_and_scripts(workdir: Path) -> None:
    bad = workdir / "bad name.ext4"
    bad.write_bytes(b"x")
    with pytest.raises(UnsafeArtifactError, match="forbidden"):
        write_rootfs(workdir, image=bad)
    script = workdir / "Download_Enter_10"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(ArtifactFormatError, match="unsupported script state 'Download'"):
        write_rootfs(workdir, scripts=[script])


def test_progress_reaches_total(workdir: Path) -> None:
    image = make_image(workdir / "rootfs.ext4", size=5_000_000)
    seen: list[tuple[int, int]] = []
    spec = builders.rootfs_image(builders.CommonOptions(name="r", device_types=["d"]), image,
                                 builders.SoftwareOptions())
    write_artifact(spec, workdir / "p.mender", progress=lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1] == 5_000_000  # one pass: the image is read once


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
@pytest.mark.parametrize("misjudged_by", [-512, 512, 1024])
def test_data_moves_when_the_header_outgrows_its_room(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, keys: dict, compression: str, misjudged_by: int) -> None:
    from pymender.artifact import hashing
    from pymender.artifact.writer import ArtifactWriter

    monkeypatch.setattr(hashing, "cores", lambda: 2)  # hash on the worker thread
    monkeypatch.setattr(hashing, "BUFFER_SIZE", 64 * 1024)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    image = make_image(workdir / "rootfs.ext4", size=5_000_000)
    expected = write_rootfs(workdir, image=image, compression=compression, key=keys["rsa-pkcs1"].private,
                            out="expected.mender").read_bytes()
    # the room left for the leading members was misjudged: the data member has to move
    monkeypatch.setattr(ArtifactWriter, "_reserve", lambda self, estimate: estimate + misjudged_by)
    moved = write_rootfs(workdir, image=image, compression=compression, key=keys["rsa-pkcs1"].private,
                         out="moved.mender")
    assert moved.read_bytes() == expected
    assert read_all(moved)[1] == {"rootfs.ext4": image.read_bytes()}

