"""A server that is down, failing, slow, answering garbage or revoking the token: the daemon
retries with backoff, never crashes, never busy-loops; security rules hold."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from device_sim import SimDevice, release
from mender_server import MenderServer
from pki import make_pki
from pymender.device.managed.api import MAX_BODY, ServerApi
from pymender.device.managed.auth import AUTH_PATH
from pymender.device.managed.daemon import Daemon
from pymender.errors import ServerError, UsageError

from .conftest import Clock, Reboots

MakeDaemon = Callable[..., tuple[Daemon, Reboots]]


@pytest.mark.parametrize("mode", ["down", "500", "slow", "garbage", "huge", "redirect-http"])
def test_a_failing_server_is_retried_with_backoff(mode: str, device: SimDevice, server: MenderServer,
                                                 make_daemon: MakeDaemon) -> None:
    clock = Clock()
    daemon, _ = make_daemon(clock=clock)
    daemon.start()
    server.inject(mode, count=2, prefix="/api/devices/v1/authentication/", delay=0.2)
    wait = daemon.tick()  # authentication fails twice: inventory and poll both retry later
    assert 30 <= wait <= 33  # RetryPollIntervalSeconds 30 caps the first interval (+10 % jitter)
    assert daemon.poll_due > clock.now and daemon.inventory_due > clock.now
    assert server.devices == {}
    clock.now = max(daemon.poll_due, daemon.inventory_due)
    daemon.tick()
    assert server.device().inventory_puts == 1  # recovered


def test_garbage_deployment_instructions_are_retried_not_fatal(device: SimDevice, server: MenderServer,
                                                              make_daemon: MakeDaemon) -> None:
    clock = Clock()
    daemon, _ = make_daemon(clock=clock)
    daemon.start()
    daemon.tick()
    server.inject("garbage", prefix="/api/devices/v1/deployments/")
    server.inject("garbage", prefix="/api/devices/v2/deployments/")
    clock.now = daemon.poll_due
    daemon.tick()
    assert daemon.poll_due - clock.now <= 33
    assert daemon.record is None


def test_retries_end_and_fall_back_to_the_poll_interval(device: SimDevice, server: MenderServer,
                                                       make_daemon: MakeDaemon) -> None:
    clock = Clock()
    daemon, _ = make_daemon(clock=clock)
    daemon.start()
    server.inject("500", count=100)
    waits = []
    for _ in range(5):
        clock.now = daemon.poll_due
        daemon.tick()
        waits.append(daemon.poll_due - clock.now)
    # RetryPollIntervalSeconds 30 (below Mender's one minute start): three retries, then the
    # backoff is used up and the regular 60 s poll interval applies, then retries again.
    assert [round(w) // 10 for w in waits[:4]] == [3, 3, 3, 6]
    assert all(w >= 30 for w in waits)


def test_503_retry_after_is_honoured(device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    clock = Clock()
    daemon, _ = make_daemon(clock=clock)
    daemon.start()
    daemon.tick()
    server.inject("503", prefix="/api/devices/v")
    clock.now = daemon.poll_due
    daemon.tick()
    assert daemon.poll_due - clock.now == 7


def test_a_revoked_token_is_replaced(device: SimDevice, server: MenderServer, make_daemon: MakeDaemon) -> None:
    clock = Clock()
    daemon, _ = make_daemon(clock=clock)
    daemon.start()
    daemon.tick()
    auths = len(server.calls("/authentication/"))
    server.inject("401", prefix="/api/devices/v1/deployments/device/deployments/next")
    clock.now = daemon.poll_due
    daemon.tick()
    assert len(server.calls("/authentication/")) == auths + 1
    assert daemon.poll_due == clock.now + 60  # succeeded after re-authenticating


def test_pending_device_is_retried_until_accepted(device: SimDevice, server: MenderServer,
                                                  make_daemon: MakeDaemon) -> None:
    server.accept = False
    clock = Clock()
    daemon, _ = make_daemon(clock=clock)
    daemon.start()
    daemon.tick()
    assert server.device().status == "pending"
    assert not daemon.auth or not daemon.auth.authorized
    server.accept = True
    clock.now = max(daemon.poll_due, daemon.inventory_due)
    daemon.tick()
    assert server.device().status == "accepted" and server.device().inventory_puts == 1


def test_status_report_retried_until_the_server_takes_it(tmp_path: Path, device: SimDevice, server: MenderServer,
                                                         make_daemon: MakeDaemon) -> None:
    artifact, _ = release(tmp_path / "art", "release-2", seed=2)
    deployment = server.add_deployment("release-2", artifact)
    daemon, _ = make_daemon()
    daemon.start()
    daemon.tick()
    device.boot()
    # the status before the commit is taken, the success is lost
    server.inject("down", count=1, prefix="/api/devices/v1/deployments/", after=1)
    clock = Clock()
    daemon, _ = make_daemon(clock=clock)
    daemon.start()  # commits; the success report is lost
    assert device.store().current().artifact_name == "release-2"
    assert deployment.statuses[server.device().id][-1] == "installing"
    assert daemon.record is not None and daemon.record.outcome == "success"
    clock.now = daemon.report_due
    daemon.tick()
    assert deployment.statuses[server.device().id][-1] == "success"
    assert daemon.record is None


def test_plain_http_server_refused_unless_allowed() -> None:
    with pytest.raises(UsageError, match="plain http://"):
        ServerApi("http://mender.example.com")
    assert ServerApi("http://mender.example.com/", allow_http=True).server_url == "http://mender.example.com"


def test_tls_verified_by_default_and_trusted_with_server_certificate(tmp_path: Path) -> None:
    ca, cert, key = make_pki(tmp_path / "pki")
    with MenderServer(tls=(cert, key)) as server:
        auth = {"id_data": "{}", "pubkey": "not a key"}
        with pytest.raises(ServerError, match="certificate is not trusted"):
            ServerApi(server.url).request("POST", AUTH_PATH, body=auth, headers={"X-MEN-Signature": "x"})
        answer = ServerApi(server.url, ca_file=ca).request("POST", AUTH_PATH, body=auth,
                                                           headers={"X-MEN-Signature": "x"})
        assert answer.status == 401
        server.inject("redirect-http")
        with pytest.raises(ServerError, match="refusing a redirect from https:// to http://"):
            ServerApi(server.url, ca_file=ca).request("GET", "/api/devices/v1/x")
    assert server.violations == []


def test_oversized_answer_refused(server: MenderServer) -> None:
    server.inject("huge")
    with pytest.raises(ServerError, match=f"longer than {MAX_BODY}"):
        ServerApi(server.url, allow_http=True).request("GET", "/api/devices/v1/x")

