"""The device configuration: a JSON file with Mender's key names plus pymender's own.

pymender reads ``/etc/pymender/pymender.conf``; when that file is absent it reads Mender's
``/etc/mender/mender.conf`` so it can take over a device already set up for Mender. Keys pymender
does not use are logged and ignored, so one file can serve both. A value of the wrong type is an
error naming the key: better to refuse than to update with a half-understood configuration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pymender.device.bootenv import KINDS as BOOTLOADERS
from pymender.device.log import get_logger
from pymender.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

log = get_logger(__name__)

DEFAULT_CONFIG_FILE = Path("/etc/pymender/pymender.conf")
MENDER_CONFIG_FILE = Path("/etc/mender/mender.conf")
#: Files tried, in order, when no configuration file is named.
CONFIG_SEARCH = (DEFAULT_CONFIG_FILE, MENDER_CONFIG_FILE)
DEFAULT_DATA_DIR = Path("/var/lib/pymender")
DEFAULT_SCRIPTS_DIR = Path("/etc/mender/scripts")
DEFAULT_UBOOT_ENV_CONFIG = Path("/etc/fw_env.config")
DEFAULT_ARTIFACT_INFO_FILE = Path("/etc/mender/artifact_info")

# Mender keys that matter only to Mender's daemon or server connection: ignored quietly.
_MENDER_ONLY_KEYS = frozenset(
    {
        "ServerURL", "Servers", "TenantToken", "ClientProtocol", "HttpsClient",
        "UpdatePollIntervalSeconds", "InventoryPollIntervalSeconds", "RetryPollIntervalSeconds",
        "RetryPollCount", "RetryDownloadCount", "UpdateLogPath", "DaemonLogLevel", "DBus",
        "Connectivity", "BootUtilitiesSetActivePart", "BootUtilitiesGetNextActivePart",
        "Security", "HttpProxy", "HttpsProxy", "NoProxy",
    }
)


class DeviceConfig(NamedTuple):
    """Every setting of the device side, with Mender's defaults where Mender has the key.

    Immutable; :meth:`_replace` makes a changed copy. Two configurations are equal when their
    settings are, wherever they came from (``source`` is not compared). A named tuple rather
    than a dataclass: importing :mod:`dataclasses` costs every ``pymender`` command start-up time.
    """

    #: ``RootfsPartA``/``RootfsPartB``: the two root filesystem partitions (or regular files).
    rootfs_part_a: str | None = None
    rootfs_part_b: str | None = None
    #: ``ArtifactVerifyKey``/``ArtifactVerifyKeys``: when set, unsigned Artifacts are refused.
    artifact_verify_keys: tuple[Path, ...] = ()
    #: ``DeviceTypeFile``: holds ``device_type=<name>``; default ``<DataDir>/device_type``.
    device_type_file: Path = DEFAULT_DATA_DIR / "device_type"
    state_script_timeout_seconds: int = 3600
    state_script_retry_timeout_seconds: int = 1800
    state_script_retry_interval_seconds: int = 60
    module_timeout_seconds: int = 14400
    #: ``Bootloader``: ``"grub"``, ``"uboot"``, or None to detect it.
    bootloader: str | None = None
    #: ``GrubEnvDir``: holds ``mender_grubenv1/`` and ``mender_grubenv2/``; None to search.
    grub_env_dir: Path | None = None
    #: ``UBootEnvConfig``: the ``fw_env.config`` naming where the U-Boot environment is.
    uboot_env_config: Path = DEFAULT_UBOOT_ENV_CONFIG
    #: ``RootDevice``: the running root device; None to discover it.
    root_device: str | None = None
    #: ``ServerCertificate``: extra CA file for ``https://`` sources.
    server_certificate: Path | None = None
    #: ``SkipVerify``: accept any TLS certificate (testing only).
    skip_verify: bool = False
    #: ``DataDir``: persistent state (store, Artifact scripts, device_type).
    data_dir: Path = DEFAULT_DATA_DIR
    #: ``ScriptsDir``: the rootfs state scripts (``Download_*``).
    scripts_dir: Path = DEFAULT_SCRIPTS_DIR
    #: ``ArtifactInfoFile``: ``artifact_name=`` file naming the factory image's Artifact.
    artifact_info_file: Path = DEFAULT_ARTIFACT_INFO_FILE
    #: ``SkipIdenticalBlocks``: read each block of the inactive partition first and write only
    #: the blocks that differ (less flash wear, one extra read per block).
    skip_identical_blocks: bool = False
    #: The file the settings came from (None: built-in defaults only). Must stay the last field.
    source: Path | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeviceConfig):
            return NotImplemented
        return self[:-1] == other[:-1]  # every field but source

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self[:-1])

    @property
    def artifact_scripts_dir(self) -> Path:
        """Where the scripts of the Artifact being installed are kept (``<DataDir>/scripts``)."""
        return self.data_dir / "scripts"


# --- value checkers ------------------------------------------------------------------------------


class _Bad(Exception):
    """A value does not have the expected type; carries what was expected."""


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad("a non-empty string")
    return value


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _Bad("a whole number greater than 0")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad("true or false")
    return value


def _bootloader(value: Any) -> str:
    if value not in BOOTLOADERS:
        raise _Bad(" or ".join(f'"{b}"' for b in BOOTLOADERS))
    return str(value)


def _path_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Bad("a list of file names")
    return list(value)


# JSON key -> (field, checker, is_path)
_KEYS: dict[str, tuple[str, Callable[[Any], Any], bool]] = {
    "RootfsPartA": ("rootfs_part_a", _string, False),
    "RootfsPartB": ("rootfs_part_b", _string, False),
    "ArtifactVerifyKey": ("artifact_verify_keys", _string, True),
    "ArtifactVerifyKeys": ("artifact_verify_keys", _path_list, True),
    "DeviceTypeFile": ("device_type_file", _string, True),
    "StateScriptTimeoutSeconds": ("state_script_timeout_seconds", _positive_int, False),
    "StateScriptRetryTimeoutSeconds": ("state_script_retry_timeout_seconds", _positive_int, False),
    "StateScriptRetryIntervalSeconds": (
        "state_script_retry_interval_seconds", _positive_int, False
    ),
    "ModuleTimeoutSeconds": ("module_timeout_seconds", _positive_int, False),
    "Bootloader": ("bootloader", _bootloader, False),
    "GrubEnvDir": ("grub_env_dir", _string, True),
    "UBootEnvConfig": ("uboot_env_config", _string, True),
    "RootDevice": ("root_device", _string, False),
    "ServerCertificate": ("server_certificate", _string, True),
    "SkipVerify": ("skip_verify", _boolean, False),
    "DataDir": ("data_dir", _string, True),
    "ScriptsDir": ("scripts_dir", _string, True),
    "ArtifactInfoFile": ("artifact_info_file", _string, True),
    "SkipIdenticalBlocks": ("skip_identical_blocks", _boolean, False),
}
#: Every key pymender reads, for documentation and tests.
CONFIG_KEYS = tuple(_KEYS)


def _find_config(candidates: Sequence[Path]) -> Path | None:
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def load_config(
    path: Path | None = None,
    *,
    data_dir: Path | None = None,
    search: Sequence[Path] = CONFIG_SEARCH,
) -> DeviceConfig:
    """The configuration from ``path``, or from the first file of ``search`` that exists.

    ``data_dir`` (the ``--data`` option) overrides ``DataDir``. Relative paths in the file are
    taken relative to the file's directory. With no file at all, every default applies.
    """
    if path is None:
        path = _find_config(search)
        if path is None:
            log.debug("no configuration file (%s); using defaults", ", ".join(map(str, search)))
            return _finish({}, None, data_dir)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"the configuration file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ConfigError(f"cannot read the configuration file {path}: {reason}") from None
    return parse_config(text, source=Path(path), data_dir=data_dir)


def parse_config(
    text: str, *, source: Path | None = None, data_dir: Path | None = None
) -> DeviceConfig:
    """The configuration from the JSON ``text`` (``source`` names it in messages)."""
    where = str(source) if source is not None else "the configuration"
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{where} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    if not isinstance(document, dict):
        raise ConfigError(f"{where} must hold a JSON object ({{...}})")
    base = source.parent if source is not None else None
    lower = {key.lower(): key for key in _KEYS}
    values: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for key, raw in document.items():
        known = key if key in _KEYS else lower.get(key.lower())
        if known is None:
            if key in _MENDER_ONLY_KEYS:
                log.debug("%s: ignoring %r (not used by pymender)", where, key)
            else:
                log.warning("%s: ignoring unknown key %r", where, key)
            continue
        if known != key:
            log.warning("%s: key %r read as %r; please spell it %r", where, key, known, known)
        name, check, is_path = _KEYS[known]
        if name in seen:
            raise ConfigError(
                f'{where}: both "{seen[name]}" and "{known}" are set',
                hint="set only one of them",
            )
        seen[name] = known
        if raw is None:
            continue
        try:
            value = check(raw)
        except _Bad as bad:
            raise ConfigError(
                f'"{known}" in {where} must be {bad}, not {json.dumps(raw)}'
            ) from None
        if is_path:
            value = (
                tuple(_resolve(v, base) for v in value)
                if isinstance(value, list)
                else _resolve(value, base)
            )
            if known == "ArtifactVerifyKey":
                value = (value,)
        values[name] = value
    return _finish(values, source, data_dir)


def _resolve(text: str, base: Path | None) -> Path:
    path = Path(text)
    return base / path if base is not None and not path.is_absolute() else path


def _finish(values: dict[str, Any], source: Path | None, data_dir: Path | None) -> DeviceConfig:
    if data_dir is not None:
        values["data_dir"] = Path(data_dir)
    if "device_type_file" not in values:
        values["device_type_file"] = values.get("data_dir", DEFAULT_DATA_DIR) / "device_type"
    config = DeviceConfig(**values, source=source)
    if config.rootfs_part_a is not None and config.rootfs_part_a == config.rootfs_part_b:
        raise ConfigError(
            f'"RootfsPartA" and "RootfsPartB" are the same ({config.rootfs_part_a})',
            hint="name two different partitions",
        )
    return config


def read_device_type(path: Path) -> str:
    """The device type from a ``device_type`` file (one line ``device_type=<name>``)."""
    hint = f"create {path} with one line: device_type=<your device type>"
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ConfigError(f"the device type file {path} does not exist", hint=hint) from None
    except OSError as err:
        raise ConfigError(f"cannot read the device type file {path}: {err.strerror}") from None
    found: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep or key.strip() != "device_type":
            continue
        if found is not None:
            raise ConfigError(f"{path} sets device_type more than once", hint=hint)
        found = value.strip()
    if not found:
        raise ConfigError(f"{path} does not set device_type", hint=hint)
    return found


__all__ = [
    "CONFIG_KEYS",
    "CONFIG_SEARCH",
    "DeviceConfig",
    "load_config",
    "parse_config",
    "read_device_type",
]
