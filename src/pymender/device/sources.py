"""Open the update source as a forward-only byte stream: a local file, stdin, or an HTTP(S) URL.

The Artifact reader consumes its input once, front to back, and writes the payload straight to
the inactive partition while it reads. So a source never seeks, and a dropped HTTP connection is
repaired *here*: the download continues with a ``Range`` request from the byte reached, and the
reader (and the partition writer behind it) never notices. Only when the server cannot continue
the same file (no ``206``, another ``Content-Range``, a changed ``ETag``) or the network stays
down for too long does reading fail, with one clear :class:`~pymender.errors.SourceError`.

Every source reports ``size`` (when known: file size or ``Content-Length``) and ``bytes_read``,
so a front end can show progress (see :class:`~pymender.device.source_base.Source`).
"""

from __future__ import annotations

import io
import os
import stat
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from pymender.device.source_base import Source, display_url
from pymender.errors import SourceError

#: Resume attempts in a row that deliver no byte before the download is given up.
DEFAULT_RETRIES = 5
#: Wait before the first resume attempt, in seconds; doubled for each further attempt in a row
#: (up to :data:`pymender.device.http_source.MAX_BACKOFF`).
DEFAULT_BACKOFF = 1.0
#: Socket timeout (connect and each read), in seconds. A stalled read counts as a dropped
#: connection and is resumed.
DEFAULT_TIMEOUT = 60.0

STDIN = "-"
_SCHEMES_HINT = "use a local path, a file://, http:// or https:// URL, or - for stdin"


class FileSource(Source):
    """A local file, a named pipe or stdin."""

    def __init__(self, name: str, file: io.FileIO, size: int | None) -> None:
        super().__init__(name, size)
        self._file = file

    def _readinto(self, view: memoryview) -> int:
        try:
            return self._file.readinto(view) or 0
        except OSError as err:
            raise SourceError(f"reading {self.name} failed: {err.strerror or err}") from err

    def close(self) -> None:
        if not self.closed:
            try:
                self._file.close()
            finally:
                super().close()


def open_source(
    uri: str,
    *,
    ca_file: Path | None = None,
    insecure: bool = False,
    client_certificate: tuple[Path, Path] | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
    timeout: float = DEFAULT_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
) -> Source:
    """Open ``uri`` for reading once, front to back.

    ``uri`` is a local path, a ``file://`` URL, ``-`` (stdin) or an ``http://``/``https://``
    URL. For HTTPS the system's CA store is trusted, plus the certificates in ``ca_file``;
    certificate errors are refused unless ``insecure`` is true; ``client_certificate`` (a PEM
    certificate file and its key file) is presented to servers that ask for one (mutual TLS,
    Mender's ``HttpsClient``). A dropped HTTP connection is
    resumed: up to ``retries`` attempts in a row without progress, waiting ``backoff`` seconds
    before the first and twice as long before each further one (waiting with ``sleep``);
    ``timeout`` bounds every connect and read.
    """
    if retries < 0 or backoff < 0 or timeout <= 0:
        raise ValueError("retries and backoff must be >= 0 and timeout > 0")
    if uri == STDIN:
        try:
            # A duplicate, so that closing the source leaves the process's stdin alone.
            stdin = os.fdopen(os.dup(0), "rb", buffering=0)
        except OSError as err:
            raise SourceError(f"cannot read stdin: {err.strerror or err}") from err
        return FileSource("stdin", stdin, None)
    if not uri:
        raise SourceError("no update source given", hint=_SCHEMES_HINT)
    if "://" not in uri:
        return _open_file(Path(uri), uri)
    scheme = uri.split("://", 1)[0].lower()
    if scheme == "file":
        parts = urllib.parse.urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise SourceError(
                f"cannot open {uri}: a file:// URL must name a local file",
                hint="write file:///path/to/file (three slashes)",
            )
        return _open_file(Path(urllib.parse.unquote(parts.path)), uri)
    if scheme in ("http", "https"):
        # Imported here: the HTTP and TLS modules cost a device memory and start-up time that
        # an install from a local file does not need.
        from pymender.device.http_source import HttpSource, tls_context

        context = tls_context(ca_file, insecure, client_certificate) if scheme == "https" else None
        return HttpSource(uri, context=context, retries=retries, backoff=backoff, timeout=timeout,
                          sleep=sleep)
    raise SourceError(
        f"unsupported update source {display_url(uri)}: scheme {scheme}://", hint=_SCHEMES_HINT
    )


def _open_file(path: Path, name: str) -> FileSource:
    try:
        file = open(path, "rb", buffering=0)
    except OSError as err:
        raise SourceError(
            f"cannot open {name}: {err.strerror or err}", hint="check the path of the Artifact"
        ) from err
    mode = os.fstat(file.fileno()).st_mode
    return FileSource(name, file, os.fstat(file.fileno()).st_size if stat.S_ISREG(mode) else None)


__all__ = ["DEFAULT_BACKOFF", "DEFAULT_RETRIES", "DEFAULT_TIMEOUT", "STDIN", "FileSource", "Source", "open_source"]
