"""Parse meta-pymender with BitBake's own parser (the ``bb`` package of PyPI's bitbake-setup).

oe-core is not available offline, so a few of its files are replaced by stand-ins in
``standins/`` (each says what it keeps): conf/bitbake.conf, conf/image-uefi.conf, the classes
base, systemd, deploy, nopackages, python3native, python_setuptools_build_meta, native,
nativesdk and image, and the recipes base-files and grub-efi (so their bbappends have
something to append to). The bitbake wheel also lacks the ``hashserv`` package that
``bb.siggen`` imports; ``standins/python/hashserv`` stands in for it.

The configuration is built the way BitBake's cooker builds it: bitbake.conf, the layer's
layer.conf, local.conf, then base and the INHERIT classes, then the ConfigParsed event.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from helpers import REPO

LAYER = REPO / "meta-pymender"
STANDINS = Path(__file__).resolve().parent / "standins"

sys.path.insert(0, str(STANDINS / "python"))
import bb  # noqa: E402
import bb.data  # noqa: E402
import bb.event  # noqa: E402
import bb.parse  # noqa: E402
import bb.siggen  # noqa: E402
import bb.utils  # noqa: E402

DataSmart = Any


class Fatal(Exception):
    """A bb.fatal call made while parsing (its message is the exception's)."""


class Messages:
    """bb.warn calls made while parsing, kept instead of logged."""

    def __init__(self) -> None:
        self.warnings: list[str] = []


@contextmanager
def capture_warnings() -> Iterator[Messages]:
    messages = Messages()
    original_warn, original_fatal = bb.warn, bb.fatal

    def warn(*args: object) -> None:
        messages.warnings.append(" ".join(str(a) for a in args))

    def fatal(*args: object) -> None:
        raise Fatal(" ".join(str(a) for a in args))

    bb.warn, bb.fatal = warn, fatal
    try:
        yield messages
    finally:
        bb.warn, bb.fatal = original_warn, original_fatal


def configuration(topdir: Path, local_conf: str = "") -> DataSmart:
    """The configuration datastore for ``local_conf`` (events fired, handlers registered)."""
    bb.event.clean_class_handlers()
    bb.parse.BBHandler.cached_statements.clear()
    d = bb.data.init()
    d.setVar("__bbclasstype", "global")
    d.setVar("BBPATH", f"{STANDINS}:{LAYER}")
    d.setVar("TOPDIR", str(topdir))
    bb.parse.handle(str(STANDINS / "conf" / "bitbake.conf"), d, True)
    d.setVar("LAYERDIR", str(LAYER))
    bb.parse.handle(str(LAYER / "conf" / "layer.conf"), d, True)
    d.delVar("LAYERDIR")
    local = topdir / "local.conf"
    local.write_text(local_conf, encoding="utf-8")
    bb.parse.handle(str(local), d, True)
    for bbclass in ["base"] + (d.getVar("INHERIT") or "").split():
        bb.parse.BBHandler.inherit(bbclass, "configuration INHERITs", 0, d)
    for var in d.getVar("__BBHANDLERS", False) or []:
        bb.event.register(var, d.getVar(var, False), (d.getVarFlag(var, "eventmask") or "").split(),
                          d.getVarFlag(var, "filename", False), int(d.getVarFlag(var, "lineno", False)), d)
    bb.event.fire(bb.event.ConfigParsed(), d)
    d.setVar("__bbclasstype", "recipe")
    bb.parse.siggen = bb.siggen.init(d)
    return d


def recipe(config: DataSmart, path: Path, appends: list[Path] = ()) -> dict[str, DataSmart]:  # type: ignore[assignment]
    """Every variant ("" for the target, "native", ...) of the recipe at ``path``."""
    d = bb.data.createCopy(config)
    d.setVar("__BBAPPEND", " ".join(str(a) for a in appends))
    variants: dict[str, DataSmart] = bb.parse.handle(str(path), d, 0)
    return variants


def layer_function(name: str) -> Any:
    """A ``def`` function of the layer's classes, as BitBake compiled it."""
    return bb.utils._context[name]


def local_conf(*lines: str, opt_in: bool = True, artifact_name: str | None = "release-1") -> str:
    conf = []
    if opt_in:
        conf.append('INHERIT += "pymender-full"')
    if artifact_name is not None:
        conf.append(f'PYMENDER_ARTIFACT_NAME = "{artifact_name}"')
    return "\n".join([*conf, *lines]) + "\n"


def layer_files(*suffixes: str) -> list[Path]:
    return sorted(p for p in LAYER.rglob("*") if p.is_file() and p.name.endswith(suffixes))


os.environ.setdefault("BB_ENV_PASSTHROUGH_ADDITIONS", "")
