"""What goes into an Artifact's header by default, for each kind of Artifact.

These functions turn the options of ``pymender-artifact write ...`` into an
:class:`~pymender.artifact.writer.ArtifactSpec`, adding the provides and clears_provides that
upstream's ``mender-artifact`` adds, so a device sees the same keys whichever tool wrote it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pymender.errors import UsageError

from .model import ROOTFS_IMAGE, HeaderInfo, TypeInfo
from .writer import ArtifactSpec, PayloadSpec

_NAME_FORBIDDEN = re.compile(r"\s")


@dataclass
class CommonOptions:
    """Options every kind of Artifact shares."""

    name: str
    device_types: list[str]
    provides: list[tuple[str, str]] = field(default_factory=list)
    depends: list[tuple[str, str]] = field(default_factory=list)
    clears_provides: list[str] = field(default_factory=list)
    depends_artifact_names: list[str] = field(default_factory=list)
    provides_group: str | None = None
    depends_groups: list[str] = field(default_factory=list)
    scripts: list[Path] = field(default_factory=list)
    format_version: int = 3


@dataclass
class SoftwareOptions:
    """The ``--software-*`` and ``--no-default-*`` switches."""

    software_name: str | None = None
    software_version: str | None = None
    software_filesystem: str | None = None
    no_default_software_version: bool = False
    no_default_clears_provides: bool = False
    no_checksum_provide: bool = False
    legacy_checksum: bool = False


def parse_key_value(text: str, flag: str) -> tuple[str, str]:
    """``KEY:VALUE`` split at the first colon."""
    key, sep, value = text.partition(":")
    if not sep or not key:
        raise UsageError(f"{flag} takes KEY:VALUE, not {text!r}")
    return key, value


def _check(common: CommonOptions) -> None:
    if not common.name:
        raise UsageError("the Artifact name must not be empty", hint="give it with -n/--artifact-name")
    if _NAME_FORBIDDEN.search(common.name):
        raise UsageError(f"whitespace is not allowed in the Artifact name {common.name!r}")
    if len(common.name) > 256:
        raise UsageError("the Artifact name is longer than 256 characters")
    if not common.device_types or not all(common.device_types):
        raise UsageError("at least one device type is required", hint="give it with -t/--device-type")
    for reserved in ("artifact_name", "artifact_group", "device_type"):
        if any(key == reserved for key, _ in common.provides):
            raise UsageError(f"--provides cannot set {reserved!r}; use its own option")


def _info(common: CommonOptions, payload_type: str | None) -> HeaderInfo:
    return HeaderInfo(
        artifact_name=common.name,
        device_types=list(common.device_types),
        payload_types=[payload_type],
        artifact_group=common.provides_group,
        depends_artifact_names=list(common.depends_artifact_names),
        depends_groups=list(common.depends_groups),
    )


def _merge_clears(user: list[str], defaults: list[str]) -> list[str] | None:
    merged = list(user) + [entry for entry in defaults if entry not in user]
    return merged or None


def _software_keys(default_prefix: str, software: SoftwareOptions) -> tuple[str, str]:
    """The version key and the default clears pattern for the software options."""
    prefix = software.software_filesystem or default_prefix
    if software.software_name:
        prefix = f"{prefix}.{software.software_name}"
    return f"{prefix}.version", f"{prefix}.*"


def rootfs_image(common: CommonOptions, image: Path, software: SoftwareOptions) -> ArtifactSpec:
    """``write rootfs-image``: one filesystem image; version and checksum provides."""
    _check(common)
    provides: dict[str, str] = {}
    clears_default: list[str] = []
    if not software.no_default_software_version:
        version_key, clears_pattern = _software_keys(ROOTFS_IMAGE, software)
        provides[version_key] = software.software_version or common.name
        if software.software_name or software.software_filesystem:
            clears_default = [clears_pattern]
        else:
            clears_default = ["artifact_group", "rootfs_image_checksum", "rootfs-image.*"]
    for key, value in common.provides:
        if software.software_version and key == _software_keys(ROOTFS_IMAGE, software)[0]:
            continue  # an explicit --software-version wins
        provides[key] = value
    if software.no_default_clears_provides:
        clears_default = []
    checksum_key = None
    if not software.no_checksum_provide:
        checksum_key = "rootfs_image_checksum" if software.legacy_checksum else "rootfs-image.checksum"
    type_info = TypeInfo(
        type=ROOTFS_IMAGE,
        provides=provides,
        depends=dict(common.depends),
        clears_provides=_merge_clears(common.clears_provides, clears_default),
    )
    payload = PayloadSpec(type=ROOTFS_IMAGE, type_info=type_info, files=[image],
                          empty_meta_data=True, checksum_provide=checksum_key)
    return ArtifactSpec(info=_info(common, ROOTFS_IMAGE), payload=payload,
                        scripts=list(common.scripts), format_version=common.format_version)


def module_image(common: CommonOptions, module_type: str, files: list[Path],
                 meta_data: dict[str, Any] | None, software: SoftwareOptions) -> ArtifactSpec:
    """``write module-image``: an Update Module's payload of zero or more files."""
    _check(common)
    if not module_type:
        raise UsageError("the payload type is required", hint="give the Update Module's name with -T/--type")
    if common.format_version != 3:
        raise UsageError("module images need Artifact format version 3")
    provides: dict[str, str] = {}
    clears_default: list[str] = []
    if not software.no_default_software_version:
        named = replace(software, software_name=software.software_name or module_type)
        version_key, clears_pattern = _software_keys(ROOTFS_IMAGE, named)
        provides[version_key] = software.software_version or common.name
        clears_default = [clears_pattern]
    provides.update(dict(common.provides))
    if software.no_default_clears_provides:
        clears_default = []
    type_info = TypeInfo(type=module_type, provides=provides, depends=dict(common.depends),
                         clears_provides=_merge_clears(common.clears_provides, clears_default))
    payload = PayloadSpec(type=module_type, type_info=type_info, files=list(files), meta_data=meta_data)
    return ArtifactSpec(info=_info(common, module_type), payload=payload,
                        scripts=list(common.scripts), format_version=3)


def bootstrap_artifact(common: CommonOptions) -> ArtifactSpec:
    """``write bootstrap-artifact``: no payload, only provides (used to seed a device's state)."""
    _check(common)
    if common.scripts:
        raise UsageError("a bootstrap Artifact carries no state scripts")
    type_info = TypeInfo(type=None, provides=dict(common.provides), depends=dict(common.depends),
                         clears_provides=list(common.clears_provides) or None)
    payload = PayloadSpec(type=None, type_info=type_info)
    return ArtifactSpec(info=_info(common, None), payload=payload, format_version=common.format_version)
