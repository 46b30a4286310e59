"""HTTP to the Mender server: one request at a time, verified TLS, bounded answers.

Rules every call keeps: ``https://`` is verified against the system's CA store plus
``ServerCertificate`` (``SkipVerify`` turns that off, for tests only); an ``http://`` server is
refused unless ``AllowPlainHTTPServer`` is set; a redirect to another scheme is refused; an
answer body longer than :data:`MAX_BODY` is refused; every connect and read has a timeout. The
JWT goes only into the ``Authorization`` header, never into a log line or an error.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import ssl
import time
import urllib.parse
from pathlib import Path
from typing import Any, NamedTuple

from pymender import __version__
from pymender.device.log import get_logger
from pymender.errors import ServerError, UsageError

log = get_logger(__name__)

#: The longest answer read from the server's API (the JWT, the deployment instructions).
MAX_BODY = 1 << 20
TIMEOUT = 30.0
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)


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


def tls_context(ca_file: Path | None, insecure: bool,
                client_certificate: tuple[Path, Path] | None) -> ssl.SSLContext:
    """The system's CA store plus ``ca_file`` (``ServerCertificate``), the client certificate
    (``HttpsClient``), no checks with ``insecure`` (``SkipVerify``)."""
    context = ssl.create_default_context()
    try:
        if ca_file is not None:
            context.load_verify_locations(cafile=str(ca_file))
        if client_certificate is not None:
            context.load_cert_chain(certfile=str(client_certificate[0]), keyfile=str(client_certificate[1]))
    except (OSError, ssl.SSLError) as err:
        raise UsageError(f"cannot load the TLS files for the server: {getattr(err, 'strerror', None) or err}",
                         hint="check ServerCertificate and HttpsClient in the configuration") from err
    if insecure:
        log.warning("certificate checks are off: the server's identity is not verified")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class ServerApi:
    """Requests to one Mender server, with :mod:`http.client` (not :mod:`urllib.request`,
    which an idle daemon would carry for nothing)."""

    def __init__(self, server_url: str, *, ca_file: Path | None = None, insecure: bool = False,
                 allow_http: bool = False, client_certificate: tuple[Path, Path] | None = None,
                 timeout: float = TIMEOUT) -> None:
        self.server_url = check_server_url(server_url, allow_http=allow_http)
        self._context = (tls_context(ca_file, insecure, client_certificate)
                         if self.server_url.startswith("https:") else None)
        self._timeout = timeout

    def request(self, method: str, path: str, *, body: Any = None, token: str | None = None,
                headers: dict[str, str] | None = None, raw: bytes | None = None) -> Answer:
        """One request; answers of every status come back (the caller decides), only
        transport failures, oversized or unreadable answers raise :class:`ServerError`.
        Redirects are followed within the same scheme only."""
        all_headers = {"User-Agent": f"pymender/{__version__}", "Accept": "application/json"}
        data = raw
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        all_headers.update(headers or {})
        name = f"{method} {path.split('?', 1)[0]}"
        url = self.server_url + path
        for _ in range(MAX_REDIRECTS + 1):
            answer = self._once(name, method, url, data, all_headers)
            location = answer.headers.get("location")
            if answer.status not in _REDIRECTS or not location:
                return answer
            new = urllib.parse.urljoin(url, location)
            old_scheme, new_scheme = urllib.parse.urlsplit(url).scheme, urllib.parse.urlsplit(new).scheme.lower()
            if new_scheme != old_scheme:
                raise ServerError(f"{name}: refusing a redirect from {old_scheme}:// to {new_scheme}://",
                                  hint="the server must not change the scheme of a request")
            if answer.status == 303 or (answer.status in (301, 302) and method != "GET"):
                return answer  # a redirect that would change the request: not followed
            url = new
        raise ServerError(f"{name}: more than {MAX_REDIRECTS} redirects")

    def _once(self, name: str, method: str, url: str, data: bytes | None, headers: dict[str, str]) -> Answer:
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=self._timeout,
                                                     context=self._context)
        else:
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=self._timeout)
        try:
            connection.request(method, target, body=data, headers=headers)
            response = connection.getresponse()
            body_bytes = response.read(MAX_BODY + 1)
            status = response.status
            answer_headers = {key.lower(): value for key, value in response.getheaders()}
        except ssl.SSLCertVerificationError as err:
            raise ServerError(f"{name}: the server's certificate is not trusted ({err.verify_message})",
                              hint="set ServerCertificate to the CA that signed it") from err
        except (OSError, http.client.HTTPException, ValueError) as err:
            reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
            raise ServerError(f"{name}: the connection failed: {reason}") from err
        finally:
            connection.close()
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
