from __future__ import annotations

import pytest

from pymender.artifact.model import HeaderInfo, TypeInfo, check_script_name, go_json, parse_meta_data
from pymender.errors import ArtifactFormatError, UnsafeArtifactError


def test_go_json_escapes_like_go() -> None:
    assert go_json({"html": "<a&b>", "u": "é"}) == '{"html":"\\u003ca\\u0026b\\u003e","u":"é"}'.encode()


def test_header_info_bytes_match_upstream() -> None:
    info = HeaderInfo(artifact_name="release-1", device_types=["qemux86-64"])
    assert info.to_json() == (
        b'{"payloads":[{"type":"rootfs-image"}],"artifact_provides":{"artifact_name":"release-1"},'
        b'"artifact_depends":{"device_type":["qemux86-64"]}}')
    full = HeaderInfo(artifact_name="mod-1", device_types=["qemux86-64", "raspberrypi4"],
                      payload_types=["single-file"], artifact_group="groupA",
                      depends_artifact_names=["release-0"], depends_groups=["groupB"])
    assert full.to_json() == (
        b'{"payloads":[{"type":"single-file"}],"artifact_provides":{"artifact_name":"mod-1",'
        b'"artifact_group":"groupA"},"artifact_depends":{"artifact_name":["release-0"],'
        b'"device_type":["qemux86-64","raspberrypi4"],"artifact_group":["groupB"]}}')
    assert HeaderInfo.from_json(full.to_json(), 3) == full


def test_header_info_v2() -> None:
    raw = b'{"artifact_name":"release-v2","updates":[{"type":"rootfs-image"}],"device_types_compatible":["a","b"]}'
    info = HeaderInfo.from_json(raw, 2)
    assert (info.artifact_name, info.device_types, info.payload_types) == ("release-v2", ["a", "b"], ["rootfs-image"])
    assert info.to_json(2) == raw


@pytest.mark.parametrize(
    "raw",
    [
        b'{"payloads":[{"type":"x"}],"artifact_provides":{"artifact_name":"a"},"artifact_depends":{}}',
        b'{"payloads":[{"type":"x"}],"artifact_provides":{"artifact_name":""},"artifact_depends":{"device_type":["d"]}}',
        b'{"payloads":[{"type":"x"}],"artifact_provides":{"artifact_name":"a"},"artifact_depends":{"device_type":["d"]},"foo":1}',
        b'{"payloads":[{"type":1}],"artifact_provides":{"artifact_name":"a"},"artifact_depends":{"device_type":["d"]}}',
        b'{"payloads":"x","artifact_provides":{"artifact_name":"a"},"artifact_depends":{"device_type":["d"]}}',
        b'[1,2]',
        b'{not json',
    ],
)
def test_header_info_invalid(raw: bytes) -> None:
    with pytest.raises(ArtifactFormatError):
        HeaderInfo.from_json(raw, 3)


def test_type_info_bytes_and_empty_type() -> None:
    info = TypeInfo(type="rootfs-image", provides={"rootfs-image.version": "r1", "rootfs-image.checksum": "c"},
                    clears_provides=["artifact_group", "rootfs_image_checksum", "rootfs-image.*"])
    assert info.to_json() == (
        b'{"type":"rootfs-image","artifact_provides":{"rootfs-image.checksum":"c","rootfs-image.version":"r1"},'
        b'"clears_artifact_provides":["artifact_group","rootfs_image_checksum","rootfs-image.*"]}')
    upstream_39 = TypeInfo.from_json(b'{"type":"","artifact_provides":{"a":"b"},"unknown":1}')
    assert upstream_39.type == "" and upstream_39.provides == {"a": "b"}
    assert TypeInfo.from_json(b'{"type":null}').type is None
    assert TypeInfo.from_json(b'{"artifact_depends":{"k":["a","b"]}}').depends == {"k": ["a", "b"]}
    with pytest.raises(ArtifactFormatError):
        TypeInfo.from_json(b'{"artifact_provides":{"k":["list"]}}')


def test_type_info_merge() -> None:
    base = TypeInfo(type="m", provides={"a": "1", "b": "2"})
    merged = base.merged_with(TypeInfo(type="", provides={"b": "3"}, depends={"d": "x"}))
    assert merged.provides == {"a": "1", "b": "3"} and merged.depends == {"d": "x"} and merged.type == "m"
    assert base.merged_with(TypeInfo(type="other")).type == "other"


def test_meta_data() -> None:
    assert parse_meta_data(b"", "m") is None
    assert parse_meta_data(b'{"a":1}', "m") == {"a": 1}
    with pytest.raises(ArtifactFormatError, match="JSON object"):
        parse_meta_data(b"[1]", "m")
    with pytest.raises(UnsafeArtifactError):
        parse_meta_data(b'{"a":"' + b"x" * (2 * 1024 * 1024) + b'"}', "m")


@pytest.mark.parametrize("name", ["ArtifactInstall_Enter_10", "ArtifactCommit_Leave_99_notify.sh",
                                  "ArtifactRollbackReboot_Error_00"])
def test_script_names_ok(name: str) -> None:
    check_script_name(name)


@pytest.mark.parametrize("name", ["badname.sh", "Download_Enter_10", "ArtifactInstall_Begin_10"])
def test_script_names_refused(name: str) -> None:
    with pytest.raises(ArtifactFormatError):
        check_script_name(name)
