"""Loading the device configuration and the device type."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from helpers import REPO
from pymender.device import config as config_module
from pymender.device.config import (
    CONFIG_KEYS,
    DeviceConfig,
    load_config,
    parse_config,
    read_device_type,
)
from pymender.errors import ConfigError

META_MENDER = REPO / "tests" / "fixtures" / "meta-mender"


def write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def mkdirs(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
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
        "HttpsClient": {"Certificate": "client.pem", "Key": "/etc/client.key", "SSLEngine": ""},
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
        https_client_certificate=scratch / "client.pem",
        https_client_key=Path("/etc/client.key"),
    )
    assert config.source == scratch / "pymender.conf"


def test_every_field_has_a_key() -> None:
    table = config_module._KEYS
    fields = {name for name, _, _ in table.values()} | set(config_module._HTTPS_CLIENT_KEYS.values())
    assert fields == {name for name in DeviceConfig._fields if name != "origin"}


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


def test_without_files_every_default_applies(no_host_configuration: Path) -> None:
    config = load_config()
    assert config == DeviceConfig(data_dir=no_host_configuration / "var-lib-pymender",
                                  device_type_file=no_host_configuration / "var-lib-pymender" / "device_type",
                                  scripts_dir=no_host_configuration / "etc-mender" / "scripts")
    assert config.source is None and config.origin.files == ()


def test_mender_s_two_files_as_meta_mender_writes_them_are_merged(no_host_configuration: Path) -> None:
    """RootfsPartA/B in the fallback file (/data/mender/mender.conf), the rest in
    /etc/mender/mender.conf: the device is configured as it is for Mender."""
    host = no_host_configuration
    for name, where in (("etc-mender-mender.conf", "etc-mender"), ("data-mender-mender.conf", "var-lib-mender")):
        (host / where).mkdir(exist_ok=True)
        (host / where / "mender.conf").write_bytes((META_MENDER / name).read_bytes())
    config = load_config()
    assert (config.rootfs_part_a, config.rootfs_part_b) == ("/dev/vda2", "/dev/vda3")
    assert config.artifact_verify_keys == (Path("/etc/mender/artifact-verify-key.pem"),)
    assert config.origin.files == (host / "var-lib-mender" / "mender.conf", host / "etc-mender" / "mender.conf")
    assert config.source == host / "etc-mender" / "mender.conf"


def test_each_file_overrides_the_ones_before(no_host_configuration: Path) -> None:
    host = no_host_configuration
    fallback = write(mkdirs(host / "var-lib-mender") / "mender.conf",
                     {"RootfsPartA": "/dev/f2", "RootfsPartB": "/dev/f3", "StateScriptTimeoutSeconds": 1})
    main = write(mkdirs(host / "etc-mender") / "mender.conf", {"RootfsPartB": "/dev/m3", "ModuleTimeoutSeconds": 2})
    own = write(mkdirs(host / "etc-pymender") / "pymender.conf", {"RootfsPartA": "/dev/p2", "ModuleTimeoutSeconds": 3})
    config = load_config()
    assert (config.rootfs_part_a, config.rootfs_part_b) == ("/dev/p2", "/dev/m3")
    assert (config.state_script_timeout_seconds, config.module_timeout_seconds) == (1, 3)
    assert config.origin.files == (fallback, main, own)
    # null in a later file leaves the earlier value (Mender applies only values it can read)
    write(own, {"RootfsPartB": None})
    assert load_config().rootfs_part_b == "/dev/m3"


def test_named_files_replace_the_defaults_and_must_exist(no_host_configuration: Path, scratch: Path) -> None:
    host = no_host_configuration
    write(mkdirs(host / "var-lib-mender") / "mender.conf", {"RootfsPartA": "/dev/default"})
    write(mkdirs(host / "etc-mender") / "mender.conf", {"RootfsPartB": "/dev/default"})
    fallback = write(scratch / "fallback.conf", {"RootfsPartA": "/dev/b-option"})
    main = write(scratch / "main.conf", {"RootfsPartB": "/dev/c-option"})
    config = load_config(main=main, fallback=fallback)
    assert (config.rootfs_part_a, config.rootfs_part_b) == ("/dev/b-option", "/dev/c-option")
    for options in ({"main": scratch / "no.conf"}, {"fallback": scratch / "no.conf"}, {"path": scratch / "no.conf"}):
        with pytest.raises(ConfigError, match="no.conf does not exist"):
            load_config(**options)  # type: ignore[arg-type]


def test_mender_s_directories_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, scratch: Path) -> None:
    conf, datastore = mkdirs(scratch / "conf"), mkdirs(scratch / "store")
    monkeypatch.setenv("MENDER_CONF_DIR", str(conf))
    monkeypatch.setenv("MENDER_DATASTORE_DIR", str(datastore))
    write(conf / "mender.conf", {"RootfsPartA": "/dev/x2"})
    write(datastore / "mender.conf", {"RootfsPartB": "/dev/x3"})
    (datastore / "device_type").write_text("device_type=board\n")
    config = load_config()
    assert (config.rootfs_part_a, config.rootfs_part_b) == ("/dev/x2", "/dev/x3")
    assert config.scripts_dir == conf / "scripts"
    assert config.data_dir == datastore and config.origin.layout == "mender"
    assert config.device_type_file == datastore / "device_type"


@pytest.mark.parametrize(("fallback_key", "main_key"), [("ArtifactVerifyKeys", "ArtifactVerifyKey"),
                                                        ("ArtifactVerifyKey", "ArtifactVerifyKeys")])
def test_both_verify_key_forms_across_mender_s_files_are_refused(
        no_host_configuration: Path, fallback_key: str, main_key: str) -> None:
    host = no_host_configuration
    value = {"ArtifactVerifyKey": "/k1.pem", "ArtifactVerifyKeys": ["/k2.pem"]}
    write(mkdirs(host / "var-lib-mender") / "mender.conf", {fallback_key: value[fallback_key]})
    write(mkdirs(host / "etc-mender") / "mender.conf", {main_key: value[main_key]})
    with pytest.raises(ConfigError, match=f'"{fallback_key}" is set in .*var-lib-mender/mender.conf and '
                                          f'"{main_key}" in .*etc-mender/mender.conf'):
        load_config()
    # pymender's own file may replace either form: it is read over both.
    write(host / "var-lib-mender" / "mender.conf", {})
    write(host / "etc-mender" / "mender.conf", {"ArtifactVerifyKey": "/k1.pem"})
    write(mkdirs(host / "etc-pymender") / "pymender.conf", {"ArtifactVerifyKeys": ["/k2.pem", "/k3.pem"]})
    assert load_config().artifact_verify_keys == (Path("/k2.pem"), Path("/k3.pem"))


def test_https_client_needs_certificate_and_key(scratch: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigError, match="HttpsClient needs both"):
        load_config(write(scratch / "c.conf", {"HttpsClient": {"Certificate": "/c.pem"}}))
    with pytest.raises(ConfigError, match='"HttpsClient" in .* must be an object'):
        load_config(write(scratch / "c.conf", {"HttpsClient": "/c.pem"}))
    config = load_config(write(scratch / "c.conf", {"HttpsClient": {"Certificate": "/c.pem", "Key": "/k.pem",
                                                                     "SSLEngine": "pkcs11"}}))
    assert (config.https_client_certificate, config.https_client_key) == (Path("/c.pem"), Path("/k.pem"))
    assert any("SSLEngine (pkcs11) is not supported" in r.getMessage() for r in caplog.records)


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
