"""Raw HTTP to one endpoint instance, so the contract test sees the container's own statuses.

Through InvokeEndpoint every container error would come back wrapped as a ModelError (424); the
contract is about what the container itself answers, so requests go straight to the instance's URL.
A request that gets no HTTP answer at all is a reply too, with ``status`` None and the reason.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import urllib3

from localmaker.local_endpoint.instance_transport import InstanceTransportError, mapped_transport_errors


@dataclass(frozen=True)
class ProbeRequest:
    body: bytes
    content_type: str
    accept: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": self.content_type}
        if self.accept is not None:
            headers["Accept"] = self.accept
        return headers


@dataclass(frozen=True)
class Reply:
    status: int | None
    content_type: str | None
    body: bytes
    seconds: float
    failure: str | None = None  # why there was no HTTP answer

    def describe(self) -> str:
        """``"answered 415: <message>"``, or why nothing was answered, for a check's reason."""
        if self.status is None:
            return f"got no answer ({self.failure})"
        detail = error_message(self.body)
        return f"answered {self.status}" + (f": {detail}" if detail and self.status >= 400 else "")


@dataclass(frozen=True)
class Exchange:
    """One request the contract test sent and what came back; ``label`` says why it was sent."""

    label: str
    request: ProbeRequest
    reply: Reply


def error_message(body: bytes, limit: int = 200) -> str:
    """The ``{"error": {"message"}}`` of localmaker's containers, or the start of any other body's text."""
    text = body.decode("utf-8", "replace")
    try:
        error = json.loads(text).get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            text = error["message"]
    except (ValueError, AttributeError):
        pass
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class InstanceClient:
    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self._timeout_s = timeout_s
        self._http = urllib3.PoolManager(maxsize=2, retries=False)

    def _send(self, method: str, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> Reply:
        started = time.monotonic()
        try:
            with mapped_transport_errors():
                answer = self._http.request(method, f"{self.url}{path}", body=body, headers=headers,
                                            timeout=self._timeout_s)
        except InstanceTransportError as exc:
            return Reply(None, None, b"", time.monotonic() - started, failure=str(exc))
        return Reply(answer.status, answer.headers.get("Content-Type"), answer.data, time.monotonic() - started)

    def ping(self) -> Reply:
        return self._send("GET", "/ping")

    def invoke(self, request: ProbeRequest) -> Reply:
        return self._send("POST", "/invocations", request.body, request.headers())
