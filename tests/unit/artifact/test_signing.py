from __future__ import annotations

import base64
from pathlib import Path

import pytest

from artifact_factory import KeyPair
from pymender.artifact.signing import load_signer, load_verifier, verify_any
from pymender.errors import KeyLoadError, SignatureError

MESSAGE = b"0" * 64 + b"  version\n"


@pytest.mark.parametrize("label", ["rsa-pkcs1", "rsa-pkcs8", "ec-sec1", "ec-pkcs8"])
def test_sign_and_verify(keys: dict[str, KeyPair], label: str) -> None:
    signer = load_signer(keys[label].private)
    signature = signer.sign(MESSAGE)
    assert b"\n" not in signature
    raw = base64.b64decode(signature)
    assert len(raw) == (256 if label.startswith("rsa") else 64)
    load_verifier(keys[label].public).verify(MESSAGE, signature)
    signer.public_key().verify(MESSAGE, signature)
    with pytest.raises(SignatureError):
        load_verifier(keys[label].public).verify(MESSAGE + b"x", signature)


def test_ecdsa_der_signature_accepted(keys: dict[str, KeyPair]) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    der = load_signer(keys["ec-sec1"].private).key.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
    load_verifier(keys["ec-sec1"].public).verify(MESSAGE, base64.b64encode(der))


def test_wrong_key_kind(keys: dict[str, KeyPair]) -> None:
    rsa_sig = load_signer(keys["rsa-pkcs1"].private).sign(MESSAGE)
    ec_sig = load_signer(keys["ec-sec1"].private).sign(MESSAGE)
    with pytest.raises(SignatureError, match="ECDSA"):
        load_verifier(keys["ec-sec1"].public).verify(MESSAGE, rsa_sig)
    with pytest.raises(SignatureError, match="RSA"):
        load_verifier(keys["rsa-pkcs1"].public).verify(MESSAGE, ec_sig)
    with pytest.raises(SignatureError):
        load_verifier(keys["ec-other"].public).verify(MESSAGE, ec_sig)
    with pytest.raises(SignatureError, match="base64"):
        load_verifier(keys["ec-sec1"].public).verify(MESSAGE, b"***")


def test_verify_any(keys: dict[str, KeyPair]) -> None:
    sig = load_signer(keys["ec-sec1"].private).sign(MESSAGE)
    verifiers = [load_verifier(keys["rsa-pkcs1"].public), load_verifier(keys["ec-sec1"].public)]
    assert verify_any(verifiers, MESSAGE, sig) is verifiers[1]
    with pytest.raises(SignatureError, match="none of the 2 keys"):
        verify_any(verifiers[:1] + [load_verifier(keys["ec-other"].public)], MESSAGE, sig)


def test_key_errors(keys: dict[str, KeyPair], tmp_path: Path) -> None:
    with pytest.raises(KeyLoadError, match="P-256"):
        load_signer(keys["ec-p384"].private)
    with pytest.raises(KeyLoadError, match="private key"):
        load_verifier(keys["rsa-pkcs1"].private)
    with pytest.raises(KeyLoadError, match="cannot read"):
        load_signer(tmp_path / "missing.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    with pytest.raises(KeyLoadError, match="PEM"):
        load_signer(garbage)
    from cryptography.hazmat.primitives import serialization

    encrypted = tmp_path / "enc.pem"
    key = load_signer(keys["ec-sec1"].private).key
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(KeyLoadError, match="encrypted"):
        load_signer(encrypted)
