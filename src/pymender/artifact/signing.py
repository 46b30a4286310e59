"""Signing and verifying the manifest: RSA PKCS#1 v1.5 with SHA-256, and ECDSA P-256.

``manifest.sig`` is the standard base64 (no newline) of the raw signature over the exact bytes
of the ``manifest`` member. An ECDSA signature is written as r||s (64 bytes), as upstream does;
the verifier also accepts DER, which hardware signers produce and upstream 4.x accepts.

Private keys: PEM PKCS#1 (RSA), SEC1 (EC) and PKCS#8 (either). Public keys: PEM
SubjectPublicKeyInfo (and PKCS#1 RSA public keys). ``cryptography`` is imported only here, and
only when a key is used, so a device that never verifies does not need it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymender.errors import DependencyMissingError, KeyLoadError, SignatureError

MAX_SIGNATURE = 16 * 1024
MAX_KEY_FILE = 1024 * 1024


def _crypto() -> Any:
    try:
        import cryptography.hazmat.primitives.asymmetric.ec
        import cryptography.hazmat.primitives.asymmetric.padding
        import cryptography.hazmat.primitives.asymmetric.rsa
        import cryptography.hazmat.primitives.asymmetric.utils
        import cryptography.hazmat.primitives.hashes
        import cryptography.hazmat.primitives.serialization  # noqa: F401
        from cryptography import exceptions  # noqa: F401
    except ImportError:
        raise DependencyMissingError(
            "signing and verifying Artifacts needs the Python module 'cryptography', which is not installed",
            hint="install it (pip install cryptography, or the python3-cryptography package)",
        ) from None
    import cryptography.hazmat.primitives as primitives

    return primitives


def _read_key_file(path: Path | str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEY_FILE + 1)
    except OSError as err:
        raise KeyLoadError(f"cannot read key file {path}: {err.strerror or err}") from None
    if len(data) > MAX_KEY_FILE:
        raise KeyLoadError(f"key file {path} is too large to be a PEM key")
    return data


def _first_pem_block(data: bytes, path: Path | str) -> bytes:
    start = data.find(b"-----BEGIN ")
    if start < 0:
        raise KeyLoadError(f"{path} is not a PEM key file", hint="keys must be in PEM format")
    end_marker = data.find(b"-----END ", start)
    if end_marker < 0:
        raise KeyLoadError(f"{path} has an unterminated PEM block")
    end = data.find(b"-----", end_marker + 9)
    return data[start : end + 5] + b"\n" if end >= 0 else data[start:]


def _check_curve(key: Any, path: Path | str, ec: Any) -> None:
    if not isinstance(key.curve, ec.SECP256R1):
        raise KeyLoadError(
            f"{path} is an ECDSA key on curve {key.curve.name}; only P-256 (prime256v1) is supported")


@dataclass
class Signer:
    """A private key that signs manifests."""

    key: Any
    kind: str  # "rsa" or "ecdsa"
    path: str

    def sign(self, message: bytes) -> bytes:
        """The ``manifest.sig`` content for ``message``."""
        primitives = _crypto()
        hashes = primitives.hashes
        if self.kind == "rsa":
            raw = self.key.sign(message, primitives.asymmetric.padding.PKCS1v15(), hashes.SHA256())
        else:
            der = self.key.sign(message, primitives.asymmetric.ec.ECDSA(hashes.SHA256()))
            r, s = primitives.asymmetric.utils.decode_dss_signature(der)
            raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return base64.b64encode(raw)

    def public_key(self) -> Verifier:
        return Verifier(self.key.public_key(), self.kind, self.path)


@dataclass
class Verifier:
    """A public key that verifies manifest signatures."""

    key: Any
    kind: str
    path: str

    def verify(self, message: bytes, signature_b64: bytes) -> None:
        """Raise :class:`SignatureError` unless ``signature_b64`` signs ``message``."""
        primitives = _crypto()
        from cryptography.exceptions import InvalidSignature

        if len(signature_b64) > MAX_SIGNATURE:
            raise SignatureError("manifest.sig is too large to be a signature")
        try:
            raw = base64.b64decode(signature_b64.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("manifest.sig is not valid base64") from None
        hashes = primitives.hashes
        try:
            if self.kind == "rsa":
                if len(raw) != self.key.key_size // 8:
                    raise SignatureError(
                        f"the signature is {len(raw)} bytes, not a signature of the {self.key.key_size}-bit "
                        f"RSA key {self.path}",
                        hint="is the Artifact signed with another key or key type?")
                self.key.verify(raw, message, primitives.asymmetric.padding.PKCS1v15(), hashes.SHA256())
            else:
                if len(raw) == 64:
                    r = int.from_bytes(raw[:32], "big")
                    s = int.from_bytes(raw[32:], "big")
                    der = primitives.asymmetric.utils.encode_dss_signature(r, s)
                elif 8 <= len(raw) <= 72 and raw[0] == 0x30:
                    der = raw
                else:
                    raise SignatureError(
                        f"the signature is {len(raw)} bytes, not an ECDSA P-256 signature",
                        hint="is the Artifact signed with an RSA key?")
                self.key.verify(der, message, primitives.asymmetric.ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise SignatureError(
                f"the Artifact's signature does not verify with {self.path}",
                hint="the Artifact was signed with another key, or was modified after signing",
            ) from None


def load_signer(path: Path | str) -> Signer:
    """Load a PEM private key (PKCS#1, SEC1 or PKCS#8) for signing."""
    primitives = _crypto()
    from cryptography.exceptions import UnsupportedAlgorithm

    pem = _first_pem_block(_read_key_file(path), path)
    serialization = primitives.serialization
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise KeyLoadError(f"{path} is encrypted; give an unencrypted private key") from None
    except (ValueError, UnsupportedAlgorithm) as err:
        raise KeyLoadError(f"{path} is not a usable private key: {err}",
                           hint="give an RSA or ECDSA P-256 private key in PEM") from None
    return Signer(key, _kind(key, path, primitives), str(path))


def load_verifier(path: Path | str) -> Verifier:
    """Load a PEM public key (SubjectPublicKeyInfo, or PKCS#1 RSA) for verification."""
    primitives = _crypto()
    data = _read_key_file(path)
    pem = _first_pem_block(data, path)
    if b"PRIVATE KEY" in pem.split(b"\n", 1)[0]:
        raise KeyLoadError(f"{path} is a private key; verification takes the public key",
                           hint="extract it with: openssl pkey -in KEY -pubout")
    try:
        key = primitives.serialization.load_pem_public_key(pem)
    except ValueError as err:
        raise KeyLoadError(f"{path} is not a usable public key: {err}",
                           hint="give an RSA or ECDSA P-256 public key in PEM") from None
    return Verifier(key, _kind(key, path, primitives), str(path))


def _kind(key: Any, path: Path | str, primitives: Any) -> str:
    rsa = primitives.asymmetric.rsa
    ec = primitives.asymmetric.ec
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "rsa"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        _check_curve(key, path, ec)
        return "ecdsa"
    raise KeyLoadError(f"{path} is neither an RSA nor an ECDSA key",
                       hint="Artifacts are signed with RSA or ECDSA P-256 keys")


def verify_any(verifiers: list[Verifier], message: bytes, signature_b64: bytes) -> Verifier:
    """Verify with the first of several keys that accepts; raise the last error otherwise."""
    last: SignatureError | None = None
    for verifier in verifiers:
        try:
            verifier.verify(message, signature_b64)
            return verifier
        except SignatureError as err:
            last = err
    if last is None:
        raise SignatureError("no verification key was given")
    if len(verifiers) > 1:
        raise SignatureError(f"the Artifact's signature verifies with none of the {len(verifiers)} keys given")
    raise last
