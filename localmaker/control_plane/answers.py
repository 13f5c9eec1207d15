"""One HTTP answer as the control plane holds it before sending: what interceptors read and rewrite."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
# The SageMaker API's content type; its runtime API (InvokeEndpoint) answers plain application/json.
AMZ_JSON = "application/x-amz-json-1.1"
RUNTIME_JSON = "application/json"


@dataclass
class Answer:
    """One HTTP answer, held whole so an interceptor can read or rewrite it before it is sent."""

    status: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status.startswith("200")

    def header(self, name: str) -> str:
        """The value of header ``name`` (any case), or "" where the answer has none."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")

    def json(self) -> Any:
        return json.loads(self.body)

    def with_json(self, payload: Any) -> Answer:
        return Answer(self.status, self.headers, json.dumps(payload, default=str).encode("utf-8"))

    @classmethod
    def of(cls, status: int, body: bytes, content_type: str, headers: Iterable[tuple[str, str]] = ()) -> Answer:
        return cls(f"{status} {'OK' if status < 400 else 'Error'}", [("Content-Type", content_type), *headers], body)

    @classmethod
    def of_json(cls, status: int, payload: Any, content_type: str = AMZ_JSON,
                headers: Iterable[tuple[str, str]] = ()) -> Answer:
        return cls.of(status, json.dumps(payload, default=str).encode("utf-8"), content_type, headers)

    def send(self, start_response: StartResponse) -> list[bytes]:
        headers = [(k, v) for k, v in self.headers if k.lower() != "content-length"]
        start_response(self.status, [*headers, ("Content-Length", str(len(self.body)))])
        return [self.body]


@dataclass
class StreamedAnswer(Answer):
    """An answer whose body is sent as it is produced (InvokeEndpointWithResponseStream): it has no
    Content-Length, so the server sends it chunked, and nothing can read or rewrite it before it goes."""

    chunks: Iterable[bytes] = ()

    def send(self, start_response: StartResponse) -> Iterable[bytes]:  # type: ignore[override]
        start_response(self.status, [(k, v) for k, v in self.headers if k.lower() != "content-length"])
        return self.chunks


def overlaid(answer: Answer, overlay: Callable[[dict[str, Any]], None], items: str | None = None) -> Answer:
    """A successful JSON answer with ``overlay`` applied to its record, or to each record under ``items``."""
    if not answer.ok:
        return answer
    payload = answer.json()
    for record in payload.get(items, []) if items else [payload]:
        overlay(record)
    return answer.with_json(payload)
