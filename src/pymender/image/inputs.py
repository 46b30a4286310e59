"""Checks of the files and directories an image command reads and writes, shared by commands.

Each check raises one line through :mod:`pymender.errors` that names the path and what is wrong
with it, before anything is written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pymender.errors import InputError, OutputError, UsageError


def file_size(path: Path, what: str) -> int:
    """The size of the regular file ``path``; refuse one that is missing or cannot be read."""
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    if not path.is_file():
        raise InputError(f"{what} {path} is not a regular file")
    try:
        with open(path, "rb") as file:
            return os.fstat(file.fileno()).st_size
    except PermissionError:
        raise InputError(f"{what} {path} cannot be read (permission denied)") from None


def check_dir(path: Path, what: str) -> None:
    """Refuse a directory that is missing or cannot be listed."""
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    if not path.is_dir():
        raise InputError(f"{what} {path} is not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise InputError(f"{what} {path} cannot be read (permission denied)")


def check_output(output: Path, hint: str) -> None:
    """Refuse an output whose directory is missing or read-only, or that is not a regular file.

    ``hint`` says what to do instead of writing to something that is not a file (a device).
    """
    out_dir = output.parent
    if not out_dir.is_dir():
        raise OutputError(f"output directory {out_dir} does not exist")
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {out_dir} is not writable")
    if output.exists() and not output.is_file():
        raise OutputError(f"output {output} exists and is not a regular file", hint=hint)


def check_not_inside(output: Path, directory: Path, what: str) -> None:
    """Refuse an output inside the directory it is made from: the scratch files beside it would
    be copied in too."""
    try:
        output.parent.resolve().relative_to(directory.resolve())
    except ValueError:
        return
    raise UsageError(
        f"output {output} is inside the {what} {directory}",
        hint="write it outside the directory whose files go into it",
    )


def work_dir(output: Path) -> tempfile.TemporaryDirectory[str]:
    """A scratch directory beside ``output``, so the finished file is renamed, not copied."""
    try:
        return tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.")
    except OSError as err:
        raise OutputError(f"cannot write {output}: {err.strerror}") from None
