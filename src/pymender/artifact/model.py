"""The parsed contents of an Artifact header, and their JSON forms.

JSON is written the way Go's ``encoding/json`` writes it (compact, struct fields in declaration
order, map keys sorted, ``<``, ``>`` and ``&`` escaped), so our headers match upstream's bytes.
Parsing validates the schema: wrong types and unknown keys where upstream rejects them are
:class:`ArtifactFormatError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pymender.errors import ArtifactFormatError, UnsafeArtifactError

from .record import Record

MAX_JSON = 1024 * 1024
ROOTFS_IMAGE = "rootfs-image"

SCRIPT_NAME = re.compile(r"([A-Za-z]+)_(Enter|Leave|Error)_[0-9][0-9](_\S+)?")
ARTIFACT_SCRIPT_STATES = (
    "ArtifactInstall",
    "ArtifactReboot",
    "ArtifactCommit",
    "ArtifactRollback",
    "ArtifactRollbackReboot",
    "ArtifactFailure",
)
PAYLOAD_FILE_NAME = re.compile(r"[\w\-.,]+", re.ASCII)


def go_json(value: Any, *, sort_keys: bool = False) -> bytes:
    """``value`` encoded as Go's ``json.Marshal`` would encode it.

    Struct-like objects keep their key order; Go sorts the keys of maps (``sort_keys``).
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text.encode("utf-8")


def load_json(raw: bytes, what: str) -> Any:
    if len(raw) > MAX_JSON:
        raise UnsafeArtifactError(f"{what} is larger than {MAX_JSON} bytes")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ArtifactFormatError(f"{what} is not valid JSON: {err}") from None


def _expect_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ArtifactFormatError(f"{what} must be a JSON object")
    return value


def _only_keys(obj: Mapping[str, Any], allowed: tuple[str, ...], what: str) -> None:
    for key in obj:
        if key not in allowed:
            raise ArtifactFormatError(f"{what} has an unknown field {key!r}")


def _string(value: Any, what: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ArtifactFormatError(f"{what} must be a string")
    return value


def _string_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ArtifactFormatError(f"{what} must be a list of strings")
    return list(value)


def check_payload_file_name(name: str) -> None:
    if not PAYLOAD_FILE_NAME.fullmatch(name):
        raise UnsafeArtifactError(
            f"payload file name {name!r} has forbidden characters",
            hint="only letters, digits and the characters '.,_-' are allowed",
        )


class HeaderInfo(Record):
    """``header-info``: what the Artifact is, what it provides and what it needs."""

    _fields = ("artifact_name", "device_types", "payload_types", "artifact_group",
               "depends_artifact_names", "depends_groups")

    def __init__(self, artifact_name: str, device_types: list[str],
                 payload_types: list[str | None] | None = None, artifact_group: str | None = None,
                 depends_artifact_names: list[str] | None = None,
                 depends_groups: list[str] | None = None) -> None:
        self.artifact_name = artifact_name
        self.device_types = device_types
        self.payload_types: list[str | None] = [ROOTFS_IMAGE] if payload_types is None else payload_types
        self.artifact_group = artifact_group
        self.depends_artifact_names: list[str] = depends_artifact_names or []
        self.depends_groups: list[str] = depends_groups or []

    def to_json(self, version: int = 3) -> bytes:
        if version == 2:
            return go_json({
                "artifact_name": self.artifact_name,
                "updates": [{"type": t} for t in self.payload_types],
                "device_types_compatible": self.device_types,
            })
        provides: dict[str, Any] = {"artifact_name": self.artifact_name}
        if self.artifact_group:
            provides["artifact_group"] = self.artifact_group
        depends: dict[str, Any] = {}
        if self.depends_artifact_names:
            depends["artifact_name"] = self.depends_artifact_names
        depends["device_type"] = self.device_types
        if self.depends_groups:
            depends["artifact_group"] = self.depends_groups
        return go_json({
            "payloads": [{"type": t} for t in self.payload_types],
            "artifact_provides": provides,
            "artifact_depends": depends,
        })

    @classmethod
    def from_json(cls, raw: bytes, version: int, what: str = "header-info") -> HeaderInfo:
        obj = _expect_object(load_json(raw, what), what)
        if version == 2:
            _only_keys(obj, ("artifact_name", "updates", "device_types_compatible"), what)
            updates = obj.get("updates")
            if not isinstance(updates, list):
                raise ArtifactFormatError(f"{what}: 'updates' must be a list")
            types = [_payload_type(u, what) for u in updates]
            name = _string(obj.get("artifact_name"), f"{what}: artifact_name") or ""
            devices = _string_list(obj.get("device_types_compatible"), f"{what}: device_types_compatible")
            info = cls(artifact_name=name, device_types=devices, payload_types=types)
        else:
            _only_keys(obj, ("payloads", "artifact_provides", "artifact_depends"), what)
            payloads = obj.get("payloads")
            if not isinstance(payloads, list):
                raise ArtifactFormatError(f"{what}: 'payloads' must be a list")
            types = [_payload_type(p, what) for p in payloads]
            provides = _expect_object(obj.get("artifact_provides") or {}, f"{what}: artifact_provides")
            _only_keys(provides, ("artifact_name", "artifact_group"), f"{what}: artifact_provides")
            depends = _expect_object(obj.get("artifact_depends") or {}, f"{what}: artifact_depends")
            _only_keys(depends, ("artifact_name", "device_type", "artifact_group"),
                       f"{what}: artifact_depends")
            info = cls(
                artifact_name=_string(provides.get("artifact_name", ""), f"{what}: artifact_name") or "",
                artifact_group=_string(provides.get("artifact_group"), f"{what}: artifact_group",
                                       optional=True) or None,
                device_types=_string_list(depends.get("device_type"), f"{what}: device_type"),
                depends_artifact_names=_string_list(depends.get("artifact_name"), f"{what}: artifact_name"),
                depends_groups=_string_list(depends.get("artifact_group"), f"{what}: artifact_group"),
                payload_types=types,
            )
        if not info.artifact_name:
            raise ArtifactFormatError(f"{what} has no artifact name")
        if not info.device_types:
            raise ArtifactFormatError(f"{what} names no compatible device type")
        if len(info.payload_types) > 1:
            raise ArtifactFormatError(f"{what} lists {len(info.payload_types)} payloads; only one is supported")
        return info


def _payload_type(entry: Any, what: str) -> str | None:
    obj = _expect_object(entry, f"{what}: payload entry")
    _only_keys(obj, ("type",), f"{what}: payload entry")
    return _string(obj.get("type"), f"{what}: payload type", optional=True)


class TypeInfo(Record):
    """``headers/NNNN/type-info``: the payload's type and what installing it provides."""

    _fields = ("type", "provides", "depends", "clears_provides")

    def __init__(self, type: str | None, provides: dict[str, str] | None = None,
                 depends: dict[str, str | list[str]] | None = None,
                 clears_provides: list[str] | None = None) -> None:
        self.type = type
        self.provides: dict[str, str] = {} if provides is None else provides
        self.depends: dict[str, str | list[str]] = {} if depends is None else depends
        self.clears_provides = clears_provides

    def to_json(self) -> bytes:
        obj: dict[str, Any] = {"type": self.type}
        if self.depends:
            obj["artifact_depends"] = dict(sorted(self.depends.items()))
        if self.provides:
            obj["artifact_provides"] = dict(sorted(self.provides.items()))
        if self.clears_provides:
            obj["clears_artifact_provides"] = self.clears_provides
        return go_json(obj)

    @classmethod
    def from_json(cls, raw: bytes, what: str = "type-info") -> TypeInfo:
        obj = _expect_object(load_json(raw, what), what)
        provides_raw = _expect_object(obj.get("artifact_provides") or {}, f"{what}: artifact_provides")
        provides: dict[str, str] = {}
        for key, value in provides_raw.items():
            provides[key] = _string(value, f"{what}: artifact_provides[{key!r}]") or ""
        depends_raw = _expect_object(obj.get("artifact_depends") or {}, f"{what}: artifact_depends")
        depends: dict[str, str | list[str]] = {}
        for key, value in depends_raw.items():
            depends[key] = value if isinstance(value, str) else _string_list(
                value, f"{what}: artifact_depends[{key!r}]")
        clears = obj.get("clears_artifact_provides")
        return cls(
            type=_string(obj.get("type"), f"{what}: type", optional=True),
            provides=provides,
            depends=depends,
            clears_provides=None if clears is None else _string_list(clears, f"{what}: clears_artifact_provides"),
        )

    def merged_with(self, augment: TypeInfo) -> TypeInfo:
        """This type-info with an augment section's values laid over it (the augment wins,
        its type included, as upstream's reader does)."""
        return TypeInfo(
            type=augment.type or self.type,
            provides={**self.provides, **augment.provides},
            depends={**self.depends, **augment.depends},
            clears_provides=augment.clears_provides if augment.clears_provides is not None
            else self.clears_provides,
        )


def parse_meta_data(raw: bytes, what: str) -> dict[str, Any] | None:
    if not raw.strip():
        return None
    value = load_json(raw, what)
    if not isinstance(value, dict):
        raise ArtifactFormatError(f"top level of {what} must be a JSON object")
    return value


class Script(Record):
    """A state script shipped in the header (``scripts/<name>``)."""

    _fields = ("name", "data", "mode")

    def __init__(self, name: str, data: bytes, mode: int = 0o755) -> None:
        self.name = name
        self.data = data
        self.mode = mode

    @property
    def state(self) -> str | None:
        match = SCRIPT_NAME.search(self.name)
        return match.group(1) if match else None


def check_script_name(name: str) -> None:
    """Refuse a script name the device would not run (what upstream's writer enforces)."""
    match = SCRIPT_NAME.search(name)
    if not match:
        raise ArtifactFormatError(
            f"invalid script name {name!r}",
            hint="state scripts are named <STATE>_<Enter|Leave|Error>_<NN>[_<description>]",
        )
    if match.group(1) not in ARTIFACT_SCRIPT_STATES:
        raise ArtifactFormatError(
            f"unsupported script state {match.group(1)!r} in {name!r}",
            hint="Artifacts carry only " + ", ".join(ARTIFACT_SCRIPT_STATES) + " scripts",
        )


class PayloadHeader(Record):
    """Everything the header says about one payload."""

    _fields = ("index", "type", "type_info", "meta_data", "files")

    def __init__(self, index: int, type: str | None, type_info: TypeInfo,
                 meta_data: dict[str, Any] | None = None, files: list[str] | None = None) -> None:
        self.index = index
        self.type = type  # from header-info; type-info's may be empty (upstream 3.9 writes "")
        self.type_info = type_info
        self.meta_data = meta_data
        self.files: list[str] = [] if files is None else files  # basenames, in manifest order

    @property
    def provides(self) -> dict[str, str]:
        return self.type_info.provides

    @property
    def depends(self) -> dict[str, str | list[str]]:
        return self.type_info.depends

    @property
    def clears_provides(self) -> list[str]:
        return self.type_info.clears_provides or []


class ArtifactHeader(Record):
    """The whole header: what a device decides on before any payload byte is read."""

    _fields = ("format_version", "info", "payloads", "scripts", "signed", "signature_verified",
               "signature_error", "augmented")

    def __init__(self, format_version: int, info: HeaderInfo, payloads: list[PayloadHeader],
                 scripts: list[Script] | None = None, signed: bool = False,
                 signature_verified: bool = False, signature_error: str | None = None,
                 augmented: bool = False) -> None:
        self.format_version = format_version
        self.info = info
        self.payloads = payloads
        self.scripts: list[Script] = [] if scripts is None else scripts
        self.signed = signed
        self.signature_verified = signature_verified
        self.signature_error = signature_error
        self.augmented = augmented

    @property
    def artifact_name(self) -> str:
        return self.info.artifact_name

    @property
    def artifact_group(self) -> str | None:
        return self.info.artifact_group

    @property
    def device_types(self) -> list[str]:
        return self.info.device_types

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (``pymender-artifact read --json``)."""
        return {
            "format_version": self.format_version,
            "name": self.artifact_name,
            "group": self.artifact_group,
            "compatible_devices": self.device_types,
            "depends": {
                "artifact_name": self.info.depends_artifact_names,
                "artifact_group": self.info.depends_groups,
            },
            "signature": {
                "signed": self.signed,
                "verified": self.signature_verified,
                "error": self.signature_error,
            },
            "augmented": self.augmented,
            "scripts": [s.name for s in self.scripts],
            "payloads": [
                {
                    "index": p.index,
                    "type": p.type,
                    "provides": p.provides,
                    "depends": p.depends,
                    "clears_provides": p.clears_provides,
                    "meta_data": p.meta_data,
                    "files": p.files,
                }
                for p in self.payloads
            ],
        }
