"""Standalone install, commit, rollback and resume: the device's front door, with Mender's semantics.

Each operation takes the device lock (two operations never overlap), then asks the update state
machine (:mod:`pymender.device.flow`, where the states, the transitions and the reasons for
their order are described) to walk from the request, giving it the work of each state: the
Download (:mod:`pymender.device.download`) and the bootloader switches of the rootfs-image
payload (:mod:`pymender.device.payloads.rootfs_image`). What is left here is what a user reads:
the lines reported, the refusals that depend on where the device runs, and the errors named
after the step that failed. Before ``install``, ``show-artifact`` and ``show-provides`` a
bootstrap Artifact waiting in the data store is installed first, as Mender 4.x and 5.x do.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pymender.device.bootenv import BootEnv, open_bootenv
from pymender.device.config import DeviceConfig, read_device_type
from pymender.device.flow import Event, FinishFirst, Flow, Refuse, UpdateState
from pymender.device.lock import DeviceLock
from pymender.device.log import get_logger
from pymender.device.partitions import Partition, PartitionSet, find_partitions
from pymender.device.payloads import is_module
from pymender.device.payloads.rootfs_image import RootfsImage, Target, Trial, TrialView
from pymender.device.scripts import ScriptRunner
from pymender.device.store import PendingUpdate, StateStore
from pymender.errors import DeviceError, PymenderError, StateError, UpdateModuleError
from pymender.sysio import fsync_dir

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pymender.device.flow import Work
    from pymender.device.payloads.update_module import UpdateModule

# The Artifact reader (with hashlib and the codecs), the sources and the payload writer are
# imported by install alone: show-artifact, show-provides, commit and rollback start faster.

log = get_logger(__name__)

Report = Callable[[str], None]
Progress = Callable[[int, int | None], None]

#: States in which the bootloader's trial of the pending update may have ended on its own.
_ON_TRIAL = (UpdateState.BEFORE_ARTIFACT_COMMIT_ENTER, UpdateState.ARTIFACT_COMMIT_ENTER)

#: What ``commit`` does before the reboot into the new system (see :meth:`Updater.commit`):
#: refuse and change nothing (``pymender``), or abandon the update as Mender 5.x does
#: (``mender-update``).
REFUSE = "refuse"
ABANDON = "abandon"


# Named tuples rather than dataclasses: importing dataclasses costs every command start-up time.


class InstallResult(NamedTuple):
    artifact_name: str
    #: The partition written; None for a bootstrap Artifact (nothing written) and an Update
    #: Module's payload.
    partition: str | None
    #: True when nothing waits for a commit (bootstrap Artifacts are recorded at once).
    committed: bool
    reboot_required: bool
    #: True when the walk stopped where ``--stop-before`` asked (``resume`` goes on).
    stopped: bool = False


class CommitResult(NamedTuple):
    artifact_name: str
    inconsistent: bool
    stopped: bool = False


class RollbackResult(NamedTuple):
    #: The Artifact that was rolled back.
    artifact_name: str
    #: The Artifact that stays installed.
    current: str
    reboot_required: bool
    stopped: bool = False


class ResumeResult(NamedTuple):
    #: The Artifact of the operation that was finished.
    artifact_name: str
    #: Where the update is now: ``installed`` (waiting for the reboot and the commit),
    #: ``committed``, ``rolled back`` or ``stopped`` (at a ``--stop-before`` state).
    outcome: str
    reboot_required: bool


def _prefixed(err: BaseException, prefix: str, hint: str | None = None) -> BaseException:
    """``err`` with ``prefix`` before its message (same class), for errors of a later step."""
    if isinstance(err, PymenderError):
        try:
            return type(err)(f"{prefix}: {err.message}", hint=hint or err.hint)
        except TypeError:
            return err
    return err


def _waiting_for_commit(flow: Flow) -> bool:
    return flow.state is UpdateState.BEFORE_ARTIFACT_COMMIT_ENTER


class Updater:
    """The standalone updater of one device, as configured by ``config``.

    ``report`` receives the lines a user should read (the CLI prints them); ``progress`` is
    called with (bytes read, total or None) while the Artifact streams in; ``on_header`` once
    the Artifact's header has passed the format and signature checks. ``tool`` is the command
    named in hints (``pymender``, ``mender-update``); with ``hints`` False (the daemon, whose
    lines go to a server's deployment log) the lines say what happened without telling a user
    which command to run next. ``source_options`` go to
    :func:`~pymender.device.sources.open_source` (retries, backoff, timeout, sleep), and
    ``proc``/``dev`` to the discovery of the running root device; both exist for tests.
    :attr:`last_flow` is the walk of the last operation, for front ends that report its steps.
    """

    def __init__(
        self,
        config: DeviceConfig,
        *,
        report: Report | None = None,
        progress: Progress | None = None,
        on_header: Callable[[], None] | None = None,
        tool: str = "pymender",
        hints: bool = True,
        source_options: Mapping[str, Any] | None = None,
        bootenv: BootEnv | None = None,
        proc: Path = Path("/proc"),
        dev: Path = Path("/dev"),
    ) -> None:
        self.config = config
        self.store = StateStore(config.data_dir, artifact_info=config.artifact_info_file,
                                mender_store=config.mender_store)
        self._report = report or (lambda line: log.info("%s", line))
        self._progress = progress
        self._on_header = on_header
        self.tool = tool
        self.hints = hints
        self._source_options = dict(source_options or {})
        self._bootenv = bootenv
        self._proc = proc
        self._dev = dev
        self.last_flow: Flow | None = None
        #: An Update Module's answer to NeedsArtifactReboot in the last install (None: no module
        #: was asked).
        self.last_reboot: bool | None = None

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

    def _rootfs(self) -> RootfsImage:
        return RootfsImage(self.config, lambda: self.bootenv, proc=self._proc, dev=self._dev)

    def _runner(self, pending: PendingUpdate | None) -> ScriptRunner:
        config = self.config
        artifact_dir = pending.scripts_dir if pending is not None else None
        return ScriptRunner(
            rootfs_dir=config.scripts_dir,
            artifact_dir=Path(artifact_dir) if artifact_dir else config.artifact_scripts_dir,
            timeout=config.state_script_timeout_seconds,
            retry_interval=config.state_script_retry_interval_seconds,
            retry_timeout=config.state_script_retry_timeout_seconds,
        )

    def _flow(self) -> Flow:
        self._take_over_mender_update()
        self.last_flow = Flow(self.store, self._runner, tool=self.tool)
        return self.last_flow

    def _take_over_mender_update(self) -> None:
        """Before pymender's first record: an update Mender's client installed and left waiting
        for its commit becomes pymender's pending update (:mod:`pymender.device.mender_takeover`);
        one in another state is refused before anything changes."""
        record = self.store.mender_update()
        if record is None:
            return
        from pymender.device.mender_takeover import pending_from_mender

        rootfs = self._rootfs()
        pending = pending_from_mender(record, rootfs.partitions(), rootfs.bootenv.read(),
                                      scripts_dir=self.config.artifact_scripts_dir, store=self.config.mender_store)
        self.store.take_over(pending)
        self._report(f"Took over the update of {pending.artifact_name} that Mender's client installed to "
                     f"{pending.partition} and left waiting for its commit.")

    def _lock(self) -> DeviceLock:
        return DeviceLock(self.config.data_dir)

    def _trial(self, flow: Flow, rootfs: RootfsImage) -> TrialView | None:
        """How far the bootloader's trial of the pending update got, in the states where it
        may have ended on its own (None in the others)."""
        if flow.state not in _ON_TRIAL or flow.pending is None or is_module(flow.pending.payload_type):
            return None
        return rootfs.trial(flow.pending)

    def _previous(self, flow: Flow, rootfs: RootfsImage) -> tuple[PartitionSet, Partition]:
        """The partitions and the one the pending update replaced: refused before anything
        changes when the configuration no longer names it."""
        assert flow.pending is not None
        parts = rootfs.partitions()
        return parts, parts.named(flow.pending.previous_partition, "previous")

    def _switch(self, flow: Flow, rootfs: RootfsImage) -> None:
        """ArtifactInstall's work: switch the bootloader to the partition the pending update was
        written to, once the device still runs the one it replaced and no trial is open."""
        pending = flow.pending
        assert pending is not None
        target = rootfs.target()
        if target.partitions.named(pending.partition, "new") != target.partition:
            raise DeviceError(
                f"{pending.artifact_name} was written to {pending.partition}, but that is now the running "
                f"partition", hint=f"run '{self.tool} rollback' and install it again")
        rootfs.install(target.partition)

    def _rollback_work(self, flow: Flow, rootfs: RootfsImage) -> Callable[[], None]:
        """ArtifactRollback's work: the bootloader boots the partition the update replaced."""
        def work() -> None:
            _, previous = self._previous(flow, rootfs)
            rootfs.rollback(previous)
        return work

    # --- the bootstrap Artifact ------------------------------------------------------------------

    def bootstrap(self) -> str | None:
        """Install the bootstrap Artifact (``<DataDir>/bootstrap.mender``) when no installed
        Artifact is recorded yet, then remove the file, as Mender 4.x and 5.x do; returns its
        name, or None when there was nothing to install.

        Its signature is not checked (it comes with the image, as with Mender); its device type
        and depends are. When it cannot be installed, the file stays and nothing changes. While
        an update Mender's client installed is in progress, it waits.
        """
        path = self.config.bootstrap_artifact
        if not path.exists():
            return None
        with self._lock():
            name = None
            if not self.store.has_name() and self.store.mender_update() is not None:
                log.info("an update Mender's client installed is in progress: the bootstrap Artifact %s waits", path)
                return None
            if not self.store.has_name():
                log.info("installing the bootstrap Artifact %s", path)
                name = self._install(str(path), verifiers=[], bootstrap=True).artifact_name
            else:
                log.info("an installed Artifact is recorded: the bootstrap Artifact %s is not needed", path)
            try:
                path.unlink()
                fsync_dir(path.parent)
            except OSError as err:
                log.warning("cannot remove the bootstrap Artifact %s: %s", path, err.strerror or err)
            return name

    # --- queries ---------------------------------------------------------------------------------

    def show_artifact(self) -> str:
        """The installed Artifact: never a pending one, nor one that failed."""
        self.bootstrap()
        return self.store.current().artifact_name

    def show_provides(self) -> dict[str, str]:
        self.bootstrap()
        return dict(sorted(self.store.current().all_provides().items()))

    # --- install ---------------------------------------------------------------------------------

    def install(self, uri: str, *, stop_before: Collection[UpdateState] = ()) -> InstallResult:
        """Install the Artifact at ``uri`` (the walk is described in :mod:`pymender.device.flow`),
        after a waiting bootstrap Artifact."""
        self.bootstrap()
        with self._lock():
            return self._install(uri, verifiers=None, stop_before=stop_before)

    def _install(self, uri: str, *, verifiers: list[Any] | None, bootstrap: bool = False,
                 stop_before: Collection[UpdateState] = ()) -> InstallResult:
        flow = self._flow()
        rootfs = self._rootfs()
        if flow.state is not UpdateState.IDLE:
            self._settle_before_install(flow, rootfs)
        if flow.state is UpdateState.IDLE and self.config.module_tree.is_dir():
            self._clean_stale_tree()
        device_type = read_device_type(self.config.device_type_file)
        if verifiers is None:
            verifiers = self._verifiers()
        current = self.store.current()
        from pymender.device.download import download
        from pymender.device.sources import open_source

        source = open_source(
            uri, ca_file=self.config.server_certificate, insecure=self.config.skip_verify,
            client_certificate=self._client_certificate(), **self._source_options,
        )
        report = self._report if not bootstrap else (lambda line: log.info("%s", line))
        targets: list[Target | UpdateModule | None] = []
        modules: list[UpdateModule] = []
        module_errors: list[UpdateModuleError] = []
        self.last_reboot = None

        def download_step() -> Event | None:
            update, target = download(
                source, config=self.config, handler=rootfs, verifiers=verifiers, device_type=device_type,
                current=current, report=report, progress=self._progress, empty_only=bootstrap,
                on_header=None if bootstrap else self._on_header, modules=modules)
            flow.prepare(update)
            targets.append(target)
            return Event.EMPTY_PAYLOAD if target is None else None

        def module() -> UpdateModule:
            return modules[0]

        module_work = self._module_work(flow, module, module_errors)

        def either(rootfs_work: Work, state: UpdateState) -> Work:
            def work() -> Event | None:
                if flow.pending is not None and is_module(flow.pending.payload_type):
                    step = module_work.get(state)
                    return step() if step is not None else None
                return rootfs_work()
            return work

        def nothing() -> None:
            return None

        with source:
            size = f" of size {source.size}" if source.size is not None else ""
            report(f"Installing Artifact{size} from {source.name}...")
            try:
                flow.walk(Event.INSTALL, {
                    UpdateState.DOWNLOAD: download_step,
                    UpdateState.ARTIFACT_INSTALL_ENTER: either(lambda: self._switch(flow, rootfs),
                                                               UpdateState.ARTIFACT_INSTALL_ENTER),
                    UpdateState.ROLLBACK_QUERY: either(nothing, UpdateState.ROLLBACK_QUERY),
                    UpdateState.ARTIFACT_ROLLBACK_ENTER: either(self._rollback_work(flow, rootfs),
                                                                UpdateState.ARTIFACT_ROLLBACK_ENTER),
                    UpdateState.ARTIFACT_FAILURE_ENTER: either(nothing, UpdateState.ARTIFACT_FAILURE_ENTER),
                    UpdateState.CLEANUP: either(nothing, UpdateState.CLEANUP)}, stop_before)
                if modules and flow.state is UpdateState.BEFORE_ARTIFACT_COMMIT_ENTER:
                    self._after_module_install(flow, module(), module_work, stop_before)
            except Exception as err:
                if modules and flow.failed_in is UpdateState.DOWNLOAD:
                    self._module_cleanup(module())
                if err is flow.failure and flow.failed_in is UpdateState.ARTIFACT_INSTALL_ENTER \
                        and flow.state is UpdateState.IDLE:
                    if modules:
                        raise _prefixed(err, f"installing {flow.name} failed", hint=self._module_outcome()) from err
                    raise _prefixed(err, f"installing {flow.name} failed and was rolled back",
                                    hint="the device keeps running the current system; see the log") from err
                if bootstrap:
                    raise _prefixed(err, f"the bootstrap Artifact {uri} cannot be installed",
                                    hint="replace or remove it; nothing was changed") from err
                raise
            if module_errors:
                raise module_errors[0]
        name = flow.name
        target = targets[0]
        if target is None:
            report(f"Artifact {name} has an empty payload: recorded its name and provides. Nothing else to do.")
            return InstallResult(name, None, committed=True, reboot_required=False)
        if modules:
            return self._report_module_installed(flow, module())
        assert target is not None and hasattr(target, "partition")  # the rootfs-image's Target
        new = target.partition
        if flow.stopped:
            self._say(f"Wrote {name} to {new.path} (partition {new.number}) and stopped before switching the "
                      "bootloader", f"run '{self.tool} resume' to go on, or '{self.tool} rollback'.")
            return InstallResult(name, new.path, committed=False, reboot_required=False, stopped=True)
        self._report_installed(name, new)
        return InstallResult(name, new.path, committed=False, reboot_required=True)

    # --- Update Modules --------------------------------------------------------------------------

    def _module_of(self, pending: PendingUpdate | None) -> UpdateModule:
        """The Update Module of a recorded update (its tree kept from the install)."""
        from pymender.device.payloads.update_module import UpdateModule, find_module

        assert pending is not None
        return UpdateModule(find_module(pending.payload_type, self.config.module_dirs), self.config.module_tree,
                            timeout=self.config.module_timeout_seconds, payload_type=pending.payload_type)

    def _module_work(self, flow: Flow, module: Callable[[], UpdateModule],
                     errors: list[UpdateModuleError]) -> dict[UpdateState, Work]:
        """The module's calls in each state, as Mender 5.x makes them in standalone mode
        (src/mender-update/standalone/states.cpp). On the failure path a module's failure does
        not stop the walk: it is logged, kept in ``errors`` (raised once the walk is done) and
        ends the state with the table's event for it (the update then recorded _INCONSISTENT)."""

        def install() -> None:
            module().call("ArtifactInstall")

        def commit() -> None:
            module().call("ArtifactCommit")

        def failed(err: UpdateModuleError, event: Event) -> Event:
            log.error("%s", err.one_line())
            errors.append(err)
            return event

        def query() -> Event | None:
            try:
                if module().query("SupportsRollback") == "Yes":
                    return None
            except UpdateModuleError as err:
                return failed(err, Event.ROLLBACK_FAILED)
            log.warning("the %s Update Module does not support rollback", module().payload_type)
            return Event.NO_ROLLBACK

        def rollback() -> Event:
            # not asked again: a resumed rollback calls ArtifactRollback at once, as Mender's does
            try:
                module().call("ArtifactRollback")
            except UpdateModuleError as err:
                return failed(err, Event.ROLLBACK_FAILED)
            return Event.ROLLED_BACK

        def failure() -> Event | None:
            try:
                module().call("ArtifactFailure")
            except UpdateModuleError as err:
                return failed(err, Event.ROLLBACK_FAILED)
            return None

        def cleanup() -> Event | None:
            try:
                module().call("Cleanup")
            except UpdateModuleError as err:
                return failed(err, Event.CLEANUP_FAILED)
            return None

        return {UpdateState.ARTIFACT_INSTALL_ENTER: install, UpdateState.ARTIFACT_COMMIT_ENTER: commit,
                UpdateState.ROLLBACK_QUERY: query, UpdateState.ARTIFACT_ROLLBACK_ENTER: rollback,
                UpdateState.ARTIFACT_FAILURE_ENTER: failure, UpdateState.CLEANUP: cleanup}

    def _after_module_install(self, flow: Flow, module: UpdateModule, work: Mapping[UpdateState, Work],
                              stop_before: Collection[UpdateState]) -> None:
        """Before_ArtifactCommit_Enter, entered by a module's install: NeedsArtifactReboot and
        SupportsRollback. A module that can roll back leaves the update waiting for the commit;
        one that cannot commits it at once (as Mender 5.x)."""
        try:
            self.last_reboot = module.query("NeedsArtifactReboot") != "No"
            rollback = module.query("SupportsRollback") == "Yes"
        except UpdateModuleError as err:
            flow.walk(Event.FAILED, work, stop_before)
            raise err
        if not rollback:
            flow.walk(Event.AUTO_COMMIT, work, stop_before)

    @staticmethod
    def _pending_module(flow: Flow) -> bool:
        return flow.pending is not None and is_module(flow.pending.payload_type)

    def _module_walk(self, flow: Flow, module: UpdateModule | None, event: Event,
                     stop_before: Collection[UpdateState], *, start: bool = False) -> None:
        """Walk a recorded module update with ``event`` (``start``: the table's way to make room
        for it), the module's calls as work; a module's failure on the failure path is raised
        once the update rests."""
        modules = [module] if module is not None else []
        errors: list[UpdateModuleError] = []

        def of() -> UpdateModule:
            if not modules:
                modules.append(self._module_of(flow.pending))
            return modules[0]

        work = self._module_work(flow, of, errors)
        row = flow.row(event)
        if flow.state is UpdateState.CLEANUP and UpdateState.CLEANUP not in stop_before \
                and not isinstance(row, Refuse):
            # interrupted: run again, as Mender 5.x's resume does; its failure is recorded
            if work[UpdateState.CLEANUP]() is Event.CLEANUP_FAILED:
                if isinstance(row, FinishFirst):
                    self._report(row.note.format(name=flow.name))
                event, start = Event.CLEANUP_FAILED, False
        if start:
            flow.start(event, work, say=self._report)
        else:
            flow.walk(event, work, stop_before)
        if errors:
            raise errors[0]

    def _commit_module(self, flow: Flow, event: Event, stop_before: Collection[UpdateState]) -> CommitResult:
        name = flow.name
        self._report(f"Committing Artifact {name}...")
        try:
            self._module_walk(flow, None, event, stop_before)
        except Exception as err:
            if err is flow.failure and flow.state is UpdateState.IDLE:
                raise _prefixed(err, f"committing {name} failed", hint=self._module_outcome()) from err
            raise
        if flow.stopped:
            self._say(f"Stopped {name} in {flow.state.value}", f"run '{self.tool} resume' to go on.")
            return CommitResult(name, inconsistent=bool(flow.ignored), stopped=True)
        state = self.store.current()
        self._report(f"Committed {state.artifact_name}: it is now the installed Artifact.")
        return CommitResult(state.artifact_name, inconsistent=bool(flow.ignored))

    def _rollback_module(self, flow: Flow, stop_before: Collection[UpdateState]) -> RollbackResult:
        """A user's rollback: refused, with nothing changed, when the module cannot roll back
        (as Mender 5.x), unless the update already failed (its failure path is finished)."""
        name = flow.name
        module = self._module_of(flow.pending)
        event = Event.ROLLBACK
        if flow.state is not UpdateState.ARTIFACT_FAILURE_ENTER and flow.state is not UpdateState.CLEANUP:
            # Mender's rollback asks first (RollbackQuery)
            if module.query("SupportsRollback") != "Yes":
                if flow.pending is None or not flow.pending.failed:
                    raise UpdateModuleError(
                        f"the {module.payload_type} Update Module does not support rollback, so {name} cannot be "
                        "rolled back", hint=f"run '{self.tool} commit' instead")
                if flow.state is UpdateState.ARTIFACT_ROLLBACK_ENTER:
                    event = Event.NO_ROLLBACK  # failed already: on to ArtifactFailure
        self._report(f"Rolling back Artifact {name}...")
        self._module_walk(flow, module, event, stop_before)
        current = self.store.current().artifact_name
        if flow.stopped:
            self._say(f"Stopped {name} in {flow.state.value}", f"run '{self.tool} resume' to go on.")
            return RollbackResult(name, current, reboot_required=False, stopped=True)
        self._report(f"Rolled back {name}; {current} stays installed.")
        return RollbackResult(name, current, reboot_required=False)

    def _resume_module(self, flow: Flow, stop_before: Collection[UpdateState]) -> ResumeResult:
        name = flow.name
        installing = flow.state is UpdateState.BEFORE_ARTIFACT_INSTALL_ENTER
        module = self._module_of(flow.pending)
        self.last_reboot = None
        self._module_walk(flow, module, Event.RESUME, stop_before)
        if installing and flow.state is UpdateState.BEFORE_ARTIFACT_COMMIT_ENTER:
            errors: list[UpdateModuleError] = []
            self._after_module_install(flow, module, self._module_work(flow, lambda: module, errors), stop_before)
            if errors:
                raise errors[0]
        if flow.stopped:
            self._say(f"Stopped {name} in {flow.state.value}", f"run '{self.tool} resume' to go on.")
            return ResumeResult(name, "stopped", False)
        if _waiting_for_commit(flow):
            self._report(f"Installed {name}" + (f"; run '{self.tool} commit' to keep it, or '{self.tool} rollback'."
                                                if self.hints else "."))
            return ResumeResult(name, "installed", bool(self.last_reboot))
        if flow.pending is not None and flow.pending.rolled_back:
            self._report(f"Rolled back {name}; {self.store.current().artifact_name} stays installed.")
            return ResumeResult(name, "rolled back", False)
        self._report(f"Committed {self.store.current().artifact_name}: it is now the installed Artifact.")
        return ResumeResult(name, "committed", bool(self.last_reboot))

    def _clean_stale_tree(self) -> None:
        """A module's tree with nothing pending: an install stopped in Download (killed, or the
        power cut). Its module's Cleanup runs (it may have streamed files somewhere), then the
        tree goes, before the next install lays out its own."""
        from pymender.device.payloads.update_module import UpdateModule, find_module

        tree = self.config.module_tree
        try:
            payload_type = (tree / "header" / "payload_type").read_text(encoding="utf-8")
            module = UpdateModule(find_module(payload_type, self.config.module_dirs), tree,
                                  timeout=self.config.module_timeout_seconds, payload_type=payload_type)
        except (OSError, PymenderError) as err:
            log.warning("removing the Update Module tree %s left by an interrupted install: %s", tree, err)
            import shutil

            shutil.rmtree(tree, ignore_errors=True)
            return
        log.info("cleaning up after the interrupted install of a %s payload", payload_type)
        self._module_cleanup(module)

    def _module_cleanup(self, module: UpdateModule) -> None:
        try:
            module.call("Cleanup")
        except UpdateModuleError as err:
            log.error("%s", err.one_line())

    def _module_outcome(self) -> str:
        current = self.store.current().artifact_name
        return f"{current} is the installed Artifact now; see the log"

    def _report_module_installed(self, flow: Flow, module: UpdateModule) -> InstallResult:
        name = flow.name
        reboot = bool(self.last_reboot)
        if flow.stopped:
            self._say(f"Stopped {name} in {flow.state.value}",
                      f"run '{self.tool} resume' to go on, or '{self.tool} rollback'.")
            return InstallResult(name, None, committed=False, reboot_required=False, stopped=True)
        if flow.state is UpdateState.IDLE:
            self._report(f"Installed and committed {name} with the {module.payload_type} Update Module (it cannot "
                         "roll back).")
            if reboot:
                self._report("The Update Module asks for a reboot of the device.")
            return InstallResult(name, None, committed=True, reboot_required=reboot)
        self._report(f"Installed {name} with the {module.payload_type} Update Module; not committed yet.")
        then = "Reboot, then run" if reboot else "Run"
        self._hint(f"{then} '{self.tool} commit' to keep it, or '{self.tool} rollback' to undo it.")
        return InstallResult(name, None, committed=False, reboot_required=reboot)

    def _say(self, what: str, hint: str) -> None:
        """Report ``what`` happened, with ``hint`` (what to run next) after it when hints are on."""
        self._report(f"{what}: {hint}" if self.hints else f"{what}.")

    def _hint(self, line: str) -> None:
        if self.hints:
            self._report(line)

    def _report_installed(self, name: str, new: Partition) -> None:
        self._report(f"Installed {name} to {new.path} (partition {new.number}); not committed yet.")
        self._hint(f"Reboot to try the new system, then run '{self.tool} commit' to keep it. If it does not "
                     f"work, reboot again or run '{self.tool} rollback' to return to "
                     f"{self.store.current().artifact_name}.")

    def _verifiers(self) -> list[Any]:
        if not self.config.artifact_verify_keys:
            return []
        from pymender.artifact.signing import load_verifier

        return [load_verifier(path) for path in self.config.artifact_verify_keys]

    def _client_certificate(self) -> tuple[Path, Path] | None:
        cert, key = self.config.https_client_certificate, self.config.https_client_key
        return (cert, key) if cert is not None and key is not None else None

    def _settle_before_install(self, flow: Flow, rootfs: RootfsImage) -> None:
        """Make way for an install: a pending update whose trial the bootloader ended has failed
        (its failure path is walked, and the install goes on); an interrupted install or rollback
        is finished first; anything else refuses the install, as the table says."""
        view = self._trial(flow, rootfs)
        if view is not None and view.trial is Trial.ENDED:
            name = flow.name
            flow.walk(Event.TRIAL_ENDED, {UpdateState.ARTIFACT_ROLLBACK_ENTER: lambda: rootfs.rollback(view.previous)})
            self._report(f"The previous update {name} failed (the bootloader went back to {view.previous.path}) "
                         "and was rolled back.")
            return
        if isinstance(flow.row(Event.INSTALL), FinishFirst) and self._pending_module(flow):
            self._module_walk(flow, None, Event.INSTALL, (), start=True)
        elif isinstance(flow.row(Event.INSTALL), FinishFirst):
            self._previous(flow, rootfs)  # refused here, before anything, when it cannot be undone
            flow.start(Event.INSTALL, {UpdateState.ARTIFACT_ROLLBACK_ENTER: self._rollback_work(flow, rootfs)},
                       say=self._report)
        else:
            flow.start(Event.INSTALL)

    # --- commit ----------------------------------------------------------------------------------

    def commit(self, *, stop_before: Collection[UpdateState] = (), before_reboot: str = REFUSE) -> CommitResult:
        """Make the running new system permanent (see :mod:`pymender.device.flow`).

        Before the reboot into the new system (the device still runs the previous one),
        ``before_reboot`` decides: :data:`REFUSE` changes nothing and says to reboot first;
        :data:`ABANDON` does what Mender 5.x does: the commit fails, the update is rolled back
        and forgotten (exit 1), and it has to be installed again.
        """
        with self._lock():
            flow = self._flow()
            flow.start(Event.COMMIT)  # refused when nothing, or an unfinished install or rollback, is pending
            if self._pending_module(flow):
                return self._commit_module(flow, Event.COMMIT, stop_before)
            return self._commit(flow, Event.COMMIT, stop_before, before_reboot)

    def _commit(self, flow: Flow, event: Event, stop_before: Collection[UpdateState], before_reboot: str
                ) -> CommitResult:
        pending = flow.pending
        assert pending is not None
        rootfs = self._rootfs()
        view = rootfs.trial(pending)
        name, old_name = pending.artifact_name, self.store.current().artifact_name
        if view.trial is Trial.NOT_BOOTED and before_reboot == REFUSE:
            raise StateError(
                f"{name} is installed on {view.new.path} but the device still runs {view.previous.path}",
                hint=f"reboot into the new system first, then run '{self.tool} commit'",
            )
        ended = view.trial is Trial.ENDED and flow.state in _ON_TRIAL
        abandoned = view.trial is Trial.NOT_BOOTED
        if view.trial not in (Trial.RUNNING, Trial.NOT_BOOTED) and not ended:
            raise DeviceError(
                f"cannot commit {name}: the device runs {view.partitions.active.path} and the bootloader "
                f"boots {view.boots_next.path} next, but the update was written to {view.new.path}",
                hint=f"run '{self.tool} rollback'",
            )
        self._report(f"Committing Artifact {name}...")
        try:
            flow.walk(event, {
                UpdateState.ARTIFACT_COMMIT_ENTER: lambda: rootfs.commit(pending),
                UpdateState.ARTIFACT_ROLLBACK_ENTER: lambda: rootfs.rollback(view.previous),
            }, stop_before)
        except Exception as err:
            if err is not flow.failure or flow.state is not UpdateState.IDLE:
                raise  # the failure path itself failed, or stopped: the next rollback finishes it
            if ended:
                raise StateError(
                    f"the new system did not stay up: the bootloader went back to {view.previous.path}, so "
                    f"{name} was not committed and {old_name} stays installed",
                    hint="find out why the new system failed to boot (or was rebooted twice), then install again",
                ) from err
            if abandoned:
                raise StateError(
                    f"{name} was not committed: the device still runs {view.previous.path}, so the update was "
                    f"rolled back and {old_name} stays installed",
                    hint="install it again, reboot into it, then commit",
                ) from err
            raise _prefixed(err, f"committing {name} failed and the update was rolled back",
                            hint=f"reboot to return to {old_name}") from err
        state = self.store.current()
        if flow.stopped:
            self._say(f"Stopped {name} in {flow.state.value}", f"run '{self.tool} resume' to go on.")
            return CommitResult(name, inconsistent=bool(flow.ignored), stopped=True)
        if flow.ignored:
            self._report(f"Committed {name}, but an ArtifactCommit_Leave script failed; "
                         f"recorded as {state.artifact_name}.")
        else:
            self._report(f"Committed {state.artifact_name}: it is now the installed Artifact.")
        return CommitResult(state.artifact_name, inconsistent=bool(flow.ignored))

    # --- rollback --------------------------------------------------------------------------------

    def rollback(self, *, stop_before: Collection[UpdateState] = ()) -> RollbackResult:
        """Point the bootloader back at the previous system and forget the pending update."""
        with self._lock():
            flow = self._flow()
            flow.start(Event.ROLLBACK)  # refused when nothing is pending
            if self._pending_module(flow):
                return self._rollback_module(flow, stop_before)
            rootfs = self._rootfs()
            parts, previous = self._previous(flow, rootfs)
            name = flow.name
            view = self._trial(flow, rootfs)
            self._report(f"Rolling back Artifact {name}...")
            ended = view is not None and view.trial is Trial.ENDED
            if ended:
                self._report(f"{name} had already failed: the bootloader went back to {previous.path} before "
                             "it was committed.")
            flow.walk(Event.TRIAL_ENDED if ended else Event.ROLLBACK,
                      {UpdateState.ARTIFACT_ROLLBACK_ENTER: lambda: rootfs.rollback(previous)}, stop_before)
            current = self.store.current().artifact_name
            reboot = parts.active != previous
            if flow.stopped:
                self._say(f"Stopped {name} in {flow.state.value}", f"run '{self.tool} resume' to go on.")
                return RollbackResult(name, current, reboot_required=False, stopped=True)
            if reboot:
                self._report(f"Rolled back {name}. Reboot to run {current} again (partition {previous.number}).")
            else:
                self._report(f"Rolled back {name}. The device keeps running {current}; no reboot needed.")
            return RollbackResult(name, current, reboot_required=reboot)

    # --- resume ----------------------------------------------------------------------------------

    def resume(self, *, stop_before: Collection[UpdateState] = (), before_reboot: str = REFUSE) -> ResumeResult:
        """Finish the operation that stopped or was interrupted, as Mender 5.x's ``resume`` does:
        an install stopped before the bootloader switch is finished; an update installed and
        waiting is committed (as ``commit`` would: ``before_reboot`` applies); an interrupted
        install or commit is rolled back; a commit that stopped after the bootloader's commit,
        and a rollback, are finished."""
        with self._lock():
            flow = self._flow()
            flow.start(Event.RESUME)  # refused when nothing is pending
            name = flow.name
            if self._pending_module(flow):
                return self._resume_module(flow, stop_before)
            if flow.state is UpdateState.BEFORE_ARTIFACT_COMMIT_ENTER:
                result = self._commit(flow, Event.RESUME, stop_before, before_reboot)
                return ResumeResult(name, "stopped" if result.stopped else "committed", False)
            rootfs = self._rootfs()
            flow.walk(Event.RESUME, {UpdateState.ARTIFACT_INSTALL_ENTER: lambda: self._switch(flow, rootfs),
                                     UpdateState.ARTIFACT_ROLLBACK_ENTER: self._rollback_work(flow, rootfs)},
                      stop_before)
            if flow.stopped:
                self._say(f"Stopped {name} in {flow.state.value}", f"run '{self.tool} resume' to go on.")
                return ResumeResult(name, "stopped", False)
            if _waiting_for_commit(flow):
                assert flow.pending is not None
                new = self.partitions().named(flow.pending.partition, "new")
                self._report_installed(name, new)
                return ResumeResult(name, "installed", True)
            if flow.pending is not None and flow.pending.rolled_back:
                self._report(f"Rolled back {name}; {self.store.current().artifact_name} stays installed.")
                return ResumeResult(name, "rolled back", False)
            self._report(f"Committed {self.store.current().artifact_name}: it is now the installed Artifact.")
            return ResumeResult(name, "committed", False)


__all__ = [
    "ABANDON",
    "REFUSE",
    "CommitResult",
    "InstallResult",
    "ResumeResult",
    "RollbackResult",
    "Updater",
]
