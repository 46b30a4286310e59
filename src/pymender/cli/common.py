"""What every front end shares: parse a command line and run it, turning errors into one line
and an exit code."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from pymender.errors import PymenderError, Tool, UsageError, exit_code


class Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of exiting, so a bad command line is
    reported like every other error: one line, the tool's exit code for usage errors.

    Subcommand parsers are of the same class (argparse makes them of its parser's class).
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, hint=f"see {self.prog} --help")


def run_cli(tool: Tool, main: Callable[[Sequence[str]], int], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)`` and map whatever it raises to one line on stderr and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(args)
    except PymenderError as err:
        print(f"{tool}: error: {err.one_line()}", file=sys.stderr)
        return exit_code(err, tool)
    except KeyboardInterrupt:
        print(f"{tool}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our stdout went away (``... | head``): not an error of ours.
        _silence_stdout()
        return 0
    except OSError as err:
        # An I/O failure nobody mapped more precisely: still one line, never a traceback.
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        reason = err.strerror or errno.errorcode.get(err.errno or 0, "I/O error")
        print(f"{tool}: error: {reason}{where}", file=sys.stderr)
        return 1


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def help_width() -> int:
    """The width argparse would pick for help (``COLUMNS``, else the terminal, else 80; minus 2),
    worked out without :mod:`shutil`, which argparse would import for it on every start."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    stream = sys.__stdout__
    if columns <= 0 and stream is not None:
        try:
            columns = os.get_terminal_size(stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns if columns > 0 else 80) - 2


def setup_logging(level: str, stream: TextIO | None = None) -> None:
    """Log records as ``level: message`` on stderr (or ``stream``, a log file)."""
    import logging  # here, not at the top: the tools that do not log start faster without it

    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(levelname)s: %(message)s",
        stream=stream or sys.stderr,
    )
