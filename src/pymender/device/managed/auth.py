"""Authentication: the signed auth request, and the JWT it earns, kept in memory only.

The request body is JSON: ``id_data`` (the identity, itself JSON text), ``pubkey`` (the device's
public key, PEM), ``tenant_token`` (only when set) and ``tier``, as Mender's client sends it;
``X-MEN-Signature`` is the device key's signature over exactly those bytes. HTTP 401 means the
device is not accepted (yet): the caller retries later. The token is dropped when any call
answers 401, and a new one requested.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from pymender.device.log import get_logger
from pymender.device.managed.api import ServerApi
from pymender.device.managed.devicekey import DeviceKey, KeyProcess
from pymender.errors import ServerError

log = get_logger(__name__)

AUTH_PATH = "/api/devices/v1/authentication/auth_requests"
#: The longest JWT accepted.
MAX_TOKEN = 16384


class Authenticator:
    """Holds the JWT; :meth:`token` asks the server for one when there is none."""

    def __init__(self, api: ServerApi, key: DeviceKey | KeyProcess, identity: Callable[[], str],
                 tenant_token: str | None = None, tier: str = "standard") -> None:
        self._api = api
        self._key = key
        self._identity = identity
        self._tenant_token = tenant_token
        self._tier = tier
        self._token: str | None = None

    def __repr__(self) -> str:
        return f"Authenticator({self._api.server_url}, {'authorized' if self._token else 'not authorized'})"

    @property
    def authorized(self) -> bool:
        return self._token is not None

    def forget(self) -> None:
        self._token = None

    def signed_request(self) -> tuple[bytes, str]:
        """The auth request body and its signature."""
        fields = {"id_data": self._identity()}
        if self._tenant_token:
            fields["tenant_token"] = self._tenant_token
        fields["tier"] = self._tier
        return self._key.signed(fields)

    def token(self) -> str:
        if self._token is None:
            self._token = self._authenticate()
        return self._token

    def _authenticate(self) -> str:
        body, signature = self.signed_request()
        answer = self._api.request("POST", AUTH_PATH, raw=body, headers={"X-MEN-Signature": signature})
        if answer.status == 401:
            raise ServerError("the server has not accepted this device (yet)", status=401,
                              hint="accept the device in the server's UI, or check the TenantToken")
        if answer.status != 200:
            raise self._api.error("authentication", answer)
        text = answer.body.decode("utf-8", "replace").strip()
        if text.startswith('"'):  # the API documents a JSON string; the server sends the bare token
            try:
                text = str(json.loads(text))
            except ValueError:
                text = ""
        if not text or len(text) > MAX_TOKEN or text.count(".") != 2 or any(c.isspace() for c in text):
            raise ServerError("the server's authentication answer is not a JWT", status=200)
        log.info("authorized with the server %s", self._api.server_url)
        return text


__all__ = ["AUTH_PATH", "Authenticator"]
