"""Parse meta-pymender with BitBake's own parser (the ``bb`` package of PyPI's bitbake-setup).

oe-core is not available offline, so the oe-core files the layer touches are replaced by
stand-ins in ``standins/``. Each names the upstream file it models and reproduces what that file
does with what the layer sets or reads: conf/bitbake.conf (with the release differences in
conf/release/), the qemux86-64 and qemuarm64 machine configurations, conf/image-uefi.conf,
the classes base, image, image_types, qemuboot, systemd, deploy, nopackages, python3native,
python_setuptools_build_meta, native and nativesdk, and the recipes core-image-minimal,
core-image-minimal-initramfs, base-files, grub-efi and u-boot (so the layer's appends have
something to append to), plus a BSP-style initramfs image and a vendor U-Boot fork. The bitbake
wheel also lacks the ``hashserv`` package that ``bb.siggen`` imports;
``standins/python/hashserv`` stands in for it.

The configuration is built in the order BitBake's cooker builds it: the layer's layer.conf,
then bitbake.conf (which includes local.conf and the machine configuration), then base and the
INHERIT classes, then the ConfigParsed event. Recipes are parsed with task signatures on, so a
test can compare the base hash of each task (what decides whether BitBake reruns it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from helpers import REPO

#: The layer under test; PYMENDER_TEST_LAYER names another copy (e.g. an older version, to see
#: a new test fail on it).
LAYER = Path(os.environ.get("PYMENDER_TEST_LAYER") or REPO / "meta-pymender")
STANDINS = Path(__file__).resolve().parent / "standins"
IMAGE = STANDINS / "recipes" / "core-image-minimal.bb"
UPDATER = LAYER / "recipes-pymender" / "pymender" / "pymender_0.1.0.bb"

sys.path.insert(0, str(STANDINS / "python"))
import bb  # noqa: E402
import bb.data  # noqa: E402
import bb.data_smart  # noqa: E402
import bb.event  # noqa: E402
import bb.fetch2  # noqa: E402
import bb.parse  # noqa: E402
import bb.siggen  # noqa: E402
import bb.utils  # noqa: E402

DataSmart = Any


class Fatal(Exception):
    """A bb.fatal call made while parsing (its message is the exception's)."""


#: What a bb.fatal while parsing raises here: directly, from an anonymous function (which BitBake
#: wraps) or from a variable's expansion.
FATAL_ERRORS: tuple[type[BaseException], ...] = (Fatal, bb.BBHandledException, bb.data_smart.ExpansionError)


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


def configuration(topdir: Path, local_conf: str = "", layer: Path = LAYER) -> DataSmart:
    """The configuration datastore for ``local_conf`` (events fired, handlers registered)."""
    bb.event.clean_class_handlers()
    bb.parse.BBHandler.cached_statements.clear()
    bb.fetch2.urldata_cache.clear()
    (topdir / "conf").mkdir(parents=True, exist_ok=True)
    (topdir / "conf" / "local.conf").write_text(local_conf, encoding="utf-8")
    d = bb.data.init()
    d.setVar("__bbclasstype", "global")
    d.setVar("TOPDIR", str(topdir))
    d.setVar("BBPATH", f"{topdir}:{STANDINS}")
    d.setVar("LAYERDIR", str(layer))
    bb.parse.handle(str(layer / "conf" / "layer.conf"), d, True)
    d.expandVarref("LAYERDIR")
    d.delVar("LAYERDIR")
    bb.parse.handle(str(STANDINS / "conf" / "bitbake.conf"), d, True)
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


def task_hashes(data: DataSmart) -> dict[str, str]:
    """The base hash of every task of a parsed recipe variant (BitBake reruns a task whose
    hash changed)."""
    hashes = data.getVar("__siggen_basehashes", False) or {}
    return {task: value for task, value in hashes.items()}


def task_inputs(data: DataSmart, task: str) -> set[str]:
    """Every variable and function the signature of ``task`` covers."""
    deps = data.getVar("__siggen_taskdeps", False) or {}
    return set(deps.get(task, ()))


def layer_function(name: str) -> Any:
    """A ``def`` function of the layer's classes, as BitBake compiled it (when no test has parsed
    a recipe yet, a pymender image is parsed first, which compiles every class)."""
    if name not in bb.utils._context:
        import tempfile

        with tempfile.TemporaryDirectory() as topdir:
            recipe(configuration(Path(topdir), local_conf()), IMAGE)
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


def kas_local_conf(machine_file: str, *extra: str) -> str:
    """local.conf as kas writes it for ``kas/<machine_file>``: every local_conf_header of the
    file and of its includes, then the machine (plus ``extra`` lines)."""
    import yaml

    kas = REPO / "kas"
    parts: list[str] = []
    machine = ""

    def read(path: Path) -> None:
        nonlocal machine
        config = yaml.safe_load(path.read_text())
        for include in config.get("header", {}).get("includes", []):
            read(REPO / include)
        parts.extend((config.get("local_conf_header") or {}).values())
        machine = config.get("machine", machine)

    read(kas / machine_file)
    parts.append(f'MACHINE = "{machine}"\n')
    return "\n".join([*parts, *extra]) + "\n"


def run_shell(data: DataSmart, name: str, *args: str, path: list[Path] = (),  # type: ignore[assignment]
              env: dict[str, str] | None = None) -> str:
    """Run shell function ``name`` of a parsed recipe the way BitBake runs a task's script: the
    function with every shell function it calls and the exported variables (bb.data.emit_func).
    Returns what it printed; raises CalledProcessError (with the output) when it fails."""
    import io
    import subprocess

    body = io.StringIO()
    bb.data.emit_func(name, body, data)
    script = f"set -e\n{body.getvalue()}\n{name} \"$@\"\n"
    search = ":".join([*(str(p) for p in path), os.environ["PATH"]])
    environment = {**os.environ, **(env or {}), "PATH": search}
    result = subprocess.run(["bash", "-c", script, name, *args], env=environment, capture_output=True,
                            text=True)
    if result.returncode:
        raise subprocess.CalledProcessError(result.returncode, [name, *args], result.stdout, result.stderr)
    return result.stdout


def run_python(data: DataSmart, name: str) -> None:
    """Run python function ``name`` of a parsed recipe as BitBake runs a task's function (a
    bb.fatal in it raises)."""
    import bb.build

    bb.utils.mkdirhier(data.getVar("T"))
    bb.build.exec_func(name, data)
