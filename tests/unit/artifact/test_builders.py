"""The provides and clears_provides each kind of Artifact gets by default (upstream's table)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pymender.artifact.builders import (
    CommonOptions,
    SoftwareOptions,
    bootstrap_artifact,
    module_image,
    parse_key_value,
    rootfs_image,
)
from pymender.errors import UsageError

IMG = Path("rootfs.ext4")
DEFAULT_CLEARS = ["artifact_group", "rootfs_image_checksum", "rootfs-image.*"]


def _common(**kwargs: object) -> CommonOptions:
    return CommonOptions(name="r1", device_types=["dev"], **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "software, provides, clears",
    [
        (SoftwareOptions(), {"rootfs-image.version": "r1"}, DEFAULT_CLEARS),
        (SoftwareOptions(software_version="V"), {"rootfs-image.version": "V"}, DEFAULT_CLEARS),
        (SoftwareOptions(software_name="N"), {"rootfs-image.N.version": "r1"}, ["rootfs-image.N.*"]),
        (SoftwareOptions(software_filesystem="F"), {"F.version": "r1"}, ["F.*"]),
        (SoftwareOptions(software_filesystem="F", software_name="N", software_version="V"),
         {"F.N.version": "V"}, ["F.N.*"]),
        (SoftwareOptions(no_default_software_version=True), {}, None),
        (SoftwareOptions(no_default_clears_provides=True), {"rootfs-image.version": "r1"}, None),
    ],
)
def test_rootfs_defaults(software: SoftwareOptions, provides: dict[str, str], clears: list[str] | None) -> None:
    spec = rootfs_image(_common(), IMG, software)
    assert spec.payload.type_info.provides == provides
    assert spec.payload.type_info.clears_provides == clears
    assert spec.payload.checksum_provide == "rootfs-image.checksum"
    assert spec.payload.empty_meta_data


def test_rootfs_checksum_variants() -> None:
    assert rootfs_image(_common(), IMG, SoftwareOptions(legacy_checksum=True)).payload.checksum_provide == (
        "rootfs_image_checksum")
    assert rootfs_image(_common(), IMG, SoftwareOptions(no_checksum_provide=True)).payload.checksum_provide is None


def test_user_clears_come_first_without_duplicates() -> None:
    spec = rootfs_image(_common(clears_provides=["mine", "rootfs-image.*"]), IMG, SoftwareOptions())
    assert spec.payload.type_info.clears_provides == ["mine", "rootfs-image.*", "artifact_group",
                                                      "rootfs_image_checksum"]


def test_user_provides_and_depends() -> None:
    spec = rootfs_image(_common(provides=[("rootfs-image.version", "X"), ("k", "v")], depends=[("d", "1")]),
                        IMG, SoftwareOptions())
    assert spec.payload.type_info.provides == {"rootfs-image.version": "X", "k": "v"}
    assert spec.payload.type_info.depends == {"d": "1"}
    spec = rootfs_image(_common(provides=[("rootfs-image.version", "X")]), IMG,
                        SoftwareOptions(software_version="S"))
    assert spec.payload.type_info.provides == {"rootfs-image.version": "S"}


def test_module_defaults() -> None:
    spec = module_image(_common(), "single-file", [Path("a")], {"k": 1}, SoftwareOptions())
    assert spec.payload.type_info.provides == {"rootfs-image.single-file.version": "r1"}
    assert spec.payload.type_info.clears_provides == ["rootfs-image.single-file.*"]
    named = module_image(_common(), "single-file", [], None, SoftwareOptions(software_name="app"))
    assert named.payload.type_info.provides == {"rootfs-image.app.version": "r1"}
    assert named.info.payload_types == ["single-file"]


def test_bootstrap() -> None:
    spec = bootstrap_artifact(_common(provides=[("a", "b")], clears_provides=["x.*"]))
    assert spec.payload.type is None
    assert spec.payload.type_info.provides == {"a": "b"}
    assert spec.payload.type_info.clears_provides == ["x.*"]
    assert spec.info.payload_types == [None]


@pytest.mark.parametrize(
    "common",
    [
        CommonOptions(name="", device_types=["d"]),
        CommonOptions(name="has space", device_types=["d"]),
        CommonOptions(name="n" * 300, device_types=["d"]),
        CommonOptions(name="ok", device_types=[]),
        CommonOptions(name="ok", device_types=["d"], provides=[("artifact_name", "x")]),
    ],
)
def test_invalid_common(common: CommonOptions) -> None:
    with pytest.raises(UsageError):
        rootfs_image(common, IMG, SoftwareOptions())


def test_key_value() -> None:
    assert parse_key_value("a:b:c", "-p") == ("a", "b:c")
    with pytest.raises(UsageError):
        parse_key_value("novalue", "-p")
