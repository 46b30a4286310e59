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
"""

EPILOG = """\
exit codes:
  0  success
  1  error (one line on stderr says what and what to do)
  2  nothing to commit or roll back
  4  reboot required (only with install --reboot-exit-code)

The legacy forms -install <URI>, -commit, -rollback and -show-artifact are accepted too.
Configuration: /etc/pymender/pymender.conf, else /etc/mender/mender.conf (see -c).
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=34, width=help_width())


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every command takes, before or after the command name."""
    default: Any = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("global options")
    group.add_argument("-c", "--config", metavar="FILE", default=default,
                       help="configuration file (default: /etc/pymender/pymender.conf, else /etc/mender/mender.conf)")
    group.add_argument("-d", "--data", metavar="DIR", default=default,
                       help="data directory (state store, Artifact scripts); overrides DataDir")
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
    _global_options(install, suppress=True)
    for name, text in (
        ("commit", "keep the running new system (after the reboot); exit 2 if nothing is pending"),
        ("rollback", "go back to the previous system; exit 2 if nothing is pending"),
        ("show-artifact", "print the name of the installed Artifact"),
        ("show-provides", "print what the installed Artifacts provide, as key=value lines"),
    ):
        sub = commands.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".",
                                  formatter_class=_formatter)
        _global_options(sub, suppress=True)
    return parser


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
        raise UsageError("no command given", hint="use install, commit, rollback, show-artifact or show-provides; "
                         "see pymender --help")
    quiet = args.command in ("show-artifact", "show-provides")
    _setup_log(args.log_level or ("warning" if quiet else "info"))
    config = load_config(Path(args.config) if args.config else None,
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

            result = Updater(config, report=say, progress=progress).install(args.uri)
        if result.reboot_required and args.reboot_exit_code:
            return REBOOT_REQUIRED
        return 0
    if args.command == "commit":
        Updater(config, report=say).commit()
        return 0
    Updater(config, report=say).rollback()
    return 0


def run() -> None:
    sys.exit(run_cli("pymender", main))


if __name__ == "__main__":
    run()
