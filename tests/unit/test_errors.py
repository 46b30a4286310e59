"""The error hierarchy and the one place that maps it to exit codes."""

from __future__ import annotations

import inspect
import re

import pytest

from helpers import REPO
from pymender import errors
from pymender.errors import (
    REBOOT_REQUIRED,
    ArtifactUnsupportedError,
    ChecksumError,
    ConfigError,
    ImageLayoutError,
    InputError,
    LockedError,
    NothingToDoError,
    PymenderError,
    ScriptError,
    SourceError,
    exit_code,
)

CLASSES = [value for value in vars(errors).values()
           if inspect.isclass(value) and issubclass(value, PymenderError)]


def test_one_line_folds_message_and_hint() -> None:
    err = ConfigError("the file\n  is bad", hint="fix\tit")
    assert str(err) == "the file\n  is bad"
    assert err.one_line() == "the file is bad (fix it)"
    assert ConfigError("plain").one_line() == "plain"


@pytest.mark.parametrize(("error", "tool", "code"), [
    (NothingToDoError("x"), "pymender", 2),
    (LockedError("x"), "pymender", 1),
    (ScriptError("x"), "pymender", 1),
    (ConfigError("x"), "pymender-artifact", 2),
    (ArtifactUnsupportedError("x"), "pymender-artifact", 5),
    (ChecksumError("x"), "pymender-artifact", 4),
    (SourceError("x"), "pymender-artifact", 3),
    (ImageLayoutError("x"), "pymender-image", 2),
    (InputError("x"), "pymender-image", 3),
    (ValueError("not ours"), "pymender", 1),
])
def test_exit_codes(error: BaseException, tool: errors.Tool, code: int) -> None:
    assert exit_code(error, tool) == code


def test_reboot_required_is_an_exit_code_not_an_error() -> None:
    assert REBOOT_REQUIRED == 4
    assert REBOOT_REQUIRED not in {code for _, code in errors._EXIT_CODES["pymender"]}


def test_every_error_without_subclasses_is_raised_somewhere() -> None:
    """A class of the hierarchy that nothing raises is a promise the code does not keep."""
    source = "\n".join(path.read_text(encoding="utf-8") for path in (REPO / "src").rglob("*.py")
                       if path.name != "errors.py")
    leaves = [cls for cls in CLASSES if not any(other is not cls and issubclass(other, cls) for other in CLASSES)]
    unused = [cls.__name__ for cls in leaves if not re.search(rf"\braise {cls.__name__}\(", source)]
    assert len(leaves) > 15 and unused == []
