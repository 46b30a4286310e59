"""The Mender Artifact format (v3, and v2 for reading): model, streaming reader, writer,
manifest, signatures and compression codecs."""

from .model import ArtifactHeader, HeaderInfo, PayloadHeader, Script, TypeInfo
from .reader import ArtifactReader, PayloadFile, ReadOptions, read_artifact_header
from .signing import Signer, Verifier, load_signer, load_verifier
from .writer import ArtifactSpec, PayloadSpec, write_artifact

__all__ = [
    "ArtifactHeader",
    "ArtifactReader",
    "ArtifactSpec",
    "HeaderInfo",
    "PayloadFile",
    "PayloadHeader",
    "PayloadSpec",
    "ReadOptions",
    "Script",
    "Signer",
    "TypeInfo",
    "Verifier",
    "load_signer",
    "load_verifier",
    "read_artifact_header",
    "write_artifact",
]
