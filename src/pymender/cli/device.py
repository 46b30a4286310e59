"""``pymender``: install, commit and roll back updates on the device (Mender's standalone mode).

This module only parses arguments and prints; the work is done in :mod:`pymender.device.install`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pymender import __version__
from pymender.cli.common import Parser, help_width, run_cli, setup_logging
from pymender.cli.progress import ProgressBar
from pymender.device import log
from pymender.device.config import load_config
from pymender.device.flow import STOPPABLE, stop_points
from pymender.device.install import Updater
from pymender.errors import REBOOT_REQUIRED, UsageError

# Start-up time is part of every install, so this command keeps heavy modules off its common
# paths (tests/unit/cli/test_device_startup.py lists them): no logging unless asked for debug
# output, no shutil for argparse's help width, no dataclasses in the device modules.

#: Mender 2.x spellings (``mender -install URI``) and what they mean now.
LEGACY_COMMANDS = {
    "-install": "install",
    "-commit": "commit",
    "-rollback": "rollback",
    "-show-artifact": "show-artifact",
    "-show-provides": "show-provides",
}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

DESCRIPTION = """\
Install, commit and roll back updates (Mender Artifacts) on an A/B device, in the way of
Mender's standalone mode.

The standalone flow:
  1. pymender install <URI>   write the update to the inactive partition and let the
                              bootloader try it on the next boot (nothing is active yet)
  2. reboot                   the bootloader starts the new system once, on trial
  3. pymender commit          keep the new system; or
     pymender rollback        go back (then reboot), or simply reboot again without
                              committing: the bootloader returns to the old system

<URI> is a local path, a file:// URL, an http:// or https:// URL, or - for stdin.
--stop-before STATE stops install, commit, rollback or resume before that state, and
'pymender resume' goes on from there (Mender 5.x's states and semantics).
"""

EPILOG = """\
exit codes:
  0  success
  1  error (one line on stderr says what and what to do)
  2  nothing to commit, roll back or resume
  4  reboot required (only with install or resume --reboot-exit-code)

The legacy forms -install <URI>, -commit, -rollback and -show-artifact are accepted too.
Configuration: Mender's /var/lib/mender/mender.conf (-b), then /etc/mender/mender.conf, then
pymender's own /etc/pymender/pymender.conf (-c), each overriding the ones before.
Data: /var/lib/pymender, or Mender's /var/lib/mender on a Mender device (-l debug says which).
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=34, width=help_width())


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every command takes, before or after the command name."""
    default: Any = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("global options")
    group.add_argument("-c", "--config", metavar="FILE", default=default,
                       help="pymender's configuration file, read over Mender's two "
                            "(default: /etc/pymender/pymender.conf)")
    group.add_argument("-b", "--fallback-config", metavar="FILE", default=default,
                       help="Mender's fallback configuration file (default: /var/lib/mender/mender.conf)")
    group.add_argument("-d", "--data", metavar="DIR", default=default,
                       help="data directory (state store, Artifact scripts, device_type); overrides DataDir")
    group.add_argument("-l", "--log-level", metavar="LEVEL", choices=LOG_LEVELS, default=default,
                       help=f"one of {', '.join(LOG_LEVELS)} (default: info; warning for show-*)")
    group.add_argument("-E", "--trusted-certs", metavar="FILE", default=default,
                       help="extra CA certificates for https:// sources (overrides ServerCertificate)")
    group.add_argument("--skipverify", "--insecure", dest="skipverify", action="store_true", default=default,
                       help="accept any TLS certificate (testing only; sets SkipVerify)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pymender", description=DESCRIPTION, epilog=EPILOG, formatter_class=_formatter)
    parser.add_argument("-v", "--version", action="version", version=f"pymender {__version__}")
    _global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    install = commands.add_parser(
        "install", help="install an Artifact to the inactive partition", formatter_class=_formatter,
        description="Stream the Artifact at URI (path, file://, http(s)://, or - for stdin) to the "
        "inactive partition and switch the bootloader to try it on the next boot.")
    install.add_argument("uri", metavar="URI")
    install.add_argument("--reboot-exit-code", action="store_true",
                         help="exit with code 4 (not 0) when a reboot is needed to run the update")
    install.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    _stop_before(install)
    _global_options(install, suppress=True)
    for name, text, stops in (
        ("commit", "keep the running new system (after the reboot); exit 2 if nothing is pending", True),
        ("rollback", "go back to the previous system; exit 2 if nothing is pending", True),
        ("resume", "finish an operation that stopped (--stop-before) or was interrupted, as Mender 5.x "
                   "does; exit 2 if nothing is pending", True),
        ("show-artifact", "print the name of the installed Artifact", False),
        ("show-provides", "print what the installed Artifacts provide, as key=value lines", False),
    ):
        sub = commands.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".",
                                  formatter_class=_formatter)
        if name == "resume":
            sub.add_argument("--reboot-exit-code", action="store_true",
                             help="exit with code 4 (not 0) when a reboot is needed to run the update")
        if stops:
            _stop_before(sub)
        _global_options(sub, suppress=True)
    return parser


def _stop_before(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stop-before", metavar="STATE", action="append", default=[],
                        help=f"stop before this state, recorded ('resume' goes on): {', '.join(STOPPABLE)}")


def translate_legacy(argv: Sequence[str]) -> list[str]:
    """Rewrite Mender 2.x's single-dash commands (``-install URI``) to the current ones."""
    return [LEGACY_COMMANDS.get(arg, arg) for arg in argv]


def main(argv: Sequence[str]) -> int:
    try:
        return _main(argv)
    finally:
        log.use_logging()  # the default again, for whoever calls main() next in this process


def _setup_log(level: str) -> None:
    """Log lines as ``LEVEL: message`` on stderr; through :mod:`logging` only for debug output,
    so that the lines of every library show too."""
    if level == "debug":
        setup_logging(level)
    else:
        log.write_to_stderr(level)


def _main(argv: Sequence[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(translate_legacy(argv))
    if args.command is None:
        raise UsageError("no command given", hint="use install, commit, rollback, resume, show-artifact or "
                         "show-provides; see pymender --help")
    stop = stop_points(getattr(args, "stop_before", []))
    quiet = args.command in ("show-artifact", "show-provides")
    _setup_log(args.log_level or ("warning" if quiet else "info"))
    config = load_config(Path(args.config) if args.config else None,
                         fallback=Path(args.fallback_config) if args.fallback_config else None,
                         data_dir=Path(args.data) if args.data else None)
    overrides: dict[str, Any] = {}
    if args.trusted_certs:
        overrides["server_certificate"] = Path(args.trusted_certs)
    if args.skipverify:
        overrides["skip_verify"] = True
    if overrides:
        config = config._replace(**overrides)

    if args.command == "show-artifact":
        print(Updater(config).show_artifact())
        return 0
    if args.command == "show-provides":
        for key, value in Updater(config).show_provides().items():
            print(f"{key}={value}")
        return 0

    def say(line: str) -> None:
        print(line, flush=True)

    if args.command == "install":
        show = sys.stderr.isatty() and not args.no_progress
        with ProgressBar("Installing", enabled=show) as bar:
            def progress(done: int, total: int | None) -> None:
                if total:
                    bar.update(done, total)

            result = Updater(config, report=say, progress=progress).install(args.uri, stop_before=stop)
        if result.reboot_required and args.reboot_exit_code:
            return REBOOT_REQUIRED
        return 0
    if args.command == "commit":
        Updater(config, report=say).commit(stop_before=stop)
        return 0
    if args.command == "resume":
        resumed = Updater(config, report=say).resume(stop_before=stop)
        return REBOOT_REQUIRED if resumed.reboot_required and args.reboot_exit_code else 0
    Updater(config, report=say).rollback(stop_before=stop)
    return 0


def run() -> None:
    sys.exit(run_cli("pymender", main))


if __name__ == "__main__":
    run()
