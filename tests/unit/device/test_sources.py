"""Tests of pymender.device.sources: files, stdin, and HTTP(S) from a local server that misbehaves."""

from __future__ import annotations

import datetime
import hashlib
import http.server
import ipaddress
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pymender.device.http_source import MAX_BACKOFF
from pymender.device.sources import Source, open_source
from pymender.errors import SourceError

PAYLOAD = os.urandom(300_000) + bytes(range(256)) * 100
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Sleeps(list[float]):
    """Stands in for ``time.sleep``: records each wait and returns at once."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def fast(sleeps: Sleeps) -> dict[str, object]:
    """Options for a test source: a few retries, no real waiting."""
    return {"retries": 3, "backoff": 0.01, "timeout": 5.0, "sleep": sleeps}


def _digest(source: Source, chunk: int = 4096) -> str:
    sha = hashlib.sha256()
    while block := source.read(chunk):
        sha.update(block)
    return sha.hexdigest()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


# --- local files and stdin -----------------------------------------------------------------------


def test_local_path_reads_all_bytes_and_reports_size(tmp_path: Path) -> None:
    path = tmp_path / "release.mender"
    path.write_bytes(PAYLOAD)
    with open_source(str(path)) as source:
        assert source.size == len(PAYLOAD)
        assert not source.seekable()
        assert source.read(10) == PAYLOAD[:10]
        assert source.bytes_read == 10
        assert source.read() == PAYLOAD[10:]
        assert source.bytes_read == len(PAYLOAD)
        assert source.read(10) == b""
    assert source.closed


def test_file_url_with_escaped_characters(tmp_path: Path) -> None:
    path = tmp_path / "a b.mender"
    path.write_bytes(PAYLOAD)
    with open_source(path.as_uri()) as source:
        assert "%20" in source.name
        assert _digest(source) == PAYLOAD_SHA


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot open .*nothing.mender: No such file"):
        open_source(str(tmp_path / "nothing.mender"))


def test_file_url_with_a_host_is_refused() -> None:
    with pytest.raises(SourceError, match="must name a local file"):
        open_source("file://otherhost/x.mender")


@pytest.mark.parametrize("uri", ["ftp://127.0.0.1/x.mender", "s3://bucket/x", ""])
def test_other_schemes_are_refused(uri: str) -> None:
    with pytest.raises(SourceError) as caught:
        open_source(uri)
    assert "- for stdin" in caught.value.one_line()


def test_stdin_through_a_pipe() -> None:
    code = (
        "import hashlib, sys\n"
        "from pymender.device.sources import open_source\n"
        "s = open_source('-')\n"
        "h = hashlib.sha256()\n"
        "while b := s.read(65536): h.update(b)\n"
        "print(h.hexdigest(), s.size, s.bytes_read, s.name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=PAYLOAD, capture_output=True, check=True, timeout=30
    )
    assert done.stdout.decode().split() == [PAYLOAD_SHA, "None", str(len(PAYLOAD)), "stdin"]


# --- a local HTTP(S) server that can misbehave ---------------------------------------------------


@dataclass
class Behaviour:
    """What the test server does; changed by each test."""

    drops: list[int] = field(default_factory=list)  # byte offsets at which to drop, in order
    drop_how: str = "close"  # close | reset | stall (send nothing more until the test ends)
    ignore_range: bool = False
    etag: str | None = '"v1"'
    etag_on_resume: str | None = None  # None: same as etag
    requests: list[str | None] = field(default_factory=list)  # Range header of each GET
    ended: threading.Event = field(default_factory=threading.Event)  # set when the test ends


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        b = self.server.behaviour  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        b.requests.append(rng)
        if self.path.split("?")[0] != "/release.mender":
            self.send_error(404, "Not Found")
            return
        start = 0
        if rng and not b.ignore_range:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        etag = b.etag_on_resume if (rng and b.etag_on_resume) else b.etag
        if etag:
            self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(PAYLOAD) - start))
        self.end_headers()
        stop = len(PAYLOAD)
        drop = b.drops.pop(0) if b.drops else None
        if drop is not None:
            stop = max(start, min(drop, stop))
        try:
            self.wfile.write(PAYLOAD[start:stop])
            self.wfile.flush()
            if drop is None:
                return
            if b.drop_how == "stall":
                b.ended.wait()
            elif b.drop_how == "reset":
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
        except OSError:
            pass
        self.close_connection = True


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    behaviour: Behaviour

    def handle_error(self, request: object, client_address: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.behaviour = Behaviour()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield httpd
    httpd.behaviour.ended.set()
    httpd.shutdown()
    httpd.server_close()


def _url(httpd: Server, scheme: str = "http", path: str = "/release.mender") -> str:
    return f"{scheme}://127.0.0.1:{httpd.server_address[1]}{path}"


def test_http_download(server: Server, fast: dict[str, object]) -> None:
    with open_source(_url(server), **fast) as source:  # type: ignore[arg-type]
        assert source.size == len(PAYLOAD)
        assert _digest(source) == PAYLOAD_SHA
        assert source.bytes_read == len(PAYLOAD)
    assert server.behaviour.requests == [None]


@pytest.mark.parametrize("how", ["close", "reset"])
def test_http_resumes_after_several_drops(server: Server, how: str, fast: dict[str, object]) -> None:
    server.behaviour.drops = [70_000, 70_001, 150_000, 290_000]
    server.behaviour.drop_how = how
    with open_source(_url(server), **fast) as source:  # type: ignore[arg-type]
        data = source.read()
    assert hashlib.sha256(data).hexdigest() == PAYLOAD_SHA
    requests = server.behaviour.requests
    if how == "close":
        assert requests == [None, "bytes=70000-", "bytes=70001-", "bytes=150000-", "bytes=290000-"]
    else:
        # A reset may discard bytes the client had received but not read: it resumes earlier.
        assert len(requests) == 5 and requests[1:3] == ["bytes=70000-", "bytes=70001-"]
    assert fast["sleep"] == [0.01] * 4  # every drop came after progress: the first wait each time


def test_http_resumes_after_a_stalled_read(server: Server, sleeps: Sleeps) -> None:
    # The server sends 100000 bytes and then nothing until the test ends: only the client's
    # read timeout can end that read, however fast or slow this machine is.
    server.behaviour.drops = [100_000]
    server.behaviour.drop_how = "stall"
    with open_source(_url(server), retries=2, backoff=0.01, timeout=0.2, sleep=sleeps) as source:
        assert _digest(source, 65536) == PAYLOAD_SHA
    # The bytes of the read that timed out are not delivered: it resumes at the last full read.
    assert server.behaviour.requests == [None, "bytes=65536-"]
    assert sleeps == [0.01]


def test_http_drop_counter_resets_after_progress(server: Server, sleeps: Sleeps) -> None:
    # Five drops, each after some progress, with only two retries allowed in a row.
    server.behaviour.drops = [10_000, 20_000, 30_000, 40_000, 50_000]
    with open_source(_url(server), retries=2, backoff=0.01, timeout=5, sleep=sleeps) as source:
        assert _digest(source) == PAYLOAD_SHA
    assert sleeps == [0.01] * 5  # each resume is the first of its row: the shortest wait


def test_http_too_many_drops_without_progress(server: Server, sleeps: Sleeps) -> None:
    server.behaviour.drops = [100_000] * 10  # every resume delivers nothing
    source = open_source(_url(server), retries=3, backoff=0.01, timeout=5, sleep=sleeps)
    with pytest.raises(SourceError) as caught:
        source.read()
    message = caught.value.one_line()
    assert "at byte 100000 of" in message and "gave up after 3 attempts" in message
    assert server.behaviour.requests == [None] + ["bytes=100000-"] * 3
    assert sleeps == [0.01, 0.02, 0.04]  # doubled for each attempt in a row
    source.close()


def test_http_waits_are_capped(server: Server, sleeps: Sleeps) -> None:
    server.behaviour.drops = [100_000] * 4
    with open_source(_url(server), retries=4, backoff=25, timeout=5, sleep=sleeps) as source:
        assert _digest(source) == PAYLOAD_SHA
    assert sleeps == [25, 50, MAX_BACKOFF, MAX_BACKOFF]


def test_http_server_ignoring_range_is_a_clear_error(server: Server, fast: dict[str, object]) -> None:
    server.behaviour.drops = [50_000]
    server.behaviour.ignore_range = True
    with open_source(_url(server), **fast) as source:  # type: ignore[arg-type]
        with pytest.raises(SourceError, match="at byte 50000: the server answered 200 instead of 206"):
            source.read()


def test_http_file_changed_during_download(server: Server, fast: dict[str, object]) -> None:
    server.behaviour.drops = [50_000]
    server.behaviour.etag_on_resume = '"v2"'
    with open_source(_url(server), **fast) as source:  # type: ignore[arg-type]
        with pytest.raises(SourceError, match="changed on the server"):
            source.read()


def test_http_404_names_url_and_status(server: Server, fast: dict[str, object]) -> None:
    with pytest.raises(SourceError) as caught:
        open_source(_url(server, path="/missing.mender?token=secret"), **fast)  # type: ignore[arg-type]
    message = caught.value.one_line()
    assert f"{_url(server, path='/missing.mender')}?..." in message
    assert "HTTP 404" in message and "secret" not in message


def test_http_connection_refused_is_a_clear_error(fast: dict[str, object]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SourceError, match=f"cannot download http://127.0.0.1:{port}/x: "):
        open_source(f"http://127.0.0.1:{port}/x", **fast)  # type: ignore[arg-type]


# --- HTTPS with a CA made for the test -----------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pymender test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (out / "ca.pem").write_bytes(ca.public_bytes(pem))
    (out / "cert.pem").write_bytes(cert.public_bytes(pem))
    (out / "key.pem").write_bytes(
        key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return out / "ca.pem", out / "cert.pem", out / "key.pem"


@pytest.fixture
def tls_server(server: Server, pki: tuple[Path, Path, Path]) -> Server:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki[1], pki[2])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


def test_https_trusted_through_ca_file(
    tls_server: Server, pki: tuple[Path, Path, Path], fast: dict[str, object]
) -> None:
    tls_server.behaviour.drops = [123_456]
    with open_source(_url(tls_server, "https"), ca_file=pki[0], **fast) as source:  # type: ignore[arg-type]
        assert _digest(source) == PAYLOAD_SHA
    assert tls_server.behaviour.requests == [None, "bytes=123456-"]


def test_https_untrusted_certificate_is_refused(tls_server: Server, fast: dict[str, object]) -> None:
    with pytest.raises(SourceError) as caught:
        open_source(_url(tls_server, "https"), **fast)  # type: ignore[arg-type]
    assert "certificate is not trusted" in caught.value.message
    assert "ServerCertificate" in (caught.value.hint or "")
    assert tls_server.behaviour.requests == []


def test_https_insecure_accepts_untrusted_certificate(tls_server: Server, fast: dict[str, object]) -> None:
    with open_source(_url(tls_server, "https"), insecure=True, **fast) as source:  # type: ignore[arg-type]
        assert _digest(source) == PAYLOAD_SHA


def test_https_unreadable_ca_file(tls_server: Server, tmp_path: Path, fast: dict[str, object]) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(SourceError, match="cannot load the CA certificates"):
        open_source(_url(tls_server, "https"), ca_file=bad, **fast)  # type: ignore[arg-type]


def test_device_code_does_not_import_cryptography() -> None:
    code = (
        "import sys, pymender.device.sources\n"
        "print(any(m.split('.')[0] == 'cryptography' for m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# --- HTTPS with a client certificate (Mender's HttpsClient) ----------------------------------------


@pytest.fixture(scope="module")
def client_pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A client CA and a client certificate signed by it: (client-ca.pem, client.pem, client.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = tmp_path_factory.mktemp("client-pki")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pymender test device CA")])

    def certificate(subject: x509.Name, public: object, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
                   .public_key(public).serial_number(x509.random_serial_number())  # type: ignore[arg-type]
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    pem = serialization.Encoding.PEM
    (out / "client-ca.pem").write_bytes(certificate(ca_name, ca_key.public_key(), True).public_bytes(pem))
    device = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-1")])
    (out / "client.pem").write_bytes(certificate(device, key.public_key(), False).public_bytes(pem))
    (out / "client.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL,
                                                       serialization.NoEncryption()))
    return out / "client-ca.pem", out / "client.pem", out / "client.key"


@pytest.fixture
def mtls_server(server: Server, pki: tuple[Path, Path, Path], client_pki: tuple[Path, Path, Path]) -> Server:
    """An https server that serves only clients with a certificate from the client CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki[1], pki[2])
    context.load_verify_locations(client_pki[0])
    context.verify_mode = ssl.CERT_REQUIRED
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


def test_https_client_certificate_is_presented(
        mtls_server: Server, pki: tuple[Path, Path, Path], client_pki: tuple[Path, Path, Path],
        fast: dict[str, object]) -> None:
    client = (client_pki[1], client_pki[2])
    with open_source(_url(mtls_server, "https"), ca_file=pki[0], client_certificate=client,
                     **fast) as source:  # type: ignore[arg-type]
        assert _digest(source) == PAYLOAD_SHA
    assert mtls_server.behaviour.requests == [None]


def test_https_without_the_client_certificate_it_asks_for(
        mtls_server: Server, pki: tuple[Path, Path, Path], fast: dict[str, object]) -> None:
    with pytest.raises(SourceError, match="cannot download"):
        with open_source(_url(mtls_server, "https"), ca_file=pki[0], **fast) as source:  # type: ignore[arg-type]
            _digest(source)
    assert mtls_server.behaviour.requests == []


def test_https_unreadable_client_certificate(
        tls_server: Server, pki: tuple[Path, Path, Path], client_pki: tuple[Path, Path, Path],
        fast: dict[str, object]) -> None:
    with pytest.raises(SourceError, match="cannot load the client certificate") as caught:
        open_source(_url(tls_server, "https"), ca_file=pki[0], client_certificate=(client_pki[1], pki[2]),
                    **fast)  # type: ignore[arg-type]
    assert "HttpsClient" in (caught.value.hint or "")
