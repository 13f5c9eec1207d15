"""A check of raw AWS answers against botocore's service model, and a recorder of every answer a client got.

botocore's parsers are lenient: they skip nulls, keep members a shape does not require, and never check
that required ones came. Clients that hold answers to the model are not (sagemaker-core's pydantic
classes raise ``vpc_config.security_group_ids Field required`` for ``"VpcConfig": {}``). So this reads
the answer as it came over the wire and holds it to the model: every required member present, no null,
no empty structure whose shape has required members, each value of its shape's type.
"""

from __future__ import annotations

import base64
import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape
from botocore.utils import parse_timestamp

_NUMBER_TYPES = {"integer": (int,), "long": (int,), "float": (int, float), "double": (int, float)}


def violations(shape: Shape, value: Any, path: str = "$") -> list[str]:
    """Where ``value`` breaks ``shape``: one line per fault, naming its JSON path."""
    if value is None:
        return [f"{path}: null (AWS leaves an unset member out)"]
    if isinstance(shape, StructureShape):
        if getattr(shape, "is_document_type", False):
            return []
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__} where {shape.name} is a structure"]
        found = [f"{path}: an empty {shape.name}, whose shape requires {shape.required_members}"
                 ] if not value and shape.required_members else []
        found += [f"{path}.{name}: required by {shape.name}, missing"
                  for name in shape.required_members if name not in value]
        for name, member_value in value.items():
            if name in shape.members:
                found += violations(shape.members[name], member_value, f"{path}.{name}")
        return found
    if isinstance(shape, ListShape):
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__} where {shape.name} is a list"]
        return [fault for i, item in enumerate(value) for fault in violations(shape.member, item, f"{path}[{i}]")]
    if isinstance(shape, MapShape):
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__} where {shape.name} is a map"]
        return [fault for key, item in value.items() for fault in violations(shape.value, item, f"{path}[{key!r}]")]
    return _scalar_violations(shape, value, path)


def _scalar_violations(shape: Shape, value: Any, path: str) -> list[str]:
    kind = shape.type_name
    wrong = [f"{path}: {value!r} is not a {kind} ({shape.name})"]
    if kind == "string":
        return [] if isinstance(value, str) else wrong
    if kind == "boolean":
        return [] if isinstance(value, bool) else wrong
    if kind in _NUMBER_TYPES:
        return [] if isinstance(value, _NUMBER_TYPES[kind]) and not isinstance(value, bool) else wrong
    if kind == "timestamp":
        return [] if _is_timestamp(value) else wrong
    if kind == "blob":
        return [] if _is_blob(value) else wrong
    return [f"{path}: {shape.name} has a type this check does not know: {kind}"]


def _is_timestamp(value: Any) -> bool:
    if isinstance(value, datetime.datetime):  # already parsed
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return False
    try:
        parse_timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _is_blob(value: Any) -> bool:
    if isinstance(value, (bytes, bytearray)):
        return True
    try:
        base64.b64decode(value, validate=True)
    except (ValueError, TypeError):
        return False
    return isinstance(value, str)


@dataclass
class Recorded:
    """One answer as it came over the wire."""

    operation: OperationModel
    status: int
    headers: dict[str, str]
    body: bytes | None  # None for a streamed payload, which the caller reads itself

    @property
    def name(self) -> str:
        return self.operation.name

    def payload(self) -> Any:
        return json.loads(self.body) if self.body and self.body.strip() else {}

    def violations(self) -> list[str]:
        if self.status >= 300:
            return self._error_violations()
        shape = self.operation.output_shape
        if shape is None:
            return []
        protocol = self.operation.service_model.protocol
        if protocol == "json":
            return violations(shape, self.payload())
        if protocol == "rest-json":
            return violations(shape, self._rest_value(shape))
        return [f"{self.name}: {protocol} answers are checked after parsing, not here"]

    def _rest_value(self, shape: StructureShape) -> dict[str, Any]:
        """A REST answer's members: headers where the shape puts them, the payload, or the body's JSON."""
        value: dict[str, Any] = {}
        payload = shape.serialization.get("payload")
        for name, member in shape.members.items():
            if member.serialization.get("location") == "header":
                header = member.serialization.get("name", name).lower()
                if header in self.headers:
                    value[name] = self.headers[header]
        if payload:
            if self.body is not None or self.operation.has_streaming_output:
                value[payload] = self.body if self.body is not None else b"(streamed)"
        else:
            value.update(self.payload())
        return value

    def _error_violations(self) -> list[str]:
        """An error names its code and carries a message; a modeled error's members are of their types."""
        body = self.payload()
        if not isinstance(body, dict):
            return [f"{self.name} error: the body is not a JSON object: {self.body!r}"]
        code = self.headers.get("x-amzn-errortype", "") or str(body.get("__type", ""))
        code = code.split(":")[0].rsplit("#", 1)[-1]
        found = [] if code else [f"{self.name} error: no error code in {self.headers} or {body}"]
        shape = next((s for s in self.operation.error_shapes if s.name == code), None)
        if shape is not None:
            members = {("Message" if k == "message" else k): v for k, v in body.items() if k != "__type"}
            found += violations(shape, members, f"{self.name}!{code}")
        return found


@dataclass
class Recorder:
    """Registered on a client's events, it keeps every answer that client received, in order."""

    answers: list[Recorded] = field(default_factory=list)

    def attach(self, *clients: Any) -> None:
        for client in clients:
            client.meta.events.register("after-call", self._record)

    def _record(self, http_response: Any, model: OperationModel, **_: Any) -> None:
        body = None if model.has_streaming_output and http_response.status_code < 300 else http_response.content
        self.answers.append(Recorded(model, http_response.status_code,
                                     {k.lower(): v for k, v in http_response.headers.items()}, body))

    def of(self, operation: str) -> list[Recorded]:
        return [answer for answer in self.answers if answer.name == operation]

    def violations(self) -> list[str]:
        return [f"{answer.name} ({answer.status}): {fault}" for answer in self.answers for fault in answer.violations()]
