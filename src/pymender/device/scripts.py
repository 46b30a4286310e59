"""State scripts: run the user's hooks around each update state, with Mender's rules.

A device built for Mender already carries state scripts, and Artifacts carry their own; pymender
runs both exactly as Mender's client does, so they keep working unchanged:

- Names are ``<State>_<Enter|Leave|Error>_<NN>[_<description>]`` with exactly two digits; other
  files (``version``, ``README``, ``Download_Enter_100``) are never run. Scripts of one state and
  action run in lexical order of their names, which is the order of ``NN`` and then of the rest.
- ``Idle``, ``Sync`` and ``Download`` scripts come only from the root filesystem's directory
  (default ``/etc/mender/scripts``); every ``Artifact*`` script comes only from the directory the
  installer fills from the Artifact header.
- A directory whose scripts are about to run must hold a ``version`` file saying ``3`` (or the
  older ``2``); a missing or other version is an error, as with Mender's 3.x client.
- Exit code 0 continues, 21 means "retry later" (run the same script again every
  ``retry_interval`` seconds, up to ``retry_timeout`` seconds after its first run), anything else
  is a failure. A script running longer than ``timeout`` seconds is killed with its whole process
  group and counts as failed.
- In ``*_Error``, ``ArtifactCommit_Leave``, ``ArtifactRollback*``, ``ArtifactFailure*`` (and
  ``Idle``/``Sync``) a failure is only logged and the next script still runs; elsewhere the first
  failure stops the state with :class:`~pymender.errors.ScriptError`.
- Output (stdout and stderr, the last 10 KiB of each) goes to the log.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pymender.artifact.model import ARTIFACT_SCRIPT_STATES
from pymender.device.log import get_logger
from pymender.errors import ArtifactFormatError, ScriptError, UnsafeArtifactError
from pymender.sysio import create_file, fsync_dir

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import IO

# Running a script needs subprocess, tempfile and signal: they are imported where used, since
# most installs run no script and the imports cost start-up time.

log = get_logger(__name__)

T = TypeVar("T")

DEFAULT_ROOTFS_DIR = Path("/etc/mender/scripts")
DEFAULT_TIMEOUT = 3600.0  # StateScriptTimeoutSeconds
DEFAULT_RETRY_INTERVAL = 60.0  # StateScriptRetryIntervalSeconds
DEFAULT_RETRY_TIMEOUT = 1800.0  # StateScriptRetryTimeoutSeconds

#: States whose scripts live on the root filesystem; all others come from the Artifact.
ROOTFS_STATE_NAMES = ("Idle", "Sync", "Download")
STATES = ROOTFS_STATE_NAMES + ARTIFACT_SCRIPT_STATES
ACTIONS = ("Enter", "Leave", "Error")
ROOTFS_STATES = frozenset(ROOTFS_STATE_NAMES)
#: States standalone mode runs (never Idle, Sync or the reboot states: the client never reboots).
STANDALONE_STATES = (
    "Download", "ArtifactInstall", "ArtifactCommit", "ArtifactRollback", "ArtifactFailure"
)
VERSION_FILE = "version"
SUPPORTED_VERSIONS = ("2", "3")
#: The version the installer writes next to the Artifact scripts it stores.
STORED_VERSION = "3"
RETRY_LATER = 21
OUTPUT_LIMIT = 10 * 1024

SCRIPT_NAME = re.compile(
    rf"(?P<state>{'|'.join(STATES)})_(?P<action>{'|'.join(ACTIONS)})"
    r"_(?P<order>[0-9]{2})(?:_\S+)?",
    re.ASCII,
)


def errors_ignored(state: str, action: str) -> bool:
    """Whether a failing script of ``state``/``action`` is only logged (Mender's rule)."""
    return (
        action == "Error"
        or (state, action) == ("ArtifactCommit", "Leave")
        or state
        in ("ArtifactRollback", "ArtifactRollbackReboot", "ArtifactFailure", "Idle", "Sync")
    )


class ScriptRunner:
    """Finds and runs the state scripts of one state and action.

    ``rootfs_dir`` holds the root filesystem's scripts (``Idle``, ``Sync``, ``Download``);
    ``artifact_dir`` the scripts stored from the Artifact being installed (``None``: none).
    Times are in seconds: ``timeout`` per run of a script, ``retry_interval`` and
    ``retry_timeout`` for scripts that exit with 21 ("retry later"), measured with ``clock``
    (seconds, monotonic) and waited with ``sleep``; tests pass their own.
    """

    def __init__(
        self,
        rootfs_dir: Path = DEFAULT_ROOTFS_DIR,
        artifact_dir: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        retry_timeout: float = DEFAULT_RETRY_TIMEOUT,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if timeout <= 0 or retry_interval < 0 or retry_timeout < 0:
            raise ValueError("timeout must be > 0, retry_interval and retry_timeout >= 0")
        self.rootfs_dir = Path(rootfs_dir)
        self.artifact_dir = Path(artifact_dir) if artifact_dir is not None else None
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.retry_timeout = retry_timeout
        self._clock = clock
        self._sleep = sleep

    def directory_for(self, state: str) -> Path | None:
        """Where the scripts of ``state`` live."""
        _check(state, "Enter")
        return self.rootfs_dir if state in ROOTFS_STATES else self.artifact_dir

    def scripts(self, state: str, action: str) -> list[Path]:
        """The scripts of ``state``/``action`` in the order they run (no version check)."""
        _check(state, action)
        directory = self.directory_for(state)
        if directory is None:
            return []
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        except OSError as err:
            raise ScriptError(
                f"cannot list the state scripts in {directory}: {err.strerror}"
            ) from err
        found = []
        for name in names:
            match = SCRIPT_NAME.fullmatch(name)
            if match and match["state"] == state and match["action"] == action:
                found.append(name)
        return [directory / name for name in sorted(found)]

    def run(self, state: str, action: str) -> list[ScriptError]:
        """Run the scripts of ``state``/``action``, e.g. ``run("ArtifactInstall", "Enter")``.

        Raises :class:`ScriptError` at the first failure, unless failures of this state and
        action are ignored (see :func:`errors_ignored`): then every script runs and the failures
        are logged and returned, so the caller can mark the installation inconsistent.
        """
        ignore = errors_ignored(state, action)
        ignored: list[ScriptError] = []
        try:
            scripts = self.scripts(state, action)
            if scripts:
                _check_version(scripts[0].parent)
        except ScriptError as err:
            if not ignore:
                raise
            log.warning("%s (ignored in %s_%s)", err.one_line(), state, action)
            return [err]
        for script in scripts:
            try:
                self._run_with_retries(script)
            except ScriptError as err:
                if not ignore:
                    raise
                log.warning("%s (ignored in %s_%s)", err.one_line(), state, action)
                ignored.append(err)
        return ignored

    def run_state(self, state: str, body: Callable[[], T]) -> T:
        """Run ``<state>_Enter`` scripts, then ``body()``, then ``<state>_Leave`` scripts.

        When any of the three fails, ``Leave`` is not run (if it has not yet), the
        ``<state>_Error`` scripts run (their own failures are only logged), and the original
        error propagates. Failures of ``Leave`` scripts that are ignored in this state (see
        :func:`errors_ignored`) do not count; call :meth:`run` directly to see them.
        """
        try:
            self.run(state, "Enter")
            result = body()
            self.run(state, "Leave")
        except Exception:
            self.run(state, "Error")
            raise
        return result

    # --- one script ----------------------------------------------------------------------------

    def _run_with_retries(self, script: Path) -> None:
        if not script.is_file() or not os.access(script, os.X_OK):
            raise ScriptError(
                f"state script {script} is not an executable file",
                hint="make it executable (chmod +x) or remove it",
            )
        first = self._clock()
        attempt = 1
        while True:
            log.info("running state script %s", script)
            code = self._execute(script)
            if code == 0:
                return
            if code != RETRY_LATER:
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                raise ScriptError(
                    f"state script {script.name} {how}", hint="see its output in the log"
                )
            elapsed = self._clock() - first
            if elapsed + self.retry_interval > self.retry_timeout:
                raise ScriptError(
                    f"state script {script.name} still asked to retry later (exit code 21) after"
                    f" {attempt} runs in {elapsed:.0f} s",
                    hint="raise StateScriptRetryTimeoutSeconds if it needs longer",
                )
            log.info(
                "state script %s asked to retry later; running it again in %g s",
                script.name, self.retry_interval,
            )
            self._sleep(self.retry_interval)
            attempt += 1

    def _execute(self, script: Path) -> int:
        """Run ``script`` once in its own process group; its exit code (negative: signal)."""
        import subprocess
        import tempfile

        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    [str(script)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as error:
                raise ScriptError(
                    f"cannot run state script {script}: {error.strerror or error}",
                    hint="check its first line (#!) and its permissions",
                ) from error
            try:
                code = proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
                _log_output(script.name, out, err)
                raise ScriptError(
                    f"state script {script.name} did not finish within {self.timeout:g} s"
                    " and was killed",
                    hint="raise StateScriptTimeoutSeconds if it needs longer",
                ) from None
            except BaseException:
                _kill_group(proc.pid)
                proc.wait()
                raise
            _log_output(script.name, out, err)
            return code


def store_artifact_scripts(directory: Path, scripts: Mapping[str, bytes]) -> None:
    """Replace the contents of ``directory`` with the Artifact's state scripts and a version file.

    Every name is checked before anything is written: a bare file name following the state
    script pattern, nothing that could reach outside ``directory``. Scripts are stored mode 0755
    and fsynced; the new directory is built beside the old one and swapped in by renames, so a
    crash leaves either the old set or the new one. Passing no scripts empties the directory.
    """
    directory = Path(directory)
    for name in scripts:
        _check_stored_name(name)
    parent = directory.parent
    staging = parent / f".{directory.name}.new"
    retired = parent / f".{directory.name}.old"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for leftover in (staging, retired):
            _remove(leftover)
        staging.mkdir(mode=0o755)
        for name, data in sorted(scripts.items()):
            create_file(staging / name, data, 0o755)
        create_file(staging / VERSION_FILE, STORED_VERSION.encode(), 0o644)
        fsync_dir(staging)
        if directory.is_symlink() or directory.exists():
            os.rename(directory, retired)
        os.rename(staging, directory)
        fsync_dir(parent)
        _remove(retired)
    except OSError as err:
        raise ScriptError(
            f"cannot store the Artifact's state scripts in {directory}: {err.strerror or err}",
            hint="check that the data directory is writable and not full",
        ) from err


# --- helpers -------------------------------------------------------------------------------------


def _check(state: str, action: str) -> None:
    if state not in STATES or action not in ACTIONS:
        raise ValueError(f"unknown state script kind {state}_{action}")


def _check_version(directory: Path) -> None:
    path = directory / VERSION_FILE
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        raise ScriptError(
            f"the state scripts in {directory} have no {VERSION_FILE} file",
            hint=f"add a file {path} containing {STORED_VERSION}",
        ) from None
    except OSError as err:
        raise ScriptError(f"cannot read {path}: {err.strerror}") from err
    if text not in SUPPORTED_VERSIONS:
        raise ScriptError(
            f"the state scripts in {directory} have version {text[:20]!r}; supported are"
            f" {', '.join(SUPPORTED_VERSIONS)}",
            hint=f"write {STORED_VERSION} into {path} once the scripts follow that format",
        )


def _check_stored_name(name: str) -> None:
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
    ):
        raise UnsafeArtifactError(
            f"the Artifact carries a state script with the unsafe name {name!r}",
            hint="state scripts must be plain file names",
        )
    match = SCRIPT_NAME.fullmatch(name)
    if not match:
        raise ArtifactFormatError(
            f"the Artifact carries a state script with an invalid name {name!r}",
            hint="names are <State>_<Enter|Leave|Error>_<NN>[_<description>]",
        )
    if match["state"] in ROOTFS_STATES:
        log.warning(
            "the Artifact carries %s: %s scripts run only from the root filesystem, never from"
            " an Artifact", name, match["state"],
        )


def _remove(path: Path) -> None:
    """Delete a file, or a directory of files such as this module stores.

    Flat directories are emptied here rather than by :mod:`shutil` (with the compression modules
    it imports, start-up time every install would pay); anything deeper goes to ``rmtree``.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        os.unlink(path)
        return
    try:
        for name in os.listdir(path):
            os.unlink(path / name)
        os.rmdir(path)
    except OSError:  # a subdirectory, say: not one of ours
        import shutil

        shutil.rmtree(path)


def _kill_group(pgid: int) -> None:
    import signal

    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _log_output(name: str, out: IO[bytes], err: IO[bytes]) -> None:
    for stream, label in ((out, "stdout"), (err, "stderr")):
        size = stream.seek(0, os.SEEK_END)
        if not size:
            continue
        stream.seek(max(0, size - OUTPUT_LIMIT))
        text = stream.read().decode("utf-8", "replace")
        if size > OUTPUT_LIMIT:
            log.info("%s %s: (first %d bytes not shown)", name, label, size - OUTPUT_LIMIT)
        for line in text.splitlines():
            log.info("%s %s: %s", name, label, line)
