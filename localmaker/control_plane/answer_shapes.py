"""SageMaker answers in the shape botocore's service model gives them: unset members left out.

moto fills members nobody set with empty values (``"VpcConfig": {}``, ``"DataCaptureConfig": {}``,
``"Containers": []``). Real SageMaker leaves them out, and clients that hold answers to the model reject
them: sagemaker-core's pydantic classes raise ``vpc_config.security_group_ids Field required`` for an
empty VpcConfig. So every successful SageMaker JSON answer passes through ``conformed_answer`` once, in
the control plane's app, whoever wrote it (moto, or an interceptor's overlay).

The rule comes from the model alone, at every depth: an optional member whose value is null, an empty
structure or an empty list is unset, and is left out (a structure emptied that way is then unset too).
Kept as they are:

- required members: the model says AWS always sends them (``"Endpoints": []`` in ListEndpoints);
- the top-level lists a paginator pages through, which AWS sends even when empty (``"Tags": []``);
- empty maps (no map shape has required members, and SDKs index some, such as ``HyperParameters``),
  strings, numbers and booleans (``false`` and ``0`` are values, not absences);
- members the model does not know: a client with a newer model may.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import botocore.session
from botocore.model import (
    ListShape,
    MapShape,
    OperationModel,
    OperationNotFoundError,
    ServiceModel,
    Shape,
    StructureShape,
)

from localmaker.control_plane.answers import Answer

SERVICE = "sagemaker"


# A botocore session is not meant to be shared between threads; the control plane's are per connection.
_LOADING = threading.Lock()


@functools.cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@functools.cache
def service_model(service: str = SERVICE) -> ServiceModel:
    """botocore's model of ``service``, loaded once per process (SageMaker's takes half a second)."""
    with _LOADING:
        return _session().get_service_model(service)


def operation_model(operation: str, service: str = SERVICE) -> OperationModel | None:
    """The model of ``operation``, or None where the service has no operation of that name."""
    try:
        return service_model(service).operation_model(operation)
    except OperationNotFoundError:
        return None


@functools.cache
def paged_results(operation: str, service: str = SERVICE) -> frozenset[str]:
    """The top-level members a paginator of ``operation`` pages through: AWS sends them even when empty."""
    try:
        with _LOADING:
            config = _session().get_paginator_model(service).get_paginator(operation)
    except ValueError:  # the operation has no paginator
        return frozenset()
    keys = config.get("result_key", [])
    return frozenset(k for k in ([keys] if isinstance(keys, str) else keys) if "." not in k)


def conformed(operation: str, payload: Any, service: str = SERVICE) -> Any:
    """``operation``'s answer with its unset members left out (see the module's docstring)."""
    model = operation_model(operation, service)
    shape = model.output_shape if model is not None else None
    if shape is None or not isinstance(payload, dict):
        return payload
    return _structure(shape, payload, paged_results(operation, service))


def conformed_answer(operation: str, answer: Answer, service: str = SERVICE) -> Answer:
    """A successful JSON answer to ``operation``, conformed; any other answer as it is."""
    if not answer.ok or not answer.body.strip():
        return answer
    try:
        payload = answer.json()
    except ValueError:
        return answer
    return answer.with_json(conformed(operation, payload, service))


def _structure(shape: StructureShape, record: dict[str, Any], kept: frozenset[str] = frozenset()) -> dict[str, Any]:
    required = set(shape.required_members)
    conformed_record = {}
    for name, value in record.items():
        member = shape.members.get(name)
        if member is None:  # unknown to this model: a newer client may know it
            conformed_record[name] = value
            continue
        value = _value(member, value)
        if name in required or name in kept or not _unset(member, value):
            conformed_record[name] = value
    return conformed_record


def _value(shape: Shape, value: Any) -> Any:
    if isinstance(shape, StructureShape) and isinstance(value, dict) and not _is_document(shape):
        return _structure(shape, value)
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [_value(shape.member, item) for item in value]
    if isinstance(shape, MapShape) and isinstance(value, dict):
        return {key: _value(shape.value, item) for key, item in value.items()}
    return value


def _unset(shape: Shape, value: Any) -> bool:
    if value is None:
        return True
    if shape.type_name == "structure" and not _is_document(shape):
        return value == {}
    return shape.type_name == "list" and value == []


def _is_document(shape: Shape) -> bool:
    """A free-form JSON document: its content is the user's, not the model's."""
    return bool(getattr(shape, "is_document_type", False))
