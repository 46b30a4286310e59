"""Standalone install, commit and rollback, with Mender's semantics and crash safety.

Install (under the device lock, so two operations never overlap):

1. An update already installed and waiting for its commit is refused ("commit or roll back
   first"). The leftovers of an *interrupted* install or rollback are undone first (see below).
2. Read the device type; open the source (file, ``file://``, ``-``, HTTP(S) with resume).
3. ``Download_Enter`` scripts, then read the header: signature (when a key is configured),
   payload type, device type, ``artifact_depends`` (name, group, provides), the partitions and the
   bootloader environment (the running partition must be the one the bootloader boots, with no
   trial open), the payload size against the inactive partition. Every refusal happens here,
   before the Artifact's scripts are stored and before the first payload byte is written.
4. Store the Artifact's state scripts; write the payload to the inactive partition; the reader
   checks its SHA-256 at the last byte and the end of the Artifact; fsync. ``Download_Leave``.
   Any failure up to here runs ``Download_Error`` and leaves the active partition, the
   bootloader environment and the state store exactly as they were.
5. Record the pending update in the store, in state ``ArtifactInstall_Enter``;
   ``ArtifactInstall_Enter`` scripts; switch the bootloader in ONE crash-safe write
   (``mender_boot_part[_hex]`` = new partition, ``upgrade_available=1``, ``bootcount=0``);
   ``ArtifactInstall_Leave`` scripts; mark the update ``Before_ArtifactCommit_Enter``
   (installed, waiting for reboot and commit). A failure in this step runs
   ``ArtifactInstall_Error``, points the bootloader back, runs the ``ArtifactRollback`` and
   ``ArtifactFailure`` scripts and forgets the update.

Commit: only once the device runs the new partition (before the reboot it refuses). The store
is marked ``ArtifactCommit_Enter``; ``ArtifactCommit_Enter`` scripts; ``upgrade_available=0``;
marked ``ArtifactCommit_Leave``; ``ArtifactCommit_Leave`` scripts (failures only logged, the name
then gets ``_INCONSISTENT``); then ONE store write makes the new Artifact current (provides
applied) and forgets the pending update. If the bootloader has already gone back to the old
partition, commit fails clearly, runs the commit-error, rollback and failure scripts, and forgets
the update; the old Artifact stays current.

Rollback: marks ``ArtifactRollback_Enter``, runs the ``ArtifactRollback`` scripts around pointing
the bootloader back at the previous partition (``upgrade_available=0``), and forgets the update.
A reboot then runs the old system, if the device had already rebooted into the new one.

Why the store is written *before* the bootloader switch, not only after it
-------------------------------------------------------------------------
A SIGKILL or power cut can fall between any two steps. The bootloader environment and the store
are each replaced atomically (see :mod:`pymender.device.bootenv` and
:mod:`pymender.device.store`), so the question is only about the order of the two writes:

- If the store were written only after the switch, a crash in between would leave the bootloader
  trying a new system that no record explains: a commit would find "nothing to commit", and a new
  install could not tell whether the partition it is about to overwrite is the bootloader's
  fallback. So the pending update (with the partitions and the previous environment) is recorded
  first, in state ``ArtifactInstall_Enter``, and only then is the bootloader switched.
- Invariant: ``upgrade_available=1`` set by pymender implies a pending update in the store.
  The partition the bootloader boots always holds a complete system: the old one (never written),
  or the new one, which is switched in only after its whole image was written, verified and
  fsynced; while ``upgrade_available=1`` the old one stays the fallback.
- A crash before step 5: nothing but the inactive partition changed; the next install simply
  overwrites it.
- A crash in step 5 leaves a pending update in state ``ArtifactInstall_Enter``, with the
  bootloader switched or not. Next boot: the old system, or the new complete one on trial (a second
  boot returns to the old one). The next ``install`` (or ``rollback``) undoes it: points the
  bootloader back at the previous partition and runs the rollback and failure scripts; a commit is
  refused, since the install never finished. If the device had rebooted into the new system in
  between, the install then refuses because the bootloader no longer boots the running partition:
  reboot first.
- A crash during commit leaves the update in a commit state; running ``commit`` again finishes
  it (the steps are idempotent), or goes the failure path if the bootloader has meanwhile rolled
  back. ``install`` refuses until then, naming the command.
- A crash during rollback leaves ``ArtifactRollback_Enter``/``ArtifactFailure_Enter``; the next
  ``rollback`` or ``install`` finishes it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pymender.device.bootenv import BOOT_PART, BOOT_PART_HEX, BOOTCOUNT, UPGRADE_AVAILABLE, BootEnv, open_bootenv
from pymender.device.config import DeviceConfig, read_device_type
from pymender.device.lock import DeviceLock
from pymender.device.log import get_logger
from pymender.device.partitions import Partition, PartitionSet, find_partitions, mounted_at
from pymender.device.payloads import BOOTSTRAP, payload_kind
from pymender.device.scripts import ScriptRunner, store_artifact_scripts
from pymender.device.store import DeviceState, PendingUpdate, StateStore, UpdateState, apply_update
from pymender.errors import (
    ArtifactFormatError,
    DeviceError,
    IncompatibleArtifactError,
    NothingToDoError,
    PymenderError,
    ScriptError,
    StateError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pymender.artifact.model import ArtifactHeader, PayloadHeader

# The Artifact reader (with hashlib and the codecs), the sources and the payload writer are
# imported by install alone: show-artifact, show-provides, commit and rollback start faster.

log = get_logger(__name__)

Report = Callable[[str], None]
Progress = Callable[[int, int | None], None]

#: States in which an install stopped before it was complete (undone by the next install).
_INTERRUPTED_INSTALL = frozenset({UpdateState.BEFORE_ARTIFACT_INSTALL_ENTER, UpdateState.ARTIFACT_INSTALL_ENTER})
_ROLLING_BACK = frozenset({
    UpdateState.ARTIFACT_ROLLBACK_ENTER, UpdateState.ARTIFACT_FAILURE_ENTER, UpdateState.CLEANUP,
})
_COMMITTING = frozenset({
    UpdateState.ARTIFACT_COMMIT_ENTER, UpdateState.BEFORE_ARTIFACT_COMMIT_LEAVE, UpdateState.ARTIFACT_COMMIT_LEAVE,
})


# Named tuples rather than dataclasses: importing dataclasses costs every command start-up time.


class InstallResult(NamedTuple):
    artifact_name: str
    #: The partition written; None for a bootstrap Artifact (nothing written).
    partition: str | None
    #: True when nothing waits for a commit (bootstrap Artifacts are recorded at once).
    committed: bool
    reboot_required: bool


class CommitResult(NamedTuple):
    artifact_name: str
    inconsistent: bool


class RollbackResult(NamedTuple):
    #: The Artifact that was rolled back.
    artifact_name: str
    #: The Artifact that stays installed.
    current: str
    reboot_required: bool


class _Downloaded(NamedTuple):
    header: ArtifactHeader
    payload: PayloadHeader
    kind: str
    #: The partitions and the bootloader environment as read before writing (not for bootstrap).
    partitions: PartitionSet | None = None
    env: dict[str, str] | None = None


def check_compatible(header: ArtifactHeader, device_type: str, current: DeviceState) -> None:
    """Refuse an Artifact not meant for this device (Mender's depends rules)."""
    if device_type not in header.device_types:
        raise IncompatibleArtifactError(
            f"the Artifact {header.artifact_name} is for device type(s) {', '.join(header.device_types)}, "
            f"but this device is {device_type}",
            hint="install an Artifact built for this device type; nothing was changed",
        )
    names = header.info.depends_artifact_names
    if names and current.artifact_name not in names:
        raise IncompatibleArtifactError(
            f"the Artifact {header.artifact_name} installs only over {', '.join(names)}, "
            f"but this device has {current.artifact_name}",
            hint="install the Artifacts in order; nothing was changed",
        )
    groups = header.info.depends_groups
    if groups and current.artifact_group not in groups:
        raise IncompatibleArtifactError(
            f"the Artifact {header.artifact_name} is for the group(s) {', '.join(groups)}, "
            f"but this device is in {current.artifact_group or 'no group'}",
            hint="nothing was changed",
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


def _prefixed(err: BaseException, prefix: str, hint: str | None = None) -> BaseException:
    """``err`` with ``prefix`` before its message (same class), for errors of a later step."""
    if isinstance(err, PymenderError):
        try:
            return type(err)(f"{prefix}: {err.message}", hint=hint or err.hint)
        except TypeError:
            return err
    return err


class Updater:
    """The standalone updater of one device, as configured by ``config``.

    ``report`` receives the lines a user should read (the CLI prints them); ``progress`` is
    called with (bytes read, total or None) while the Artifact streams in. ``source_options``
    go to :func:`~pymender.device.sources.open_source` (retries, backoff, timeout), and
    ``proc``/``dev`` to the discovery of the running root device; both exist for tests.
    """

    def __init__(
        self,
        config: DeviceConfig,
        *,
        report: Report | None = None,
        progress: Progress | None = None,
        source_options: Mapping[str, Any] | None = None,
        bootenv: BootEnv | None = None,
        proc: Path = Path("/proc"),
        dev: Path = Path("/dev"),
    ) -> None:
        self.config = config
        self.store = StateStore(config.data_dir, artifact_info=config.artifact_info_file)
        self._report = report or (lambda line: log.info("%s", line))
        self._progress = progress
        self._source_options = dict(source_options or {})
        self._bootenv = bootenv
        self._proc = proc
        self._dev = dev

    # --- pieces ----------------------------------------------------------------------------------

    @property
    def bootenv(self) -> BootEnv:
        if self._bootenv is None:
            self._bootenv = open_bootenv(
                self.config.bootloader,
                grub_env_dir=self.config.grub_env_dir,
                uboot_config=self.config.uboot_env_config,
            )
        return self._bootenv

    def partitions(self) -> PartitionSet:
        return find_partitions(self.config, proc=self._proc, dev=self._dev)

    def _runner(self, artifact_dir: str | Path | None) -> ScriptRunner:
        config = self.config
        return ScriptRunner(
            rootfs_dir=config.scripts_dir,
            artifact_dir=Path(artifact_dir) if artifact_dir else config.artifact_scripts_dir,
            timeout=config.state_script_timeout_seconds,
            retry_interval=config.state_script_retry_interval_seconds,
            retry_timeout=config.state_script_retry_timeout_seconds,
        )

    def _lock(self) -> DeviceLock:
        return DeviceLock(self.config.data_dir)

    # --- queries ---------------------------------------------------------------------------------

    def show_artifact(self) -> str:
        return self.store.current().artifact_name

    def show_provides(self) -> dict[str, str]:
        return dict(sorted(self.store.current().all_provides().items()))

    # --- install ---------------------------------------------------------------------------------

    def install(self, uri: str) -> InstallResult:
        """Install the Artifact at ``uri`` (see the module docstring for the steps)."""
        with self._lock():
            pending = self.store.pending()
            if pending is not None:
                self._settle_before_install(pending)
            device_type = read_device_type(self.config.device_type_file)
            verifiers = self._verifiers()
            current = self.store.current()
            from pymender.device.sources import open_source

            source = open_source(
                uri, ca_file=self.config.server_certificate, insecure=self.config.skip_verify,
                **self._source_options,
            )
            with source:
                size = f" of size {source.size}" if source.size is not None else ""
                self._report(f"Installing Artifact{size} from {source.name}...")
                runner = self._runner(self.config.artifact_scripts_dir)

                def download() -> _Downloaded:
                    return self._download(source, verifiers, device_type, current)

                done = runner.run_state("Download", download)
            if done.kind == BOOTSTRAP:
                return self._record_bootstrap(done, current)
            return self._activate(done, runner)

    def _verifiers(self) -> list[Any]:
        if not self.config.artifact_verify_keys:
            return []
        from pymender.artifact.signing import load_verifier

        return [load_verifier(path) for path in self.config.artifact_verify_keys]

    def _download(self, source: Any, verifiers: list[Any], device_type: str, current: DeviceState) -> _Downloaded:
        """Read and check the header, then stream the payload to the inactive partition."""
        from pymender.artifact.reader import ArtifactReader, ReadOptions
        from pymender.device.payloads.rootfs import check_fits, write_rootfs

        reader = ArtifactReader(source, ReadOptions(verifiers=verifiers, require_signature=True))
        header = reader.read_header()
        if not header.payloads:
            raise ArtifactFormatError(f"the Artifact {header.artifact_name} has no payload")
        payload = header.payloads[0]
        kind = payload_kind(payload.type)
        check_compatible(header, device_type, current)
        if kind == BOOTSTRAP:
            for _extra in reader.payload_files():
                raise ArtifactFormatError("a bootstrap Artifact (no payload type) must not carry payload files")
            return _Downloaded(header, payload, kind)
        if len(payload.files) != 1:
            raise ArtifactFormatError(
                f"a rootfs-image payload holds exactly one file; this one lists {len(payload.files)}"
            )
        parts = self.partitions()
        env = self.bootenv.read()
        parts.check_env_agrees(env)
        target = parts.inactive
        where = mounted_at(target, proc=self._proc)
        if where is not None:
            raise DeviceError(
                f"the inactive partition {target.path} is mounted on {where}",
                hint=f"unmount it (umount {where}) and try again; nothing was written",
            )
        files = reader.payload_files()
        image = next(files, None)
        if image is None:
            raise ArtifactFormatError("the Artifact ends before its root filesystem image")
        check_fits(image.size, target.path)
        # Every check passed: from here on the inactive partition changes.
        store_artifact_scripts(self.config.artifact_scripts_dir, {s.name: s.data for s in header.scripts})
        self._report(f"Writing {header.artifact_name} to the inactive partition {target.path}...")
        progress = self._progress

        def advance(_: int) -> None:
            if progress is not None:
                progress(source.bytes_read, source.size)

        write_rootfs(image, image.size, target.path, skip_identical=self.config.skip_identical_blocks,
                     progress=advance)
        for _extra in files:  # also checks the end of the Artifact and the manifest
            raise ArtifactFormatError("a rootfs-image payload holds exactly one file")
        return _Downloaded(header, payload, kind, parts, env)

    def _record_bootstrap(self, done: _Downloaded, current: DeviceState) -> InstallResult:
        header, payload = done.header, done.payload
        update = PendingUpdate(
            artifact_name=header.artifact_name,
            partition="",
            artifact_group=header.artifact_group or "",
            provides=dict(payload.provides) or None,
            clears_provides=None if payload.type_info.clears_provides is None
            else tuple(payload.type_info.clears_provides),
            payload_type="",
        )
        self.store.set_current(apply_update(current, update))
        self._report(f"Artifact {header.artifact_name} has an empty payload: recorded its name and provides. "
                     "Nothing else to do.")
        return InstallResult(header.artifact_name, None, committed=True, reboot_required=False)

    def _activate(self, done: _Downloaded, runner: ScriptRunner) -> InstallResult:
        header, payload, parts = done.header, done.payload, done.partitions
        assert parts is not None
        target, previous = parts.inactive, parts.active
        env = done.env or {}
        update = PendingUpdate(
            artifact_name=header.artifact_name,
            partition=target.path,
            artifact_group=header.artifact_group or "",
            provides=dict(payload.provides) or None,
            clears_provides=None if payload.type_info.clears_provides is None
            else tuple(payload.type_info.clears_provides),
            payload_type=payload.type or "",
            previous_partition=previous.path,
            previous_env={k: env[k] for k in (BOOT_PART, BOOT_PART_HEX, UPGRADE_AVAILABLE, BOOTCOUNT) if k in env},
            scripts_dir=str(self.config.artifact_scripts_dir),
            state=UpdateState.ARTIFACT_INSTALL_ENTER,
        )
        self.store.begin_pending(update)
        try:
            runner.run("ArtifactInstall", "Enter")
            self.bootenv.write({
                BOOT_PART: str(target.number),
                BOOT_PART_HEX: target.number_hex,
                UPGRADE_AVAILABLE: "1",
                BOOTCOUNT: "0",
            })
            runner.run("ArtifactInstall", "Leave")
        except Exception as err:
            runner.run("ArtifactInstall", "Error")
            self._roll_back(update, parts, runner, failed=True)
            raise _prefixed(err, f"installing {header.artifact_name} failed and was rolled back",
                            hint="the device keeps running the current system; see the log") from err
        self.store.update_pending(state=UpdateState.BEFORE_ARTIFACT_COMMIT_ENTER)
        current = self.store.current().artifact_name
        self._report(f"Installed {header.artifact_name} to {target.path} (partition {target.number}); "
                     "not committed yet.")
        self._report(f"Reboot to try the new system, then run 'pymender commit' to keep it. If it does not work, "
                     f"reboot again or run 'pymender rollback' to return to {current}.")
        return InstallResult(header.artifact_name, target.path, committed=False, reboot_required=True)

    def _settle_before_install(self, pending: PendingUpdate) -> None:
        if pending.state == UpdateState.BEFORE_ARTIFACT_COMMIT_ENTER:
            raise StateError(
                f"an update ({pending.artifact_name}) is already installed and waiting for a commit",
                hint="reboot into it and run 'pymender commit', or run 'pymender rollback'; then install again",
            )
        if pending.state in _COMMITTING:
            raise StateError(
                f"the commit of {pending.artifact_name} was interrupted",
                hint="run 'pymender commit' to finish it (or 'pymender rollback'); then install again",
            )
        what = "installation" if pending.state in _INTERRUPTED_INSTALL else "rollback"
        self._report(f"An earlier {what} of {pending.artifact_name} was interrupted; undoing it first.")
        self._roll_back(pending, self.partitions(), self._runner(pending.scripts_dir), failed=True)

    # --- rolling back (shared) -------------------------------------------------------------------

    def _roll_back(self, pending: PendingUpdate, parts: PartitionSet, runner: ScriptRunner, *, failed: bool) -> None:
        """Point the bootloader back at the previous partition, run the scripts, forget the update.

        Every step may be repeated after a crash: the bootloader write is idempotent and the
        store records how far it got.
        """
        previous = self._known_partition(parts, pending.previous_partition, "previous")
        failed = failed or pending.failed
        if pending.state not in (UpdateState.ARTIFACT_FAILURE_ENTER, UpdateState.CLEANUP):
            pending = self.store.update_pending(state=UpdateState.ARTIFACT_ROLLBACK_ENTER, failed=failed)
            runner.run("ArtifactRollback", "Enter")
            self.bootenv.write({
                BOOT_PART: str(previous.number),
                BOOT_PART_HEX: previous.number_hex,
                UPGRADE_AVAILABLE: "0",
                BOOTCOUNT: "0",
            })
            runner.run("ArtifactRollback", "Leave")
        if failed and pending.state != UpdateState.CLEANUP:
            self.store.update_pending(state=UpdateState.ARTIFACT_FAILURE_ENTER, rolled_back=True)
            runner.run("ArtifactFailure", "Enter")
            runner.run("ArtifactFailure", "Leave")
        self.store.discard_pending()

    @staticmethod
    def _known_partition(parts: PartitionSet, path: str, what: str) -> Partition:
        part = parts.by_path(path)
        if part is None:
            raise DeviceError(
                f"the {what} partition of the pending update ({path}) is neither RootfsPartA ({parts.a.path}) "
                f"nor RootfsPartB ({parts.b.path})",
                hint="the configuration changed since the install; restore RootfsPartA/RootfsPartB",
            )
        return part

    # --- commit ----------------------------------------------------------------------------------

    def commit(self) -> CommitResult:
        """Make the running new system permanent (see the module docstring)."""
        with self._lock():
            pending = self.store.pending()
            if pending is None:
                raise NothingToDoError("there is nothing to commit: no update in progress")
            if pending.state in _INTERRUPTED_INSTALL:
                raise StateError(
                    f"the installation of {pending.artifact_name} was interrupted and cannot be committed",
                    hint="run 'pymender rollback' or install it again",
                )
            if pending.state in _ROLLING_BACK:
                raise StateError(
                    f"a rollback of {pending.artifact_name} was interrupted",
                    hint="run 'pymender rollback' to finish it",
                )
            parts = self.partitions()
            env = self.bootenv.read()
            new = self._known_partition(parts, pending.partition, "new")
            previous = self._known_partition(parts, pending.previous_partition, "previous")
            boots_next = parts.env_partition(env)
            trial = env.get(UPGRADE_AVAILABLE, "0").strip() == "1"
            runner = self._runner(pending.scripts_dir)
            old_name = self.store.current().artifact_name
            if parts.active == previous and boots_next == new and trial:
                raise StateError(
                    f"{pending.artifact_name} is installed on {new.path} but the device still runs {previous.path}",
                    hint="reboot into the new system first, then run 'pymender commit'",
                )
            if parts.active == previous and boots_next == previous:
                self._report(f"Committing Artifact {pending.artifact_name}...")
                pending = self.store.update_pending(state=UpdateState.ARTIFACT_COMMIT_ENTER)
                try:
                    runner.run("ArtifactCommit", "Enter")
                except ScriptError as err:
                    log.warning("%s", err.one_line())
                runner.run("ArtifactCommit", "Error")
                self._roll_back(pending, parts, runner, failed=True)
                raise StateError(
                    f"the new system did not stay up: the bootloader went back to {previous.path}, so "
                    f"{pending.artifact_name} was not committed and {old_name} stays installed",
                    hint="find out why the new system failed to boot (or was rebooted twice), then install again",
                )
            if parts.active != new or boots_next != new:
                raise DeviceError(
                    f"cannot commit {pending.artifact_name}: the device runs {parts.active.path} and the bootloader "
                    f"boots {boots_next.path} next, but the update was written to {new.path}",
                    hint="run 'pymender rollback'",
                )
            self._report(f"Committing Artifact {pending.artifact_name}...")
            if pending.state in (UpdateState.BEFORE_ARTIFACT_COMMIT_ENTER, UpdateState.ARTIFACT_COMMIT_ENTER):
                pending = self.store.update_pending(state=UpdateState.ARTIFACT_COMMIT_ENTER)
                try:
                    runner.run("ArtifactCommit", "Enter")
                    self.bootenv.write({UPGRADE_AVAILABLE: "0"})
                except Exception as err:
                    runner.run("ArtifactCommit", "Error")
                    self._roll_back(pending, parts, runner, failed=True)
                    raise _prefixed(
                        err, f"committing {pending.artifact_name} failed and the update was rolled back",
                        hint=f"reboot to return to {old_name}",
                    ) from err
                self.store.update_pending(state=UpdateState.ARTIFACT_COMMIT_LEAVE)
            else:
                self.bootenv.write({UPGRADE_AVAILABLE: "0"})  # idempotent; after an interrupted commit
            ignored = runner.run("ArtifactCommit", "Leave")
            state = self.store.commit_pending(inconsistent=bool(ignored))
            if ignored:
                self._report(f"Committed {pending.artifact_name}, but an ArtifactCommit_Leave script failed; "
                             f"recorded as {state.artifact_name}.")
            else:
                self._report(f"Committed {state.artifact_name}: it is now the installed Artifact.")
            return CommitResult(state.artifact_name, inconsistent=bool(ignored))

    # --- rollback --------------------------------------------------------------------------------

    def rollback(self) -> RollbackResult:
        """Point the bootloader back at the previous system and forget the pending update."""
        with self._lock():
            pending = self.store.pending()
            if pending is None:
                raise NothingToDoError("there is nothing to roll back: no update in progress")
            parts = self.partitions()
            previous = self._known_partition(parts, pending.previous_partition, "previous")
            self._report(f"Rolling back Artifact {pending.artifact_name}...")
            runner = self._runner(pending.scripts_dir)
            self._roll_back(pending, parts, runner, failed=pending.state in _INTERRUPTED_INSTALL)
            current = self.store.current().artifact_name
            reboot = parts.active != previous
            if reboot:
                self._report(f"Rolled back {pending.artifact_name}. Reboot to run {current} again "
                             f"(partition {previous.number}).")
            else:
                self._report(f"Rolled back {pending.artifact_name}. The device keeps running {current}; "
                             "no reboot needed.")
            return RollbackResult(pending.artifact_name, current, reboot_required=reboot)


__all__ = [
    "CommitResult",
    "InstallResult",
    "RollbackResult",
    "Updater",
    "check_compatible",
]
