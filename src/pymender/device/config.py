"""The device configuration: JSON files with Mender's key names plus pymender's own.

pymender reads up to three files and merges them, each one's keys replacing those of the ones
before (a file that does not exist is skipped, unless it was named on the command line):

1. Mender's fallback configuration, ``/var/lib/mender/mender.conf`` (``$MENDER_DATASTORE_DIR``;
   ``-b`` names another), where meta-mender puts ``RootfsPartA``/``RootfsPartB``;
2. Mender's configuration, ``/etc/mender/mender.conf`` (``$MENDER_CONF_DIR``; ``-c`` of
   ``mender-update`` names another);
3. pymender's own, ``/etc/pymender/pymender.conf`` (``-c`` of ``pymender`` names another).

The first two are merged as Mender's client merges them, so a device set up for Mender needs
nothing more; the third holds pymender's own keys and overrides. Keys pymender does not use are
logged and ignored, so one file can serve both. A value of the wrong type is an error naming
the key and the file, and so is ``ArtifactVerifyKey`` in one of Mender's files with
``ArtifactVerifyKeys`` in the other: better to refuse than to update with a half-understood
configuration. Where the data is kept is :mod:`pymender.device.layout`'s decision.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pymender.device.bootenv import KINDS as BOOTLOADERS
from pymender.device.layout import (
    PYMENDER,
    PYMENDER_CONFIG_FILE,
    PYMENDER_DATA_DIR,
    PYMENDER_MODULES_DIR,
    Layout,
    MenderPaths,
    decide_layout,
)
from pymender.device.log import get_logger
from pymender.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

log = get_logger(__name__)

DEFAULT_CONFIG_FILE = PYMENDER_CONFIG_FILE
DEFAULT_DATA_DIR = PYMENDER_DATA_DIR
DEFAULT_SCRIPTS_DIR = MenderPaths().rootfs_scripts
DEFAULT_UBOOT_ENV_CONFIG = Path("/etc/fw_env.config")
DEFAULT_ARTIFACT_INFO_FILE = Path("/etc/mender/artifact_info")

# Mender keys that matter only to Mender's daemon or server connection: ignored quietly.
_MENDER_ONLY_KEYS = frozenset(
    {
        "ClientProtocol", "DeviceTier", "RetryDownloadCount", "UpdateLogPath", "DaemonLogLevel", "DBus",
        "Connectivity", "BootUtilitiesSetActivePart", "BootUtilitiesGetNextActivePart",
        "Security", "HttpProxy", "HttpsProxy", "NoProxy",
    }
)


class Origin(NamedTuple):
    """Where a configuration came from: its files and the data layout chosen."""

    #: The files read, the first the one every later one overrides.
    files: tuple[Path, ...] = ()
    #: :mod:`pymender.device.layout`'s kind and reason.
    layout: str = PYMENDER
    why: str = "the defaults"
    data_dir: Path = PYMENDER_DATA_DIR

    def describe(self) -> str:
        """One line for the log: the files and the data store."""
        files = ", ".join(map(str, self.files)) or "none (the defaults)"
        return f"configuration {files}; {Layout(self.data_dir, self.layout, self.why).describe()}"


class DeviceConfig(NamedTuple):
    """Every setting of the device side, with Mender's defaults where Mender has the key.

    Immutable; :meth:`_replace` makes a changed copy. Two configurations are equal when their
    settings are, wherever they came from (``origin`` is not compared). A named tuple rather
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
    #: ``HttpsClient.Certificate``/``HttpsClient.Key``: the client certificate (PEM, with its
    #: chain) and its private key that ``https://`` sources are fetched with (mutual TLS).
    https_client_certificate: Path | None = None
    https_client_key: Path | None = None
    # --- managed mode (the daemon; see pymender.device.managed) ---------------------------------
    #: ``ServerURL`` (or the first of ``Servers``): the Mender server; None: standalone only.
    server_url: str | None = None
    #: ``TenantToken``: sent with the auth request (hosted Mender's organization token).
    tenant_token: str | None = None
    update_poll_interval_seconds: int = 1800
    inventory_poll_interval_seconds: int = 28800
    #: ``RetryPollIntervalSeconds``: the longest wait between retries after a server error.
    retry_poll_interval_seconds: int = 300
    #: ``RetryPollCount``: retries after server errors before waiting for the next poll (0: as
    #: many as the backoff gives, Mender's default).
    retry_poll_count: int = 0
    #: ``AllowPlainHTTPServer`` (pymender's): talk to an ``http://`` server (testing only).
    allow_plain_http_server: bool = False
    #: ``DeviceKeyType`` (pymender's): the device key generated on first start: ``rsa``
    #: (3072 bits), ``ecdsa`` (P-256) or ``ed25519``.
    device_key_type: str = "rsa"
    #: Where the settings came from and which data layout is in use. Not a setting: not
    #: compared. Must stay the last field.
    origin: Origin = Origin()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeviceConfig):
            return NotImplemented
        return self[:-1] == other[:-1]  # every field but origin

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self[:-1])

    @property
    def artifact_scripts_dir(self) -> Path:
        """Where the scripts of the Artifact being installed are kept (``<DataDir>/scripts``)."""
        return self.data_dir / "scripts"

    @property
    def module_dirs(self) -> tuple[Path, ...]:
        """Where Update Modules are looked up, in order: Mender's ``<MENDER_DATA_DIR>/modules/v3``,
        then pymender's own directory (see :mod:`pymender.device.payloads.update_module`)."""
        return (MenderPaths.from_environ().modules, PYMENDER_MODULES_DIR)

    @property
    def module_tree(self) -> Path:
        """The Update Modules' file tree (Mender's ``<ModulesWorkPath>/payloads/0000/tree``)."""
        return self.data_dir / "modules" / "v3" / "payloads" / "0000" / "tree"

    @property
    def bootstrap_artifact(self) -> Path:
        """The bootstrap Artifact installed before the first use (``<DataDir>/bootstrap.mender``)."""
        return self.data_dir / "bootstrap.mender"

    @property
    def mender_store(self) -> Path:
        """Mender's store, read for the installed Artifact before pymender has its own."""
        return self.data_dir / "mender-store"

    @property
    def source(self) -> Path | None:
        """The configuration file read last (the one whose keys win), or None."""
        return self.origin.files[-1] if self.origin.files else None


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


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Bad("a whole number, 0 or more")
    return value


def _key_type(value: Any) -> str:
    if value not in ("rsa", "ecdsa", "ed25519"):
        raise _Bad('"rsa", "ecdsa" or "ed25519"')
    return str(value)


def _servers(value: Any) -> str:
    """``Servers``: a list of ``{"ServerURL": ...}``; Mender's client uses the first."""
    if not isinstance(value, list) or not value or not all(
            isinstance(item, dict) and isinstance(item.get("ServerURL"), str) for item in value):
        raise _Bad('a list of objects with a "ServerURL"')
    if len(value) > 1:
        log.warning("Servers: only the first server (%s) is used", value[0]["ServerURL"])
    return str(value[0]["ServerURL"])


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
    # managed mode
    "ServerURL": ("server_url", _string, False),
    "Servers": ("server_url", _servers, False),
    "TenantToken": ("tenant_token", _string, False),
    "UpdatePollIntervalSeconds": ("update_poll_interval_seconds", _positive_int, False),
    "InventoryPollIntervalSeconds": ("inventory_poll_interval_seconds", _positive_int, False),
    "RetryPollIntervalSeconds": ("retry_poll_interval_seconds", _positive_int, False),
    "RetryPollCount": ("retry_poll_count", _non_negative_int, False),
    "AllowPlainHTTPServer": ("allow_plain_http_server", _boolean, False),
    "DeviceKeyType": ("device_key_type", _key_type, False),
}
#: ``HttpsClient``'s keys -> fields (paths); its ``SSLEngine`` is not supported.
_HTTPS_CLIENT_KEYS = {"Certificate": "https_client_certificate", "Key": "https_client_key"}
#: Every key pymender reads, for documentation and tests.
CONFIG_KEYS = (*_KEYS, "HttpsClient")


class _Setting(NamedTuple):
    """One value read from one file: the field it sets, as which key, from where."""

    value: Any
    key: str
    where: str
    #: Whether the file is one of Mender's two (where the verify-key forms may not be mixed).
    mender: bool


class ConfigFile(NamedTuple):
    """A configuration file to read, and whether it must exist (it was named by the user)."""

    path: Path
    required: bool = False
    #: One of Mender's files (fallback or main), rather than pymender's own.
    mender: bool = False


def config_files(own: Path | None = None, *, main: Path | None = None, fallback: Path | None = None,
                 mender: MenderPaths | None = None, own_default: bool = True) -> list[ConfigFile]:
    """The files read, the first one overridden by each later one: Mender's fallback file
    (``fallback``, else ``<Mender's data store>/mender.conf``), Mender's file (``main``, else
    ``<MENDER_CONF_DIR>/mender.conf``), pymender's own (``own``, else
    :data:`DEFAULT_CONFIG_FILE` unless ``own_default`` is false). A file named here must exist;
    a default one may be absent."""
    mender = mender or MenderPaths.from_environ()
    files = [ConfigFile(fallback or mender.fallback_config, fallback is not None, True),
             ConfigFile(main or mender.main_config, main is not None, True)]
    if own is not None:
        files.append(ConfigFile(own, True))
    elif own_default:
        files.append(ConfigFile(DEFAULT_CONFIG_FILE))
    return files


def load_config(
    path: Path | None = None,
    *,
    data_dir: Path | None = None,
    main: Path | None = None,
    fallback: Path | None = None,
    mender: MenderPaths | None = None,
    own_default: bool = True,
) -> DeviceConfig:
    """The configuration of the device (see the module docstring).

    ``path`` is pymender's own file (``pymender -c``), ``main`` Mender's (``mender-update -c``),
    ``fallback`` Mender's fallback file (``-b``); each must exist when given. ``data_dir`` (the
    ``-d`` option) overrides ``DataDir``. ``mender`` gives Mender's directories (default: from
    the environment); ``own_default=False`` reads no pymender file when ``path`` is not given.
    Relative paths in a file are taken relative to that file's directory. With no file at all,
    every default applies.
    """
    mender = mender or MenderPaths.from_environ()
    read: list[Path] = []
    merged: dict[str, _Setting] = {}
    for file in config_files(path, main=main, fallback=fallback, mender=mender, own_default=own_default):
        text = _read(file)
        if text is None:
            continue
        read.append(file.path)
        _merge(merged, _settings(text, file.path, mender=file.mender))
    if not read:
        log.debug("no configuration file; using the defaults")
    return _finish(merged, tuple(read), data_dir, mender, DEFAULT_DATA_DIR)


def _read(file: ConfigFile) -> str | None:
    try:
        return file.path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if file.required:
            raise ConfigError(f"the configuration file {file.path} does not exist") from None
        return None
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ConfigError(f"cannot read the configuration file {file.path}: {reason}") from None


def _merge(merged: dict[str, _Setting], settings: dict[str, _Setting]) -> None:
    """Lay ``settings`` (a later file's) over ``merged``."""
    for name, setting in settings.items():
        old = merged.get(name)
        if old is not None and old.mender and setting.mender and {old.key, setting.key} == {
                "ArtifactVerifyKey", "ArtifactVerifyKeys"}:
            raise ConfigError(
                f'"{old.key}" is set in {old.where} and "{setting.key}" in {setting.where}',
                hint="set only one of them, in one file")
        if old is not None and old.value != setting.value:
            log.info("%s: %s replaces the value from %s", setting.where, setting.key, old.where)
        merged[name] = setting


def parse_config(
    text: str, *, source: Path | None = None, data_dir: Path | None = None
) -> DeviceConfig:
    """The configuration from the one JSON ``text`` (``source`` names it in messages)."""
    settings = _settings(text, source, mender=False)
    return _finish(settings, (source,) if source is not None else (), data_dir, MenderPaths(), DEFAULT_DATA_DIR)


def _settings(text: str, source: Path | None, *, mender: bool) -> dict[str, _Setting]:
    """The values the JSON ``text`` of ``source`` sets, by field (unset and ``null`` left out)."""
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
    lower = {key.lower(): key for key in CONFIG_KEYS}
    values: dict[str, _Setting] = {}
    seen: dict[str, str] = {}
    for key, raw in document.items():
        known = key if key in CONFIG_KEYS else lower.get(key.lower())
        if known is None:
            if key in _MENDER_ONLY_KEYS:
                log.debug("%s: ignoring %r (not used by pymender)", where, key)
            else:
                log.warning("%s: ignoring unknown key %r", where, key)
            continue
        if known != key:
            log.warning("%s: key %r read as %r; please spell it %r", where, key, known, known)
        if known == "HttpsClient":
            values.update(_https_client(raw, where, base, mender))
            continue
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
        values[name] = _Setting(value, known, where, mender)
    return values


def _https_client(raw: Any, where: str, base: Path | None, mender: bool) -> dict[str, _Setting]:
    """``HttpsClient``: ``Certificate`` and ``Key`` (paths); ``SSLEngine`` is not supported."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f'"HttpsClient" in {where} must be an object with "Certificate" and "Key", '
                          f"not {json.dumps(raw)}")
    values: dict[str, _Setting] = {}
    for key, value in raw.items():
        if key == "SSLEngine":
            if value:
                log.warning("%s: HttpsClient.SSLEngine (%s) is not supported: the client key must be a "
                            "PEM file", where, value)
            continue
        if key not in _HTTPS_CLIENT_KEYS:
            log.warning("%s: ignoring unknown key 'HttpsClient.%s'", where, key)
            continue
        if value is None:
            continue
        try:
            text = _string(value)
        except _Bad as bad:
            raise ConfigError(f'"HttpsClient.{key}" in {where} must be {bad}, not {json.dumps(value)}') from None
        values[_HTTPS_CLIENT_KEYS[key]] = _Setting(_resolve(text, base), f"HttpsClient.{key}", where, mender)
    return values


def _resolve(text: str, base: Path | None) -> Path:
    path = Path(text)
    return base / path if base is not None and not path.is_absolute() else path


def _finish(settings: dict[str, _Setting], files: tuple[Path, ...], data_dir: Path | None,
            mender: MenderPaths, own_data_dir: Path) -> DeviceConfig:
    values = {name: setting.value for name, setting in settings.items()}
    configured = settings.get("data_dir")
    layout = decide_layout(given=Path(data_dir) if data_dir is not None else None,
                           configured=(configured.value, Path(configured.where)) if configured else None,
                           mender=mender, own=own_data_dir)
    values["data_dir"] = layout.data_dir
    values.setdefault("device_type_file", layout.data_dir / "device_type")
    values.setdefault("scripts_dir", mender.rootfs_scripts)
    origin = Origin(files, layout.kind, layout.why, layout.data_dir)
    config = DeviceConfig(**values, origin=origin)
    log.debug("%s", origin.describe())
    log.debug("Mender's directories: %s (configuration, rootfs state scripts), %s (Update Modules: %s, "
              "then %s), %s (data store)", mender.conf_dir, mender.data_dir, mender.modules, PYMENDER_MODULES_DIR,
              mender.datastore)
    if config.rootfs_part_a is not None and config.rootfs_part_a == config.rootfs_part_b:
        raise ConfigError(
            f'"RootfsPartA" and "RootfsPartB" are the same ({config.rootfs_part_a})',
            hint="name two different partitions",
        )
    if (config.https_client_certificate is None) != (config.https_client_key is None):
        raise ConfigError("HttpsClient needs both \"Certificate\" and \"Key\"",
                          hint="set both (PEM files), or neither")
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
    "ConfigFile",
    "DeviceConfig",
    "Origin",
    "config_files",
    "load_config",
    "parse_config",
    "read_device_type",
]
