"""Signing an existing Artifact: validate it, then copy it with ``manifest.sig`` inserted.

The copy is streamed member by member; only ``manifest.sig`` is new. The result is written next
to the output as ``OUTPUT.tmp`` and renamed into place, so signing in place (the default) never
leaves a half-written Artifact behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from pymender.errors import ArtifactFormatError, InputError, OutputError, UsageError

from .reader import ArtifactReader
from .signing import Signer
from .tarstream import END_OF_ARCHIVE, TarReader, padding, tar_header


def sign_artifact(source: Path, output: Path, signer: Signer, *, force: bool = False) -> None:
    try:
        handle = open(source, "rb")
    except OSError as err:
        raise InputError(f"cannot open {source}: {err.strerror or err}") from None
    with handle:
        reader = ArtifactReader(handle)
        header = reader.read_header()
        if header.signed and not force:
            raise UsageError(f"{source} is already signed",
                             hint="use -f/--force to replace its signature")
        reader.validate()

    temporary = output.with_name(output.name + ".tmp")
    try:
        with open(source, "rb") as src, open(temporary, "wb") as dst:
            tar = TarReader(src, "the Artifact")
            manifest: bytes | None = None
            for member in tar.members():
                if member.name == "manifest.sig":
                    continue  # replaced (force) by the new signature
                dst.write(tar_header(member.name, member.size, mode=member.mode, mtime=member.mtime))
                data_left = member.size
                if member.name == "manifest":
                    manifest = b""
                while data_left:
                    chunk = tar.read(min(data_left, 1 << 20))
                    data_left -= len(chunk)
                    dst.write(chunk)
                    if manifest is not None and member.name == "manifest":
                        manifest += chunk
                dst.write(padding(member.size))
                if member.name == "manifest":
                    if manifest is None:
                        raise ArtifactFormatError("the Artifact has no manifest")
                    signature = signer.sign(manifest)
                    # upstream's sign writes manifest.sig with mode 0644
                    dst.write(tar_header("manifest.sig", len(signature), mode=0o644))
                    dst.write(signature)
                    dst.write(padding(len(signature)))
            dst.write(END_OF_ARCHIVE)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(temporary, output)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise OutputError(f"cannot write {output}: {err.strerror or err}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
