"""``pymender daemon`` as a process: signals from ``check-update``/``send-inventory`` (both
front ends), idle between polls, a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from device_sim import SimDevice
from helpers import REPO
from mender_server import MenderServer
from pymender.device.managed.daemon import PID_FILE, daemon_pid

pytestmark = pytest.mark.slow


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_daemon_process_signals_and_stop(device: SimDevice, server: MenderServer) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-c", "from pymender.cli.device import run; run()", "-c", str(device.config_path)]
    process = subprocess.Popen([*command, "daemon"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        wait_for(lambda: bool(server.devices) and server.device().inventory_puts == 1
                 and len(server.calls("/deployments/next")) >= 2)
        assert daemon_pid(device.data_dir) == process.pid
        polls = len(server.calls("/deployments/next"))
        busy = cpu_seconds(process.pid)
        time.sleep(2)  # idle: the next poll is 60 s away
        assert cpu_seconds(process.pid) - busy < 0.05
        assert len(server.calls("/deployments/next")) == polls

        done = subprocess.run([*command, "check-update"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: len(server.calls("/deployments/next")) == polls + 1)
        done = subprocess.run([sys.executable, "-c", "from pymender.cli.mender_update import run; run()",
                               "-c", str(device.config_path), "send-inventory"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: server.device().inventory_puts == 2)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert not (device.data_dir / PID_FILE).exists()
    token = next(iter(server.tokens))
    assert token not in err and token.split(".")[2] not in err
    assert "PRIVATE KEY" not in err
