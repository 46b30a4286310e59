"""The device side's log lines, without importing :mod:`logging` on the common paths.

``import logging`` (with the ``traceback``, ``string`` and ``weakref`` modules it pulls in) is
one of the largest parts of the ``pymender`` command's start-up, which every install pays on a
small board. The device modules log only a few plain lines, so they use the loggers of this
module, which have the same calls (``log.info("%s ...", value)``) and act in one of two ways:

- by default (the device modules used as a library, in tests, by other programs) every line is
  handed to :mod:`logging` under the module's name, imported at the first line, so handlers and
  log capture work as with any library;
- after :func:`write_to_stderr` (the ``pymender`` command, unless asked for debug output) a line
  at the chosen level or above is written to stderr as ``LEVEL: message``: exactly what
  ``logging.basicConfig`` with the command's format would print, without the module.
"""

from __future__ import annotations

import sys
from typing import TextIO

DEBUG = 10
INFO = 20
WARNING = 30
ERROR = 40
CRITICAL = 50
#: The ``-l/--log-level`` names and their levels (the numbers :mod:`logging` uses).
LEVELS = {"debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR, "critical": CRITICAL}
_NAMES = {level: name.upper() for name, level in LEVELS.items()}

#: None: hand lines to :mod:`logging`; else the lowest level written straight to stderr.
_threshold: int | None = None


#: Where lines go after :func:`write_to_stderr` (None: stderr at the time of writing).
_stream: TextIO | None = None


def write_to_stderr(level: str, stream: TextIO | None = None) -> None:
    """Write lines at ``level`` (a :data:`LEVELS` name) and above to stderr (or to ``stream``,
    a log file) from now on."""
    global _threshold, _stream
    _threshold = LEVELS[level]
    _stream = stream


def use_logging() -> None:
    """Hand every line to :mod:`logging` again (the default)."""
    global _threshold, _stream
    _threshold = None
    _stream = None


class Logger:
    """A named source of log lines, with the calls of :class:`logging.Logger` the device uses."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def debug(self, message: str, *args: object) -> None:
        self._log(DEBUG, message, args)

    def info(self, message: str, *args: object) -> None:
        self._log(INFO, message, args)

    def warning(self, message: str, *args: object) -> None:
        self._log(WARNING, message, args)

    def error(self, message: str, *args: object) -> None:
        self._log(ERROR, message, args)

    def _log(self, level: int, message: str, args: tuple[object, ...]) -> None:
        threshold = _threshold
        if threshold is None:
            import logging

            logging.getLogger(self.name).log(level, message, *args)
        elif level >= threshold:
            stream = _stream or sys.stderr
            stream.write(f"{_NAMES[level]}: {message % args if args else message}\n")
            stream.flush()


def get_logger(name: str) -> Logger:
    """The logger for the module ``name`` (pass ``__name__``)."""
    return Logger(name)


__all__ = ["LEVELS", "Logger", "get_logger", "use_logging", "write_to_stderr"]
