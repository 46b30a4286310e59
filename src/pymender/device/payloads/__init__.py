"""Payload handlers: what installing each kind of payload means on this device.

- ``rootfs-image``: the single file of the payload is a filesystem image, written to the
  inactive root filesystem partition (:mod:`pymender.device.payloads.rootfs`).
- no payload type (a *bootstrap* Artifact, ``pymender-artifact write bootstrap-artifact``): nothing
  is written; installing it only records its name and provides, as Mender does.
- any other type names an Update Module. pymender does not run Update Modules yet, so such an
  Artifact is refused before anything is written.
"""

from __future__ import annotations

from pymender.errors import ArtifactUnsupportedError

ROOTFS_IMAGE = "rootfs-image"
#: The kinds :func:`payload_kind` returns.
ROOTFS = "rootfs"
BOOTSTRAP = "bootstrap"


def payload_kind(payload_type: str | None) -> str:
    """``"rootfs"`` or ``"bootstrap"``; refuses payload types pymender cannot install."""
    if payload_type is None or payload_type == "":
        return BOOTSTRAP
    if payload_type == ROOTFS_IMAGE:
        return ROOTFS
    raise ArtifactUnsupportedError(
        f"the Artifact's payload type {payload_type!r} needs an Update Module, which pymender does "
        "not support yet",
        hint="pymender installs rootfs-image and bootstrap Artifacts; nothing was installed",
    )


__all__ = ["BOOTSTRAP", "ROOTFS", "ROOTFS_IMAGE", "payload_kind"]
