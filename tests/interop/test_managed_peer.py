"""Debian's Mender client daemon (3.4, the Go client) and ``pymender daemon`` against the same
test server: both devices see the same deployments and end the same way.

The test server validates every request of both against the server's API files, so the peer
also checks the server: what Mender's own client sends must pass it (it found the chunked
request bodies Go sends, the bare token the server returns and the v1 ``POST`` of ``next`` the
3.x client falls back to). Two deployments for both devices: an Artifact each already runs
(``already-installed``), then one built for another device type (downloaded, refused before
anything is written: ``failure`` with the reason in the deployment log).

Mender 3.4 reads its identity and inventory scripts from ``/usr/share/mender`` and the factory
name from ``/etc/mender/artifact_info``; a private mount namespace (``unshare -m``) puts scratch
directories there, so the host is not touched. Needs root, ``unshare`` and ``mender``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from device_sim import FAST_SOURCE, SimDevice, release
from mender_server import Deployment, MenderServer
from pymender.device.managed.daemon import Daemon

pytestmark = [pytest.mark.interop, pytest.mark.slow]

PEER_MAC = "52:54:00:00:00:99"
OWN_MAC = "52:54:00:00:00:01"


def script(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def wait_for(condition: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.fixture
def peer_tools() -> None:
    if os.geteuid() != 0 or not shutil.which("mender") or not shutil.which("unshare"):
        pytest.skip("needs root, unshare and Debian's mender-client")
    version = subprocess.run(["mender", "--version"], capture_output=True, text=True, check=False).stdout
    if not version.startswith("3."):
        pytest.skip(f"needs Mender's 3.x client, not {version.strip()}")


def start_peer(root: Path, server: MenderServer) -> subprocess.Popen[str]:
    share, etc, data = root / "usr-share-mender", root / "etc-mender", root / "var-lib-mender"
    script(share / "identity" / "mender-device-identity", f"#!/bin/sh\necho mac={PEER_MAC}\n")
    script(share / "inventory" / "mender-inventory-os", "#!/bin/sh\necho os=peer\n")
    etc.mkdir(parents=True)
    (etc / "artifact_info").write_text("artifact_name=release-1\n")
    data.mkdir()
    (data / "device_type").write_text("device_type=qemux86-64\n")
    conf = root / "mender.conf"
    conf.write_text(json.dumps({"ServerURL": server.url, "UpdatePollIntervalSeconds": 5,
                                "InventoryPollIntervalSeconds": 5, "RetryPollIntervalSeconds": 5,
                                "RootfsPartA": "/dev/null", "RootfsPartB": "/dev/zero"}))
    command = (f"mount --bind {share} /usr/share/mender && mount --bind {etc} /etc/mender && "
               f"exec mender -c {conf} -b {conf} -d {data} --no-syslog daemon")
    return subprocess.Popen(["unshare", "-m", "sh", "-c", command], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def statuses(server: MenderServer, deployment: Deployment, mac: str) -> list[str]:
    for device in list(server.devices.values()):
        if mac in device.id_data:
            return deployment.statuses.get(device.id, [])
    return []


def run_own(device: SimDevice) -> None:
    """One round of pymender's daemon (it rests afterwards: nothing to reboot for here)."""
    daemon = Daemon(device.load_config(), reboot=lambda: None, source_options=FAST_SOURCE)
    daemon.start()
    daemon.tick()


def test_both_clients_end_each_deployment_the_same_way(tmp_path: Path, peer_tools: None,
                                                      no_host_configuration: Path) -> None:
    script(no_host_configuration / "usr-share-mender" / "identity" / "mender-device-identity",
           f"#!/bin/sh\necho mac={OWN_MAC}\n")
    installed, _ = release(tmp_path / "art", "release-1", seed=1)
    foreign, _ = release(tmp_path / "art", "release-2", seed=2, device_types=("raspberrypi4",))
    with MenderServer() as server:
        device = SimDevice.create(tmp_path / "own", ServerURL=server.url, AllowPlainHTTPServer=True,
                                  DeviceKeyType="ecdsa")
        first = server.add_deployment("release-1", installed)
        peer = start_peer(tmp_path / "peer", server)
        try:
            run_own(device)
            wait_for(lambda: statuses(server, first, PEER_MAC) == ["already-installed"])
            second = server.add_deployment("release-2", foreign)
            run_own(device)
            wait_for(lambda: statuses(server, second, PEER_MAC)[-1:] == ["failure"])
            time.sleep(1)  # the peer's log upload follows its status
        finally:
            peer.terminate()
            output = peer.communicate(timeout=30)[0]
        assert statuses(server, first, OWN_MAC) == ["already-installed"], output[-2000:]
        own, theirs = statuses(server, second, OWN_MAC), statuses(server, second, PEER_MAC)
        assert own[0] == theirs[0] == "downloading" and own[-1] == theirs[-1] == "failure", (own, theirs)
        for mac in (OWN_MAC, PEER_MAC):
            device_id = next(d.id for d in server.devices.values() if mac in d.id_data)
            log = " ".join(line["message"] for line in second.logs[device_id])
            assert "raspberrypi4" in log or "device type" in log.lower(), log
        assert device.store().current().artifact_name == "release-1"
    assert server.violations == [], server.violations
