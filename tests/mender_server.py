"""A Mender server for tests: the device APIs, checked against the server's own specifications.

:class:`MenderServer` answers the calls a device makes (authentication, inventory, deployments:
``next``, status, log) and serves the Artifacts of its deployments (with ``Range``, as the
storage a real server links to does). Every request it receives and every answer it gives is
validated with ``openapi-core`` against the OpenAPI files in ``fixtures/mender-server-api``; a
violation is recorded in :attr:`MenderServer.violations` (and a request that violates the
specification is answered 400, as the real server would), and the ``server`` fixture fails the
test when there is any.

Where the published files and the server a device meets today differ, the server is followed,
and the difference is listed here:

- ``auth_requests`` is declared with the ``DeviceJWT`` security of the whole file; a device
  cannot hold a JWT before it authenticates, and the server does not ask for one there. Loaded
  with no security for that operation.
- Answers declared with ``content: {}`` (204) have no body; loaded without the empty content.
- The token of a successful authentication is declared as a JSON string; the server sends it
  bare, as ``application/jwt``, and Mender's clients read it so. Served so, and validated as a
  string of that media type.
- ``POST /api/devices/v2/deployments/device/deployments/next`` (the device's provides as JSON)
  is what Mender's client sends first; the published files do not have it. With ``v2=False``
  (the default) the server answers it 404, as a server without it does, and the client goes on
  with the v1 ``GET`` the files describe. With ``v2=True`` the body is checked for the shape
  the client sends (``device_provides`` with string values including ``device_type`` and
  ``artifact_name``).
- ``POST /api/devices/v1/deployments/device/deployments/next`` with the provides as a bare
  JSON object (``artifact_name``, ``device_type``, ...) is what Mender's 3.x client falls back
  to; the server's routing accepts it. Answered, with the body checked likewise.

The server listens on 127.0.0.1 only. ``device_host`` names the address its devices reach it
at, when that is another one (QEMU's guests reach the host's loopback at 10.0.2.2): the
Artifacts' download links carry it, and :attr:`MenderServer.device_url` is what a device's
``ServerURL`` names.

Failure injection (:meth:`MenderServer.inject`): ``down`` (the connection closed without an
answer), ``500``, ``503`` (with ``Retry-After``), ``slow`` (the answer delayed), ``garbage``
(200 with a body that is not JSON), ``huge`` (an answer far beyond any limit), ``401`` (the
token revoked: the device must authenticate again), ``409`` (to a status: the deployment was
aborted), ``redirect-http`` (a redirect to an
``http://`` URL). Injected answers are deliberately outside the specification and not validated.
A deployment's Artifact download can be cut off (``cut_after``, ``cuts``) or slowed down
(``rate``, bytes per second, changeable while the test runs); ``served`` counts its bytes sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

SPECS = Path(__file__).parent / "fixtures" / "mender-server-api"
AUTH = "/api/devices/v1/authentication/auth_requests"
NEXT_V1 = "/api/devices/v1/deployments/device/deployments/next"
NEXT_V2 = "/api/devices/v2/deployments/device/deployments/next"
DEPLOYMENTS = "/api/devices/v1/deployments/device/deployments/"
INVENTORY = "/api/devices/v1/inventory/device/attributes"
DOWNLOAD = "/download/"
FINAL = ("success", "failure", "already-installed")


def load_spec(name: str) -> OpenAPI:
    path = SPECS / name
    document = yaml.safe_load(path.read_text())
    for item in document["paths"].values():
        for operation in item.values():
            for answer in operation.get("responses", {}).values():
                if answer.get("content") == {}:
                    del answer["content"]
            if operation.get("operationId") == "DeviceAuth Authenticate Device":
                operation["security"] = []
                operation["responses"]["200"]["content"]["application/jwt"] = {
                    "schema": {"type": "string", "format": "binary"}}
    return OpenAPI.from_dict(document, base_uri=path.as_uri())


_SPECS: dict[str, OpenAPI] = {}


def spec_for(path: str) -> OpenAPI | None:
    name = ("deviceauth/devices_v1.yaml" if path.startswith("/api/devices/v1/authentication/") else
            "deployments/devices_v1.yaml" if path.startswith("/api/devices/v1/deployments/") else
            "inventory/devices_v1.yaml" if path.startswith("/api/devices/v1/inventory/") else None)
    if name is None:
        return None
    if name not in _SPECS:
        _SPECS[name] = load_spec(name)
    return _SPECS[name]


def verify_signature(pubkey_pem: str, body: bytes, signature_b64: str) -> bool:
    try:
        key = serialization.load_pem_public_key(pubkey_pem.encode())
        signature = base64.b64decode(signature_b64, validate=True)
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, body, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, body)
        else:
            return False
    except Exception:
        return False
    return True


@dataclass
class Device:
    id: str
    id_data: str
    pubkey: str
    status: str = "pending"
    tenant_token: str | None = None
    inventory: list[dict[str, Any]] = field(default_factory=list)
    inventory_puts: int = 0


@dataclass
class Deployment:
    id: str
    artifact_name: str
    artifact: Path
    device_types: tuple[str, ...] = ("qemux86-64",)
    #: Status reports per device id, in order.
    statuses: dict[str, list[str]] = field(default_factory=dict)
    logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Cut the download off after this many bytes, this many times.
    cut_after: int | None = None
    cuts: int = 0
    #: Send the Artifact at most this many bytes per second (None: as fast as it goes); read at
    #: every chunk, so a test can lift it while a download runs.
    rate: int | None = None
    #: Bytes of the Artifact sent so far, over every download request.
    served: int = 0


@dataclass
class Injection:
    mode: str
    count: int
    prefix: str
    delay: float = 0.0
    #: Requests to let through first.
    after: int = 0


class MenderServer:
    def __init__(self, *, accept: bool = True, tenant_token: str | None = None, v2: bool = False,
                 tls: tuple[Path, Path] | None = None, device_host: str = "127.0.0.1") -> None:
        self.accept = accept
        self.tenant_token = tenant_token
        self.v2 = v2
        self.devices: dict[str, Device] = {}
        self.tokens: dict[str, str] = {}
        self.deployments: list[Deployment] = []
        self.violations: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.injections: list[Injection] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        host, port = self.httpd.server_address[:2]
        self.url = f"{scheme}://127.0.0.1:{port}"
        #: The server as its devices reach it (``ServerURL``; the download links).
        self.device_url = f"{scheme}://{device_host}:{port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> MenderServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- the test's side ------------------------------------------------------------------------

    def add_deployment(self, artifact_name: str, artifact: Path, **options: Any) -> Deployment:
        deployment = Deployment(secrets.token_hex(8), artifact_name, artifact, **options)
        with self.lock:
            self.deployments.append(deployment)
        return deployment

    def inject(self, mode: str, count: int = 1, prefix: str = "/api/", delay: float = 0.0, after: int = 0) -> None:
        """``count`` requests under ``prefix``, after ``after`` of them were let through, are
        answered with the failure ``mode``."""
        with self.lock:
            self.injections.append(Injection(mode, count, prefix, delay, after))

    def device(self) -> Device:
        assert len(self.devices) == 1, self.devices
        return next(iter(self.devices.values()))

    def calls(self, path_part: str) -> list[tuple[str, str]]:
        return [call for call in self.requests if path_part in call[1]]

    # --- the device's side ----------------------------------------------------------------------

    def _injection(self, path: str) -> Injection | None:
        with self.lock:
            for injection in self.injections:
                if injection.count > 0 and path.startswith(injection.prefix):
                    if injection.after > 0:
                        injection.after -= 1
                        continue
                    injection.count -= 1
                    return injection
        return None

    def _device_of(self, headers: dict[str, str]) -> Device | None:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return None
        device_id = self.tokens.get(auth[7:])
        return self.devices.get(device_id) if device_id else None

    def answer(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: bytes) -> tuple[int, bytes, dict[str, str]]:
        """The answer to one API request (validated by the caller)."""
        if path == AUTH and method == "POST":
            return self._auth(headers, body)
        device = self._device_of(headers)
        if device is None:
            return _error(401, "unauthorized")
        if path == NEXT_V1 and method == "GET":
            return self._next(device, query.get("artifact_name", ""), query.get("device_type", ""))
        if path in (NEXT_V1, NEXT_V2) and method == "POST":
            provides = _provides(path, body)
            return self._next(device, provides.get("artifact_name", ""), provides.get("device_type", ""))
        if path == INVENTORY and method in ("PUT", "PATCH"):
            device.inventory = json.loads(body)
            device.inventory_puts += 1
            return 200, b"", {}
        if path.startswith(DEPLOYMENTS) and method == "PUT":
            deployment_id, _, kind = path[len(DEPLOYMENTS):].partition("/")
            deployment = next((d for d in self.deployments if d.id == deployment_id), None)
            if deployment is None:
                return _error(404, "deployment not found")
            if kind == "status":
                status = json.loads(body)["status"]
                reported = deployment.statuses.setdefault(device.id, [])
                if reported and reported[-1] in FINAL:
                    return _error(400, "the deployment is finished")
                reported.append(status)
                return 204, b"", {}
            if kind == "log":
                deployment.logs[device.id] = json.loads(body)["messages"]
                return 204, b"", {}
        return _error(404, "not found")

    def _auth(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
        request = json.loads(body)
        if not verify_signature(request["pubkey"], body, headers.get("x-men-signature", "")):
            return _error(401, "signature verification failed")
        if self.tenant_token is not None and request.get("tenant_token") != self.tenant_token:
            return _error(401, "wrong tenant token")
        device_id = hashlib.sha256(request["id_data"].encode()).hexdigest()[:24]
        with self.lock:
            device = self.devices.setdefault(device_id, Device(device_id, request["id_data"], request["pubkey"]))
            device.pubkey = request["pubkey"]
            if self.accept:
                device.status = "accepted"
        if device.status != "accepted":
            return _error(401, "device not accepted")
        payload = base64.urlsafe_b64encode(json.dumps({"sub": device_id}).encode()).rstrip(b"=").decode()
        token = f"eyJhbGciOiJub25lIn0.{payload}.{secrets.token_urlsafe(16)}"
        self.tokens[token] = device_id
        return 200, token.encode(), {"Content-Type": "application/jwt"}

    def _next(self, device: Device, artifact_name: str, device_type: str) -> tuple[int, bytes, dict[str, str]]:
        for deployment in self.deployments:
            reported = deployment.statuses.get(device.id, [])
            if reported and reported[-1] in FINAL:
                continue
            if device_type not in deployment.device_types:
                continue
            instructions = {
                "id": deployment.id,
                "artifact": {
                    "id": deployment.id,
                    "artifact_name": deployment.artifact_name,
                    "source": {"uri": f"{self.device_url}{DOWNLOAD}{deployment.id}",
                               "expire": "2099-01-01T00:00:00Z"},
                    "device_types_compatible": list(deployment.device_types),
                },
            }
            return 200, json.dumps(instructions).encode(), {}
        return 204, b"", {}


def _error(status: int, message: str) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps({"error": message, "request_id": secrets.token_hex(4)}).encode(), {}


def _handler(server: MenderServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                  content_type: str | None = "application/json") -> None:
            self.send_response(status)
            if body and content_type:
                self.send_header("Content-Type", content_type)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self, method: str) -> None:
            parts = urllib.parse.urlsplit(self.path)
            path = parts.path
            query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
            headers = {key.lower(): value for key, value in self.headers.items()}
            body = self._body(headers)
            server.requests.append((method, self.path))
            injection = server._injection(path)
            if injection is not None:
                self._inject(injection)
                return
            if path.startswith(DOWNLOAD):
                self._download(path[len(DOWNLOAD):], headers)
                return
            provides_next = method == "POST" and path in (NEXT_V1, NEXT_V2)
            spec = None if provides_next else spec_for(path)
            request = MockRequest(server.url, method.lower(), path, args=query, headers=headers, data=body or None,
                                  content_type=headers.get("content-type", "application/json"))
            if spec is None:
                if provides_next:
                    if path == NEXT_V2 and not server.v2:
                        self._send(*_error(404, "not found"))
                        return
                    problem = _check_v2(path, headers, body)
                    if problem:
                        server.violations.append(f"{method} {path}: {problem}: {body[:300]!r}")
                        self._send(*_error(400, problem))
                        return
                else:
                    server.violations.append(f"{method} {path}: not a path of the device APIs")
                    self._send(*_error(404, "not found"))
                    return
            else:
                try:
                    spec.validate_request(request)
                except Exception as err:
                    detail = f"{err}: {getattr(err, '__cause__', '')}"
                    server.violations.append(f"{method} {path}: request: {detail}")
                    self._send(*_error(400, detail[:200]))
                    return
            status, answer, extra = server.answer(method, path, query, headers, body)
            content_type = extra.pop("Content-Type", "application/json")
            if spec is not None:
                try:
                    spec.validate_response(request, MockResponse(answer, status_code=status, headers=extra,
                                                                 content_type=content_type))
                except Exception as err:
                    server.violations.append(f"{method} {path}: answer {status}: {err}: {err.__cause__}")
            self._send(status, answer, extra, content_type=content_type)

        def _body(self, headers: dict[str, str]) -> bytes:
            """The request body, sent with Content-Length or chunked (as Go's client sends it)."""
            if headers.get("transfer-encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline().strip():
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(headers.get("content-length", "0") or 0)
            return self.rfile.read(length) if length else b""

        def _inject(self, injection: Injection) -> None:
            mode = injection.mode
            if mode == "down":
                self.close_connection = True
                self.connection.close()
            elif mode == "500":
                self._send(*_error(500, "internal error"))
            elif mode == "503":
                self._send(503, b'{"error":"unavailable"}', {"Retry-After": "7"})
            elif mode == "slow":
                time.sleep(injection.delay)
                self._send(*_error(500, "slow and failed"))
            elif mode == "garbage":
                self._send(200, b"\x00<html>not json", content_type="text/html")
            elif mode == "huge":
                self._send(200, b"[" + b" " * (4 << 20) + b"]")
            elif mode == "401":
                self._send(*_error(401, "token revoked"))
            elif mode == "409":
                self._send(409, b"")  # the deployment was aborted on the server
            elif mode == "redirect-http":
                self._send(302, b"", {"Location": "http://127.0.0.1:9/elsewhere"})
            else:
                raise ValueError(mode)

        def _download(self, deployment_id: str, headers: dict[str, str]) -> None:
            deployment = next((d for d in server.deployments if d.id == deployment_id), None)
            if deployment is None:
                self._send(*_error(404, "no such Artifact"))
                return
            data = deployment.artifact.read_bytes()
            start = 0
            ranged = headers.get("range", "")
            if ranged.startswith("bytes=") and ranged.endswith("-"):
                start = int(ranged[6:-1])
            self.send_response(206 if start else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()[:16]}"')
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = memoryview(data)[start:]
            if deployment.cut_after is not None and deployment.cuts > 0 and not start:
                deployment.cuts -= 1
                body = body[:deployment.cut_after]
                self.close_connection = True
            try:
                self._send_slowly(deployment, body)
            except OSError:  # the device went away (a power cut, say): a broken pipe, a TLS EOF
                self.close_connection = True

        def _send_slowly(self, deployment: Deployment, body: memoryview) -> None:
            """``body`` in chunks, at most ``deployment.rate`` bytes per second when set."""
            chunk = 64 * 1024
            for offset in range(0, len(body), chunk):
                piece = body[offset:offset + chunk]
                self.wfile.write(piece)
                deployment.served += len(piece)
                rate = deployment.rate
                if rate:
                    time.sleep(len(piece) / rate)
            self.wfile.flush()

    return Handler


def _provides(path: str, body: bytes) -> Any:
    """The device's provides in a POST to ``next``: v2 wraps them in ``device_provides``, v1
    (Mender's 3.x client) sends them bare."""
    document = json.loads(body)
    return document["device_provides"] if path == NEXT_V2 else document


def _check_v2(path: str, headers: dict[str, str], body: bytes) -> str | None:
    if not headers.get("authorization", "").startswith("Bearer "):
        return "no bearer token"
    try:
        provides = _provides(path, body)
    except (ValueError, KeyError, TypeError):
        return "the body is not {\"device_provides\": {...}}" if path == NEXT_V2 else "the body is not JSON"
    if not isinstance(provides, dict) or not all(isinstance(v, str) for v in provides.values()):
        return "device_provides must map names to strings"
    if "device_type" not in provides or "artifact_name" not in provides:
        return "device_provides lacks device_type or artifact_name"
    return None


__all__ = ["MenderServer", "load_spec", "verify_signature"]
