"""The Mender Artifact format (v3, and v2 for reading): model, streaming reader, writer,
manifest, signatures and compression codecs.

The names below are loaded on first use, so a program that only reads Artifacts (the device)
does not pay for importing the writer.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ArtifactHeader": "model",
    "HeaderInfo": "model",
    "PayloadHeader": "model",
    "Script": "model",
    "TypeInfo": "model",
    "ArtifactReader": "reader",
    "PayloadFile": "reader",
    "ReadOptions": "reader",
    "read_artifact_header": "reader",
    "Signer": "signing",
    "Verifier": "signing",
    "load_signer": "signing",
    "load_verifier": "signing",
    "ArtifactSpec": "writer",
    "PayloadSpec": "writer",
    "write_artifact": "writer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
