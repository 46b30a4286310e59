"""The seed corpora of the fuzz targets, made from the tests' own Artifacts and environments.

Artifacts: every kind the test factory writes (rootfs-image in each compression, format
versions 2 and 3, signed with RSA and ECDSA, with state scripts, depends and provides, a
module image with several files, a bootstrap Artifact), each with a payload of a few hundred
bytes so that one execution stays cheap. Bootloader environments: the factory environment, a
trial, a rollback, copies torn at the places a power cut can tear them, written by pymender's
own backends into a scratch directory and packed as the targets unpack them (:mod:`fuzz.pack`).
"""

from __future__ import annotations

import os
from pathlib import Path

from artifact_factory import KeyPair, make_image, make_keys
from fuzz.pack import pack
from pymender.artifact import builders
from pymender.artifact.signing import load_signer
from pymender.artifact.writer import ArtifactSpec, write_artifact
from pymender.device.bootenv.grub import COPY_DIRS, GrubEnv, encode_block, lock_checksum_line
from pymender.device.bootenv.uboot import UBootEnv, parse_fw_env_config

#: The signing keys the signed targets trust (public halves) and the seeds are signed with.
SIGNING_KEYS = ("rsa-pkcs1", "ec-sec1")
UBOOT_ENV_SIZE = 0x400


def keys(directory: Path) -> dict[str, KeyPair]:
    """The key pairs in ``directory`` (made there once)."""
    if not (directory / "ec-sec1.pem").exists():
        make_keys(directory)
    return {name: KeyPair(directory / f"{name}.pem", directory / f"{name}.pub.pem")
            for name in ("rsa-pkcs1", "rsa-pkcs8", "ec-sec1", "ec-pkcs8", "ec-p384", "ec-other")}


def artifacts(directory: Path, key_dir: Path) -> list[Path]:
    """Small Artifacts of every kind, written into ``directory``."""
    os.environ.setdefault("SOURCE_DATE_EPOCH", "1700000000")
    directory.mkdir(parents=True, exist_ok=True)
    pairs = keys(key_dir)
    image = make_image(directory / "rootfs.img", size=700, seed=1)
    script = directory / "ArtifactInstall_Enter_01_check"
    script.write_bytes(b"#!/bin/sh\nexit 0\n")
    common = {"name": "release-2", "device_types": ["qemux86-64"]}
    out: list[Path] = []

    def write(name: str, spec: ArtifactSpec, compression: str = "none",
              key: str | None = None) -> None:
        signer = load_signer(pairs[key].private) if key else None
        path = directory / f"{name}.mender"
        write_artifact(spec, path, compression_name=compression, signer=signer, threads=1)
        out.append(path)

    software = builders.SoftwareOptions()
    for compression in ("none", "gzip", "lzma", "zstd"):
        write(f"rootfs-{compression}", builders.rootfs_image(builders.CommonOptions(**common), image, software),
              compression)
    write("rootfs-v2", builders.rootfs_image(builders.CommonOptions(**common, format_version=2), image, software),
          "gzip")
    for key in SIGNING_KEYS:
        write(f"rootfs-signed-{key}", builders.rootfs_image(builders.CommonOptions(**common), image, software),
              "none", key)
    rich = builders.CommonOptions(
        **common, provides=[("rootfs-image.app.version", "2")], depends=[("rootfs-image.version", "1")],
        clears_provides=["rootfs-image.app.*"], depends_artifact_names=["release-1"], provides_group="g",
        depends_groups=["g"], scripts=[script])
    write("rootfs-rich-signed", builders.rootfs_image(rich, image, software), "gzip", SIGNING_KEYS[0])
    files = [make_image(directory / f"file{i}.bin", size=64 * (i + 1), seed=10 + i) for i in range(3)]
    write("module", builders.module_image(builders.CommonOptions(**common), "directory", files,
                                          {"path": "/opt/app"}, software), "gzip")
    write("bootstrap", builders.bootstrap_artifact(
        builders.CommonOptions(**common, provides=[("rootfs-image.version", "base")])))
    for name in ("rootfs.img", script.name, *(f.name for f in files)):
        (directory / name).unlink()
    return out


def grub_envs(directory: Path) -> list[bytes]:
    """Packed GRUB environment directories (:func:`fuzz.pack.pack` of the six files)."""
    seeds: list[bytes] = []
    env_dir = directory / "grub"

    def files() -> list[bytes]:
        return [(env_dir / copy / name).read_bytes() for copy in COPY_DIRS
                for name in ("env", "lock", "lock.sha256sum")]

    env = GrubEnv(env_dir, lock_file=None)
    env.initialize({"bootcount": "0", "mender_boot_part": "2", "upgrade_available": "0"})
    seeds.append(pack(files()))
    env.write({"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1"})
    seeds.append(pack(files()))
    env.write({"bootcount": "1", "extra": "a\\b value"})
    good = files()
    seeds.append(pack(good))
    editing = encode_block({"editing": "1"})
    torn = encode_block({"mender_boot_part": "2"})[:512] + good[0][512:]
    seeds.append(pack([torn, editing, good[2], *good[3:]]))
    seeds.append(pack([*good[:3], good[3][:100], editing, lock_checksum_line(editing)]))
    seeds.append(pack([good[0], good[1], b"", *good[3:]]))
    return seeds


def uboot_envs(directory: Path) -> list[bytes]:
    """Packed U-Boot environments: an fw_env.config text and the two copies."""
    seeds: list[bytes] = []
    env_dir = directory / "uboot"
    env_dir.mkdir(parents=True, exist_ok=True)
    config = f"{env_dir / 'env1'} 0 {UBOOT_ENV_SIZE:#x}\n{env_dir / 'env2'} 0 {UBOOT_ENV_SIZE:#x}\n"
    env = UBootEnv(parse_fw_env_config(config), lock_file=None)
    env.initialize({"bootcount": "0", "mender_boot_part": "2", "mender_boot_part_hex": "2",
                    "upgrade_available": "0"})

    def files() -> list[bytes]:
        return [b"redundant", (env_dir / "env1").read_bytes(), (env_dir / "env2").read_bytes()]

    seeds.append(pack(files()))
    env.write({"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1"})
    seeds.append(pack(files()))
    env.write({"bootcount": "1", "serial": "A-17"})
    good = files()
    seeds.append(pack(good))
    torn = bytearray(good[2])
    torn[200:] = bytes(len(torn) - 200)
    seeds.append(pack([good[0], good[1], bytes(torn)]))
    wrapped = bytearray(good[1])
    wrapped[4] = 0xFF
    seeds.append(pack([good[0], bytes(wrapped), good[2]]))
    seeds.append(pack([b"single", good[1], b""]))
    return seeds


def write_corpus(target: str, corpus: Path, scratch: Path, key_dir: Path) -> int:
    """Fill ``corpus`` with the seeds of ``target`` (when it is empty); the number of files."""
    corpus.mkdir(parents=True, exist_ok=True)
    existing = list(corpus.iterdir())
    if existing:
        return len(existing)
    if target.startswith("grub"):
        blobs = grub_envs(scratch)
    elif target.startswith("uboot"):
        blobs = uboot_envs(scratch)
    else:
        blobs = [path.read_bytes() for path in artifacts(scratch / "artifacts", key_dir)]
    for index, blob in enumerate(blobs):
        (corpus / f"seed-{index:02d}").write_bytes(blob)
    return len(blobs)


__all__ = ["SIGNING_KEYS", "UBOOT_ENV_SIZE", "artifacts", "grub_envs", "keys", "uboot_envs", "write_corpus"]
