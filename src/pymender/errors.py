"""The one error hierarchy of pymender, and the one place that maps errors to exit codes.

Every error a user can meet is a :class:`PymenderError`. Its ``str()`` is one line that says what
is wrong; ``hint`` (optional) says what to do about it. The command line front ends print exactly
that and exit with :func:`exit_code`; they never show a traceback. The one exit code that is
not an error, :data:`REBOOT_REQUIRED`, is defined here too, so every code has one home.
"""

from __future__ import annotations

from typing import Literal

Tool = Literal["pymender", "mender-update", "pymender-artifact", "pymender-image"]


class PymenderError(Exception):
    """Base of every error pymender reports to a user."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        """The message and the hint, folded to the single line a user sees."""
        text = " ".join(self.message.split())
        if self.hint:
            text += f" ({' '.join(self.hint.split())})"
        return text


# --- Using the tools -------------------------------------------------------------------------


class UsageError(PymenderError):
    """The command line or a configuration value is wrong."""


class ConfigError(UsageError):
    """The configuration file is missing a key, has a bad value, or cannot be parsed."""


class InputError(PymenderError):
    """An input (file, URL, key, directory) cannot be opened or read."""


class SourceError(InputError):
    """The update source (file, HTTP(S) URL, stdin) failed while it was being read."""


class SourceUnreachableError(SourceError):
    """The update source could not be reached at all (no network, connection refused, timeout):
    nothing was read, and trying again later may succeed."""


class KeyLoadError(InputError):
    """A signing or verification key cannot be loaded or has an unsupported type."""


class DependencyMissingError(PymenderError):
    """An optional Python module needed for this request (zstandard, cryptography) is missing."""


class OutputError(PymenderError):
    """An output file cannot be written."""


# --- Artifacts -------------------------------------------------------------------------------


class ArtifactError(PymenderError):
    """The Artifact is not valid. Nothing was installed from it."""


class ArtifactFormatError(ArtifactError):
    """Wrong structure: member names or order, JSON that does not match its schema."""


class ArtifactUnsupportedError(ArtifactError):
    """A format version, compression or feature this implementation does not support."""


class ArtifactTruncatedError(ArtifactError):
    """The Artifact stream ended before the format says it may."""


class ChecksumError(ArtifactError):
    """A checksum in the manifest is missing or does not match the data."""


class UnsafeArtifactError(ArtifactError):
    """Hostile content: path traversal, links, oversized headers, decompression bombs."""


class SignatureError(ArtifactError):
    """The signature does not verify with the given key."""


class MissingSignatureError(SignatureError):
    """A verification key is configured but the Artifact is not signed."""


# --- The device --------------------------------------------------------------------------------


class IncompatibleArtifactError(PymenderError):
    """The Artifact is valid but not for this device (device type, depends, payload size)."""


class BootEnvError(PymenderError):
    """The bootloader environment cannot be read or written consistently."""


class DeviceError(PymenderError):
    """Partitions or the running root device cannot be determined or written."""


class StateError(PymenderError):
    """The persistent state store is unreadable or the request does not fit the current state."""


class NothingToDoError(StateError):
    """There is no pending update to commit or roll back."""


class LockedError(StateError):
    """Another pymender operation holds the lock."""


class ManagedModeError(PymenderError):
    """The request needs a Mender server (managed mode), and none is configured."""


class ServerError(PymenderError):
    """The Mender server cannot be reached, refused the device, or answered outside its API."""

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, hint=hint)
        #: The HTTP status, when the server answered.
        self.status = status
        #: Seconds from a ``Retry-After`` header (HTTP 429 and 503).
        self.retry_after = retry_after


class ScriptError(PymenderError):
    """A state script failed or timed out."""


class UpdateModuleError(PymenderError):
    """An Update Module failed, timed out, was killed or broke the protocol."""


# --- Disk images -------------------------------------------------------------------------------


class ImageLayoutError(PymenderError):
    """The requested disk image layout does not add up (sizes, alignment, a rootfs too large)."""


class ToolError(PymenderError):
    """An external program (mkfs, mtools, ...) failed."""


# --- Exit codes, in one place ------------------------------------------------------------------

# pymender and mender-update follow Mender's client: 0 success, 1 error (managed mode's
# requests too), 2 nothing to commit, roll back or resume, 4 reboot required (only on request;
# a success, so not in the table: see REBOOT_REQUIRED).
# pymender-artifact follows mender-artifact 3.9, except that bad parameters are not exit 0:
# 1 general, 2 usage, 3 cannot open an input, 4 invalid Artifact, 5 unsupported feature.
_EXIT_CODES: dict[Tool, list[tuple[type[BaseException], int]]] = {
    "pymender": [
        (NothingToDoError, 2),
        (PymenderError, 1),
    ],
    "mender-update": [
        (NothingToDoError, 2),
        (PymenderError, 1),
    ],
    "pymender-artifact": [
        (UsageError, 2),
        (ArtifactUnsupportedError, 5),
        (DependencyMissingError, 5),
        (ArtifactError, 4),
        (InputError, 3),
        (PymenderError, 1),
    ],
    "pymender-image": [
        (UsageError, 2),
        (ImageLayoutError, 2),
        (InputError, 3),
        (PymenderError, 1),
    ],
}


#: ``install --reboot-exit-code`` (and ``mender-update resume --reboot-exit-code``): the update is
#: installed and runs only after a reboot.
#: Not a failure: the command returns it instead of 0 when the user asked for it.
REBOOT_REQUIRED = 4


def exit_code(error: BaseException, tool: Tool) -> int:
    """The process exit code for ``error`` raised by ``tool``."""
    for cls, code in _EXIT_CODES[tool]:
        if isinstance(error, cls):
            return code
    return 1
