"""Managed mode in the layer: PYMENDER_SERVER_URL, PYMENDER_TENANT_TOKEN and
PYMENDER_SERVER_CERTIFICATE reach the device's configuration; the unit runs the daemon; the
identity and inventory scripts are installed where the daemon looks for them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("bb")
from layer.bbparse import local_conf
from layer.layerrun import LayerRun


def test_server_settings_reach_the_configuration(tmp_path: Path) -> None:
    ca = tmp_path / "server.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    layer = LayerRun(tmp_path / "build", local_conf('PYMENDER_SERVER_URL = "https://mender.example.com"',
                                                    'PYMENDER_TENANT_TOKEN = "org-token"',
                                                    f'PYMENDER_SERVER_CERTIFICATE = "{ca}"'))
    config = layer.build("pymender-config", ["do_compile", "do_install"])
    image = Path(config.getVar("D"))
    document = json.loads((image / "etc/pymender/pymender.conf").read_text())
    assert document["ServerURL"] == "https://mender.example.com"
    assert document["TenantToken"] == "org-token"
    assert document["ServerCertificate"] == "/etc/pymender/server.crt"
    assert (image / "etc/pymender/server.crt").read_bytes() == ca.read_bytes()


def test_standalone_configuration_has_no_server(tmp_path: Path) -> None:
    layer = LayerRun(tmp_path / "build", local_conf())
    config = layer.build("pymender-config", ["do_compile", "do_install"])
    document = json.loads((Path(config.getVar("D")) / "etc/pymender/pymender.conf").read_text())
    assert not {"ServerURL", "TenantToken", "ServerCertificate"} & set(document)


def test_unit_and_scripts_installed(tmp_path: Path) -> None:
    layer = LayerRun(tmp_path / "build", local_conf('PYMENDER_SERVER_URL = "https://mender.example.com"'))
    updater = layer.recipe("pymender")
    updater.setVar("python_pep517_do_install", ":")
    layer.unpack(updater)
    layer.run(updater, "do_install")
    image = Path(updater.getVar("D"))
    unit = (image / "usr/lib/systemd/system/pymender.service").read_text()
    assert "ExecStart=/usr/bin/pymender daemon" in unit and "network-online.target" in unit
    identity = image / "usr/share/mender/identity/mender-device-identity"
    inventory = sorted(p.name for p in (image / "usr/share/mender/inventory").iterdir())
    assert inventory == ["mender-inventory-bootloader", "mender-inventory-network", "mender-inventory-os"]
    for script in [identity, *(image / "usr/share/mender/inventory").iterdir()]:
        assert os.stat(script).st_mode & 0o777 == 0o755
        done = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=30, check=False)
        lines = [line for line in done.stdout.splitlines() if line]
        assert all("=" in line and not line.startswith("=") for line in lines), done.stdout
    assert subprocess.run(["sh", str(identity)], capture_output=True, text=True, timeout=30,
                          check=False).stdout.startswith("mac=")
