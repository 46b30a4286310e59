"""HTTP to the Mender server: one request at a time, verified TLS, bounded answers.

Rules every call keeps: ``https://`` is verified against the system's CA store plus
``ServerCertificate`` (``SkipVerify`` turns that off, for tests only); an ``http://`` server is
refused unless ``AllowPlainHTTPServer`` is set; a redirect to another scheme is refused; an
answer body longer than :data:`MAX_BODY` is refused; every connect and read has a timeout. The
JWT goes only into the ``Authorization`` header, never into a log line or an error.
"""

from __future__ import annotations

import email.utils
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

from pymender import __version__
from pymender.device.http_source import SameSchemeRedirects, tls_context
from pymender.device.log import get_logger
from pymender.errors import ServerError, SourceError, UsageError

log = get_logger(__name__)

#: The longest answer read from the server's API (the JWT, the deployment instructions).
MAX_BODY = 1 << 20
TIMEOUT = 30.0


class Answer(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as err:
            raise ServerError(f"the server answered HTTP {self.status} with a body that is not JSON",
                              status=self.status) from err


def check_server_url(url: str, *, allow_http: bool) -> str:
    """The server URL without a trailing slash; refused unless https:// (or http:// allowed)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise UsageError(f"ServerURL {url!r} is not an https:// URL")
    if parts.scheme == "http" and not allow_http:
        raise UsageError(f"refusing the plain http:// server {url}: its answers and the device's JWT could "
                         "be read and changed on the way",
                         hint="use https://, or set AllowPlainHTTPServer to true for a test server")
    return url.rstrip("/")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ServerApi:
    """Requests to one Mender server."""

    def __init__(self, server_url: str, *, ca_file: Path | None = None, insecure: bool = False,
                 allow_http: bool = False, client_certificate: tuple[Path, Path] | None = None,
                 timeout: float = TIMEOUT) -> None:
        self.server_url = check_server_url(server_url, allow_http=allow_http)
        handlers: list[Any] = [SameSchemeRedirects()]
        if self.server_url.startswith("https:"):
            try:
                context = tls_context(ca_file, insecure, client_certificate)
            except SourceError as err:
                raise UsageError(err.message, hint=err.hint) from err
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)
        self._timeout = timeout

    def request(self, method: str, path: str, *, body: Any = None, token: str | None = None,
                headers: dict[str, str] | None = None, raw: bytes | None = None) -> Answer:
        """One request; answers of every status come back (the caller decides), only
        transport failures, oversized or unreadable answers raise :class:`ServerError`."""
        all_headers = {"User-Agent": f"pymender/{__version__}", "Accept": "application/json"}
        data = raw
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        all_headers.update(headers or {})
        request = urllib.request.Request(self.server_url + path, data=data, headers=all_headers, method=method)
        name = f"{method} {path.split('?', 1)[0]}"
        try:
            try:
                response = self._opener.open(request, timeout=self._timeout)
            except urllib.error.HTTPError as err:
                response = err
            with response:
                body_bytes = response.read(MAX_BODY + 1)
                status = int(response.status or 0)
                answer_headers = {key.lower(): value for key, value in response.headers.items()}
        except SourceError as err:
            raise ServerError(f"{name}: {err.message}") from err
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise ServerError(f"{name}: the server's certificate is not trusted ({reason.verify_message})",
                                  hint="set ServerCertificate to the CA that signed it") from err
            raise ServerError(f"{name}: cannot reach the server: {getattr(reason, 'strerror', None) or reason}") \
                from err
        except (OSError, ValueError) as err:
            raise ServerError(f"{name}: the connection failed: {err}") from err
        if len(body_bytes) > MAX_BODY:
            raise ServerError(f"{name}: the answer is longer than {MAX_BODY} bytes", status=status)
        return Answer(status, body_bytes, answer_headers)

    def error(self, name: str, answer: Answer) -> ServerError:
        """The error for an answer the caller did not expect, with the server's own message."""
        message = ""
        try:
            document = json.loads(answer.body)
            if isinstance(document, dict) and isinstance(document.get("error"), str):
                message = ": " + document["error"][:200]
        except (ValueError, UnicodeDecodeError):
            pass
        return ServerError(f"{name}: the server answered HTTP {answer.status}{message}", status=answer.status,
                           retry_after=_retry_after(answer.headers.get("retry-after")))


__all__ = ["MAX_BODY", "Answer", "ServerApi", "check_server_url"]
