"""Which payload types pymender installs, and how it names them."""

from __future__ import annotations

import pytest

from pymender.device.payloads import BOOTSTRAP, MODULE, ROOTFS, is_module, payload_kind
from pymender.errors import UnsafeArtifactError


def test_payload_kinds() -> None:
    assert payload_kind("rootfs-image") == ROOTFS
    assert payload_kind(None) == BOOTSTRAP and payload_kind("") == BOOTSTRAP
    assert payload_kind("single-file") == MODULE
    assert is_module("single-file") and not is_module("rootfs-image") and not is_module("")


@pytest.mark.parametrize("payload_type", ["../evil", "a/b", "/bin/sh", "..", ".", " ", "a\0b"])
def test_a_payload_type_that_cannot_name_a_module_file_is_refused(payload_type: str) -> None:
    with pytest.raises(UnsafeArtifactError, match="cannot name an Update Module"):
        payload_kind(payload_type)
