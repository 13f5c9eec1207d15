"""One InvokeEndpointAsync request: its headers checked against AWS's limits, and where its result goes.

botocore sends every member of the request as an ``X-Amzn-SageMaker-*`` header (the body stays empty)
and checks only the lower bounds itself, so the upper bounds and patterns are checked here, with
AWS's constraint wording. The result is written to ``<S3OutputPath>[/<S3OutputPathExtension>]/
<Filename or InferenceId.out>``, a failure to ``<S3FailurePath>[/<extension>]/<InferenceId>-error.out``
(or beside the results where the config names no failure path), as SageMaker names them.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from localmaker.control_plane.answers import Environ
from localmaker.control_plane.api_errors import ApiError, ValidationError
from localmaker.control_plane.async_config import AsyncEndpointConfig

# InvokeEndpointAsync's limits (AWS's API reference and botocore's service model).
MAX_ASYNC_PAYLOAD_BYTES = 1024 ** 3  # "up to 1 GB" of input in S3
DEFAULT_TTL_S, MIN_TTL_S, MAX_TTL_S = 21600, 60, 21600  # RequestTTLSeconds: 6 hours by default
DEFAULT_TIMEOUT_S, MIN_TIMEOUT_S, MAX_TIMEOUT_S = 900, 1, 3600  # InvocationTimeoutSeconds: 15 minutes
_INFERENCE_ID = re.compile(r"^\S[\x20-\x7e]*$")
_EXTENSION = re.compile(r"^(?!s3:|https:)[a-zA-Z0-9!_.*'()/-]+$")
_FILENAME = re.compile(r"^(?!.*\..*\.)[a-zA-Z0-9][a-zA-Z0-9-_\.]*$")
_INPUT_LOCATION = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>.+)$")

_HEADER = "HTTP_X_AMZN_SAGEMAKER_"


@dataclass
class AsyncRequest:
    """An accepted request, from the 202 answer until its result or failure object is written."""

    endpoint_name: str
    inference_id: str
    input_bucket: str
    input_key: str
    output_location: str
    failure_location: str
    failure_reported: bool  # whether the 202 answer named failure_location (the config has S3FailurePath)
    config: AsyncEndpointConfig  # the endpoint's, as it was when the request arrived
    content_type: str | None = None
    accept: str | None = None
    custom_attributes: str | None = None
    ttl_s: int = DEFAULT_TTL_S
    timeout_s: int = DEFAULT_TIMEOUT_S
    received: float = field(default_factory=time.time)
    received_monotonic: float = field(default_factory=time.monotonic)
    # Held by whoever settles the request (its worker, a delete, a stop), so one outcome is ever written.
    _settled: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def settled(self) -> bool:
        return self._settled.locked()

    def claim(self) -> bool:
        """True for the first caller only: the one that writes the request's result or failure."""
        return self._settled.acquire(blocking=False)

    @property
    def input_location(self) -> str:
        return f"s3://{self.input_bucket}/{self.input_key}"

    @property
    def expires_at(self) -> float:
        """When a request still waiting in the queue is failed instead of run (monotonic clock)."""
        return self.received_monotonic + self.ttl_s

    def headers(self) -> dict[str, str]:
        """What the instance receives, as InvokeEndpoint would send it."""
        sent = {"Content-Type": self.content_type, "Accept": self.accept,
                "X-Amzn-SageMaker-Custom-Attributes": self.custom_attributes}
        return {name: value for name, value in sent.items() if value}

    def received_time(self) -> str:
        return iso_time(self.received)


def iso_time(epoch_s: float) -> str:
    """SageMaker's notification timestamps: ISO 8601 in UTC with milliseconds, e.g. 2022-01-25T22:46:00.608Z."""
    moment = datetime.fromtimestamp(epoch_s, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_async_request(environ: Environ, endpoint_name: str, config: AsyncEndpointConfig) -> AsyncRequest:
    """The request's headers, checked; ValidationError with AWS's wording for the first bad one."""
    location = _header(environ, "InputLocation")
    if not location:
        raise ValidationError("1 validation error detected: Value null at 'inputLocation' failed to satisfy "
                              "constraint: Member must not be null")
    matched = _INPUT_LOCATION.match(location)
    if len(location) > 1024 or matched is None:
        raise ValidationError(f"InputLocation {location!r} is not an S3 object URL: upload the payload to S3 and "
                              "pass s3://bucket/key")
    inference_id = _header(environ, "Inference-Id") or str(uuid.uuid4())
    if len(inference_id) > 64 or not _INFERENCE_ID.match(inference_id):
        raise _constraint(inference_id, "inferenceId", "Member must have length less than or equal to 64 and "
                          "satisfy regular expression pattern: \\A\\S[\\p{Print}]*\\z")
    extension = _header(environ, "S3OutputPathExtension")
    if extension is not None and (len(extension) > 512 or not _EXTENSION.match(extension)):
        raise _constraint(extension, "s3OutputPathExtension", "Member must have length less than or equal to "
                          "512 and satisfy regular expression pattern: ^(?!s3:|https:)[a-zA-Z0-9!_.*'()/-]+$")
    filename = _header(environ, "Filename")
    if filename is not None and (len(filename) > 32 or not _FILENAME.match(filename)):
        raise _constraint(filename, "filename", "Member must have length less than or equal to 32 and satisfy "
                          "regular expression pattern: ^(?!.*\\..*\\.)[a-zA-Z0-9][a-zA-Z0-9-_\\.]*$")
    for name in ("Content-Type", "Accept", "Custom-Attributes"):
        value = _header(environ, name)
        if value is not None and (len(value) > 1024 or not value.isascii()):
            raise _constraint(value, name[0].lower() + name[1:].replace("-", ""),
                              "Member must have length less than or equal to 1024 and be US-ASCII")
    output_folder = _joined(config.output_path, extension)
    failure_folder = _joined(config.failure_path or config.output_path, extension)
    return AsyncRequest(
        endpoint_name=endpoint_name,
        inference_id=inference_id,
        input_bucket=matched.group("bucket"),
        input_key=matched.group("key"),
        output_location=f"{output_folder}/{filename or inference_id + '.out'}",
        failure_location=f"{failure_folder}/{inference_id}-error.out",
        failure_reported=config.failure_path is not None,
        config=config,
        content_type=_header(environ, "Content-Type"),
        accept=_header(environ, "Accept"),
        custom_attributes=_header(environ, "Custom-Attributes"),
        ttl_s=_bounded(environ, "RequestTTLSeconds", "requestTTLSeconds", DEFAULT_TTL_S, MIN_TTL_S, MAX_TTL_S),
        timeout_s=_bounded(environ, "InvocationTimeoutSeconds", "invocationTimeoutSeconds", DEFAULT_TIMEOUT_S,
                           MIN_TIMEOUT_S, MAX_TIMEOUT_S),
    )


def check_input_size(size: int, location: str, limit: int | None = None) -> None:
    """Refuse an input object over the asynchronous payload limit (1 GB)."""
    limit = MAX_ASYNC_PAYLOAD_BYTES if limit is None else limit
    if size > limit:
        raise ValidationError(f"The input payload at {location} is {size} bytes, over the {limit} bytes (1 GB) "
                              "that asynchronous inference accepts; split the input into smaller requests")


def _header(environ: Environ, name: str) -> str | None:
    value = environ.get(_HEADER + name.upper().replace("-", "_"))
    return None if value is None else str(value)


def _bounded(environ: Environ, header: str, member: str, default: int, low: int, high: int) -> int:
    raw = _header(environ, header)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _constraint(raw, member, "Member must be an integer") from None
    if value < low:
        raise _constraint(value, member, f"Member must have value greater than or equal to {low}")
    if value > high:
        raise _constraint(value, member, f"Member must have value less than or equal to {high}")
    return value


def _joined(folder: str, extension: str | None) -> str:
    return f"{folder}/{extension.strip('/')}" if extension else folder


def _constraint(value: object, member: str, constraint: str) -> ApiError:
    return ValidationError(f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
                           f"constraint: {constraint}")
