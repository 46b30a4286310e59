"""``mender-update``: pymender with the command line, the messages and the exit codes of Mender 5.x.

A device set up for Mender, and the scripts written for it, keep working when Mender's
``mender-update`` is replaced by this one: the same subcommands and options, Mender's lines on
stdout (``Installed, but not committed.``, ``Committed.``, ``Rolled back.``, ...) and Mender's
exit codes. The work is pymender's (:mod:`pymender.device.install`); pymender's own lines go to
the log (stderr, or ``-L``). Where pymender deliberately differs from Mender, the "Coming from
Mender" page of the documentation says so. This module only parses arguments and prints.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pymender import __version__
from pymender.cli.common import Parser, help_width, run_cli
from pymender.cli.managed import COMMANDS as SERVER_COMMANDS
from pymender.cli.managed import run_managed
from pymender.device import log
from pymender.device.config import load_config
from pymender.device.flow import STOPPABLE, stop_points
from pymender.device.install import ABANDON, Updater
from pymender.device.layout import MenderPaths
from pymender.errors import REBOOT_REQUIRED, NothingToDoError, PymenderError, StateError, UsageError

if TYPE_CHECKING:
    from pymender.device.flow import Flow

_log = log.get_logger(__name__)

#: Mender's log levels and the levels pymender logs at.
LOG_LEVELS = {"trace": "debug", "debug": "debug", "info": "info", "warning": "warning", "error": "error",
              "fatal": "critical"}

#: Mender's result lines (stdout), which scripts look for.
INSTALLING = "Installing artifact..."
EMPTY_PAYLOAD = "Artifact with empty payload. Committing immediately."
STREAMING_FAILED = "Streaming failed."
INSTALLATION_FAILED = "Installation failed."
COMMITTING_FAILED = "Committing failed."
COMMITTED = "Committed."
INSTALLED = "Installed, but not committed.\nUse 'commit' to update, or 'rollback' to roll back the update."
STREAMED = "Streamed to storage, but not installed/enabled."
INSTALLED_AND_COMMITTED = "Installed and committed."
NO_UPDATE = "No update in progress."
CLEANED_UP = "Cleaned up."
ROLLBACK_FAILED = "Rollback failed. System may be in an inconsistent state."
NO_ROLLBACK = "Update Module does not support rollback. System may be in an inconsistent state."
NOT_MODIFIED = "System not modified."
ROLLED_BACK = "Rolled back."
POST_COMMIT_FAILED = "One or more post-commit steps failed."
CLEANUP_FAILED = "Cleanup failed."
AUTO_COMMIT = "Update Module doesn't support rollback. Committing immediately."
REBOOT = "At least one payload requested a reboot of the device it updated."

DESCRIPTION = """\
Install, commit and roll back updates (Mender Artifacts) on an A/B device: Mender 5.x's
mender-update command line, run by pymender in standalone mode.

  mender-update install <ARTIFACT>   write it to the inactive partition, let the bootloader
                                     try it on the next boot
  reboot
  mender-update commit               keep the new system (or: mender-update rollback)

<ARTIFACT> is a local path or an http:// or https:// URL.
"""

EPILOG = f"""\
--stop-before STATE stops before that state, recorded; 'resume' goes on from there. States:
{', '.join(STOPPABLE[:3])},
{', '.join(STOPPABLE[3:])}.

exit codes:
  0  success
  1  error (check-update, send-inventory and daemon too, when no server is configured)
  2  nothing to commit, roll back or resume
  4  reboot required (install and resume, with --reboot-exit-code)

Configuration: /var/lib/mender/mender.conf (-b), /etc/mender/mender.conf (-c) and
/etc/pymender/pymender.conf, each overriding the ones before. Data: the data store found
(Mender's /var/lib/mender on a Mender device; -d names one; -l debug says which).
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=34, width=help_width())


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("global options")
    group.add_argument("-c", "--config", metavar="FILE", default=default,
                       help="Mender's configuration file (default: /etc/mender/mender.conf)")
    group.add_argument("-b", "--fallback-config", metavar="FILE", default=default,
                       help="Mender's fallback configuration file (default: <datastore>/mender.conf)")
    group.add_argument("-d", "--datastore", "--data", dest="datastore", metavar="DIR", default=default,
                       help="the data store (default: /var/lib/mender on a Mender device)")
    group.add_argument("-L", "--log-file", metavar="FILE", default=default, help="log to FILE instead of stderr")
    group.add_argument("-l", "--log-level", metavar="LEVEL", choices=tuple(LOG_LEVELS), default=default,
                       help=f"one of {', '.join(LOG_LEVELS)} (default: info)")
    group.add_argument("-E", "--trusted-certs", metavar="FILE", default=default,
                       help="extra CA certificates for https:// sources (overrides ServerCertificate)")
    group.add_argument("--skipverify", action="store_true", default=default,
                       help="accept any TLS certificate (testing only)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mender-update", description=DESCRIPTION, epilog=EPILOG, formatter_class=_formatter)
    parser.add_argument("-v", "--version", action="version", version=f"{__version__} (pymender)")
    _global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text + ".", formatter_class=_formatter)
        _global_options(sub, suppress=True)
        return sub

    def stop_before(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--stop-before", metavar="STATE", action="append", default=[],
                         help="stop before entering STATE; 'resume' goes on later")

    def reboot_exit_code(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--reboot-exit-code", action="store_true",
                         help="return exit code 4 if a manual reboot is required after the installation")

    install = command("install", "Install a Mender Artifact: a local file or a URL")
    install.add_argument("artifact", metavar="ARTIFACT")
    reboot_exit_code(install)
    stop_before(install)
    resume = command("resume", "Resume an interrupted or stopped operation")
    reboot_exit_code(resume)
    stop_before(resume)
    stop_before(command("commit", "Commit the installed Artifact; exit 2 if no update is in progress"))
    stop_before(command("rollback", "Roll back the installed Artifact; exit 2 if no update is in progress"))
    command("show-artifact", "Print the name of the installed Artifact")
    command("show-provides", "Print what the installed Artifacts provide, as key=value lines")
    for name, why in SERVER_COMMANDS.items():
        command(name, why[0].upper() + why[1:] + " (managed mode)")
    return parser


def main(argv: Sequence[str]) -> int:
    log_file: list[TextIO] = []
    try:
        return _main(argv, log_file)
    finally:
        log.use_logging()
        for file in log_file:
            file.close()


def _setup_log(level: str, log_file: str | None, opened: list[TextIO]) -> None:
    """pymender's log lines at ``level`` and above, as ``LEVEL: message``, on stderr or
    appended to ``log_file``."""
    stream: TextIO | None = None
    if log_file:
        try:
            stream = open(log_file, "a", encoding="utf-8", buffering=1)  # closed by main()
        except OSError as err:
            raise UsageError(f"cannot open the log file {log_file}: {err.strerror or err}") from None
        opened.append(stream)
    log.write_to_stderr(level, stream)


def _main(argv: Sequence[str], opened: list[TextIO]) -> int:
    args = build_parser().parse_args(list(argv))
    if args.command is None:
        raise UsageError("no command given", hint="see mender-update --help")
    stop = stop_points(getattr(args, "stop_before", []))
    _setup_log(LOG_LEVELS[args.log_level or "info"], args.log_file, opened)
    datastore = Path(args.datastore) if args.datastore else None
    mender = MenderPaths.from_environ()
    if datastore is not None:
        mender = mender._replace(datastore=datastore)
    config = load_config(None, main=Path(args.config) if args.config else None,
                         fallback=Path(args.fallback_config) if args.fallback_config else None,
                         data_dir=datastore, mender=mender)
    if args.trusted_certs:
        config = config._replace(server_certificate=Path(args.trusted_certs))
    if args.skipverify:
        config = config._replace(skip_verify=True)
    if args.command in SERVER_COMMANDS:
        return run_managed(args.command, config)

    def say(line: str) -> None:
        print(line, flush=True)

    def logged(line: str) -> None:
        _log.info("%s", line)

    updater = Updater(config, report=logged, on_header=lambda: say(INSTALLING), tool="mender-update")
    if args.command == "show-artifact":
        print(updater.show_artifact() or "unknown")
        return 0
    if args.command == "show-provides":
        for key, value in updater.show_provides().items():
            print(f"{key}={value}")
        return 0
    if args.command == "install":
        updater.bootstrap()  # its failure is reported alone, before any result line (as Mender)
    try:
        if args.command == "install":
            installed = updater.install(args.artifact, stop_before=stop)
            if installed.committed and updater.last_reboot is None:  # not an Update Module's auto-commit
                say(EMPTY_PAYLOAD)
        elif args.command == "commit":
            updater.commit(stop_before=stop, before_reboot=ABANDON)
        elif args.command == "rollback":
            updater.rollback(stop_before=stop)
        else:
            updater.resume(stop_before=stop, before_reboot=ABANDON)
    except PymenderError as err:
        result = results(args.command, updater.last_flow, err, updater.last_reboot)
        for line in result.lines:
            say(line)
        raise
    result = results(args.command, updater.last_flow, None, updater.last_reboot)
    for line in result.lines:
        say(line)
    if result.post_commit_failed:
        raise StateError("an ArtifactCommit_Leave script failed after the commit",
                         hint="the Artifact is recorded with _INCONSISTENT; see the log")
    if result.reboot_required and getattr(args, "reboot_exit_code", False):
        return REBOOT_REQUIRED
    return 0


class Results:
    """What an operation did, in the terms of Mender's result lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.reboot_required = False
        self.post_commit_failed = False


def results(command: str, flow: Flow | None, error: PymenderError | None, reboot: bool | None = None) -> Results:
    """Mender's result lines for ``command``, from the walk ``flow`` took and the ``error`` it
    ended with: which steps were done (downloaded, installed, committed, rolled back), which
    failed, and what that left (rolled back, not modified, inconsistent). ``reboot``: an Update
    Module's answer to NeedsArtifactReboot (None: a rootfs-image, which always needs one)."""
    from pymender.device.flow import Event, UpdateState

    S = UpdateState
    out = Results()
    trace = flow.trace if flow is not None else []
    steps = {(left, entered) for left, _, entered in trace}
    empty = any(event is Event.EMPTY_PAYLOAD for _, event, _ in trace)
    downloaded = empty or (S.DOWNLOAD, S.BEFORE_ARTIFACT_INSTALL_ENTER) in steps
    installed = empty or (S.ARTIFACT_INSTALL_ENTER, S.BEFORE_ARTIFACT_COMMIT_ENTER) in steps
    committed = empty or (S.ARTIFACT_COMMIT_ENTER, S.BEFORE_ARTIFACT_COMMIT_LEAVE) in steps
    events = {event for _, event, _ in trace}
    no_rollback = Event.NO_ROLLBACK in events
    cleanup_failed = Event.CLEANUP_FAILED in events
    rolled_back = not no_rollback and any(
        left is S.ARTIFACT_ROLLBACK_ENTER and entered is not S.ARTIFACT_ROLLBACK_ENTER for left, entered in steps)
    cleaned = (S.CLEANUP, S.IDLE) in steps
    nothing_to_do = isinstance(error, NothingToDoError)
    failed = error is not None and not nothing_to_do
    failed_in = flow.failed_in if flow is not None and flow.failure is not None else None
    # refused before the walk began: nothing changed (an Update Module's failure on the way,
    # raised once the walk is done, is in the walk's events)
    refused = failed and failed_in is None and not events & {Event.ROLLBACK_FAILED, Event.CLEANUP_FAILED}
    out.post_commit_failed = committed and flow is not None and bool(flow.ignored) and not failed
    rollback_failed = Event.ROLLBACK_FAILED in events or failed and failed_in is not None and flow is not None \
        and flow.state in (S.ARTIFACT_ROLLBACK_ENTER, S.ARTIFACT_FAILURE_ENTER) and not flow.stopped
    not_modified = failed and (failed_in is S.DOWNLOAD or (refused and command == "install"))

    failure = ""
    if failed_in is S.DOWNLOAD:
        failure = STREAMING_FAILED
    elif failed_in in (S.BEFORE_ARTIFACT_INSTALL_ENTER, S.ARTIFACT_INSTALL_ENTER):
        failure = INSTALLATION_FAILED
    elif failed_in is S.ARTIFACT_COMMIT_ENTER:
        failure = COMMITTING_FAILED
    done = ""
    if committed and not installed:
        done = COMMITTED
    elif installed and not committed:
        done = INSTALLED
    elif downloaded and not installed:
        done = STREAMED
    elif installed and committed:
        done = INSTALLED_AND_COMMITTED
    elif nothing_to_do:
        done = NO_UPDATE
    elif cleaned and not (downloaded or rolled_back or failed):
        done = CLEANED_UP
    operation = failure if failed and not cleanup_failed else done
    if Event.AUTO_COMMIT in events and installed and (committed or failed):
        out.lines.append(AUTO_COMMIT)
    if operation:
        out.lines += operation.split("\n")
    if rollback_failed:
        out.lines.append(ROLLBACK_FAILED)
    elif no_rollback:
        out.lines.append(NO_ROLLBACK)
    elif not_modified:
        out.lines.append(NOT_MODIFIED)
    elif rolled_back:
        out.lines.append(ROLLED_BACK)
    if out.post_commit_failed:
        out.lines.append(POST_COMMIT_FAILED)
    if cleanup_failed:
        out.lines.append(CLEANUP_FAILED)
    if reboot is not None:
        if reboot and installed and not failed and command in ("install", "resume"):
            out.reboot_required = True
            out.lines.append(REBOOT)
    elif installed and not committed and not failed and command in ("install", "resume") \
            and flow is not None and flow.state is S.BEFORE_ARTIFACT_COMMIT_ENTER:
        out.reboot_required = True
        out.lines.append(REBOOT)
    return out


def run() -> None:
    sys.exit(run_cli("mender-update", main))


if __name__ == "__main__":
    run()
