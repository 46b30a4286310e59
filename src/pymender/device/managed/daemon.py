"""The daemon: polls the server, sends the inventory, and runs deployments to the end.

The loop, as Mender's client runs it: on start, finish the deployment in progress (the device
may have just rebooted into it, or lost power in the middle); send the inventory; then ask for
a deployment every ``UpdatePollIntervalSeconds`` and send the inventory every
``InventoryPollIntervalSeconds``. Between them the process sleeps in one ``select`` until the
next is due or a signal arrives (SIGUSR1: check for an update now; SIGUSR2: send the inventory
now; SIGTERM/SIGINT: stop): no wakeups between polls. A server that is down, answers 5xx, is
slow or answers garbage is retried with :class:`~pymender.device.managed.backoff.Backoff`
(``Retry-After`` honoured), then the regular interval applies.

The root filesystem's ``Idle`` and ``Sync`` state scripts run around each round of inventory
and polling (``Idle_Leave``, ``Sync_Enter``, the work, ``Sync_Leave``, ``Idle_Enter``); the
``Download`` and ``Artifact*`` scripts run in the install's walk, as in standalone mode.

A deployment: ``downloading`` is reported and the Artifact downloaded with
:class:`~pymender.device.install.Updater` (the standalone state table: the walk stops recorded
before ``ArtifactInstall_Enter``); ``installing`` is reported and the update walks on through
the same table with the daemon's rows for the reboots, a root filesystem's as an Update
Module's (:mod:`~pymender.device.managed.walk`): installed, ``rebooting`` reported, the reboot,
its verification after the boot, ``installing`` reported again (retried: no commit the server
cannot hear of, as Mender's daemon), the commit by itself; or the failure path, with a reboot
into the old system when the device runs the new one. The outcome (``success``, ``failure``;
``already-installed`` when the Artifact is installed already, as Mender 3's client reports it)
goes to the server, with the deployment's log on failure. Every step is recorded first
(:mod:`~pymender.device.managed.record`, and the state store), so a reboot or power cut at any
point resumes where it stopped; a download cut off is started again, at most
:data:`MAX_ATTEMPTS` times. The final status is retried with the backoff, then dropped, as
Mender's daemon drops it.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pymender.device.config import DeviceConfig, read_device_type
from pymender.device.flow import UpdateState
from pymender.device.install import Updater
from pymender.device.layout import MenderPaths
from pymender.device.log import get_logger
from pymender.device.managed import deployments as dep
from pymender.device.managed.api import ServerApi
from pymender.device.managed.auth import Authenticator
from pymender.device.managed.backoff import Backoff
from pymender.device.managed.deployments import Aborted
from pymender.device.managed.devicekey import DeviceKey, KeyProcess
from pymender.device.managed.identity import device_identity
from pymender.device.managed.inventory import INVENTORY_PATH, attributes, digest, payload
from pymender.device.managed.record import MAX_REBOOTS, REBOOT_GRACE, Record, Records
from pymender.device.managed.walk import DeploymentWalk, Interrupted
from pymender.device.scripts import ScriptRunner
from pymender.errors import ManagedModeError, PymenderError, ServerError, SourceUnreachableError, StateError

log = get_logger(__name__)

T = TypeVar("T")
#: Downloads of one deployment started (power cuts, crashes) before it is given up as failed.
MAX_ATTEMPTS = 3
PID_FILE = "daemon.pid"


def _reboot() -> None:
    subprocess.run(["reboot"], check=False)


class Daemon:
    def __init__(self, config: DeviceConfig, *, mender: MenderPaths | None = None, updater: Updater | None = None,
                 reboot: Callable[[], None] = _reboot, clock: Callable[[], float] = time.monotonic,
                 source_options: dict[str, Any] | None = None, key: DeviceKey | None = None) -> None:
        if not config.server_url:
            raise ManagedModeError("no server configured: the daemon needs ServerURL (or Servers)",
                             hint="set ServerURL in mender.conf, or use the standalone commands")
        self.config = config
        mender = mender or MenderPaths.from_environ()
        self.identity_script = mender.data_dir / "identity" / "mender-device-identity"
        self.inventory_dir = mender.data_dir / "inventory"
        client_cert = None
        if config.https_client_certificate is not None and config.https_client_key is not None:
            client_cert = (config.https_client_certificate, config.https_client_key)
        self.api = ServerApi(config.server_url, ca_file=config.server_certificate, insecure=config.skip_verify,
                             allow_http=config.allow_plain_http_server, client_certificate=client_cert)
        self.updater = updater or Updater(config, report=self._line, source_options=source_options)
        # Its lines go to the deployment's log on the server: what happened, not what to run next.
        self.updater._report = self._line
        self.updater.hints = False
        self.auth: Authenticator | None = None
        self.deployments = dep.DeploymentsClient(self.api)
        self.records = Records(config.data_dir)
        self.record: Record | None = None
        self.reboot = reboot
        self.clock = clock
        #: The device key in this process (tests); by default a helper process signs.
        self.key = key
        self.poll_backoff = Backoff(config.retry_poll_interval_seconds, config.retry_poll_count)
        self.inventory_backoff = Backoff(config.retry_poll_interval_seconds, config.retry_poll_count)
        self.report_backoff = Backoff(config.retry_poll_interval_seconds, config.retry_poll_count)
        self.download_backoff = Backoff(config.retry_poll_interval_seconds, config.retry_poll_count)
        #: The download could not reach its server; it starts again at ``report_due``.
        self.download_waiting = False
        now = clock()
        self.poll_due = now
        self.inventory_due = now
        self.report_due = now
        self.inventory_digest: str | None = None
        self.inventory_sent = False
        self.stopping = False
        self._wake_r: socket.socket | None = None

    # --- the loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Run until SIGTERM or SIGINT."""
        self._signals()
        pid_file = self.config.data_dir / PID_FILE
        pid_file.write_text(f"{os.getpid()}\n", encoding="ascii")
        log.info("pymender daemon started: server %s", self.api.server_url)
        try:
            self.start()
            while not self.stopping:
                timeout = self.tick()
                if not self.stopping:
                    self._wait(timeout)
        finally:
            pid_file.unlink(missing_ok=True)
            log.info("pymender daemon stopped")

    def start(self) -> None:
        """Before the first poll: the key, and the deployment in progress finished."""
        key = self.key or KeyProcess(self.config.data_dir, self.config.device_key_type)
        self.auth = Authenticator(self.api, key, lambda: device_identity(self.identity_script),
                                  self.config.tenant_token)
        self.record = self.records.load()
        if self.record is not None:
            self._resume(self.record)
        self._scripts("Idle", "Enter")

    def _scripts(self, state: str, action: str) -> None:
        """The root filesystem's ``Idle`` and ``Sync`` state scripts (their failures are only
        logged, as Mender's are; "retry later", exit 21, is retried by the runner)."""
        config = self.config
        runner = ScriptRunner(rootfs_dir=config.scripts_dir, artifact_dir=config.artifact_scripts_dir,
                              timeout=config.state_script_timeout_seconds,
                              retry_interval=config.state_script_retry_interval_seconds,
                              retry_timeout=config.state_script_retry_timeout_seconds)
        try:
            runner.run(state, action)
        except PymenderError as err:  # pragma: no cover - Idle and Sync failures are ignored
            log.warning("%s_%s: %s", state, action, err.one_line())

    def tick(self) -> float:
        """Do what is due; the seconds until something is due next."""
        if self.record is not None and self.clock() >= self.report_due:
            if self.record.phase == "reporting":
                self._report_outcome(self.record)
            elif self.record.phase == "downloading" and self.download_waiting:
                self._download_again()
            elif self.record.phase == "installing" and not self.stopping:
                self._resume(self.record)  # a reboot asked for that did not come: go on
        now = self.clock()
        if self.record is None and (now >= self.inventory_due or now >= self.poll_due):
            self._scripts("Idle", "Leave")
            self._scripts("Sync", "Enter")
            if self.clock() >= self.inventory_due:
                self.send_inventory()
            if self.clock() >= self.poll_due:
                self.poll()  # a deployment found runs to its reboot or its end in here
            self._scripts("Sync", "Leave")
            self._scripts("Idle", "Enter")
        due = min(self.poll_due, self.inventory_due)
        if self.record is not None:
            due = self.report_due
        return max(0.0, due - self.clock())

    def _signals(self) -> None:
        self._wake_r, wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno())
        self._wake_w = wake_w

        def check_update(signum: int, frame: Any) -> None:
            log.info("SIGUSR1 received: checking for an update")
            self.poll_due = self.clock()

        def inventory(signum: int, frame: Any) -> None:
            log.info("SIGUSR2 received: sending the inventory")
            self.inventory_due = self.clock()
            self.inventory_digest = None

        def stop(signum: int, frame: Any) -> None:
            log.info("termination signal received: stopping")
            self.stopping = True

        signal.signal(signal.SIGUSR1, check_update)
        signal.signal(signal.SIGUSR2, inventory)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def _wait(self, timeout: float) -> None:
        if self._wake_r is None:
            time.sleep(timeout)
            return
        try:
            select.select([self._wake_r], [], [], timeout)
        except InterruptedError:
            pass
        try:
            while self._wake_r.recv(64):
                pass
        except BlockingIOError:
            pass

    # --- talking to the server ---------------------------------------------------------------------

    def _call(self, what: Callable[[str], T]) -> T:
        """``what(token)``, authenticating first; a 401 drops the token and tries once more."""
        assert self.auth is not None
        try:
            return what(self.auth.token())
        except ServerError as err:
            if err.status != 401 or not self.auth.authorized:
                raise
            log.info("the server no longer accepts the token; authenticating again")
            self.auth.forget()
            return what(self.auth.token())

    def _retry(self, backoff: Backoff, err: PymenderError, regular: float, what: str) -> float:
        interval = getattr(err, "retry_after", None) or backoff.next_interval()
        if interval is None:
            backoff.reset()
            interval = regular
            log.error("%s failed: %s; trying again at the next regular time, in %d s", what, err.one_line(),
                      interval)
        else:
            log.error("%s failed: %s; retrying in %d s", what, err.one_line(), interval)
        return self.clock() + interval

    def _device(self) -> tuple[dict[str, str], str]:
        return self.updater.show_provides(), read_device_type(self.config.device_type_file)

    def send_inventory(self) -> None:
        regular = self.config.inventory_poll_interval_seconds
        try:
            provides, device_type = self._device()
            items = payload(attributes(self.inventory_dir, provides, device_type))
            new = digest(items)
            if new == self.inventory_digest:
                log.info("inventory unchanged, not sent")
            else:
                def put(token: str) -> None:
                    answer = self.api.request("PUT", INVENTORY_PATH, body=items, token=token)
                    if answer.status != 200:
                        raise self.api.error("sending the inventory", answer)
                self._call(put)
                self.inventory_digest = new
                self.inventory_sent = True
                log.info("inventory sent (%d attributes)", len(items))
        except PymenderError as err:
            self.inventory_due = self._retry(self.inventory_backoff, err, regular, "sending the inventory")
            return
        self.inventory_backoff.reset()
        self.inventory_due = self.clock() + regular

    def poll(self) -> None:
        regular = self.config.update_poll_interval_seconds
        try:
            provides, device_type = self._device()
            found = self._call(lambda token: self.deployments.next(token, provides, device_type))
        except PymenderError as err:
            self.poll_due = self._retry(self.poll_backoff, err, regular, "checking for an update")
            return
        self.poll_backoff.reset()
        self.poll_due = self.clock() + regular
        if found is None:
            log.info("no update available")
            if not self.inventory_sent:
                self.inventory_due = self.clock()
            return
        self.deploy(found, provides)

    # --- a deployment --------------------------------------------------------------------------------

    def _line(self, message: str) -> None:
        self._note("info", message)

    def _note(self, level: str, message: str) -> None:
        getattr(log, "error" if level == "error" else "info")("%s", message)
        if self.record is not None:
            self.record = self.record.logged(level, message)

    def _save(self, **changes: Any) -> Record:
        assert self.record is not None
        self.record = self.records.save(self.record._replace(**changes))
        return self.record

    def _status(self, status: str) -> None:
        """An intermediate status: failures other than an abort are logged, not fatal."""
        assert self.record is not None
        record = self.record
        try:
            self._call(lambda token: self.deployments.status(token, record.id, status))
        except ServerError as err:
            if err.status == 409:
                raise Aborted() from err
            log.warning("reporting %s failed: %s", status, err.one_line())
        except PymenderError as err:
            log.warning("reporting %s failed: %s", status, err.one_line())

    def _commit_status(self) -> None:
        """The status before the commit (``installing`` again, as Mender's daemon sends it): the
        update is committed only when the server takes it, so that a new system or module that
        lost the server is not kept. Retried as the final status is; raises the last error when
        the retries are used up, :class:`Aborted` on a 409, and
        :class:`~pymender.device.managed.walk.Interrupted` when the daemon is asked
        to stop while it waits (the next start goes on from the same state)."""
        assert self.record is not None
        record = self.record
        backoff = Backoff(self.config.retry_poll_interval_seconds, self.config.retry_poll_count)
        while True:
            try:
                self._call(lambda token: self.deployments.status(token, record.id, dep.INSTALLING))
                return
            except ServerError as err:
                if err.status == 409:
                    raise Aborted() from err
                error: PymenderError = err
            except PymenderError as err:
                error = err
            interval = getattr(error, "retry_after", None) or backoff.next_interval()
            if interval is None:
                self._note("error", f"reporting installing before the commit failed: {error.one_line()}; "
                                    "giving up, not committed")
                raise error
            log.error("reporting installing before the commit failed: %s; retrying in %d s", error.one_line(),
                      interval)
            self._wait(interval)
            if self.stopping:
                raise Interrupted()

    def deploy(self, found: dep.Deployment, provides: dict[str, str]) -> None:
        log.info("deployment %s: %s", found.id, found.artifact_name)
        self.record = Record(found.id, found.artifact_name, found.uri)
        if provides.get("artifact_name") == found.artifact_name:
            self._note("info", f"{found.artifact_name} is already installed")
            self._finish(dep.ALREADY_INSTALLED)
            return
        self._note("info", f"Deployment with ID {found.id} started: {found.artifact_name}")
        self._save()
        try:
            self._status(dep.DOWNLOADING)
            self._install()
        except Aborted:
            self._abort()

    def _install(self) -> None:
        assert self.record is not None
        record = self._save(phase="downloading", attempts=self.record.attempts + 1)
        try:
            result = self.updater.install(record.uri, stop_before={UpdateState.BEFORE_ARTIFACT_INSTALL_ENTER})
            self.download_backoff.reset()
            if result.committed:
                self._finish(dep.SUCCESS)
                return
            self._save(phase="installing")
            self._status(dep.INSTALLING)
        except SourceUnreachableError as err:
            self._download_later(err)
            return
        except PymenderError as err:
            self._note("error", err.one_line())
            self._finish(dep.FAILURE)
            return
        self._walked(DeploymentWalk(self).install())

    def _download_later(self, err: SourceUnreachableError) -> None:
        """The Artifact's server could not be reached (the network not up yet after a boot, a
        link down): nothing was written. Start the download again after the backoff, as long as
        it lasts; this does not count as an interrupted download."""
        assert self.record is not None
        interval = self.download_backoff.next_interval()
        if interval is None:
            self.download_backoff.reset()
            self._note("error", err.one_line())
            self._finish(dep.FAILURE)
            return
        self._note("error", f"{err.one_line()}; trying the download again in {interval:.0f} s")
        self._save(attempts=self.record.attempts - 1)
        self.download_waiting = True
        self.report_due = self.clock() + interval

    def _download_again(self) -> None:
        self.download_waiting = False
        try:
            self._install()
        except Aborted:
            self._abort()

    def _walked(self, outcome: str | None) -> None:
        """The update walked as far as it goes now: its outcome reported, or (None, only when
        :attr:`stopping` is set) a reboot on its way or the daemon stopping; the next start
        goes on from the state recorded."""
        if outcome is not None:
            self._finish(outcome)
        elif self.record is not None:
            # The reboot normally ends this process; if it does not come, look again later.
            self.report_due = self.clock() + REBOOT_GRACE

    def _resume(self, record: Record) -> None:
        """Go on with the deployment recorded before the daemon stopped (reboot, power cut, crash)."""
        log.info("resuming deployment %s (%s) after %s", record.id, record.artifact_name, record.phase)
        try:
            if record.phase == "reporting":
                self._report_outcome(record)
            elif self.updater.store.pending() is not None:
                self._walked(DeploymentWalk(self).resume())
            elif record.phase == "downloading":
                self._resume_download()
            else:  # the update's end was recorded, not the outcome
                current = self.updater.show_artifact()
                self._finish(dep.SUCCESS if current == record.artifact_name else dep.FAILURE)
        except Aborted:
            self._abort()

    def _resume_download(self) -> None:
        assert self.record is not None
        if self.record.attempts >= MAX_ATTEMPTS:
            self._note("error", f"the download was interrupted {self.record.attempts} times; giving up")
            self._finish(dep.FAILURE)
            return
        self._note("info", "the download was interrupted; starting it again")
        self._install()

    def _abort(self) -> None:
        assert self.record is not None
        log.warning("deployment %s was aborted on the server", self.record.id)
        if self.updater.store.pending() is not None:
            DeploymentWalk(self).abort()
        self.records.clear()
        self.record = None

    def _finish(self, outcome: str) -> None:
        self._note("info" if outcome != dep.FAILURE else "error", f"deployment finished: {outcome}")
        self.download_backoff.reset()
        self.report_backoff.reset()
        self._report_outcome(self._save(phase="reporting", outcome=outcome))

    def _report_outcome(self, record: Record) -> None:
        try:
            self._call(lambda token: self.deployments.status(token, record.id, record.outcome))
            if record.outcome == dep.FAILURE:
                self._call(lambda token: self.deployments.log(token, record.id, list(record.log)))
        except PymenderError as err:
            if isinstance(err, ServerError) and err.status == 409:
                log.warning("deployment %s was aborted on the server", record.id)
            elif isinstance(err, ServerError) and err.status == 413:
                # As Mender's daemon: a request too large is not retried.
                log.error("reporting %s failed: %s; the server does not take it, giving up", record.outcome,
                          err.one_line())
            else:
                interval = getattr(err, "retry_after", None) or self.report_backoff.next_interval()
                if interval is not None:
                    log.error("reporting %s failed: %s; retrying in %d s", record.outcome, err.one_line(), interval)
                    self.report_due = self.clock() + interval
                    return
                log.error("reporting %s failed: %s; giving up", record.outcome, err.one_line())
        else:
            log.info("deployment %s reported: %s", record.id, record.outcome)
        self.records.clear()
        self.record = None
        self.inventory_due = self.clock()  # the installed Artifact may have changed


def daemon_pid(data_dir: Path) -> int | None:
    """The pid of the daemon running on ``data_dir``, or None."""
    try:
        pid = int((data_dir / PID_FILE).read_text(encoding="ascii").strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"daemon" in cmdline else None


def signal_daemon(data_dir: Path, signum: int) -> int:
    """Send ``signum`` to the running daemon; its pid. Refused when no daemon runs."""
    pid = daemon_pid(data_dir)
    if pid is None:
        raise StateError("the pymender daemon is not running", hint="start it with 'pymender daemon' (or its unit)")
    try:
        os.kill(pid, signum)
    except OSError as err:
        raise StateError(f"cannot signal the pymender daemon (pid {pid}): {err.strerror}") from err
    return pid


__all__ = ["MAX_ATTEMPTS", "MAX_REBOOTS", "Daemon", "daemon_pid", "signal_daemon"]
