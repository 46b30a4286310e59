"""Which payload types pymender installs, and how it names them."""

from __future__ import annotations

import pytest

from pymender.device.payloads import BOOTSTRAP, ROOTFS, payload_kind
from pymender.errors import ArtifactUnsupportedError


def test_payload_kinds() -> None:
    assert payload_kind("rootfs-image") == ROOTFS
    assert payload_kind(None) == BOOTSTRAP and payload_kind("") == BOOTSTRAP
    with pytest.raises(ArtifactUnsupportedError, match="'single-file' needs an Update Module"):
        payload_kind("single-file")
