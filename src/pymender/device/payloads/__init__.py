"""Payload handlers: what installing each kind of payload means on this device.

- ``rootfs-image``: the single file of the payload is a filesystem image, written to the
  inactive root filesystem partition (:mod:`pymender.device.payloads.rootfs`). Built in: a
  ``rootfs-image`` Update Module on the device is never run.
- no payload type (a *bootstrap* Artifact, ``pymender-artifact write bootstrap-artifact``): nothing
  is written; installing it only records its name and provides, as Mender does.
- any other type names an Update Module, run with Mender's protocol v3
  (:mod:`pymender.device.payloads.update_module`). A type that cannot name a file (``/``,
  ``..``) is refused before anything is written.
"""

from __future__ import annotations

from pymender.errors import UnsafeArtifactError

ROOTFS_IMAGE = "rootfs-image"
#: The kinds :func:`payload_kind` returns.
ROOTFS = "rootfs"
BOOTSTRAP = "bootstrap"
MODULE = "module"


def payload_kind(payload_type: str | None) -> str:
    """``"rootfs"``, ``"bootstrap"`` or ``"module"``; refuses a payload type that cannot name
    an Update Module."""
    if payload_type is None or payload_type == "":
        return BOOTSTRAP
    if payload_type == ROOTFS_IMAGE:
        return ROOTFS
    if payload_type in (".", "..") or "/" in payload_type or "\0" in payload_type or not payload_type.strip():
        raise UnsafeArtifactError(
            f"the payload type {payload_type!r} cannot name an Update Module",
            hint="a payload type is a plain file name (no '/', not '..'); nothing was changed")
    return MODULE


def is_module(payload_type: str | None) -> bool:
    """Whether an update of ``payload_type`` is installed by an Update Module."""
    return payload_type not in (None, "", ROOTFS_IMAGE)


__all__ = ["BOOTSTRAP", "MODULE", "ROOTFS", "ROOTFS_IMAGE", "is_module", "payload_kind"]
