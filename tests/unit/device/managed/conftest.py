"""Fixtures for the daemon's tests: the test server, a simulated device pointed at it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from device_sim import FAST_SOURCE, SimDevice
from mender_server import MenderServer
from pymender.device.managed.daemon import Daemon
from pymender.device.managed.devicekey import load_or_create

IDENTITY = "#!/bin/sh\necho mac=52:54:00:12:34:56\necho serial=sim-0001\n"
INVENTORY = "#!/bin/sh\necho os=Test OS 1.0\necho ipv4_eth0=10.0.2.15/24\necho ipv4_eth0=10.0.2.16/24\n"


@pytest.fixture
def server() -> Iterator[MenderServer]:
    """The test server; the test fails if the daemon sent anything the specification does not
    allow, or the server answered outside it."""
    with MenderServer() as running:
        yield running
    assert running.violations == []


def install_scripts(host: Path, identity: str = IDENTITY, inventory: str = INVENTORY) -> None:
    share = host / "usr-share-mender"
    for path, text in ((share / "identity" / "mender-device-identity", identity),
                       (share / "inventory" / "mender-inventory-test", inventory)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.chmod(path, 0o755)


@pytest.fixture
def device(tmp_path: Path, server: MenderServer, no_host_configuration: Path) -> SimDevice:
    install_scripts(no_host_configuration)
    return SimDevice.create(tmp_path / "device", ServerURL=server.url, AllowPlainHTTPServer=True,
                            UpdatePollIntervalSeconds=60, InventoryPollIntervalSeconds=600,
                            RetryPollIntervalSeconds=30, DeviceKeyType="ecdsa")


class Reboots:
    """Stands in for ``reboot``: counts, and stops the daemon as a reboot would."""

    def __init__(self) -> None:
        self.count = 0
        self.daemon: Daemon | None = None
        #: The daemon's waits (seconds), which the tests do not sleep.
        self.waits: list[float] = []

    def __call__(self) -> None:
        self.count += 1
        assert self.daemon is not None
        self.daemon.stopping = True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make_daemon(device: SimDevice, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[Daemon, Reboots]]:
    def make(**options: Any) -> tuple[Daemon, Reboots]:
        reboots = Reboots()
        options.setdefault("source_options", FAST_SOURCE)
        # The key in this process: the helper process that signs by default is tested alone.
        options.setdefault("key", load_or_create(device.data_dir, "ecdsa"))
        daemon = Daemon(device.load_config(), reboot=reboots, **options)
        reboots.daemon = daemon
        monkeypatch.setattr(daemon, "_wait", reboots.waits.append)
        return daemon, reboots

    return make
