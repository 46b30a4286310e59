"""The inventory: the ``mender-inventory-*`` scripts' attributes plus the standard ones.

Every executable ``mender-inventory-*`` in the inventory directory runs; its ``key=value`` lines
are merged (values of a key repeated, across scripts too, make a list). A script that fails is
logged and left out. pymender adds what Mender's client adds: ``mender_client_version`` (with
``mender_client_version_provider`` ``internal``, or ``external`` when a script set the version),
and, where no script (such as Mender's ``mender-inventory-provides``) did, the installed
``artifact_name``, the ``device_type`` and the other provides. The list goes out with ``PUT``
(replacing the device's inventory), sorted by name, and only when it changed since the last
successful submission, as Mender's client does.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pymender import __version__
from pymender.device.log import get_logger
from pymender.device.managed.identity import parse_key_values, run_script
from pymender.errors import InputError

log = get_logger(__name__)

INVENTORY_PATH = "/api/devices/v1/inventory/device/attributes"
PREFIX = "mender-inventory-"


def script_attributes(directory: Path) -> dict[str, list[str]]:
    data: dict[str, list[str]] = {}
    try:
        names = sorted(entry.name for entry in os.scandir(directory) if entry.name.startswith(PREFIX))
    except FileNotFoundError:
        log.warning("no inventory scripts: %s does not exist", directory)
        return data
    for name in names:
        path = directory / name
        if not os.access(path, os.X_OK) or not path.is_file():
            continue
        try:
            found = parse_key_values(run_script(path), str(path))
        except InputError as err:
            log.warning("inventory: %s", err.one_line())
            continue
        for key, values in found.items():
            data.setdefault(key, []).extend(values)
    return data


def attributes(directory: Path, provides: dict[str, str], device_type: str) -> dict[str, list[str]]:
    data = script_attributes(directory)
    if "mender_client_version" in data:
        data["mender_client_version_provider"] = ["external"]
    else:
        data["mender_client_version"] = [__version__]
        data["mender_client_version_provider"] = ["internal"]
    data.setdefault("device_type", [device_type])
    for key, value in provides.items():
        data.setdefault(key, [value])
    return data


def payload(data: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [{"name": key, "value": values[0] if len(values) == 1 else values} for key, values in sorted(data.items())]


def digest(items: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode("utf-8")).hexdigest()


__all__ = ["INVENTORY_PATH", "attributes", "digest", "payload", "script_attributes"]
