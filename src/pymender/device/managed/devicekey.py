"""The device key: generated on the first start, kept in the data store (mode 0600), never logged.

Mender's client keeps it as ``mender-agent.pem`` (PKCS#1 or PKCS#8 PEM) in its data store; a key
found there is used as it is, so a device moved over from Mender keeps its identity on the
server. New keys are RSA 3072 (Mender's default), ECDSA P-256 or Ed25519.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from pymender import sysio
from pymender.device.log import get_logger
from pymender.errors import DependencyMissingError, KeyLoadError

log = get_logger(__name__)

KEY_FILE = "mender-agent.pem"
RSA_BITS = 3072


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    except ImportError as err:  # pragma: no cover - the layer installs it
        raise DependencyMissingError("managed mode needs the Python package cryptography") from err
    return hashes, serialization, ec, ed25519, padding, rsa


class DeviceKey:
    """A private key that signs the auth request."""

    def __init__(self, key: Any) -> None:
        self._key = key

    def __repr__(self) -> str:  # never the key material
        return f"DeviceKey({type(self._key).__name__})"

    def public_pem(self) -> str:
        _, serialization, *_ = _crypto()
        data: bytes = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return data.decode("ascii")

    def signed(self, fields: dict[str, str]) -> tuple[bytes, str]:
        """The auth request body (``fields`` with ``pubkey`` added) and its signature."""
        body = auth_body(fields, self.public_pem())
        return body, self.sign(body)

    def sign(self, data: bytes) -> str:
        """``X-MEN-Signature``: base64 of RSA PKCS#1 v1.5 / ECDSA (ASN.1) over SHA-256, or Ed25519."""
        hashes, _, ec, ed25519, padding, rsa = _crypto()
        key = self._key
        if isinstance(key, rsa.RSAPrivateKey):
            signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
        else:
            signature = key.sign(data)
        return base64.b64encode(signature).decode("ascii")


def auth_body(fields: dict[str, str], pubkey: str) -> bytes:
    """The auth request's JSON: ``id_data``, ``pubkey``, then the other fields, compact."""
    import json

    body = {"id_data": fields["id_data"], "pubkey": pubkey}
    body.update((key, value) for key, value in fields.items() if key != "id_data")
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def generate(kind: str) -> Any:
    _, _, ec, ed25519, _, rsa = _crypto()
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise KeyLoadError(f"unknown device key type {kind!r}")


def load_or_create(data_dir: Path, kind: str = "rsa") -> DeviceKey:
    """The key in ``data_dir``, created (mode 0600, durable) when there is none."""
    _, serialization, ec, ed25519, _, rsa = _crypto()
    path = data_dir / KEY_FILE
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        pem = None
    except OSError as err:
        raise KeyLoadError(f"cannot read the device key {path}: {err.strerror}") from err
    if pem is not None:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as err:
            raise KeyLoadError(f"the device key {path} cannot be loaded",
                               hint="move it away to have a new one generated (the server then sees a new "
                                    "authentication set)") from err
        if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
            raise KeyLoadError(f"the device key {path} is of a type the server does not accept")
        if os.stat(path).st_mode & 0o077:
            log.warning("the device key %s is readable by others; setting mode 0600", path)
            os.chmod(path, 0o600)
        return DeviceKey(key)
    log.info("generating a new %s device key in %s", kind, path)
    key = generate(kind)
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    sysio.create_file(tmp, data, 0o600)
    os.replace(tmp, path)
    sysio.fsync_dir(data_dir)
    return DeviceKey(key)




class KeyProcess:
    """The device key used through a short-lived helper process (``python -m
    pymender.device.managed.devicekey``), so that the daemon, which needs the key only to
    authenticate (rarely: a token lasts days), never loads the cryptography library and its
    OpenSSL bindings (about 9 MiB of resident memory on every idle device). The helper also
    creates the key when there is none."""

    def __init__(self, data_dir: Path, kind: str = "rsa") -> None:
        self._data_dir = data_dir
        self._kind = kind

    def __repr__(self) -> str:
        return f"KeyProcess({self._data_dir / KEY_FILE})"

    def signed(self, fields: dict[str, str]) -> tuple[bytes, str]:
        import json
        import subprocess
        import sys

        done = subprocess.run([sys.executable, "-m", __name__, str(self._data_dir), self._kind],
                              input=json.dumps(fields).encode("utf-8"), stdout=subprocess.PIPE, stderr=None,
                              timeout=300, check=False)
        if done.returncode != 0:
            raise KeyLoadError(f"the device key in {self._data_dir} cannot be used (its helper exited with "
                               f"{done.returncode}; see the lines above)")
        try:
            result = json.loads(done.stdout)
            return result["body"].encode("utf-8"), str(result["signature"])
        except (ValueError, KeyError, TypeError) as err:
            raise KeyLoadError("the device key's helper answered something else than a signature") from err


def main(argv: list[str]) -> int:
    """The helper: ``DATA_DIR KIND``, the auth request's fields (JSON) on stdin; prints the
    request body and its signature as JSON. Errors are one line on stderr."""
    import json
    import sys

    from pymender.device.log import write_to_stderr

    write_to_stderr("info")
    try:
        fields = json.loads(sys.stdin.buffer.read())
    except ValueError:
        print("pymender: error: the device key's helper read no request on stdin", file=sys.stderr)
        return 2
    try:
        key = load_or_create(Path(argv[0]), argv[1])
        body, signature = key.signed(fields)
        print(json.dumps({"body": body.decode("utf-8"), "signature": signature}))
    except (KeyLoadError, DependencyMissingError) as err:
        print(f"pymender: error: {err.one_line()}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"pymender: error: the device key in {argv[0]}: {err.strerror or err}", file=sys.stderr)
        return 1
    return 0


__all__ = ["KEY_FILE", "RSA_BITS", "DeviceKey", "KeyProcess", "auth_body", "generate", "load_or_create"]


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
