"""The deployments API: what to install next, its status, its log.

``next``: Mender's client first POSTs the device's provides (``device_type`` and every
provide, ``artifact_name`` included) to the v2 endpoint; a server that answers 404 (one without
it) is asked again with the v1 ``GET`` and the query ``artifact_name`` and ``device_type``, the
form the published API specification has. 200 brings the instructions (``id`` and
``artifact.source.uri``), 204 means nothing to do.
"""

from __future__ import annotations

import datetime
import urllib.parse
from typing import Any, NamedTuple

from pymender.device.managed.api import ServerApi
from pymender.errors import ServerError

NEXT_V1 = "/api/devices/v1/deployments/device/deployments/next"
NEXT_V2 = "/api/devices/v2/deployments/device/deployments/next"
DEPLOYMENTS = "/api/devices/v1/deployments/device/deployments"
#: Mender's statuses.
DOWNLOADING = "downloading"
INSTALLING = "installing"
REBOOTING = "rebooting"
SUCCESS = "success"
FAILURE = "failure"
ALREADY_INSTALLED = "already-installed"
#: The most log lines uploaded for one deployment.
MAX_LOG_LINES = 2000


class Deployment(NamedTuple):
    id: str
    artifact_name: str
    uri: str
    device_types: tuple[str, ...]


def parse_instructions(document: Any) -> Deployment:
    """The deployment of a ``next`` answer; anything else than the documented shape is refused."""
    try:
        artifact = document["artifact"]
        deployment = Deployment(str(document["id"]), str(artifact["artifact_name"]),
                                str(artifact["source"]["uri"]),
                                tuple(str(t) for t in artifact.get("device_types_compatible") or ()))
    except (KeyError, TypeError) as err:
        raise ServerError(f"the deployment instructions are incomplete: {err!s} is missing") from err
    if not deployment.id or "/" in deployment.id or not deployment.artifact_name:
        raise ServerError("the deployment instructions have no usable id or Artifact name")
    if urllib.parse.urlsplit(deployment.uri).scheme not in ("https", "http"):
        raise ServerError("the deployment's Artifact is not at an http(s):// URL")
    return deployment


class Aborted(Exception):
    """The server aborted the deployment (it answered 409 to a status)."""


class DeploymentsClient:
    def __init__(self, api: ServerApi) -> None:
        self._api = api
        self.use_v1 = False

    def next(self, token: str, provides: dict[str, str], device_type: str) -> Deployment | None:
        if not self.use_v1:
            body = {"device_provides": {"device_type": device_type, **provides}}
            answer = self._api.request("POST", NEXT_V2, body=body, token=token)
            if answer.status == 404:
                self.use_v1 = True
        if self.use_v1:
            query = urllib.parse.urlencode({"artifact_name": provides.get("artifact_name", ""),
                                            "device_type": device_type})
            answer = self._api.request("GET", f"{NEXT_V1}?{query}", token=token)
        if answer.status == 204:
            return None
        if answer.status != 200:
            raise self._api.error("checking for an update", answer)
        return parse_instructions(answer.json())

    def status(self, token: str, deployment_id: str, status: str, substate: str | None = None) -> None:
        body = {"status": status}
        if substate:
            body["substate"] = substate
        answer = self._api.request("PUT", f"{DEPLOYMENTS}/{urllib.parse.quote(deployment_id)}/status", body=body,
                                   token=token)
        if answer.status == 409:
            raise ServerError("the deployment was aborted on the server", status=409)
        if answer.status != 204:
            raise self._api.error(f"reporting {status}", answer)

    def log(self, token: str, deployment_id: str, lines: list[dict[str, str]]) -> None:
        messages = lines[-MAX_LOG_LINES:] or [{"timestamp": now(), "level": "info", "message": "(no log)"}]
        answer = self._api.request("PUT", f"{DEPLOYMENTS}/{urllib.parse.quote(deployment_id)}/log",
                                   body={"messages": messages}, token=token)
        if answer.status != 204:
            raise self._api.error("uploading the deployment log", answer)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


__all__ = ["Aborted", "Deployment", "DeploymentsClient", "now", "parse_instructions"]
