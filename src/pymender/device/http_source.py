"""HTTP(S) update sources: a download that resumes with a ``Range`` request after a drop.

Kept apart from :mod:`pymender.device.sources` so that installing from a local file never loads
the HTTP and TLS modules. See that module for the contract every source keeps.

After a dropped connection the source waits ``backoff`` seconds before it asks again, twice as
long before each further attempt in a row, at most :data:`MAX_BACKOFF`; a byte that arrives
ends the row.
"""

from __future__ import annotations

import http.client
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymender import __version__
from pymender.device.log import get_logger
from pymender.device.source_base import Source, display_url
from pymender.errors import SourceError, SourceUnreachableError

log = get_logger(__name__)

#: Longest wait between two resume attempts, in seconds.
MAX_BACKOFF = 60.0

_CONTENT_RANGE = re.compile(r"bytes\s+([0-9]+)-([0-9]+)/([0-9]+|\*)\s*", re.ASCII)
# Failures while talking to the server that a new request may cure.
_TRANSIENT: tuple[type[BaseException], ...] = (OSError, http.client.HTTPException)


class HttpSource(Source):
    """An HTTP(S) download that resumes itself after a dropped connection."""

    def __init__(
        self,
        url: str,
        *,
        context: ssl.SSLContext | None,
        retries: int,
        backoff: float,
        timeout: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._response: http.client.HTTPResponse | None = None
        self._sleep = sleep
        self._url = url
        self._retries = retries
        self._backoff = backoff
        self._timeout = timeout
        self._failures = 0  # failed attempts in a row since the last byte arrived
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context),
                                                   SameSchemeRedirects())
        name = display_url(url)
        try:
            response = self._request(name, offset=0, validator=None)
        except _TRANSIENT as err:
            raise SourceUnreachableError(
                f"cannot download {name}: {_reason(err)}",
                hint="check the URL and the network connection",
            ) from err
        self._response = response
        # Resume at the place the redirects led to, not at the first address.
        self._url = response.geturl()
        self._etag = response.headers.get("ETag")
        self._last_modified = response.headers.get("Last-Modified")
        super().__init__(name, _content_length(response))

    # --- reading -------------------------------------------------------------------------------

    def _readinto(self, view: memoryview) -> int:
        while True:
            if self._response is None:
                self._reconnect()
                continue
            try:
                count = self._response.readinto(view)
            except _TRANSIENT as err:
                self._lost(err)
                continue
            if count == 0 and self.size is not None and self.bytes_read < self.size:
                self._lost(ConnectionError("the server closed the connection early"))
                continue
            if count:
                self._failures = 0
            return count

    def _lost(self, err: BaseException) -> None:
        """Forget the broken response; give up when the failures in a row exceed the limit."""
        self._drop_response()
        self._failures += 1
        where = f"at byte {self.bytes_read}" + (f" of {self.size}" if self.size is not None else "")
        if self._failures > self._retries:
            raise SourceError(
                f"download of {self.name} failed {where}: {_reason(err)};"
                f" gave up after {self._retries} attempts to resume",
                hint="check the network connection and the server, then run the install again",
            ) from err
        log.warning(
            "connection to %s lost %s (%s); resuming, attempt %d of %d",
            self.name, where, _reason(err), self._failures, self._retries,
        )

    def _reconnect(self) -> None:
        self._sleep(min(self._backoff * 2 ** (self._failures - 1), MAX_BACKOFF))
        validator = self._etag if self._etag and not self._etag.startswith("W/") else None
        validator = validator or self._last_modified
        try:
            response = self._request(self.name, offset=self.bytes_read, validator=validator)
        except _TRANSIENT as err:
            self._lost(err)
            return
        try:
            self._check_resumed(response)
        except SourceError:
            response.close()
            raise
        self._response = response

    def _check_resumed(self, response: http.client.HTTPResponse) -> None:
        """Refuse an answer that would not continue the very same file at the very same byte."""
        offset = self.bytes_read
        if response.status != 206:
            raise SourceError(
                f"cannot resume the download of {self.name} at byte {offset}: the server answered"
                f" {response.status} instead of 206 (it ignores Range requests,"
                " or the file changed)",
                hint="run the install again, or serve the Artifact from a server that supports"
                " Range requests",
            )
        found = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        start = int(found.group(1)) if found else -1
        total = found.group(3) if found else ""
        if (
            not found
            or start != offset
            or (self.size is not None and total != str(self.size))
            or (self.size is not None and int(found.group(2)) != self.size - 1)
        ):
            raise SourceError(
                f"cannot resume the download of {self.name} at byte {offset}: the server sent"
                f" Content-Range {response.headers.get('Content-Range')!r}",
                hint="run the install again",
            )
        for header, first in (("ETag", self._etag), ("Last-Modified", self._last_modified)):
            if first is not None and response.headers.get(header) != first:
                raise SourceError(
                    f"{self.name} changed on the server during the download"
                    f" ({header} {first!r} became {response.headers.get(header)!r})",
                    hint="run the install again",
                )

    # --- requests ------------------------------------------------------------------------------

    def _request(
        self, name: str, *, offset: int, validator: str | None
    ) -> http.client.HTTPResponse:
        """One GET; raises SourceError when retrying cannot help, an OSError when it may."""
        headers = {"User-Agent": f"pymender/{__version__}", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if validator:
                headers["If-Range"] = validator
        request = urllib.request.Request(self._url, headers=headers)
        try:
            response = self._opener.open(request, timeout=self._timeout)
        except urllib.error.HTTPError as err:
            err.close()
            if offset and err.code >= 500:
                raise ConnectionError(f"HTTP {err.code} {err.reason}") from err
            raise SourceError(
                f"cannot download {name}: the server answered HTTP {err.code} {err.reason}",
                hint="check the URL" if err.code < 500 else "check the server",
            ) from err
        except urllib.error.URLError as err:
            if isinstance(err.reason, ssl.SSLCertVerificationError):
                raise SourceError(
                    f"cannot download {name}: the server's certificate is not trusted"
                    f" ({err.reason.verify_message or err.reason.reason})",
                    hint="set ServerCertificate in the configuration to the CA file that signed"
                    " it, or allow insecure connections explicitly",
                ) from err
            if isinstance(err.reason, BaseException):
                raise ConnectionError(_reason(err.reason)) from err
            raise ConnectionError(str(err.reason)) from err
        assert isinstance(response, http.client.HTTPResponse)
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            response.close()
            raise SourceError(
                f"cannot download {name}: the server sent it with Content-Encoding {encoding}",
                hint="serve the Artifact as it is, without transfer compression",
            )
        return response

    def _drop_response(self) -> None:
        if self._response is not None:
            try:
                self._response.close()
            except _TRANSIENT:
                pass
            self._response = None

    def close(self) -> None:
        if not self.closed:
            self._drop_response()
            super().close()


class SameSchemeRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to the same scheme: an https:// download or API call never
    goes on over plain http:// (nor an http:// one over TLS it was not configured for)."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        old = urllib.parse.urlsplit(req.full_url).scheme.lower()
        new = urllib.parse.urlsplit(newurl).scheme.lower()
        if new != old:
            raise SourceError(f"refusing a redirect from {old}:// to {new}://",
                              hint="the server must not change the scheme of a request")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def tls_context(ca_file: Path | None, insecure: bool,
                client_certificate: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """The TLS settings of an https source: the system's CA store plus ``ca_file``, no checks
    with ``insecure``, and the client certificate and key ``client_certificate`` (PEM files)."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as err:
            raise SourceError(
                f"cannot load the CA certificates in {ca_file}: {_reason(err)}",
                hint="check ServerCertificate in the configuration",
            ) from err
    if client_certificate is not None:
        cert, key = client_certificate
        try:
            context.load_cert_chain(certfile=str(cert), keyfile=str(key))
        except (OSError, ssl.SSLError) as err:
            raise SourceError(
                f"cannot load the client certificate {cert} with its key {key}: {_reason(err)}",
                hint="check HttpsClient's Certificate and Key in the configuration (PEM files, the key unencrypted)",
            ) from err
    if insecure:
        log.warning("certificate checks are off: the server's identity is not verified")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length", "")
    if "chunked" in response.headers.get("Transfer-Encoding", "").lower():
        return None
    return int(value) if value.strip().isdigit() else None


def _reason(err: BaseException) -> str:
    if isinstance(err, http.client.IncompleteRead):
        return "the connection ended before the end of the file"
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err) or type(err).__name__
    return text
