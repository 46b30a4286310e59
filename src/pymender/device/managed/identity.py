"""The device identity: the output of Mender's identity script, as Mender's client reads it.

The script prints ``key=value`` lines; a key seen more than once has a list of values. The
identity is sent as a JSON object (keys sorted, one value as a string, several as a list).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from pymender.errors import InputError

#: How long the script may run.
SCRIPT_TIMEOUT = 60.0
#: The most output read from an identity or inventory script.
MAX_OUTPUT = 1 << 20


def parse_key_values(text: str, where: str) -> dict[str, list[str]]:
    """``key=value`` lines into ``{key: [values...]}``; blank lines are skipped, any other line
    without ``=`` is refused."""
    data: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise InputError(f"{where}: line {number} is not key=value: {line[:80]!r}")
        data.setdefault(key, []).append(value)
    return data


def run_script(path: Path, *, timeout: float = SCRIPT_TIMEOUT) -> str:
    """Run ``path`` and return its stdout; a failure or a timeout is an InputError."""
    try:
        done = subprocess.run([str(path)], capture_output=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise InputError(f"cannot run {path}: {getattr(err, 'strerror', None) or err}") from err
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InputError(f"{path} failed with exit code {done.returncode}"
                         + (f": {message[-1]}" if message else ""))
    if len(done.stdout) > MAX_OUTPUT:
        raise InputError(f"{path} printed more than {MAX_OUTPUT} bytes")
    return done.stdout.decode("utf-8", "replace")


def to_json(data: dict[str, list[str]]) -> str:
    """The identity as Mender sends it: one value as a string, several as a list."""
    return json.dumps({key: values[0] if len(values) == 1 else values for key, values in sorted(data.items())},
                      separators=(",", ":"))


def device_identity(script: Path) -> str:
    """The identity data (JSON text) from the identity script; empty identity is refused."""
    data = parse_key_values(run_script(script), str(script))
    if not data:
        raise InputError(f"{script} printed no identity", hint="it must print key=value lines, e.g. mac=...")
    return to_json(data)


__all__ = ["MAX_OUTPUT", "device_identity", "parse_key_values", "run_script", "to_json"]
