"""The daemon's pieces one by one: identity, device key, auth request, backoff, instructions,
inventory; and the test server's own checks (a test server that accepts anything proves nothing)."""

from __future__ import annotations

import json
import os
import stat
import time
import urllib.request
from pathlib import Path

import pytest

from mender_server import Deployment, MenderServer, verify_signature
from pymender.device.managed import devicekey
from pymender.device.managed.api import ServerApi
from pymender.device.managed.auth import AUTH_PATH, Authenticator
from pymender.device.managed.backoff import Backoff
from pymender.device.managed.deployments import DeploymentsClient, parse_instructions
from pymender.device.managed.identity import parse_key_values, to_json
from pymender.device.managed.inventory import attributes, payload
from pymender.errors import InputError, KeyLoadError, ServerError


def test_identity_lines_as_mender_reads_them() -> None:
    data = parse_key_values("mac=52:54:00:12:34:56\n\nserial=1\nmac=aa:bb\nempty=\n", "script")
    assert data == {"mac": ["52:54:00:12:34:56", "aa:bb"], "serial": ["1"], "empty": [""]}
    assert json.loads(to_json(data)) == {"empty": "", "mac": ["52:54:00:12:34:56", "aa:bb"], "serial": "1"}
    with pytest.raises(InputError, match="line 1 is not key=value"):
        parse_key_values("no equals sign\n", "script")


@pytest.mark.parametrize("kind", ["rsa", "ecdsa", "ed25519"])
def test_device_key_made_once_0600_and_signs_what_the_server_checks(tmp_path: Path, kind: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    key = devicekey.load_or_create(tmp_path, kind)
    path = tmp_path / devicekey.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem = path.read_text()
    assert devicekey.load_or_create(tmp_path, "rsa").public_pem() == key.public_pem()  # kept, not remade
    body = b'{"id_data":"{}"}'
    assert verify_signature(key.public_pem(), body, key.sign(body))
    assert not verify_signature(key.public_pem(), body + b" ", key.sign(body))
    assert pem.split("\n")[1] not in caplog.text and "PRIVATE" not in repr(key)
    if kind == "rsa":
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        assert load_pem_private_key(pem.encode(), None).key_size == 3072  # type: ignore[union-attr]


def test_the_key_helper_process_makes_the_key_and_signs(tmp_path: Path) -> None:
    body, signature = devicekey.KeyProcess(tmp_path, "ed25519").signed({"id_data": '{"mac":"x"}', "tier": "t"})
    assert stat.S_IMODE((tmp_path / devicekey.KEY_FILE).stat().st_mode) == 0o600
    key = devicekey.load_or_create(tmp_path)
    assert json.loads(body) == {"id_data": '{"mac":"x"}', "pubkey": key.public_pem(), "tier": "t"}
    assert verify_signature(key.public_pem(), body, signature)
    (tmp_path / devicekey.KEY_FILE).write_text("garbage")
    with pytest.raises(KeyLoadError, match="cannot be used"):
        devicekey.KeyProcess(tmp_path).signed({"id_data": "{}"})


def test_device_key_readable_by_others_is_narrowed_and_a_bad_one_refused(tmp_path: Path) -> None:
    devicekey.load_or_create(tmp_path, "ecdsa")
    path = tmp_path / devicekey.KEY_FILE
    os.chmod(path, 0o644)
    devicekey.load_or_create(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("garbage")
    with pytest.raises(KeyLoadError, match="cannot be loaded"):
        devicekey.load_or_create(tmp_path)


def test_auth_request_is_signed_carries_the_tenant_token_and_the_token_stays_out_of_repr(
        tmp_path: Path) -> None:
    with MenderServer(tenant_token="org-1") as server:
        api = ServerApi(server.url, allow_http=True)
        key = devicekey.load_or_create(tmp_path, "ed25519")
        auth = Authenticator(api, key, lambda: '{"mac":"x"}', tenant_token="org-1")
        token = auth.token()
        assert token.count(".") == 2 and token not in repr(auth)
        raw, signature = auth.signed_request()
        assert verify_signature(key.public_pem(), raw, signature)
        body = json.loads(raw)
        assert body["tenant_token"] == "org-1" and body["id_data"] == '{"mac":"x"}' and body["tier"] == "standard"
        wrong = Authenticator(api, key, lambda: '{"mac":"x"}', tenant_token="org-2")
        with pytest.raises(ServerError, match="not accepted"):
            wrong.token()
    assert server.violations == []
    assert [path for _, path in server.requests] == [AUTH_PATH, AUTH_PATH]


def test_backoff_as_mender_computes_it() -> None:
    backoff = Backoff(300, rand=lambda: 0.0)
    assert [backoff.next_interval() for _ in range(17)] == [60.0] * 3 + [120.0] * 3 + [240.0] * 3 + [300.0] * 3 + [
        None] * 5
    counted = Backoff(120, try_count=8, rand=lambda: 0.0)
    assert [counted.next_interval() for _ in range(9)] == [60.0] * 3 + [120.0] * 5 + [None]
    jittered = Backoff(300, rand=lambda: 1.0)
    assert jittered.next_interval() == pytest.approx(66.0)


def test_incomplete_or_odd_instructions_refused() -> None:
    good = {"id": "d1", "artifact": {"artifact_name": "a", "source": {"uri": "https://s/a"},
                                     "device_types_compatible": ["t"]}}
    assert parse_instructions(good).uri == "https://s/a"
    for bad in ({}, {"id": "d1"}, {**good, "id": "../x"},
                {**good, "artifact": {**good["artifact"], "source": {"uri": "file:///etc/shadow"}}}):  # type: ignore[dict-item]
        with pytest.raises(ServerError):
            parse_instructions(bad)


def test_inventory_adds_the_standard_attributes(tmp_path: Path) -> None:
    script = tmp_path / "mender-inventory-x"
    script.write_text("#!/bin/sh\necho a=1\necho device_type=from-script\n")
    script.chmod(0o755)
    failing = tmp_path / "mender-inventory-fails"
    failing.write_text("#!/bin/sh\nexit 3\n")
    failing.chmod(0o755)
    (tmp_path / "not-an-inventory-script").write_text("#!/bin/sh\necho b=2\n")
    items = payload(attributes(tmp_path, {"artifact_name": "r1", "rootfs-image.version": "r1"}, "qemux86-64"))
    values = {item["name"]: item["value"] for item in items}
    assert values == {"a": "1", "artifact_name": "r1", "device_type": "from-script",
                      "mender_client_version": values["mender_client_version"],
                      "mender_client_version_provider": "internal", "rootfs-image.version": "r1"}


def test_the_test_server_refuses_what_the_specification_does_not_allow() -> None:
    with MenderServer() as server:
        api = ServerApi(server.url, allow_http=True)
        answer = api.request("PUT", "/api/devices/v1/deployments/device/deployments/d1/status",
                             body={"status": "finished"}, token="a.b.c")
        assert answer.status == 400
        answer = api.request("GET", "/api/devices/v1/deployments/device/deployments/next?artifact_name=a")
        assert answer.status == 400
        api.request("PUT", "/api/devices/v1/inventory/device/attributes", body=[{"value": 1}], token="a.b.c")
        api.request("GET", "/api/devices/v1/unknown", token="a.b.c")
    assert len(server.violations) == 4, server.violations
    assert "'finished' is not one of" in server.violations[0]


def test_v2_next_body_checked_when_the_server_has_v2(tmp_path: Path) -> None:
    with MenderServer(v2=True) as server:
        api = ServerApi(server.url, allow_http=True)
        key = devicekey.load_or_create(tmp_path, "ecdsa")
        token = Authenticator(api, key, lambda: '{"mac":"x"}').token()
        client = DeploymentsClient(api)
        assert client.next(token, {"artifact_name": "r1", "rootfs-image.version": "r1"}, "qemux86-64") is None
        assert not client.use_v1
        api.request("POST", "/api/devices/v2/deployments/device/deployments/next",
                    body={"device_provides": {"artifact_name": 1}}, token=token)
    assert len(server.violations) == 1 and "strings" in server.violations[0]


def test_the_test_server_links_downloads_at_the_device_address_and_can_slow_them(tmp_path: Path) -> None:
    artifact = tmp_path / "a.mender"
    artifact.write_bytes(os.urandom(256 * 1024))
    with MenderServer(device_host="localhost") as server:
        assert server.device_url == server.url.replace("127.0.0.1", "localhost")
        api = ServerApi(server.url, allow_http=True)
        key = devicekey.load_or_create(tmp_path, "ecdsa")
        token = Authenticator(api, key, lambda: '{"mac":"x"}').token()
        deployment = server.add_deployment("r2", artifact, rate=512 * 1024)
        found = DeploymentsClient(api).next(token, {"artifact_name": "r1"}, "qemux86-64")
        assert found is not None and found.uri == f"{server.device_url}/download/{deployment.id}"
        started = time.monotonic()
        with urllib.request.urlopen(found.uri) as answer:
            assert answer.read() == artifact.read_bytes()
        assert time.monotonic() - started >= 0.35  # 4 chunks of 64 KiB, 1/8 s after each of 3
        assert _served(deployment, 256 * 1024) == 256 * 1024
        deployment.rate = None
        with urllib.request.urlopen(found.uri) as answer:
            assert len(answer.read()) == 256 * 1024
        assert _served(deployment, 512 * 1024) == 512 * 1024
    assert server.violations == []


def _served(deployment: Deployment, expected: int) -> int:
    """The bytes the server counted (it counts a chunk once its write returned, which may be just
    after the client has read it)."""
    deadline = time.monotonic() + 5
    while deployment.served < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return deployment.served
