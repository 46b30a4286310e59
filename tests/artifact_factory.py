"""Make Artifacts, keys and hand-edited (broken) Artifacts for tests.

``split_members``/``join_members`` take an Artifact apart into its outer members and put it back
together, so a test can change exactly one thing (reorder, duplicate, rename, replace content)
and, with ``fix_manifest``, keep every other check passing so that only the intended defect is
left for the reader to find.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from pymender.artifact import builders
from pymender.artifact.reader import ArtifactReader, ReadOptions
from pymender.artifact.signing import load_verifier
from pymender.artifact.tarstream import END_OF_ARCHIVE, padding, tar_header
from pymender.artifact.writer import write_artifact


def make_image(path: Path, size: int = 300_000, seed: int = 1) -> Path:
    """A deterministic pseudo-random 'filesystem image' (partly compressible)."""
    chunk = hashlib.sha256(str(seed).encode()).digest() * 64
    data = bytearray()
    counter = 0
    while len(data) < size:
        data += chunk if counter % 3 else bytes(len(chunk))
        data += hashlib.sha256(data[-32:]).digest()
        counter += 1
    path.write_bytes(bytes(data[:size]))
    return path


def write_rootfs(tmp: Path, name: str = "release-1", *, compression: str = "gzip",
                 key: Path | None = None, image: Path | None = None, scripts: list[Path] | None = None,
                 device_types: tuple[str, ...] = ("qemux86-64",), out: str | None = None,
                 **common: object) -> Path:
    image = image or make_image(tmp / "rootfs.ext4")
    spec = builders.rootfs_image(
        builders.CommonOptions(name=name, device_types=list(device_types), scripts=scripts or [],
                               **common),  # type: ignore[arg-type]
        image, builders.SoftwareOptions())
    signer = None
    if key is not None:
        from pymender.artifact.signing import load_signer

        signer = load_signer(key)
    output = tmp / (out or f"{name}-{compression}.mender")
    write_artifact(spec, output, compression_name=compression, signer=signer, threads=2)
    return output


def read_all(data: bytes | Path, keys: list[Path] | None = None) -> tuple[object, dict[str, bytes]]:
    """Validate an Artifact completely; return its header and payload files' contents."""
    raw = data.read_bytes() if isinstance(data, Path) else data
    options = ReadOptions(verifiers=[load_verifier(k) for k in keys or []])
    reader = ArtifactReader(io.BytesIO(raw), options)
    header = reader.read_header()
    files: dict[str, bytes] = {}
    for payload in reader.payload_files():
        chunks = []
        while chunk := payload.read(65536):
            chunks.append(chunk)
        files[payload.name] = b"".join(chunks)
    return header, files


# --- keys ----------------------------------------------------------------------------------------


@dataclass
class KeyPair:
    private: Path
    public: Path


def make_keys(directory: Path) -> dict[str, KeyPair]:
    """RSA 2048 in PKCS#1 and PKCS#8, ECDSA P-256 in SEC1 and PKCS#8, and a P-384 key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    directory.mkdir(parents=True, exist_ok=True)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    p384 = ec.generate_private_key(ec.SECP384R1())
    other = ec.generate_private_key(ec.SECP256R1())
    pem = serialization.Encoding.PEM
    none = serialization.NoEncryption()
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    out: dict[str, KeyPair] = {}
    for label, key, fmt in [
        ("rsa-pkcs1", rsa_key, serialization.PrivateFormat.TraditionalOpenSSL),
        ("rsa-pkcs8", rsa_key, serialization.PrivateFormat.PKCS8),
        ("ec-sec1", ec_key, serialization.PrivateFormat.TraditionalOpenSSL),
        ("ec-pkcs8", ec_key, serialization.PrivateFormat.PKCS8),
        ("ec-p384", p384, serialization.PrivateFormat.TraditionalOpenSSL),
        ("ec-other", other, serialization.PrivateFormat.TraditionalOpenSSL),
    ]:
        private = directory / f"{label}.pem"
        public = directory / f"{label}.pub.pem"
        private.write_bytes(key.private_bytes(pem, fmt, none))
        public.write_bytes(key.public_key().public_bytes(pem, spki))
        out[label] = KeyPair(private, public)
    return out


# --- surgery -------------------------------------------------------------------------------------


@dataclass
class Member:
    name: str
    data: bytes
    mode: int = 0o600


def split_members(data: bytes) -> list[Member]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return [Member(m.name, tar.extractfile(m).read(), m.mode)  # type: ignore[union-attr]
                for m in tar.getmembers()]


def join_members(members: list[Member]) -> bytes:
    out = bytearray()
    for member in members:
        out += tar_header(member.name, len(member.data), mode=member.mode)
        out += member.data + padding(len(member.data))
    out += END_OF_ARCHIVE
    return bytes(out)


def member(members: list[Member], name: str) -> Member:
    for item in members:
        if item.name == name:
            return item
    raise KeyError(name)


def fix_manifest(members: list[Member], extra: dict[str, bytes] | None = None,
                 drop: tuple[str, ...] = ()) -> None:
    """Recompute the manifest from the members (header checksum) and ``extra`` data files."""
    manifest = member(members, "manifest")
    lines = []
    for line in manifest.data.decode().splitlines():
        digest, path = line.split("  ")
        if path in drop:
            continue
        for item in members:
            if item.name == path:
                digest = hashlib.sha256(item.data).hexdigest()
        lines.append(f"{digest}  {path}")
    for path, content in (extra or {}).items():
        lines.insert(0, f"{hashlib.sha256(content).hexdigest()}  {path}")
    manifest.data = ("\n".join(lines) + "\n").encode()


def tar_bytes(entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    """An in-memory tar of regular files (name, content) and arbitrary TarInfo entries."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                name, content = entry
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def ungz(data: bytes) -> bytes:
    return gzip.decompress(data)


def env_without_epoch() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SOURCE_DATE_EPOCH", None)
    return env
