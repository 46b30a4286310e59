"""The ``pymender`` command keeps heavy modules off its common paths (start-up time).

Every install on a device pays the interpreter's start-up, and on a small board importing a
module costs several times what it costs here. These tests run the command's code in a fresh
interpreter and check which modules it loaded, so a top-level import that brings one of them
back fails here instead of slowing down every device quietly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from device_sim import SimDevice, release
from helpers import REPO

#: Never imported on the install path (parsing, or a whole install from a local file on a GRUB
#: device without a verification key), with what each would bring along (``python -X importtime``).
NOT_ON_INSTALL_PATH = (
    "dataclasses",  # + inspect, ast, dis, copy, tokenize
    "inspect",
    "ast",
    "logging",  # + traceback, string, weakref; only for -l debug
    "traceback",
    "concurrent.futures",  # + logging
    "shutil",  # + bz2, lzma; argparse wants it for the help width
    "bz2",
    "lzma",
    "signal",  # state scripts only
    "subprocess",
    "tempfile",
    "pymender.device.bootenv.uboot",  # this device has GRUB
    "pymender.device.http_source",  # + http.client, ssl, urllib.request
    "http.client",
    "ssl",
    "pymender.artifact.signing",  # no verification key configured
    "zstandard",  # the Artifact is not zstd-compressed
)
#: Not even imported by show-artifact, show-provides, commit and rollback (no Artifact to read).
NOT_ON_QUERY_PATH = (
    *NOT_ON_INSTALL_PATH,
    "hashlib",
    "pymender.artifact.reader",
    "pymender.artifact.compression",
    "pymender.device.sources",
    "pymender.device.payloads.rootfs",
    "threading",
)


def _modules_after(code: str) -> set[str]:
    """The modules loaded in a fresh interpreter once ``code`` has run."""
    report = "import json, sys; print(json.dumps(sorted(sys.modules)))"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    done = subprocess.run([sys.executable, "-c", f"{code}\n{report}"], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_parsing_install_loads_no_heavy_module() -> None:
    loaded = _modules_after(
        "from pymender.cli.device import build_parser, translate_legacy\n"
        "args = build_parser().parse_args(translate_legacy(['-install', 'update.mender']))\n"
        "assert args.command == 'install' and args.uri == 'update.mender'"
    )
    assert "pymender.device.install" in loaded  # the check below looks at the real import chain
    assert sorted(set(NOT_ON_INSTALL_PATH) & loaded) == []


@pytest.fixture
def device(tmp_path: Path) -> SimDevice:
    return SimDevice.create(tmp_path / "device")


def _run_command(device: SimDevice, *args: str) -> str:
    """Code that runs ``pymender -c CONFIG ARGS`` as the command line does, without exiting."""
    argv = ["-c", str(device.config_path), *args]
    return ("import contextlib, io, sys\n"
            "from pymender.cli.common import run_cli\n"
            "from pymender.cli.device import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    code = run_cli('pymender', main, {argv!r})\n"
            "assert code == 0, code")


def test_a_whole_install_loads_no_heavy_module(device: SimDevice, tmp_path: Path) -> None:
    artifact = release(tmp_path / "artifacts", "release-2", seed=2)[0]
    loaded = _modules_after(_run_command(device, "install", str(artifact)))
    assert "pymender.device.payloads.rootfs" in loaded  # it did install
    assert sorted(set(NOT_ON_INSTALL_PATH) & loaded) == []


def test_show_artifact_reads_no_artifact_code(device: SimDevice) -> None:
    loaded = _modules_after(_run_command(device, "show-artifact"))
    assert "pymender.device.store" in loaded
    assert sorted(set(NOT_ON_QUERY_PATH) & loaded) == []


def test_debug_output_still_goes_through_logging(device: SimDevice) -> None:
    loaded = _modules_after(_run_command(device, "-l", "debug", "show-artifact"))
    assert "logging" in loaded


# --- mender-update: the same paths, on a device in Mender's layout -----------------------------------


@pytest.fixture
def mender_device(tmp_path: Path, no_host_configuration: Path) -> SimDevice:
    """Mender's layout, with Mender's store read on first use (written by Mender's client)."""
    device = SimDevice.create(tmp_path / "mender-device", mender_host=no_host_configuration)
    store = REPO / "tests" / "fixtures" / "mender-store" / "committed.mender-store"
    (device.data_dir / "mender-store").write_bytes(store.read_bytes())
    return device


def _run_mender_update(*args: str) -> str:
    return ("import contextlib, io, sys\n"
            "from pymender.cli.common import run_cli\n"
            "from pymender.cli.mender_update import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    code = run_cli('mender-update', main, {list(args)!r})\n"
            "assert code == 0, code")


def test_mender_update_installs_with_no_heavy_module(mender_device: SimDevice, tmp_path: Path) -> None:
    artifact = release(tmp_path / "artifacts", "release-3", seed=3)[0]
    loaded = _modules_after(_run_mender_update("install", str(artifact)))
    assert {"pymender.device.payloads.rootfs", "pymender.device.lmdb"} <= loaded
    assert sorted(set(NOT_ON_INSTALL_PATH) & loaded) == []


def test_mender_update_show_artifact_reads_no_artifact_code(mender_device: SimDevice) -> None:
    loaded = _modules_after(_run_mender_update("show-artifact"))
    assert "pymender.device.lmdb" in loaded  # Mender's store was read
    assert sorted(set(NOT_ON_QUERY_PATH) & loaded) == []
