"""Loading the device configuration and the device type."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pymender.device import config as config_module
from pymender.device.config import (
    CONFIG_KEYS,
    DeviceConfig,
    load_config,
    parse_config,
    read_device_type,
)
from pymender.errors import ConfigError


def write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_defaults_match_mender_and_the_design() -> None:
    config = DeviceConfig()
    assert config.state_script_timeout_seconds == 3600
    assert config.state_script_retry_timeout_seconds == 1800
    assert config.state_script_retry_interval_seconds == 60
    assert config.module_timeout_seconds == 14400
    assert config.data_dir == Path("/var/lib/pymender")
    assert config.device_type_file == Path("/var/lib/pymender/device_type")
    assert config.uboot_env_config == Path("/etc/fw_env.config")
    assert config.scripts_dir == Path("/etc/mender/scripts")
    assert config.artifact_scripts_dir == Path("/var/lib/pymender/scripts")
    assert config.bootloader is None and config.artifact_verify_keys == ()


def test_every_key_is_read(scratch: Path) -> None:
    document = {
        "RootfsPartA": "/dev/mmcblk0p2",
        "RootfsPartB": "/dev/mmcblk0p3",
        "ArtifactVerifyKeys": ["/etc/k1.pem", "k2.pem"],
        "DeviceTypeFile": "/etc/device_type",
        "StateScriptTimeoutSeconds": 10,
        "StateScriptRetryTimeoutSeconds": 20,
        "StateScriptRetryIntervalSeconds": 2,
        "ModuleTimeoutSeconds": 30,
        "Bootloader": "uboot",
        "GrubEnvDir": "grubenv",
        "UBootEnvConfig": "/data/fw_env.config",
        "RootDevice": "/dev/mmcblk0p2",
        "ServerCertificate": "/etc/ca.pem",
        "SkipVerify": True,
        "DataDir": "/data/pymender",
        "ScriptsDir": "/etc/pymender/scripts",
        "ArtifactInfoFile": "/etc/artifact_info",
        "SkipIdenticalBlocks": True,
    }
    assert set(document) | {"ArtifactVerifyKey"} == set(CONFIG_KEYS)
    config = load_config(write(scratch / "pymender.conf", document))
    assert config == DeviceConfig(
        rootfs_part_a="/dev/mmcblk0p2",
        rootfs_part_b="/dev/mmcblk0p3",
        artifact_verify_keys=(Path("/etc/k1.pem"), scratch / "k2.pem"),
        device_type_file=Path("/etc/device_type"),
        state_script_timeout_seconds=10,
        state_script_retry_timeout_seconds=20,
        state_script_retry_interval_seconds=2,
        module_timeout_seconds=30,
        bootloader="uboot",
        grub_env_dir=scratch / "grubenv",
        uboot_env_config=Path("/data/fw_env.config"),
        root_device="/dev/mmcblk0p2",
        server_certificate=Path("/etc/ca.pem"),
        skip_verify=True,
        data_dir=Path("/data/pymender"),
        scripts_dir=Path("/etc/pymender/scripts"),
        artifact_info_file=Path("/etc/artifact_info"),
        skip_identical_blocks=True,
    )
    assert config.source == scratch / "pymender.conf"


def test_every_field_has_a_key() -> None:
    table = config_module._KEYS
    assert {name for name, _, _ in table.values()} == {
        name for name in DeviceConfig._fields if name != "source"
    }


def test_single_verify_key_becomes_a_one_element_tuple(scratch: Path) -> None:
    config = load_config(write(scratch / "c.conf", {"ArtifactVerifyKey": "/k.pem"}))
    assert config.artifact_verify_keys == (Path("/k.pem"),)


def test_both_verify_key_forms_are_refused(scratch: Path) -> None:
    path = write(scratch / "c.conf", {"ArtifactVerifyKey": "/a", "ArtifactVerifyKeys": ["/b"]})
    with pytest.raises(ConfigError, match='both "ArtifactVerifyKey" and "ArtifactVerifyKeys"'):
        load_config(path)


def test_device_type_file_follows_the_data_dir(scratch: Path) -> None:
    config = load_config(write(scratch / "c.conf", {"DataDir": "/data/x"}))
    assert config.device_type_file == Path("/data/x/device_type")
    overridden = load_config(scratch / "c.conf", data_dir=Path("/cli/dir"))
    assert overridden.data_dir == Path("/cli/dir")
    assert overridden.device_type_file == Path("/cli/dir/device_type")
    pinned = load_config(
        write(scratch / "d.conf", {"DeviceTypeFile": "/dt"}), data_dir=Path("/cli/dir")
    )
    assert pinned.device_type_file == Path("/dt")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("StateScriptTimeoutSeconds", "60", "a whole number greater than 0"),
        ("StateScriptTimeoutSeconds", 0, "a whole number greater than 0"),
        ("ModuleTimeoutSeconds", True, "a whole number greater than 0"),
        ("ModuleTimeoutSeconds", 1.5, "a whole number greater than 0"),
        ("RootfsPartA", 2, "a non-empty string"),
        ("RootfsPartB", "", "a non-empty string"),
        ("ArtifactVerifyKeys", "/k.pem", "a list of file names"),
        ("SkipVerify", "yes", "true or false"),
        ("Bootloader", "lilo", '"grub" or "uboot"'),
    ],
)
def test_wrong_types_name_the_key(scratch: Path, key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError, match=f'"{key}" in .* must be {expected}'):
        load_config(write(scratch / "c.conf", {key: value}))


def test_unknown_keys_warn_and_mender_only_keys_stay_quiet(
    scratch: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pymender.device.config")
    path = write(scratch / "c.conf", {"ServerURL": "https://x", "Frobnicate": 1})
    load_config(path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'Frobnicate'" in warnings[0]


def test_keys_in_other_case_are_read_with_a_warning(
    scratch: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(write(scratch / "c.conf", {"rootfsparta": "/dev/sda2"}))
    assert config.rootfs_part_a == "/dev/sda2"
    assert any("please spell it 'RootfsPartA'" in r.getMessage() for r in caplog.records)


def test_same_partition_twice_is_refused(scratch: Path) -> None:
    path = write(scratch / "c.conf", {"RootfsPartA": "/dev/a", "RootfsPartB": "/dev/a"})
    with pytest.raises(ConfigError, match="the same"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [("{", "not valid JSON.*line 1"), ("[1]", "JSON object"), ("", "not valid JSON")],
)
def test_unparsable_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text, source=Path("/etc/x.conf"))


def test_search_order_prefers_pymender_then_mender(scratch: Path) -> None:
    own, mender = scratch / "pymender.conf", scratch / "mender.conf"
    search = (own, mender)
    assert load_config(search=search) == DeviceConfig()
    assert load_config(search=search).source is None
    write(mender, {"RootfsPartA": "/dev/m2", "ServerURL": "https://hosted"})
    assert load_config(search=search).rootfs_part_a == "/dev/m2"
    write(own, {"RootfsPartA": "/dev/p2"})
    assert load_config(search=search).rootfs_part_a == "/dev/p2"
    assert load_config(search=search).source == own


def test_named_file_must_exist(scratch: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(scratch / "missing.conf")


def test_null_values_keep_the_default(scratch: Path) -> None:
    config = load_config(write(scratch / "c.conf", {"StateScriptTimeoutSeconds": None}))
    assert config.state_script_timeout_seconds == 3600


# --- device_type ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["device_type=beaglebone\n", "device_type=beaglebone", "# c\n\n device_type = beaglebone \n",
     "other=1\ndevice_type=beaglebone\n"],
)
def test_device_type_is_read(scratch: Path, text: str) -> None:
    (scratch / "device_type").write_text(text)
    assert read_device_type(scratch / "device_type") == "beaglebone"


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "does not set"), ("device_type=\n", "does not set"), ("name=x\n", "does not set"),
     ("device_type=a\ndevice_type=b\n", "more than once")],
)
def test_bad_device_type_files(scratch: Path, text: str, message: str) -> None:
    (scratch / "device_type").write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_device_type(scratch / "device_type")


def test_missing_device_type_file_says_how_to_create_it(scratch: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as info:
        read_device_type(scratch / "device_type")
    assert info.value.hint and "device_type=<your device type>" in info.value.hint
