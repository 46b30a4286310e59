"""The Download state of an install: read and check the Artifact, then stream its payload.

Every refusal happens here, before the Artifact's state scripts are stored and before the first
payload byte is written: the signature (when a key is configured), the payload type, the device
type and ``artifact_depends`` (Mender's rules, :func:`check_compatible`), the partitions and the
bootloader environment (:meth:`~pymender.device.payloads.rootfs_image.RootfsImage.target`), the
payload's size against the inactive partition. Then the Artifact's scripts are stored and the
image is written; the reader checks its SHA-256 at its last byte and the end of the Artifact.

Imported by install alone: the Artifact reader (with hashlib and the codecs) and the payload
writer are not loaded by show-artifact, show-provides, commit and rollback, which start faster.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pymender.artifact.reader import ArtifactReader, ReadOptions
from pymender.device.payloads import BOOTSTRAP, MODULE, payload_kind
from pymender.device.payloads.rootfs import check_fits, write_rootfs
from pymender.device.scripts import store_artifact_scripts
from pymender.device.store import DeviceState, PendingUpdate
from pymender.errors import ArtifactFormatError, IncompatibleArtifactError

if TYPE_CHECKING:
    from pymender.artifact.model import ArtifactHeader
    from pymender.device.config import DeviceConfig
    from pymender.device.payloads.rootfs_image import RootfsImage, Target
    from pymender.device.payloads.update_module import UpdateModule
    from pymender.device.source_base import Source


def check_compatible(header: ArtifactHeader, device_type: str, current: DeviceState) -> None:
    """Refuse an Artifact not meant for this device (Mender's depends rules)."""
    if device_type not in header.device_types:
        raise IncompatibleArtifactError(
            f"the Artifact {header.artifact_name} is for device type(s) {', '.join(header.device_types)}, "
            f"but this device is {device_type}",
            hint="install an Artifact built for this device type; nothing was changed",
        )
    for allowed, ours, wants, has, hint in (
        (header.info.depends_artifact_names, current.artifact_name, "installs only over",
         "this device has", "install the Artifacts in order; nothing was changed"),
        (header.info.depends_groups, current.artifact_group, "is for the group(s)", "this device is in",
         "nothing was changed"),
    ):
        if allowed and ours not in allowed:
            raise IncompatibleArtifactError(
                f"the Artifact {header.artifact_name} {wants} {', '.join(allowed)}, but {has} {ours or 'no group'}",
                hint=hint,
            )
    provides = current.all_provides()
    for payload in header.payloads:
        for key, wanted in sorted(payload.depends.items()):
            values = [wanted] if isinstance(wanted, str) else list(wanted)
            have = device_type if key == "device_type" else provides.get(key)
            if have is None or have not in values:
                raise IncompatibleArtifactError(
                    f"the Artifact {header.artifact_name} depends on {key} = {' or '.join(values)}, "
                    f"but this device has {key} = {have if have is not None else '(not set)'}",
                    hint="see 'pymender show-provides'; nothing was changed",
                )


def download(
    source: Source,
    *,
    config: DeviceConfig,
    handler: RootfsImage,
    verifiers: list[Any],
    device_type: str,
    current: DeviceState,
    report: Callable[[str], None],
    progress: Callable[[int, int | None], None] | None = None,
    empty_only: bool = False,
    on_header: Callable[[], None] | None = None,
    modules: list[UpdateModule] | None = None,
) -> tuple[PendingUpdate, Target | UpdateModule | None]:
    """Read and check the Artifact from ``source``, then write its payload (see the module
    docstring). Returns the update to record and where it was written (None: an Artifact
    without payload, which only records its name and provides), or the Update Module that took
    it (:func:`download_to_module`).

    ``empty_only`` refuses any Artifact with a payload (a bootstrap Artifact must have none);
    ``on_header`` is called once the header passed the format and signature checks and the
    payload type is one pymender installs, before the checks against this device. The
    Update Module of the payload is added to ``modules`` as soon as it is found (its Cleanup is
    due when the download fails after that)."""
    reader = ArtifactReader(source, ReadOptions(verifiers=verifiers, require_signature=True))
    header = reader.read_header()
    if not header.payloads:
        raise ArtifactFormatError(f"the Artifact {header.artifact_name} has no payload")
    payload = header.payloads[0]
    kind = payload_kind(payload.type)
    if empty_only and kind != BOOTSTRAP:
        raise ArtifactFormatError(
            f"the bootstrap Artifact {header.artifact_name} has a {payload.type} payload; a bootstrap Artifact "
            "has none (mender-artifact write bootstrap-artifact)")
    if on_header is not None:
        on_header()
    check_compatible(header, device_type, current)
    update = PendingUpdate(
        artifact_name=header.artifact_name,
        partition="",
        artifact_group=header.artifact_group or "",
        provides=dict(payload.provides) or None,
        clears_provides=None if payload.type_info.clears_provides is None
        else tuple(payload.type_info.clears_provides),
        payload_type=payload.type or "",
    )
    if kind == BOOTSTRAP:
        for _extra in reader.payload_files():
            raise ArtifactFormatError("a bootstrap Artifact (no payload type) must not carry payload files")
        return update, None
    if kind == MODULE:
        module = download_to_module(reader, header, update, config=config, device_type=device_type,
                                    current=current, report=report, progress=progress, source=source,
                                    modules=modules)
        return update._replace(scripts_dir=str(config.artifact_scripts_dir)), module
    if len(payload.files) != 1:
        raise ArtifactFormatError(
            f"a rootfs-image payload holds exactly one file; this one lists {len(payload.files)}"
        )
    target = handler.target()
    files = reader.payload_files()
    image = next(files, None)
    if image is None:
        raise ArtifactFormatError("the Artifact ends before its root filesystem image")
    check_fits(image.size, target.partition.path)
    # Every check passed: from here on the inactive partition changes.
    store_artifact_scripts(config.artifact_scripts_dir, {s.name: s.data for s in header.scripts})
    report(f"Writing {header.artifact_name} to the inactive partition {target.partition.path}...")

    def advance(_: int) -> None:
        if progress is not None:
            progress(source.bytes_read, source.size)

    write_rootfs(image, image.size, target.partition.path, skip_identical=config.skip_identical_blocks,
                 progress=advance)
    for _extra in files:  # also checks the end of the Artifact and the manifest
        raise ArtifactFormatError("a rootfs-image payload holds exactly one file")
    return update._replace(
        partition=target.partition.path,
        previous_partition=target.partitions.active.path,
        previous_env=handler.recorded_env(target),
        scripts_dir=str(config.artifact_scripts_dir),
    ), target


def download_to_module(
    reader: ArtifactReader,
    header: ArtifactHeader,
    update: PendingUpdate,
    *,
    config: DeviceConfig,
    device_type: str,
    current: DeviceState,
    report: Callable[[str], None],
    progress: Callable[[int, int | None], None] | None,
    source: Source,
    modules: list[UpdateModule] | None = None,
) -> UpdateModule:
    """Download for an Update Module: find it (refused before anything changes when there is
    none), lay out its file tree, store the Artifact's scripts, then ProvidePayloadFileSizes and
    Download with the payload streamed to it. Returns the module, its tree ready for the
    next states."""
    from pymender.device.payloads.update_module import UpdateModule, find_module, prepare_tree

    payload = header.payloads[0]
    assert payload.type is not None
    module = UpdateModule(find_module(payload.type, config.module_dirs), config.module_tree,
                          timeout=config.module_timeout_seconds, payload_type=payload.type)
    if modules is not None:
        modules.append(module)
    # Every check passed: from here on the module's tree and the Artifact's scripts change.
    prepare_tree(
        config.module_tree,
        header_info=reader.verbatim.get("header-info"),
        type_info=reader.verbatim.get("0000/type-info"),
        meta_data=payload.meta_data,
        artifact_name=header.artifact_name,
        artifact_group=header.artifact_group or "",
        payload_type=payload.type,
        provides=current.all_provides(),
        device_type=device_type,
    )
    store_artifact_scripts(config.artifact_scripts_dir, {s.name: s.data for s in header.scripts})
    report(f"Streaming {header.artifact_name} to the {payload.type} Update Module {module.path}...")

    def advance(_: int) -> None:
        if progress is not None:
            progress(source.bytes_read, source.size)

    module.download(reader.payload_files(), advance)
    reader.finish()
    return module


__all__ = ["check_compatible", "download", "download_to_module"]
